"""One pose sequence in memory: coordinates, a presence mask, fps, resolution and layout."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from ..errors import PoseDataError
from .layout import KeypointLayout

logger = logging.getLogger(__name__)

MIN_FPS, MAX_FPS = 1.0, 1000.0  # plausible camera rates; outside them resampling explodes or collapses
CoordinateSpace = Literal["pixels", "normalized", "unknown"]


@dataclass
class PoseSample:
    """A sequence of keypoints; missing points are False in ``mask`` and hold 0 in ``coords``."""

    coords: np.ndarray  # (T, K, C) float32, C = 2 (x, y) or 3 (x, y, z)
    mask: np.ndarray  # (T, K) bool, True where the point was detected
    fps: float
    layout: KeypointLayout
    resolution: tuple[int, int] | None = None  # (width, height) of the source video, when known
    coordinate_space: CoordinateSpace = "unknown"
    sample_id: str | None = None
    source: str | None = None
    labels: dict = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(self.coords.shape[0])

    @property
    def num_points(self) -> int:
        return int(self.coords.shape[1])

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps

    def error(self, message: str) -> PoseDataError:
        return PoseDataError(message, source=self.source, sample_id=self.sample_id)

    def replace(self, **changes) -> "PoseSample":
        return replace(self, **changes)


def missing_points(coords: np.ndarray, confidence: np.ndarray | None, layout: KeypointLayout) -> np.ndarray:
    """Presence mask (T, K): a point is missing when not finite, of confidence <= 0, or exactly (0, 0).

    Estimators write an undetected hand as zeros (OpenPose, MediaPipe exports) or as
    one collapsed point; both are masked per frame so they never count as real coordinates.
    """
    present = np.isfinite(coords).all(axis=-1)
    if confidence is not None:
        present &= np.isfinite(confidence) & (confidence > 0)
    present &= np.any(coords[..., :2] != 0, axis=-1)
    for hand in layout.hand_slices():
        xy = np.nan_to_num(coords[:, hand, :2], nan=0.0, posinf=0.0, neginf=0.0)
        collapsed = (np.ptp(xy, axis=1) == 0).all(axis=-1)  # (T,)
        present[:, hand] &= ~collapsed[:, None]
    return present


def sample_from_array(
    array: np.ndarray,
    layout: KeypointLayout,
    *,
    fps: float,
    confidence: np.ndarray | None = None,
    resolution: tuple[int, int] | None = None,
    coordinate_space: CoordinateSpace = "unknown",
    sample_id: str | None = None,
    source: str | None = None,
    labels: dict | None = None,
) -> PoseSample:
    """Validate a (T, K, C) array (C = 2, 3, or 4 with confidence last) and build a sample."""

    def fail(message: str) -> PoseDataError:
        return PoseDataError(message, source=source, sample_id=sample_id)

    array = np.asarray(array)
    if array.dtype.kind not in "fiu":
        raise fail(f"keypoints must be numbers, got dtype {array.dtype}")
    if array.ndim != 3:
        raise fail(f"expected keypoints shaped (frames, points, channels), got shape {array.shape}")
    frames, points, channels = array.shape
    if frames == 0:
        raise fail("has zero frames")
    if points != layout.num_points:
        raise fail(f"has {points} keypoints per frame but layout {layout.name!r} has {layout.num_points}")
    if channels == 4 and confidence is None:
        array, confidence = array[..., :3], array[..., 3]
    elif channels not in (2, 3):
        raise fail(f"expected 2 (x, y), 3 (x, y, z) or 4 (x, y, z, confidence) channels, got {channels}")
    if not np.isfinite(fps) or not MIN_FPS <= fps <= MAX_FPS:
        # resampling a 1e-200 fps clip to 25 fps would ask for more frames than memory holds
        raise fail(f"fps must be a number from {MIN_FPS:g} to {MAX_FPS:g}, got {fps}")
    coords = array.astype(np.float32, copy=True)
    if confidence is not None:
        confidence = np.asarray(confidence, dtype=np.float32)
        if confidence.shape != (frames, points):
            raise fail(f"confidence shaped {confidence.shape} does not match keypoints {(frames, points)}")
    with np.errstate(invalid="ignore"):
        mask = missing_points(coords, confidence, layout)
    if not mask.any():
        raise fail("has no valid keypoint in any frame (all missing, NaN or inf)")
    coords[~mask] = 0.0
    return PoseSample(coords, mask, float(fps), layout, resolution, coordinate_space, sample_id, source, dict(labels or {}))


def select_person(data: np.ndarray, confidence: np.ndarray, person: int | str, source: str = "") -> int:
    """Index of the person to keep from (T, P, K, C) data: a fixed index or the most confident one."""
    people = data.shape[1]
    if people == 0:
        raise PoseDataError("holds no person (0 people per frame)", source=source)
    if isinstance(person, int):
        if not 0 <= person < people:
            raise PoseDataError(f"person {person} requested but the file has {people}", source=source)
        return person
    if person != "most_confident":
        raise ValueError(f"person must be an index or 'most_confident', got {person!r}")
    if people == 1:
        return 0
    score = np.nan_to_num(confidence.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0).clip(min=0).sum(axis=(0, 2))
    chosen = int(np.argmax(score))
    logger.info("%s: %d people detected, keeping person %d (highest total confidence)", source, people, chosen)
    return chosen
