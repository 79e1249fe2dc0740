"""On-the-fly pose augmentation of normalised samples: speed, rotation, scale, shift, jitter, lost hands.

Works on shoulder-normalised coordinates (origin between the shoulders, unit shoulder
width), so every magnitude below is in shoulder widths. Masked points stay masked and 0.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping

import numpy as np

from .gaps import flicker_dropouts
from .layout import KeypointLayout
from .mirror import dominance_is_open, mirror_coords
from .normalize import resample_frames

# A speed range covering users from about 1.3 to 7 letters/s on a corpus signed at 2-3.5 letters/s, drawn on a
# log scale: 43 % of draws slow the signing down (a linear draw on (0.5, 2.5): 25 %), and the mean sample length
# stays as it was with (0.75, 1.35) linear (E[1/factor] 0.99 against 0.98). Measured against that range
# (BENCHMARKS.md): test_fast CER 43.2 -> 6.9 %, test_slow 7.3 -> 3.5 %, test_shifted 4.7 -> 3.1 %
WIDE_SPEED = (0.5, 2.5)
SPEED_SCALES = ("linear", "log")
SPEED_DRAWS = ("bucketed", "batch", "sample")


@dataclass
class AugmentConfig:
    """Ranges of the random changes; ``enabled=False`` turns augmentation off."""

    enabled: bool = True
    speed: tuple[float, float] = WIDE_SPEED  # time-stretch factor (>1 = faster signing, fewer frames)
    speed_scale: str = "log"  # the factor is drawn uniformly on this scale: linear | log
    rotation_degrees: float = 12.0  # uniform in +/- this, in the image plane
    scale: tuple[float, float] = (0.8, 1.2)
    shift: float = 0.15  # uniform in +/- this, shoulder widths
    jitter: float = 0.02  # Gaussian noise std, shoulder widths
    drop_hand: float = 0.15  # chance per hand that it goes undetected for a random stretch
    flicker: float = 0.02  # chance per hand per frame that a 1-3 frame dropout starts (MediaPipe losing a hand)
    min_frames: int = 4
    # when the speed factor is drawn: sample (per sample as it loads: a batch pads to its slowest draw, so a step
    # costs ~40 % more on the CPU, but at equal epochs every split read better: dev CER 1.74 -> 0.93 %,
    # BENCHMARKS.md), bucketed (per sample before batching, batches grouped by stretched length) or batch (one per
    # batch)
    speed_draw: str = "sample"
    # chance that a sample neither of whose hands dominates (two-handed signing) is mirrored: the handedness rule
    # mirrors only clearly left-handed samples, so a left-handed signer of such a word arrives as its mirror image
    mirror: float = 0.5

    def __post_init__(self) -> None:
        if self.speed_scale not in SPEED_SCALES:
            raise ValueError(f"speed_scale must be one of {SPEED_SCALES}, got {self.speed_scale!r}")
        if self.speed_draw not in SPEED_DRAWS:
            raise ValueError(f"speed_draw must be one of {SPEED_DRAWS}, got {self.speed_draw!r}")
        if not 0 < self.speed[0] <= self.speed[1]:
            raise ValueError(f"speed must be a range (low, high) with 0 < low <= high, got {self.speed}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "AugmentConfig":
        fields = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in cls.__dataclass_fields__}
        fields.setdefault("flicker", 0.0)  # a config saved before flicker existed: resume it as it was
        if "speed" in fields:  # a saved config (they all hold the range); without a newer field it predates it:
            fields.setdefault("speed_scale", "linear")  # drawn linearly,
            fields.setdefault("speed_draw", "sample")  # at load time,
            fields.setdefault("mirror", 0.0)  # and never mirrored
        return cls(**fields)


def draw_speed(config: AugmentConfig, rng: np.random.Generator) -> float:
    """A time-stretch factor from ``config.speed``, uniform on its ``speed_scale``."""
    return float(draw_speeds(config, rng, None))


def draw_speeds(config: AugmentConfig, rng: np.random.Generator, size: int | None) -> np.ndarray:
    """``size`` time-stretch factors (a scalar array for None)."""
    low, high = config.speed
    if config.speed_scale == "log":
        return np.exp(rng.uniform(np.log(low), np.log(high), size=size))
    return np.asarray(rng.uniform(low, high, size=size))


def stretched_length(frames: int, factor: float, config: AugmentConfig) -> int:
    """The frame count of a ``frames``-long sample time-stretched by ``factor``."""
    return max(min(config.min_frames, frames), int(round(frames / factor)))


def augment(coords: np.ndarray, mask: np.ndarray, hand_slices: list[slice], rng: np.random.Generator,
            config: AugmentConfig, speed: float | None = None,
            layout: KeypointLayout | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return an augmented copy of (T, K, C) ``coords`` and (T, K) ``mask``; ``speed`` fixes the time stretch.

    Mirroring needs the samples' ``layout`` (without it, it is skipped).
    """
    if not config.enabled:
        return coords, mask
    if config.mirror > 0 and layout is not None and rng.random() < config.mirror \
            and dominance_is_open(coords, mask, layout):
        coords, mask = mirror_coords(coords, mask, layout)
    frames = coords.shape[0]
    factor = draw_speed(config, rng)  # drawn even when fixed, so the rest of the stream is the same either way
    if speed is not None:
        factor = speed
    new_frames = stretched_length(frames, factor, config)
    if new_frames != frames and frames > 1:
        coords, mask = resample_frames(coords, mask, np.linspace(0, frames - 1, new_frames))
    else:
        coords, mask = coords.copy(), mask.copy()
    theta = np.deg2rad(rng.uniform(-config.rotation_degrees, config.rotation_degrees))
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]], dtype=np.float32)
    scale = rng.uniform(*config.scale)
    coords[..., :2] = coords[..., :2] @ rotation.T * scale
    if coords.shape[-1] > 2:
        coords[..., 2:] *= scale
    coords[..., :2] += rng.uniform(-config.shift, config.shift, size=2).astype(np.float32)
    coords += rng.normal(0.0, config.jitter, size=coords.shape).astype(np.float32)
    t = coords.shape[0]
    for hand in hand_slices:
        if rng.random() < config.drop_hand:
            start = int(rng.integers(0, t))
            end = int(rng.integers(start + 1, t + 1))
            mask[start:end, hand] = False
    if config.flicker > 0:
        for hand in hand_slices:
            mask[flicker_dropouts(t, config.flicker, rng), hand] = False
    coords[~mask] = 0.0
    return coords, mask
