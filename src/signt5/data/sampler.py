"""Length-bucketed batches, sharded across data-parallel processes, reproducible from (seed, epoch).

Sorting samples of similar length together cuts padding (and so compute) several-fold;
shuffling within buckets and across batches keeps the order random.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np


def round_up(frames: int, multiple: int) -> int:
    """``frames`` rounded up to a multiple of ``multiple``."""
    return -(-frames // multiple) * multiple


def pack_by_length(lengths: Sequence[int], max_frames: int = 0, max_size: int = 0,
                   frame_multiple: int = 1) -> list[list[int]]:
    """Indices in ascending length, cut into groups of at most ``max_size`` samples and ``max_frames`` padded frames
    (count x the longest, rounded up to ``frame_multiple``; 0: no limit); a group holds at least one sample."""
    groups: list[list[int]] = [[]]
    for i in np.argsort(np.asarray(lengths), kind="stable").tolist():  # the newest sample is the longest
        group = groups[-1]
        full = max_size and len(group) == max_size
        over = max_frames and (len(group) + 1) * round_up(max(int(lengths[i]), 1), frame_multiple) > max_frames
        if group and (full or over):
            groups.append([])
        groups[-1].append(i)
    return groups if len(lengths) else []


class BucketBatchSampler:
    """Yields lists of indices; each process (``rank`` of ``world_size``) gets the same number of batches."""

    def __init__(self, lengths: Sequence[int], batch_size: int, shuffle: bool = True, seed: int = 0,
                 rank: int = 0, world_size: int = 1, bucket_batches: int = 50, drop_last: bool = False,
                 max_frames: int = 0):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.bucket_batches = bucket_batches
        self.drop_last = drop_last
        self.max_frames = max_frames  # unshuffled batches also stop short of this many padded frames (0: no limit)
        self.epoch = 0

    def set_epoch(self, epoch: int, lengths: Sequence[int] | None = None) -> None:
        """The epoch's shuffle; ``lengths`` replace the samples' lengths (e.g. time-stretched by augmentation)."""
        self.epoch = epoch
        if lengths is not None:
            if len(lengths) != len(self.lengths):
                raise ValueError(f"{len(lengths)} lengths for {len(self.lengths)} samples")
            self.lengths = np.asarray(lengths)

    def _all_batches(self) -> list[list[int]]:
        n = len(self.lengths)
        if not self.shuffle:
            return pack_by_length(self.lengths, self.max_frames, self.batch_size)
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(n)
        chunk = self.batch_size * self.bucket_batches
        batches = []
        for start in range(0, n, chunk):
            part = order[start:start + chunk]
            part = part[np.argsort(self.lengths[part], kind="stable")]
            batches += [part[i:i + self.batch_size].tolist() for i in range(0, len(part), self.batch_size)]
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
        rng.shuffle(batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._all_batches()
        if self.world_size > 1:
            per_rank = -(-len(batches) // self.world_size)
            batches = (batches * 2)[: per_rank * self.world_size] if batches else batches
            batches = batches[self.rank::self.world_size]
        return iter(batches)

    def __len__(self) -> int:
        n = len(self._all_batches())
        return -(-n // self.world_size)
