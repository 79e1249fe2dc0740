"""Multi-word names in the fingerspelling corpus: their share, labels, the pause between words, disjoint splits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from signt5.data import fingerspelling
from signt5.data.fingerspelling import SHIFTED, ClipBank, CorpusConfig, Variation, build_corpus, spell_sequence
from signt5.data.layout import layout_by_name
from signt5.data.lexicon import LetterClip
from signt5.data.readers import read_pose_file
from signt5.data.words import MAX_NAME_LETTERS, _multi_word_places, _name_pools, candidate_names

from ..conftest import build_recording_spellings

LANGUAGES = ["gsg", "ukl"]
SIZES = {"train": 12, "dev": 4, "test": 4, "test_shifted": 4, "test_slow": 4, "test_fast": 4, "test_flicker": 4,
         "test_left_handed": 4}


def _config(out: Path, seed: int = 0, **overrides) -> CorpusConfig:
    return CorpusConfig(output_dir=str(out), sign_languages=LANGUAGES, seed=seed, formats=["pose"],
                        **{f"{split}_words": size for split, size in SIZES.items()}, **overrides)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The corpus, and per sample what ``spell_sequence`` returned for it."""
    out = tmp_path_factory.mktemp("names0")
    entries, calls = build_recording_spellings(_config(out))
    return out, entries, calls


def _names(entries):
    return [e for e in entries if " " in e.text]


def test_every_split_has_its_share_of_names(built):
    out, entries, _ = built
    config = _config(out)
    info = json.loads((out / "corpus.json").read_text())
    for language in LANGUAGES:
        for split, size in SIZES.items():
            in_split = [e for e in entries if e.sign_language == language and e.split == split]
            names = _names(in_split)
            assert len(in_split) == size
            assert len(names) == config.multi_word_count(size) == info["multi_word"][language][split] > 0
    assert info["multi_word"]["total"] == {split: 2 * config.multi_word_count(size) for split, size in SIZES.items()}
    assert info["multi_word"]["total"]["train"] == 6
    assert info["config"]["multi_word_share"] == 0.25


def test_multi_word_count_rounds_half_up_and_share_is_checked():
    config = CorpusConfig()
    assert [config.multi_word_count(n) for n in (0, 1, 2, 3, 10, 100)] == [0, 0, 1, 1, 3, 25]
    assert CorpusConfig(multi_word_share=0.0).multi_word_count(100) == 0
    with pytest.raises(ValueError, match="multi_word_share"):
        CorpusConfig(multi_word_share=1.5)


def test_name_text_is_as_written_and_gloss_is_just_the_letters(built, lexicon):
    _, entries, _ = built
    names = _names(entries)
    assert names
    for e in names:
        words = e.text.split(" ")
        assert len(words) >= 2 and all(words)
        assert any(ch.isupper() for ch in e.text) and e.text != e.text.upper()
        letters = [c.gloss for word in words for c in lexicon.spell(word, e.sign_language)]
        assert e.gloss.split(" ") == letters  # every word's letters in order, no boundary token
        assert set(letters) <= {c.gloss for c in lexicon.letters(e.sign_language)}


def test_pause_between_words_in_built_samples(built):
    """Each name's sample holds the hand still for the drawn pause, at the sample's fps, between its words."""
    out, entries, calls = built
    for e, call in zip(entries, calls):
        sample = read_pose_file(e.path)
        assert sample.num_frames == call["frames"] and sample.fps == pytest.approx(call["fps"])
        assert len(call["words"]) == len(e.text.split(" "))
        assert len(call["pauses"]) == len(call["words"]) - 1
        v = call["variation"]
        low, high = (round(s * call["fps"]) for s in v.word_pause_seconds)
        first = 0
        for (a, b), letters in zip(call["pauses"], call["words"]):
            last_span, next_span = call["spans"][first + letters - 1], call["spans"][first + letters]
            assert last_span[1] == a and low <= b - a <= high
            # then a transition into the next word, as between letters
            assert v.transition_frames[0] <= next_span[0] - b <= v.transition_frames[1]
            first += letters
    shifted = [c for e, c in zip(entries, calls) if e.split == "test_shifted" and c["pauses"]]
    assert shifted and all(c["variation"].word_pause_seconds == SHIFTED.word_pause_seconds for c in shifted)


@pytest.mark.parametrize("variation, fps", [(Variation(), 25.0), (Variation(), 30.0), (SHIFTED, 50.0)])
def test_spell_sequence_holds_the_last_letter_for_the_pause(lexicon, variation, fps):
    bank = ClipBank(lexicon, layout_by_name("holistic_reduced_178"))
    clips = [bank.get(c) for c in lexicon.spell("Anna", "ase")], [bank.get(c) for c in lexicon.spell("Lee", "ase")]
    low, high = (round(s * fps) for s in variation.word_pause_seconds)
    lengths = set()
    for seed in range(20):
        coords, mask, spans, pauses = spell_sequence(clips, np.random.default_rng(seed), variation, fps)
        assert len(spans) == 7 and len(pauses) == 1
        (a, b), = pauses
        assert spans[3][1] == a and low <= b - a <= high
        assert variation.transition_frames[0] <= spans[4][0] - b <= variation.transition_frames[1]
        held = coords[a - 1:b]  # the last letter's final frame, then the pause: the hand does not move
        np.testing.assert_array_equal(held, np.repeat(held[:1], len(held), axis=0))
        assert (mask[a - 1:b] == mask[a - 1]).all()
        lengths.add(b - a)
    assert len(lengths) > 3  # drawn, not fixed
    _, _, spans, pauses = spell_sequence(clips[:1], np.random.default_rng(0), variation, fps)
    assert pauses == [] and len(spans) == 4


def test_splits_are_disjoint_in_words_and_letter_sequences(built, lexicon):
    _, entries, _ = built
    for language in LANGUAGES:
        glosses, words = {}, {}
        for e in entries:
            if e.sign_language == language:
                glosses.setdefault(e.split, set()).add(e.gloss)
                for word in e.text.split(" "):
                    key = tuple(c.gloss for c in lexicon.spell(word, language))
                    words.setdefault(e.split, set()).add(key)
        splits = list(SIZES)
        for i, a in enumerate(splits):
            for b in splits[i + 1:]:
                assert not glosses[a] & glosses[b], (language, a, b)
                assert not words[a] & words[b], (language, a, b)
        in_language = [e for e in entries if e.sign_language == language]
        assert len({e.gloss for e in in_language}) == len(in_language)


def _clips(word: str) -> list[LetterClip]:
    return [LetterClip("xxx", "xx", ch, ch.upper(), Path(f"{ch}.pose")) for ch in word]


def test_a_name_never_reuses_a_word_or_letter_sequence_of_another_split():
    words = [("annabelle", _clips("annabelle")), ("kurz", _clips("kurz")), ("rot", _clips("rot")),
             ("blau", _clips("blau"))]
    names = [("Anna Belle", [_clips("anna"), _clips("belle")]),  # same letters as the train word "annabelle"
             ("Otto Kurz", [_clips("otto"), _clips("kurz")]),  # "kurz" is a train word
             ("Eva Lang", [_clips("eva"), _clips("lang")])]
    assigned = fingerspelling._assign_splits(words, names, {"train": 2, "dev": 2}, {"train": 0, "dev": 1}, "xxx")
    assert [text for text, _ in assigned["train"]] == ["annabelle", "kurz"]
    assert [text for text, _ in assigned["dev"]] == ["Eva Lang", "rot"]


def test_deterministic_per_seed(built, tmp_path_factory):
    _, entries, _ = built
    again = build_corpus(_config(tmp_path_factory.mktemp("names0b")))
    assert [(e.id, e.text, e.gloss) for e in entries] == [(e.id, e.text, e.gloss) for e in again]
    name = _names(entries)[0]
    twin = next(e for e in again if e.id == name.id)
    np.testing.assert_array_equal(read_pose_file(name.path).coords, read_pose_file(twin.path).coords)
    other = build_corpus(_config(tmp_path_factory.mktemp("names1"), seed=1))
    assert {e.text for e in _names(other)} != {e.text for e in _names(entries)}


def test_cli_share_flag_turns_names_off(tmp_path):
    from signt5.cli import main

    out = tmp_path / "corpus"
    assert main(["build-fingerspelling", "--output_dir", str(out), "--sign_languages", "ase", "--train_words", "4",
                 "--dev_words", "1", "--test_words", "1", "--test_shifted_words", "1", "--test_slow_words", "2",
                 "--test_fast_words", "0", "--test_flicker_words", "1", "--test_left_handed_words", "0",
                 "--formats", "pose", "--multi_word_share", "0"]) == 0
    info = json.loads((out / "corpus.json").read_text())
    splits = {"train": 4, "dev": 1, "test": 1, "test_shifted": 1, "test_slow": 2, "test_flicker": 1}
    assert info["multi_word"]["total"] == dict.fromkeys(splits, 0)
    assert info["counts"]["ase"] == splits


def test_candidate_names_mix_places_and_first_last_pairs():
    names = candidate_names("de", 60, seed=2)
    assert names == candidate_names("de", 60, seed=2) and names != candidate_names("de", 60, seed=3)
    assert len(names) == 60 and len(set(names)) == 60
    assert all(" " in n and len(n.replace(" ", "")) <= MAX_NAME_LETTERS for n in names)
    places = [n for n in names if n in _multi_word_places("de")]
    pools = _name_pools("de")
    pairs = [n for n in names if n.split(" ")[0] in pools["first"] and n.split(" ")[1] in pools["last"]]
    assert 5 <= len(places) <= 30 and len(places) + len(pairs) >= len(names) - 2
    assert candidate_names("tr", 20) and not _multi_word_places("tr")  # no own place names: pairs only
