"""Gap filling mends short hand dropouts between two sightings and nothing else; flicker makes only short ones."""

from __future__ import annotations

import numpy as np
import pytest

from signt5.data.dataset import DataConfig, prepare_sample
from signt5.data.gaps import fill_short_gaps, flicker_dropouts
from ..conftest import make_sample

HAND = slice(2, 5)  # points 2..4 of a 6-point toy layout; 0, 1 and 5 are body points


def _toy(frames: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    coords = rng.uniform(0, 100, size=(frames, 6, 2)).astype(np.float32)  # (T, K, C)
    return coords, np.ones((frames, 6), dtype=bool)


def _lose(coords: np.ndarray, mask: np.ndarray, frames: slice) -> None:
    mask[frames, HAND] = False
    coords[frames, HAND] = 0.0


def _runs(missing: np.ndarray) -> list[tuple[int, int]]:
    """(start, length) of each run of True in a (T,) array."""
    edges = np.diff(np.concatenate([[0], missing.astype(int), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [(int(s), int(e - s)) for s, e in zip(starts, ends)]


@pytest.mark.parametrize("gap", [1, 2, 3])
def test_a_short_gap_is_filled_by_linear_interpolation(gap):
    coords, mask = _toy()
    original = coords.copy()
    _lose(coords, mask, slice(4, 4 + gap))
    filled, filled_mask = fill_short_gaps(coords, mask, [HAND], max_gap=3)
    assert filled_mask.all()
    before, after = original[3, HAND], original[4 + gap, HAND]
    for i in range(gap):
        w = (i + 1) / (gap + 1)
        np.testing.assert_allclose(filled[4 + i, HAND], before * (1 - w) + after * w, rtol=1e-5)
    np.testing.assert_array_equal(np.delete(filled, np.s_[4:4 + gap], axis=0),
                                  np.delete(original, np.s_[4:4 + gap], axis=0))
    assert mask[4:4 + gap, HAND].sum() == 0  # the input is not changed in place


def test_a_gap_longer_than_the_limit_or_at_an_end_stays_missing():
    coords, mask = _toy(frames=16)
    _lose(coords, mask, slice(0, 2))  # start of the sample
    _lose(coords, mask, slice(5, 9))  # 4 frames: one more than the limit
    _lose(coords, mask, slice(14, 16))  # end of the sample
    filled, filled_mask = fill_short_gaps(coords, mask, [HAND], max_gap=3)
    np.testing.assert_array_equal(filled_mask, mask)
    np.testing.assert_array_equal(filled, coords)
    _, longer_limit = fill_short_gaps(coords, mask, [HAND], max_gap=4)
    assert longer_limit[5:9, HAND].all() and not longer_limit[:2, HAND].any() and not longer_limit[14:, HAND].any()


def test_never_invents_a_hand_missing_longer_than_the_limit():
    """Random dropouts of every length: exactly the interior gaps of at most max_gap frames are mended."""
    rng = np.random.default_rng(0)
    for trial in range(50):
        coords, mask = _toy(frames=40, seed=trial)
        missing = rng.random(40) < rng.uniform(0.1, 0.7)
        _lose(coords, mask, missing)
        max_gap = int(rng.integers(1, 5))
        filled, filled_mask = fill_short_gaps(coords, mask, [HAND], max_gap)
        seen_after = filled_mask[:, HAND].any(axis=1)
        for start, length in _runs(missing):
            interior = start > 0 and start + length < 40
            assert seen_after[start:start + length].all() == (interior and length <= max_gap)
            assert seen_after[start:start + length].any() == (interior and length <= max_gap)
        np.testing.assert_array_equal(filled[~missing], coords[~missing])
        np.testing.assert_array_equal(np.delete(filled_mask, HAND, axis=1), np.delete(mask, HAND, axis=1))
        assert (filled[~filled_mask] == 0).all()


def test_a_point_unseen_next_to_the_gap_stays_masked():
    coords, mask = _toy()
    _lose(coords, mask, slice(4, 6))
    mask[3, 2], coords[3, 2] = False, 0.0  # point 2 lost just before the gap
    mask[6, 3], coords[6, 3] = False, 0.0  # point 3 lost just after it
    filled, filled_mask = fill_short_gaps(coords, mask, [HAND], max_gap=3)
    assert not filled_mask[4:6, 2].any() and not filled_mask[4:6, 3].any() and filled_mask[4:6, 4].all()
    assert (filled[4:6, 2:4] == 0).all()


def test_each_hand_is_filled_on_its_own_and_zero_is_off():
    coords, mask = _toy()
    _lose(coords, mask, slice(4, 6))
    mask[7:9, 0:2] = False  # a body gap: not a hand, left alone
    coords[7:9, 0:2] = 0.0
    filled, filled_mask = fill_short_gaps(coords, mask, [HAND, slice(5, 6)], max_gap=3)
    assert filled_mask[4:6, HAND].all() and not filled_mask[7:9, 0:2].any()
    same_coords, same_mask = fill_short_gaps(coords, mask, [HAND], max_gap=0)
    np.testing.assert_array_equal(same_mask, mask)
    np.testing.assert_array_equal(same_coords, coords)


def test_flicker_dropouts_are_runs_of_one_to_three_frames():
    rng = np.random.default_rng(0)
    dropped = flicker_dropouts(5000, 0.1, rng)
    lengths = [length for _, length in _runs(dropped)]
    assert set(lengths) == {1, 2, 3}
    assert 0.1 < dropped.mean() < 0.25
    assert not flicker_dropouts(100, 0.0, rng).any()


def test_data_config_fills_gaps_by_default_but_not_for_old_configs():
    assert DataConfig().fill_hand_gaps == 3
    assert DataConfig.from_dict({"normalization": "shoulders"}).fill_hand_gaps == 0  # saved before the option
    assert DataConfig.from_dict(DataConfig().to_dict()).fill_hand_gaps == 3
    with pytest.raises(ValueError, match="fill_hand_gaps"):
        DataConfig(fill_hand_gaps=-1)


def test_prepare_sample_fills_a_two_frame_hand_gap():
    sample = make_sample("holistic_reduced_178", frames=20)
    right = sample.layout.component_slice("RIGHT_HAND_LANDMARKS")
    mask = sample.mask.copy()
    mask[8:10, right] = False
    mask[13:17, right] = False  # 4 frames: too long
    sample = sample.replace(coords=np.where(mask[..., None], sample.coords, 0.0), mask=mask)
    filled = prepare_sample(sample, DataConfig(components="full"))
    kept = prepare_sample(sample, DataConfig(components="full", fill_hand_gaps=0))
    # a left-dominant sample comes out mirrored (data.handedness), so look at both hands
    both_hands = np.concatenate([np.arange(h.start, h.stop) for h in filled.layout.hand_slices()])
    assert filled.mask[8:10][:, both_hands].all() and not kept.mask[8:10][:, both_hands].all()
    assert not filled.mask[13:17][:, both_hands].all()
