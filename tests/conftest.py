"""Shared tiny fixtures: real lexicon clips, fake poses with real headers, a tiny corpus."""

from __future__ import annotations

import numpy as np
import pytest

from signt5.data.layout import KeypointLayout, layout_by_name
from signt5.data.lexicon import FingerspellingLexicon
from signt5.data.readers import read_pose_file
from signt5.data.sample import PoseSample


@pytest.fixture(scope="session")
def lexicon() -> FingerspellingLexicon:
    return FingerspellingLexicon.load()


@pytest.fixture(scope="session")
def real_clip_path(lexicon):
    """A real MediaPipe Holistic recording (ASL letter A), 586 points, 500x500 pixels."""
    return lexicon.letters("ase")[0].path


@pytest.fixture()
def real_clip(real_clip_path) -> PoseSample:
    return read_pose_file(real_clip_path)


def make_sample(layout: KeypointLayout | str, frames: int = 12, seed: int = 0, fps: float = 25.0) -> PoseSample:
    """Random points inside a 640x480 frame, all present, in a known layout."""
    layout = layout_by_name(layout) if isinstance(layout, str) else layout
    rng = np.random.default_rng(seed)
    coords = rng.uniform(50, 400, size=(frames, layout.num_points, 2)).astype(np.float32)
    mask = np.ones((frames, layout.num_points), dtype=bool)
    return PoseSample(coords, mask, fps, layout, (640, 480), "pixels", f"fake-{seed}", "memory")
