"""Length-bucketed batches: every sample once, little padding, reproducible, evenly sharded."""

from __future__ import annotations

import numpy as np

from signt5.data.sampler import BucketBatchSampler


def _padding(batches, lengths):
    return sum(len(b) * max(lengths[i] for i in b) - sum(lengths[i] for i in b) for b in batches)


def test_every_sample_once_and_less_padding():
    lengths = np.random.default_rng(0).integers(10, 400, size=1000)
    sampler = BucketBatchSampler(lengths, batch_size=16, seed=0)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(1000))
    rng = np.random.default_rng(1)
    random_batches = np.array_split(rng.permutation(1000), len(batches))
    assert _padding(batches, lengths) < 0.2 * _padding([b.tolist() for b in random_batches], lengths)


def test_reproducible_per_epoch():
    lengths = list(range(100))
    a = BucketBatchSampler(lengths, 8, seed=3)
    b = BucketBatchSampler(lengths, 8, seed=3)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first


def test_shards_cover_all_and_are_even():
    lengths = list(range(101))
    shards = [list(BucketBatchSampler(lengths, 4, seed=0, rank=r, world_size=2)) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == len(BucketBatchSampler(lengths, 4, rank=0, world_size=2))
    seen = {i for shard in shards for b in shard for i in b}
    assert seen == set(range(101))


def test_no_shuffle_is_sorted():
    batches = list(BucketBatchSampler([5, 1, 3, 2], 2, shuffle=False))
    assert batches == [[1, 3], [2, 0]]


def test_unshuffled_batches_stop_short_of_the_frame_budget():
    lengths = [5, 300, 40, 41, 700, 12, 90, 88, 3, 250]
    batches = list(BucketBatchSampler(lengths, batch_size=4, shuffle=False, max_frames=256))
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        longest = max(lengths[i] for i in batch)
        assert len(batch) <= 4 and (len(batch) * longest <= 256 or len(batch) == 1)
    flat = [lengths[i] for b in batches for i in b]
    assert flat == sorted(flat)  # still by length
    unlimited = list(BucketBatchSampler(lengths, batch_size=4, shuffle=False))
    assert [len(b) for b in unlimited] == [4, 4, 2]
