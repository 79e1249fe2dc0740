"""Hands that flicker: short stretches where the pose estimator loses a hand, made and mended.

MediaPipe loses a hand for single frames now and then; each such gap can split one letter
into two. :func:`fill_short_gaps` mends gaps of a few frames by interpolating the hand
between the frames on either side, and leaves longer gaps and gaps at a sample's ends
alone, so it never invents a hand that was missing for longer than the limit.
pose-format's ``Pose.interpolate`` resamples the whole pose to a new frame rate; this is
mask-aware gap filling at the same rate, per hand and only across short gaps.
:func:`flicker_dropouts` makes such gaps, for augmentation and the ``test_flicker`` split.
"""

from __future__ import annotations

import numpy as np

MAX_FLICKER_FRAMES = 3  # longest dropout a flicker makes


def fill_short_gaps(coords: np.ndarray, mask: np.ndarray, point_slices: list[slice], max_gap: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Fill each hand's gaps of at most ``max_gap`` frames, seen on both sides, by linear interpolation.

    A hand (one slice of points) is missing in a frame when all its points are masked. A point
    masked in either frame next to the gap stays masked; other points of the hand are not touched.
    Returns ``(coords, mask)``: (T, K, C) and (T, K), copies where anything was filled.
    """
    if max_gap <= 0 or coords.shape[0] < 3:
        return coords, mask
    frames = np.arange(coords.shape[0])
    filled_coords, filled_mask = coords, mask
    for hand in point_slices:
        seen = mask[:, hand].any(axis=1)  # (T,)
        if seen.all() or not seen.any():
            continue
        before = np.maximum.accumulate(np.where(seen, frames, -1))  # (T,) last seen frame at or before t
        after = np.minimum.accumulate(np.where(seen, frames, len(frames))[::-1])[::-1]  # (T,) first at or after t
        gap = after - before - 1  # (T,) length of the gap t lies in
        fill = ~seen & (before >= 0) & (after < len(frames)) & (gap <= max_gap)  # (T,)
        if not fill.any():
            continue
        if filled_coords is coords:
            filled_coords, filled_mask = coords.copy(), mask.copy()
        t, start, end = frames[fill], before[fill], after[fill]  # (F,) each
        weight = ((t - start) / (end - start)).astype(coords.dtype)[:, None, None]  # (F, 1, 1)
        start_coords, end_coords = coords[start, hand], coords[end, hand]  # (F, H, C)
        both_seen = mask[start, hand] & mask[end, hand]  # (F, H)
        between = start_coords * (1 - weight) + end_coords * weight  # (F, H, C)
        filled_coords[t, hand] = np.where(both_seen[..., None], between, 0.0)
        filled_mask[t, hand] = both_seen
    return filled_coords, filled_mask


def flicker_dropouts(num_frames: int, chance: float, rng: np.random.Generator,
                     max_run: int = MAX_FLICKER_FRAMES) -> np.ndarray:
    """Frames a flickering hand is lost in: each frame starts a 1..``max_run`` frame dropout with ``chance``.

    Dropouts are kept at least one frame apart, so every run of lost frames is 1..``max_run`` long.
    Returns a (T,) bool array, True where the hand is lost.
    """
    dropped = np.zeros(num_frames, dtype=bool)
    if chance <= 0 or num_frames == 0:
        return dropped
    starts = np.flatnonzero(rng.random(num_frames) < chance)  # (S,)
    lengths = rng.integers(1, max_run + 1, size=starts.size)  # (S,)
    next_free = 0
    for start, length in zip(starts.tolist(), lengths.tolist()):
        if start < next_free:
            continue
        dropped[start:start + length] = True
        next_free = start + length + 1
    return dropped
