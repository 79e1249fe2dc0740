"""The fingerspelling lexicon of ``spoken-to-signed``: one ``.pose`` clip per letter.

The package ships ``assets/fingerspelling_lexicon/data.csv`` (600 rows, 19 sign
languages). :class:`FingerspellingLexicon` reads it and splits a written word into
the letter clips that spell it, so that words can be turned into pose sequences.
"""

from __future__ import annotations

import csv
import logging
import unicodedata
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..errors import PoseDataError

logger = logging.getLogger(__name__)

_CSV_NAME = "data.csv"
_REQUIRED_COLUMNS = ("path", "spoken_language", "signed_language", "words", "glosses", "priority")
# A word containing any of these is a phrase or a clitic form, never spelled here.
_SEPARATORS = frozenset(" \t\n-\u2010\u2011\u2012\u2013\u2014'\u2019\u2018\u02bc\u02b9`")
# Characters that fold to the same letter in every language.
_FOLD_EQUIVALENTS = {"ς": "σ", "ẞ": "ß"}
_TURKISH_UPPER_I = {"I": "ı", "İ": "i"}


def fold_char(char: str, spoken_language: str) -> str:
    """Fold one character for case-insensitive matching, keeping the string's length."""
    if spoken_language == "tr" and char in _TURKISH_UPPER_I:
        return _TURKISH_UPPER_I[char]
    lowered = char.lower()
    if len(lowered) != 1:
        return char
    return _FOLD_EQUIVALENTS.get(lowered, lowered)


def fold_text(text: str, spoken_language: str) -> str:
    """Fold a word character by character, so that positions stay aligned with the input."""
    return "".join(fold_char(char, spoken_language) for char in text)


def _strip_marks(char: str) -> str:
    """The character without its combining marks (``é`` -> ``e``; a bare mark -> ``""``)."""
    return "".join(c for c in unicodedata.normalize("NFD", char) if unicodedata.category(c) != "Mn")


@dataclass(frozen=True)
class LetterClip:
    """One fingerspelled letter (or letter group) and the pose clip that shows it."""

    signed_language: str
    spoken_language: str
    letter: str
    gloss: str
    path: Path


class FingerspellingLexicon:
    """Letter clips per sign language, and the splitting of words into those clips."""

    def __init__(self, root: Path, clips: list[LetterClip], priorities: list[int] | None = None):
        self.root = root
        self._letters: dict[str, list[LetterClip]] = {}
        self._spoken: dict[str, str] = {}
        self._index: dict[str, dict[str, LetterClip]] = {}
        for clip in clips:
            self._letters.setdefault(clip.signed_language, []).append(clip)
            self._spoken.setdefault(clip.signed_language, clip.spoken_language)
        # Lowest priority first (a stable sort keeps the file's order among equals).
        ranked = sorted(zip(clips, priorities or [0] * len(clips)), key=lambda pair: pair[1])
        for clip, _ in ranked:
            index = self._index.setdefault(clip.signed_language, {})
            index.setdefault(fold_text(clip.letter, self._spoken[clip.signed_language]), clip)
        self._alphabet = {signed: frozenset("".join(index)) for signed, index in self._index.items()}
        self._longest = {signed: max(map(len, index)) for signed, index in self._index.items()}

    @classmethod
    def load(cls, root: Path | None = None) -> FingerspellingLexicon:
        """Read ``data.csv`` from ``root`` (default: the installed ``spoken_to_signed`` assets)."""
        if root is None:
            root = Path(str(resources.files("spoken_to_signed") / "assets" / "fingerspelling_lexicon"))
        root = Path(root).resolve()
        csv_path = root / _CSV_NAME
        if not csv_path.is_file():
            raise PoseDataError(
                "no fingerspelling lexicon here (expected data.csv from the spoken-to-signed package)",
                source=str(csv_path),
            )
        with csv_path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in _REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise PoseDataError(f"missing columns {missing}", source=str(csv_path))
            rows = list(reader)
        priorities = [_priority(row, csv_path) for row in rows]
        clips = []
        for line, row in enumerate(rows, start=2):
            if not row["words"] or not row["signed_language"] or not row["path"]:
                raise PoseDataError(f"row {line} lacks a letter, language or path", source=str(csv_path))
            clips.append(
                LetterClip(
                    signed_language=row["signed_language"],
                    spoken_language=row["spoken_language"],
                    letter=unicodedata.normalize("NFC", row["words"]),
                    gloss=row["glosses"],
                    path=root / row["path"],
                )
            )
        absent = [clip.path for clip in clips if not clip.path.is_file()]
        if absent:
            raise PoseDataError(
                f"{len(absent)} of {len(clips)} letter clips are missing, e.g. {absent[0]}",
                source=str(csv_path),
            )
        lexicon = cls(root, clips, priorities)
        logger.debug("fingerspelling lexicon: %d clips, %d sign languages", len(clips), len(lexicon._letters))
        return lexicon

    def sign_languages(self) -> list[str]:
        """The sign languages (ISO 639-3) that have an alphabet, sorted."""
        return sorted(self._letters)

    def spoken_language(self, signed_language: str) -> str:
        """The spoken language (ISO 639-1) whose alphabet the sign language spells."""
        self._check(signed_language)
        return self._spoken[signed_language]

    def letters(self, signed_language: str) -> list[LetterClip]:
        """All letter clips of a sign language, in the lexicon's order."""
        self._check(signed_language)
        return list(self._letters[signed_language])

    def spell(self, word: str, signed_language: str) -> list[LetterClip] | None:
        """The clips that spell ``word`` (greedy longest match), or None when it cannot be spelled."""
        self._check(signed_language)
        if not word or any(char in _SEPARATORS for char in word):
            return None
        spoken = self._spoken[signed_language]
        index = self._index[signed_language]
        text = self._normalise(unicodedata.normalize("NFC", word), signed_language)
        if text is None or not text:
            return None
        folded = fold_text(text, spoken)
        clips: list[LetterClip] = []
        position = 0
        while position < len(folded):
            for size in range(min(self._longest[signed_language], len(folded) - position), 0, -1):
                clip = index.get(folded[position : position + size])
                if clip is not None:
                    clips.append(clip)
                    position += size
                    break
            else:
                return None
        return clips

    def _normalise(self, word: str, signed_language: str) -> str | None:
        """Keep characters the alphabet has; strip marks from the rest; None if one is still foreign."""
        spoken = self._spoken[signed_language]
        alphabet = self._alphabet[signed_language]
        kept = []
        for char in word:
            if fold_char(char, spoken) in alphabet:
                kept.append(char)
                continue
            base = _strip_marks(char)
            if any(fold_char(c, spoken) not in alphabet for c in base):
                return None
            kept.append(base)
        return "".join(kept)

    def _check(self, signed_language: str) -> None:
        """Fail clearly on a sign language that the lexicon does not have."""
        if signed_language not in self._letters:
            raise PoseDataError(
                f"no fingerspelling alphabet for sign language {signed_language!r}; "
                f"known: {', '.join(self.sign_languages())}",
                source=str(self.root / _CSV_NAME),
            )


def _priority(row: dict[str, str], csv_path: Path) -> int:
    """The row's priority (lower wins when a letter has several clips)."""
    try:
        return int(row["priority"] or 0)
    except ValueError:
        raise PoseDataError(f"priority {row['priority']!r} is not an integer", source=str(csv_path)) from None
