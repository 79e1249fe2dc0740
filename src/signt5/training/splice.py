"""Spliced words for the decoder phase: one cached sample's first letters joined to another's last letters.

The decoder phase reads the same ~1,900 training words over and over, and a decoder can learn them as words: on
dev it then writes a likelier training-like spelling over what the memory shows (M A R X -> M A R K). Cutting two
cached samples of one sign language where their CTC forced alignments change letter, and joining the frames and
the labels there, makes new words at no encoder cost, so the decoder must read the memory letter by letter.
Gloss targets only: a splice needs every label token to spell one letter (text targets' words do not).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence

from signt5.models.text import IGNORE_INDEX

POOL = 16  # spliced words drawn per word kept, so that a batch's words are of one length (4: 12 % slower steps, 16: 7 %)


@dataclass
class SpliceRow:
    """One cached sample, trimmed of padding: what a splice cuts."""

    features: torch.Tensor  # (T, D_pose)
    labels: list[int]  # the label tokens, no padding
    path: list[int]  # the CTC forced alignment: the letter index per frame, -1 for blank
    units: list[int]  # per label token: its letter k >= 0, or -(k + 1) for a separator before letter k
    sign_language_id: int | None
    sample_id: str

    @property
    def letters(self) -> int:
        return max(self.units) + 1

    def first_frame(self, letter: int) -> int:
        """The first frame aligned to ``letter`` or a later one (the frame count when there is none)."""
        return next((f for f, u in enumerate(self.path) if u >= letter), len(self.path))


def splice_rows(batches: list, max_target_length: int) -> list[SpliceRow]:
    """The cached samples that can be cut: a forced alignment that fits, and every label token one letter."""
    rows = []
    for batch in batches:
        if batch.alignment is None:
            return []
        for i, (path, units) in enumerate(batch.alignment):
            units = [u for u in units if u is not None]
            labels = [t for t in batch.labels[i].tolist() if t != IGNORE_INDEX]
            if path is None or len(units) != len(labels) or not any(u >= 0 for u in units):
                continue
            letters = max(units) + 1
            if sorted({u for u in units if u >= 0}) != list(range(letters)) or len(labels) > max_target_length:
                continue  # a word spelled by a multi-letter token (text target): no letter boundary to cut at
            language = None if batch.sign_language_ids is None else int(batch.sign_language_ids[i])
            rows.append(SpliceRow(batch.features[i, :len(path)], labels, list(path), units, language,
                                  batch.ids[i]))
    return rows


def splice(first: SpliceRow, second: SpliceRow, keep: int, skip: int) -> SpliceRow:
    """``first``'s letters before ``keep`` (its frames up to the first of letter ``keep``; its tokens up to that
    letter's, so the separator before it stays), then ``second``'s letters from ``skip`` on, renumbered."""
    if not 1 <= keep < first.letters or not 0 <= skip < second.letters:
        raise ValueError(f"cut at letters {keep} of {first.letters} and {skip} of {second.letters}")
    cut_a, cut_b = first.first_frame(keep), second.first_frame(skip)
    token_a = next(i for i, u in enumerate(first.units) if u >= keep or u < -(keep + 1))
    token_b = second.units.index(skip)
    offset = keep - skip

    def shifted(unit: int) -> int:
        return unit + offset if unit >= 0 else unit - offset

    path = first.path[:cut_a] + [u + offset if u >= 0 else -1 for u in second.path[cut_b:]]
    units = first.units[:token_a] + [shifted(u) for u in second.units[token_b:]]
    return SpliceRow(torch.cat([first.features[:cut_a], second.features[cut_b:]]),
                     first.labels[:token_a] + second.labels[token_b:], path, units, first.sign_language_id,
                     f"{first.sample_id}+{second.sample_id}")


class Splicer:
    """Draws spliced batches: each word made of ``pieces`` cached words of one sign language, the first's first
    letters, a run of letters from each of the next, and the last's last letters."""

    def __init__(self, rows: list[SpliceRow], max_target_length: int, pieces: int = 2):
        if pieces < 2:
            raise ValueError(f"a spliced word joins at least 2 pieces, got {pieces}")
        self.rows = rows
        self.max_target_length = max_target_length
        self.pieces = pieces
        self.by_language: dict[int | None, list[int]] = {}
        for i, row in enumerate(rows):
            self.by_language.setdefault(row.sign_language_id, []).append(i)

    def __len__(self) -> int:
        return len(self.rows)

    def _plan(self, first: SpliceRow, rng: np.random.Generator) -> list[tuple[SpliceRow, int, int]]:
        """A word's pieces as (row, first letter, end letter): the first piece starts at letter 0, the last runs to
        its row's end, and every piece keeps at least one letter (a partner too short to go on ends the word)."""
        if first.letters < 2:
            return [(first, 0, first.letters)]
        partners = self.by_language[first.sign_language_id]
        pieces: list[tuple[SpliceRow, int, int]] = []
        while len(pieces) < self.pieces:
            row = self.rows[partners[int(rng.integers(len(partners)))]]
            if not pieces:
                pieces.append((first, 0, int(rng.integers(1, first.letters))))
            start = int(rng.integers(0, row.letters))
            if len(pieces) == self.pieces - 1 or row.letters - start < 2:
                pieces.append((row, start, row.letters))
                break
            pieces.append((row, start, int(rng.integers(start + 1, row.letters))))
        return pieces

    @staticmethod
    def _frames(pieces: list[tuple[SpliceRow, int, int]]) -> int:
        """The spliced word's frame count: each piece from its first letter's first frame (the first piece from
        frame 0) to the next letter's (the last piece to its end)."""
        return sum((row.first_frame(end) if i < len(pieces) - 1 else len(row.path)) -
                   (row.first_frame(start) if i else 0) for i, (row, start, end) in enumerate(pieces))

    @staticmethod
    def _join(pieces: list[tuple[SpliceRow, int, int]]) -> SpliceRow:
        word, kept = pieces[0][0], pieces[0][2]
        for row, start, end in pieces[1:]:
            word = splice(word, row, kept, start)
            kept += end - start
        return word

    def draw(self, size: int, rng: np.random.Generator, pool: int = POOL) -> list[SpliceRow]:
        """``size`` spliced words of similar length: ``pool`` x ``size`` are planned, sorted by frames and cut into
        ``pool`` groups, and one group is spliced (a batch of random lengths pads to its longest: it took the
        decoder phase 1.5x the time). A row stays whole when its splice would run past the target length."""
        plans = [self._plan(self.rows[int(index)], rng) for index in rng.integers(len(self.rows), size=size * pool)]
        plans.sort(key=self._frames)
        start = size * int(rng.integers(pool))  # one of the pool's length groups: every word as likely to train
        words = []
        for pieces in plans[start:start + size]:
            row = self._join(pieces)
            words.append(row if len(row.labels) <= self.max_target_length else pieces[0][0])
        return words


def stack_rows(rows: list[SpliceRow]) -> dict:
    """Rows padded into one batch: the fields of a ``CachedBatch`` (features in the rows' dtype)."""
    features = pad_sequence([row.features for row in rows], batch_first=True)  # (B, T', D_pose), zero-padded
    lengths = torch.tensor([len(row.path) for row in rows])
    mask = torch.arange(features.shape[1]) < lengths[:, None]  # (B, T')
    labels = pad_sequence([torch.tensor(row.labels) for row in rows], batch_first=True, padding_value=IGNORE_INDEX)
    length = labels.shape[1]
    languages = (None if rows[0].sign_language_id is None else
                 torch.tensor([row.sign_language_id for row in rows], dtype=torch.long))
    alignment = [(row.path, row.units + [None] * (length - len(row.units))) for row in rows]
    return dict(features=features, mask=mask, sign_language_ids=languages, labels=labels,
                ids=[row.sample_id for row in rows], alignment=alignment)
