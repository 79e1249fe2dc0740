"""Resolution-free model input: coordinate space, frame rate and scale of a sample.

Two normalisations, both computed from valid points only:

* ``shoulders`` (default): centre on the mean shoulder midpoint and divide by
  the mean shoulder width, so the signer's own body is the ruler. Invariant to
  resolution, framing (zoom, position) and, unlike min-max, to where the hands
  happen to travel in a clip.
* ``minmax`` (the seed's dynamic normalisation): shift by the per-sample
  minimum and divide by the largest extent, mapping into [0, 1] with the aspect
  ratio kept. Invariant to resolution and position, but the scale depends on
  the sample's motion range.

Samples without usable shoulders fall back to ``minmax`` with a warning.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np

from .sample import PoseSample

logger = logging.getLogger(__name__)

Normalization = Literal["shoulders", "minmax", "none"]
NORMALIZATIONS = ("shoulders", "minmax", "none")
_EPS = 1e-6


def to_pixel_space(sample: PoseSample) -> PoseSample:
    """Scale coordinates given as fractions of width/height to pixels, so x and y share one unit.

    Without this, 1280x720 coordinates normalised to [0, 1] squeeze x by 16/9 relative to y.
    Samples with unknown resolution are left alone (a warning says so when they look normalised).
    """
    space = sample.coordinate_space
    if space == "unknown":
        valid = sample.coords[sample.mask & sample.layout.image_points()][:, :2]
        # MediaPipe puts off-screen points (legs, a hand leaving the frame) a little outside [0, 1]
        looks_normalized = valid.size > 0 and float(np.percentile(np.abs(valid), 95)) <= 1.5
        space = "normalized" if looks_normalized else "pixels"
    if space == "pixels":
        return sample.replace(coordinate_space="pixels")
    if sample.resolution is None:
        logger.warning("%s: coordinates look normalised to [0, 1] but the resolution is unknown; "
                       "x and y keep their own units", sample.source)
        return sample.replace(coordinate_space="normalized")
    width, height = sample.resolution
    scale = np.array([width, height, width][: sample.coords.shape[-1]], dtype=np.float32)
    coords = np.where(sample.mask[..., None], sample.coords * scale, 0.0).astype(np.float32)
    return sample.replace(coords=coords, coordinate_space="pixels")


def normalize_coords(coords: np.ndarray, mask: np.ndarray, shoulders: tuple[int, int] | None,
                     method: Normalization = "shoulders", source: str | None = None,
                     stats_points: np.ndarray | None = None) -> np.ndarray:
    """Return normalised (T, K, C) coordinates; masked points stay exactly 0.

    ``stats_points`` (boolean (K,)) limits which points min-max statistics are taken from.
    """
    if method not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {method!r}")
    if method == "none":
        return np.where(mask[..., None], coords, 0.0).astype(np.float32)
    centre = scale = None
    if method == "shoulders":
        centre, scale = _shoulder_frame(coords, mask, shoulders)
        if centre is None:
            logger.warning("%s: no frame with both shoulders (or zero shoulder width); using min-max", source)
    if centre is None:
        centre, scale = _minmax_frame(coords, mask if stats_points is None else mask & stats_points)
    out = (coords - centre) / scale
    return np.where(mask[..., None], out, 0.0).astype(np.float32)


def _shoulder_frame(coords, mask, shoulders):
    if shoulders is None:
        return None, None
    left, right = shoulders
    both = mask[:, left] & mask[:, right]
    if not both.any():
        return None, None
    l, r = coords[both, left].astype(np.float64), coords[both, right].astype(np.float64)
    width = float(np.linalg.norm(l[:, :2] - r[:, :2], axis=-1).mean())
    if width < _EPS:
        return None, None
    return ((l + r) / 2).mean(axis=0), width


def _minmax_frame(coords, mask):
    valid = coords[mask].astype(np.float64)  # (N, C)
    low = valid.min(axis=0)
    extent = float((valid.max(axis=0) - low)[:2].max())
    return low, max(extent, _EPS)


def normalize_sample(sample: PoseSample, method: Normalization = "shoulders") -> PoseSample:
    """Pixel space first, then ``normalize_coords`` with the layout's shoulders."""
    sample = to_pixel_space(sample)
    coords = normalize_coords(sample.coords, sample.mask, sample.layout.shoulders(), method, sample.source,
                              stats_points=sample.layout.image_points())
    return sample.replace(coords=coords)


def resample_fps(sample: PoseSample, fps: float) -> PoseSample:
    """Linearly resample to ``fps`` (e.g. 29.97 -> 25), interpolating each point only between frames where it was seen.

    A vectorised, mask-aware stand-in for ``pose_format``'s per-point ``interpolate``:
    a point missing at either neighbouring source frame stays missing.
    """
    if abs(sample.fps - fps) < 1e-3 or sample.num_frames < 2:
        return sample.replace(fps=float(fps)) if sample.num_frames < 2 else sample
    count = max(1, int(round(sample.num_frames * fps / sample.fps)))
    positions = np.arange(count) * (sample.fps / fps)
    coords, mask = resample_frames(sample.coords, sample.mask, positions)
    return sample.replace(coords=coords, mask=mask, fps=float(fps))


def resample_frames(coords: np.ndarray, mask: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sample (T, K, C) coordinates at fractional frame ``positions`` by linear interpolation."""
    positions = np.clip(positions, 0, coords.shape[0] - 1)
    lo = np.floor(positions).astype(np.int64)
    hi = np.minimum(lo + 1, coords.shape[0] - 1)
    w = (positions - lo).astype(np.float32)[:, None, None]
    out = coords[lo] * (1 - w) + coords[hi] * w
    new_mask = np.where(w[..., 0] > 0, mask[lo] & mask[hi], mask[lo])
    return np.where(new_mask[..., None], out, 0.0).astype(np.float32), new_mask
