"""Signing-rate normalisation: a sample signed far faster or slower than the training data is resampled in time to
the training data's median rate before it is decoded.

Why: the model reads best at the rates it learned from. A first, cheap CTC pass counts the letters; a sample whose
letters per second fall outside ``[rate / band, rate * band]`` is stretched or compressed to ``rate`` and decoded
again (BENCHMARKS.md: slow signing, about 1 letter/s, 2.75 -> 1.7 % CER; the training-like splits untouched).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from signt5.data.item import PoseItem, pose_item
from signt5.data.normalize import resample_frames

MAX_FACTOR = 8.0  # no sample is stretched or compressed more than this
MIN_FRAMES = 4


def letter_count(text: str, target: str) -> int:
    """Letters of a gloss (its space-separated units, SCH as one) or of a text (its characters but spaces)."""
    return len(text.split()) if target == "gloss" else sum(1 for c in text if not c.isspace())


def median_signing_rate(labels: Sequence[str], frame_counts: Sequence[int], fps: float, target: str) -> float | None:
    """The median letters per second of labelled samples (whole sample, pauses included), or None if none has a
    letter."""
    counts = [(letter_count(label, target), frames) for label, frames in zip(labels, frame_counts)]
    rates = [letters * fps / frames for letters, frames in counts if frames > 0 and letters > 0]
    return float(np.median(rates)) if rates else None


def rate_factor(letters: int, frames: int, fps: float, reference: float, band: float) -> float:
    """New frames per old frame that bring a sample of ``letters`` in ``frames`` to ``reference`` letters/s;
    1.0 inside the band, without letters, or with ``band`` <= 1 (off)."""
    if band <= 1 or letters <= 0 or frames <= 0 or reference <= 0:
        return 1.0
    rate = letters * fps / frames
    if reference / band <= rate <= reference * band:
        return 1.0
    return float(np.clip(rate / reference, 1 / MAX_FACTOR, MAX_FACTOR))


def stretch_item(item: PoseItem, factor: float) -> PoseItem:
    """``item`` resampled to ``factor`` times its frames (linear interpolation; a point missing at either
    neighbouring frame stays missing)."""
    frames = item["pose"].shape[0]
    new_frames = max(MIN_FRAMES, int(round(frames * factor)))
    if frames < 2 or new_frames == frames:
        return item
    coords, mask = resample_frames(item["pose"], item["mask"], np.linspace(0, frames - 1, new_frames))
    return pose_item(item["id"], coords, mask, item["label"], item["sign_language"], item["source"])


def is_normalising(reference: float | None, band: float, fps: float | None) -> bool:
    """Whether normalisation can run: a reference rate, a band above 1 and a known frame rate."""
    return bool(reference and band > 1 and fps and math.isfinite(reference))
