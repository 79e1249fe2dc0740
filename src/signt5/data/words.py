"""Real words per spoken language, to be fingerspelled into synthetic training samples.

Where the words come from:

* common words: ``wordfreq.top_n_list(lang, 20000)``, kept when alphabetic, 2..12
  characters long and written in the language's script. wordfreq gives them in
  lower case (German nouns included). Croatian (``hr``) has no list of its own and
  uses wordfreq's Serbo-Croatian (``sh``, Latin script); Estonian (``et``) has none.
* names and places: the word lists inside Faker's locale providers (first names,
  last names, and the locale's own city, locality, region and country names).
  Lists are read as shipped rather than generated, because Faker builds its
  fallback city names (``"New Nojus"``, ``"Kärnershire"``) from English patterns;
  locales whose address provider is only the English fallback (ar, et, lt, tr)
  contribute person names only. Multi-word names are split into their words.

About half of :func:`candidate_words` comes from each kind; when one kind runs out
the other fills in. :func:`word_source_summary` says which sources each language uses.

Multi-word names (:func:`candidate_names`) come from the same Faker lists: a locale's
multi-word place names as written (``"Bad Kissingen"``, ``"San José"``), and pairs of a
first and a last name of the locale.
"""

from __future__ import annotations

import logging
import random
import unicodedata
from functools import lru_cache
from itertools import zip_longest
from typing import Callable, Iterable

from ..errors import SignT5Error
from .lexicon import FingerspellingLexicon, LetterClip, fold_text

logger = logging.getLogger(__name__)

MIN_LENGTH = 2
MAX_LENGTH = 12
MAX_NAME_LETTERS = 18  # a multi-word name's letters, spaces not counted
_COMMON_POOL = 20000
_FAKER_LOCALES = {
    "ar": "ar_AA",
    "cs": "cs_CZ",
    "de": "de_DE",
    "el": "el_GR",
    "en": "en_US",
    "es": "es_ES",
    "et": "et_EE",
    "hr": "hr_HR",
    "it": "it_IT",
    "lt": "lt_LT",
    "pt": "pt_BR",
    "sk": "sk_SK",
    "sv": "sv_SE",
    "tr": "tr_TR",
    "uk": "uk_UA",
}
_WORDFREQ_ALIASES = {"hr": "sh"}
_SCRIPTS = {"ar": "ARABIC", "el": "GREEK", "uk": "CYRILLIC"}
_PERSON_ATTRIBUTES = {"first": ("first_names",), "last": ("last_names",)}
# Real place names in a locale's address provider, best first.
_PLACE_ATTRIBUTES = (
    "cities", "city_names", "localities", "bairros", "states", "regions", "region_names", "countries",
)  # fmt: skip


class UnsupportedLanguageError(SignT5Error, ValueError):
    """A spoken language for which no word source is configured."""


def supported_languages() -> list[str]:
    """The spoken languages (ISO 639-1) that :func:`candidate_words` can draw words for."""
    return sorted(_FAKER_LOCALES)


def word_source_summary() -> dict[str, str]:
    """Per spoken language, the sources its candidate words come from (for logs and reports)."""
    summary = {}
    for language in supported_languages():
        parts = []
        wordfreq_language = _wordfreq_language(language)
        if wordfreq_language:
            parts.append(f"wordfreq:{wordfreq_language} ({len(_common_words(language))} words)")
        pools = _name_pools(language)
        kinds = ", ".join(f"{len(words)} {kind}" for kind, words in pools.items() if words)
        parts.append(f"faker:{_FAKER_LOCALES[language]} ({kinds})")
        summary[language] = " + ".join(parts)
    return summary


def candidate_words(spoken_language: str, n: int, seed: int = 0) -> list[str]:
    """Up to ``n`` distinct real words of the language, half common words, half names and places."""
    _check_language(spoken_language)
    if n <= 0:
        return []
    rng = random.Random(f"{spoken_language}:{seed}")
    common = _shuffled(_common_words(spoken_language), rng)
    name_pools = [_shuffled(words, rng) for words in _name_pools(spoken_language).values()]
    names = [word for group in zip_longest(*name_pools) for word in group if word is not None]
    ordered = (word for pair in zip_longest(common, names) for word in pair if word is not None)
    return _first_distinct(ordered, n, spoken_language, "words")


def _first_distinct(ordered: Iterable[str], n: int, spoken_language: str, what: str,
                    keep: Callable[[str], bool] = lambda _: True) -> list[str]:
    """The first ``n`` of ``ordered`` that ``keep`` accepts, distinct once case and accents are folded."""
    chosen: list[str] = []
    seen: set[str] = set()
    for item in ordered:
        key = fold_text(item, spoken_language)
        if key not in seen and keep(item):
            seen.add(key)
            chosen.append(item)
            if len(chosen) == n:
                break
    if len(chosen) < n:
        logger.info("only %d distinct candidate %s for %r (asked for %d)", len(chosen), what, spoken_language, n)
    return chosen


def spellable_words(
    lexicon: FingerspellingLexicon, signed_language: str, n: int, seed: int = 0
) -> list[tuple[str, list[LetterClip]]]:
    """Up to ``n`` distinct candidate words that the sign language's alphabet can spell, with their clips."""
    spoken = lexicon.spoken_language(signed_language)
    if n <= 0:
        return []
    asked = 2 * n
    while True:
        candidates = candidate_words(spoken, asked, seed)
        found: list[tuple[str, list[LetterClip]]] = []
        seen: set[str] = set()
        for word in candidates:
            key = fold_text(word, spoken)
            if key in seen:
                continue
            clips = lexicon.spell(word, signed_language)
            if clips is not None:
                seen.add(key)
                found.append((word, clips))
                if len(found) == n:
                    return found
        if len(candidates) < asked:
            logger.info("only %d spellable words for %r (asked for %d)", len(found), signed_language, n)
            return found
        asked *= 4


def candidate_names(spoken_language: str, n: int, seed: int = 0) -> list[str]:
    """Up to ``n`` distinct multi-word names: about a third place names, the rest first + last name pairs.

    Place names are few per locale and first + last pairs are many, so pairs fill in when places run out.
    """
    _check_language(spoken_language)
    if n <= 0:
        return []
    rng = random.Random(f"names:{spoken_language}:{seed}")
    places = _shuffled(_multi_word_places(spoken_language), rng)
    pools = _name_pools(spoken_language)
    firsts, lasts = pools["first"], pools["last"]
    pairs = [f"{rng.choice(firsts)} {rng.choice(lasts)}" for _ in range(3 * n)] if firsts and lasts else []
    ordered = (name for trio in zip_longest(places, pairs[0::2], pairs[1::2]) for name in trio if name is not None)
    return _first_distinct(ordered, n, spoken_language, "names",
                           keep=lambda name: len(name.replace(" ", "")) <= MAX_NAME_LETTERS)


def spellable_names(
    lexicon: FingerspellingLexicon, signed_language: str, n: int, seed: int = 0
) -> list[tuple[str, list[list[LetterClip]]]]:
    """Up to ``n`` candidate names whose every word the sign language's alphabet can spell, with each word's clips."""
    spoken = lexicon.spoken_language(signed_language)
    found: list[tuple[str, list[list[LetterClip]]]] = []
    for name in candidate_names(spoken, 2 * n, seed):
        words = [lexicon.spell(word, signed_language) for word in name.split(" ")]
        if all(clips is not None for clips in words):
            found.append((name, words))
            if len(found) == n:
                break
    if len(found) < n:
        logger.info("only %d spellable names for %r (asked for %d)", len(found), signed_language, n)
    return found


def _check_language(spoken_language: str) -> None:
    """Fail clearly on a spoken language that has no word source."""
    if spoken_language not in _FAKER_LOCALES:
        raise UnsupportedLanguageError(
            f"no word source for spoken language {spoken_language!r}; "
            f"known: {', '.join(supported_languages())}"
        )


def _shuffled(words: tuple[str, ...], rng: random.Random) -> list[str]:
    """A seeded shuffle of a (sorted, hence reproducible) word pool."""
    shuffled = list(words)
    rng.shuffle(shuffled)
    return shuffled


def _wordfreq_language(spoken_language: str) -> str | None:
    """The wordfreq language code used for a spoken language, or None when wordfreq has none."""
    import wordfreq

    language = _WORDFREQ_ALIASES.get(spoken_language, spoken_language)
    return language if language in wordfreq.available_languages() else None


def _in_script(word: str, spoken_language: str) -> bool:
    """Whether every letter of the word belongs to the language's script (Latin by default)."""
    script = _SCRIPTS.get(spoken_language, "LATIN")
    return all(unicodedata.name(char, "").startswith(script) for char in word)


def _usable(word: str, spoken_language: str) -> bool:
    """Whether a single token is a plain word of the right length and script."""
    return MIN_LENGTH <= len(word) <= MAX_LENGTH and word.isalpha() and _in_script(word, spoken_language)


@lru_cache(maxsize=None)
def _common_words(spoken_language: str) -> tuple[str, ...]:
    """wordfreq's frequent words for the language, filtered and sorted (empty without wordfreq data)."""
    language = _wordfreq_language(spoken_language)
    if language is None:
        logger.info("wordfreq has no list for %r; using Faker names only", spoken_language)
        return ()
    import wordfreq

    words = set()
    for token in wordfreq.top_n_list(language, _COMMON_POOL):
        word = unicodedata.normalize("NFC", token)
        if spoken_language == "el" and word.endswith("σ"):
            word = word[:-1] + "ς"  # wordfreq case-folds the final sigma away
        if _usable(word, spoken_language):
            words.add(word)
    logger.debug("wordfreq:%s gives %d common words for %r", language, len(words), spoken_language)
    return tuple(sorted(words))


@lru_cache(maxsize=None)
def _faker_entries(spoken_language: str) -> dict[str, tuple[str, ...]]:
    """Faker's first names, last names and real place names for the language, as written (NFC)."""
    from faker import Faker

    locale = _FAKER_LOCALES[spoken_language]
    fake = Faker(locale)
    person = fake.provider("faker.providers.person")
    address = fake.provider("faker.providers.address")
    raw: dict[str, list[object]] = {"first": [], "last": [], "place": []}
    for kind, attributes in _PERSON_ATTRIBUTES.items():
        for attribute in attributes:
            raw[kind].extend(getattr(person, attribute, ()) or ())
    if address is not None and type(address).__module__.endswith("." + locale):
        for attribute in _PLACE_ATTRIBUTES:
            raw["place"].extend(vars(type(address)).get(attribute, ()) or ())
    return {kind: tuple(unicodedata.normalize("NFC", e) for e in entries if isinstance(e, str))
            for kind, entries in raw.items()}


@lru_cache(maxsize=None)
def _name_pools(spoken_language: str) -> dict[str, tuple[str, ...]]:
    """Faker's first names, last names and place names for the language, split into single words."""
    pools = {}
    for kind, entries in _faker_entries(spoken_language).items():
        words = {part for entry in entries for part in entry.split() if _usable(part, spoken_language)}
        pools[kind] = tuple(sorted(words))
    sizes = {kind: len(words) for kind, words in pools.items()}
    logger.debug("faker:%s gives %s for %r", _FAKER_LOCALES[spoken_language], sizes, spoken_language)
    return pools


@lru_cache(maxsize=None)
def _multi_word_places(spoken_language: str) -> tuple[str, ...]:
    """The locale's place names of two or more plain words, as written, sorted."""
    places = set()
    for entry in _faker_entries(spoken_language)["place"]:
        parts = entry.split()
        if len(parts) > 1 and all(_usable(part, spoken_language) for part in parts):
            places.add(" ".join(parts))
    return tuple(sorted(places))
