"""The fingerspelling lexicon and the word sources: real data from spoken-to-signed, wordfreq and Faker."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest

from signt5.errors import PoseDataError, SignT5Error
from signt5.data.lexicon import FingerspellingLexicon, fold_text
from signt5.data.words import (
    UnsupportedLanguageError,
    candidate_words,
    spellable_words,
    supported_languages,
    word_source_summary,
)

SIGN_LANGUAGES = [
    "ase", "asq", "bzs", "cse", "csq", "eso", "gsg", "gss", "ise", "jos",
    "lls", "mfs", "psr", "sgg", "ssp", "svk", "swl", "tsm", "ukl",
]  # fmt: skip


@pytest.fixture(scope="module")
def lexicon() -> FingerspellingLexicon:
    return FingerspellingLexicon.load()


def spelled(lexicon: FingerspellingLexicon, word: str, signed_language: str) -> list[str] | None:
    clips = lexicon.spell(word, signed_language)
    return None if clips is None else [clip.letter for clip in clips]


def test_all_sign_languages_load_with_existing_clips(lexicon):
    assert lexicon.sign_languages() == SIGN_LANGUAGES
    clips = [clip for signed in lexicon.sign_languages() for clip in lexicon.letters(signed)]
    assert len(clips) == 600
    assert all(clip.path.is_absolute() and clip.path.is_file() for clip in clips)
    assert all(clip.path.suffix == ".pose" for clip in clips)
    assert lexicon.spoken_language("ase") == "en"
    assert lexicon.spoken_language("gss") == "el"
    assert [clip.letter for clip in lexicon.letters("ase")] == [chr(c) for c in range(ord("A"), ord("Z") + 1)]


def test_turkish_dotted_and_dotless_capitals_are_distinct_letters(lexicon):
    letters = {clip.letter: clip.path for clip in lexicon.letters("tsm")}
    assert letters["I"] != letters["İ"]


def test_missing_lexicon_and_unknown_language_fail_clearly(tmp_path: Path, lexicon):
    with pytest.raises(PoseDataError, match="data.csv"):
        FingerspellingLexicon.load(tmp_path)
    with pytest.raises(SignT5Error, match="xyz"):
        lexicon.spell("word", "xyz")


def test_missing_columns_and_clips_fail_clearly(tmp_path: Path):
    (tmp_path / "data.csv").write_text("path,words\na.pose,A\n", encoding="utf-8")
    with pytest.raises(PoseDataError, match="missing columns"):
        FingerspellingLexicon.load(tmp_path)
    header = "path,spoken_language,signed_language,start,end,words,glosses,priority\n"
    (tmp_path / "data.csv").write_text(header + "x/a.pose,en,ase,0,1,A,A,0\n", encoding="utf-8")
    with pytest.raises(PoseDataError, match="missing"):
        FingerspellingLexicon.load(tmp_path)


@pytest.mark.parametrize(
    ("word", "signed_language", "letters"),
    [
        ("schule", "sgg", ["SCH", "U", "L", "E"]),
        ("Schule", "asq", ["SCH", "U", "L", "E"]),
        ("schule", "gsg", ["S", "C", "H", "U", "L", "E"]),
        ("bello", "ise", ["B", "E", "ll", "O"]),
        ("pizza", "ise", ["P", "I", "zz", "A"]),
        ("Ljubljana", "csq", ["Lj", "U", "B", "Lj", "A", "N", "A"]),
        ("džungla", "csq", ["Dž", "U", "N", "G", "L", "A"]),
        ("istanbul", "tsm", ["İ", "S", "T", "A", "N", "B", "U", "L"]),
        ("İzmir", "tsm", ["İ", "Z", "M", "İ", "R"]),
        ("ılık", "tsm", ["I", "L", "I", "K"]),
        ("IŞIK", "tsm", ["I", "Ş", "I", "K"]),
        ("σοφός", "gss", ["Σ", "Ο", "Φ", "Ο", "Σ"]),
        ("άλφα", "gss", ["Α", "Λ", "Φ", "Α"]),
        ("café", "ase", ["C", "A", "F", "E"]),
        ("cafe\u0301", "ase", ["C", "A", "F", "E"]),
        ("straße", "asq", ["S", "T", "R", "A", "ẞ", "E"]),
        ("STRAẞE", "gsg", ["S", "T", "R", "A", "ß", "E"]),
        ("chata", "cse", ["Ch", "A", "T", "A"]),
        ("llama", "mfs", ["Ll", "A", "M", "A"]),
        ("perro", "ssp", ["P", "E", "RR", "O"]),
        ("niño", "ssp", ["N", "I", "Ñ", "O"]),
        ("привіт", "ukl", ["П", "Р", "И", "В", "І", "Т"]),
        ("الكتاب", "jos", ["ال", "ك", "ت", "ا", "ب"]),
        ("أحمد", "jos", ["أ", "ح", "م", "د"]),
        ("إسلام", "jos", ["إ", "س", "لا", "م"]),
    ],
)
def test_spell_splits_words_into_letter_clips(lexicon, word, signed_language, letters):
    assert spelled(lexicon, word, signed_language) == letters


@pytest.mark.parametrize(
    ("word", "signed_language"),
    [
        ("مدرسة", "jos"),  # ta marbuta has no clip
        ("abc1", "ase"),
        ("hello world", "ase"),
        ("x-ray", "ase"),
        ("don't", "ase"),
        ("пам\u02bcять", "ukl"),
        ("straße", "sgg"),  # Swiss German spells no ß
        ("σοφός", "ase"),
        ("", "ase"),
    ],
)
def test_spell_returns_none_for_unspellable_words(lexicon, word, signed_language):
    assert lexicon.spell(word, signed_language) is None


def test_fold_keeps_positions_and_follows_turkish_rules():
    assert fold_text("İIiı", "tr") == "iıiı"
    assert fold_text("İI", "en") == "İi"
    assert fold_text("ẞß", "de") == "ßß"
    assert fold_text("ΣΟΦΟΣ", "el") == fold_text("σοφος", "el") == "σοφοσ"


def test_candidate_words_are_deterministic_per_seed():
    first = candidate_words("de", 300, seed=3)
    assert first == candidate_words("de", 300, seed=3)
    assert first != candidate_words("de", 300, seed=4)
    assert candidate_words("de", 100, seed=3) == first[:100]


def test_candidate_words_are_distinct_plain_words_for_every_lexicon_language(lexicon):
    spoken = {lexicon.spoken_language(signed) for signed in lexicon.sign_languages()}
    assert spoken <= set(supported_languages())
    for language in sorted(spoken):
        words = candidate_words(language, 300)
        assert len(words) == 300, language
        assert len({fold_text(word, language) for word in words}) == len(words), language
        assert all(word.isalpha() and 2 <= len(word) <= 12 for word in words), language


@pytest.mark.parametrize(
    ("language", "script"), [("el", "GREEK"), ("uk", "CYRILLIC"), ("ar", "ARABIC"), ("de", "LATIN")]
)
def test_candidate_words_are_in_the_language_script(language, script):
    words = candidate_words(language, 500)
    assert all(all(unicodedata.name(char).startswith(script) for char in word) for word in words)


def test_candidate_words_mix_common_words_with_names():
    words = candidate_words("en", 400)
    capitalised = sum(word[0].isupper() for word in words)
    assert 120 <= capitalised <= 280
    assert not any(word.endswith("σ") for word in candidate_words("el", 2000))


def test_unsupported_language_fails_clearly():
    with pytest.raises(UnsupportedLanguageError, match="xx"):
        candidate_words("xx", 10)


def test_word_source_summary_names_each_source(lexicon):
    summary = word_source_summary()
    assert set(summary) == set(supported_languages())
    assert summary["en"].startswith("wordfreq:en")
    assert summary["hr"].startswith("wordfreq:sh")
    assert summary["et"].startswith("faker:et_EE")


@pytest.mark.parametrize("signed_language", SIGN_LANGUAGES)
def test_spellable_words_give_enough_words_for_every_sign_language(lexicon, signed_language):
    spoken = lexicon.spoken_language(signed_language)
    pairs = spellable_words(lexicon, signed_language, 200, seed=1)
    assert len(pairs) == 200
    assert len({fold_text(word, spoken) for word, _ in pairs}) == 200
    for word, clips in pairs:
        assert clips == lexicon.spell(word, signed_language)
        assert all(clip.signed_language == signed_language for clip in clips)
