"""The sample as the model reads it: one typed dict, built by :func:`pose_item` and nothing else."""

from __future__ import annotations

from typing import TypedDict

import numpy as np


class PoseItem(TypedDict):
    """One prepared sample, what data sets yield, decoding reads and ``pad_batch`` collates."""

    id: str
    pose: np.ndarray  # (T, K, C) float32: normalised coordinates of the selected points
    mask: np.ndarray  # (T, K) bool: True where a point was seen
    label: str  # the target text ("" when unknown, e.g. at inference)
    sign_language: str  # ISO 639-3 code ("" when unknown)
    source: str  # the file the sample came from ("" when not recorded)


def pose_item(sample_id: str, pose: np.ndarray, mask: np.ndarray, label: str = "", sign_language: str = "",
              source: str = "") -> PoseItem:
    """The one place an item is made, so every producer gives the same keys."""
    return PoseItem(id=sample_id, pose=pose, mask=mask, label=label, sign_language=sign_language, source=source)
