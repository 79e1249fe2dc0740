"""``data.long_samples``: crop or window a sample longer than ``data.max_frames``; training always crops."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest

from signt5.data.cache import prepare_all, training_data_config
from signt5.data.dataset import DataConfig, prepare_sample, window_slices
from signt5.data.manifest import read_manifest
from signt5.training.config import TrainConfig
from signt5.training.distributed import Distributed
from signt5.training.splits import prepare_splits
from ..conftest import make_sample


@pytest.mark.parametrize("frames, max_frames", [(1, 8), (8, 8), (9, 8), (16, 8), (17, 8), (100, 7), (5, 1)])
def test_windows_cover_every_frame_once_in_order(frames, max_frames):
    slices = window_slices(frames, max_frames)
    assert len(slices) == math.ceil(frames / max_frames)
    covered = np.concatenate([np.arange(frames)[s] for s in slices])
    assert covered.tolist() == list(range(frames))
    assert all(0 < s.stop - s.start <= max_frames for s in slices)


def test_window_size_must_be_positive():
    with pytest.raises(ValueError, match="at least 1"):
        window_slices(10, 0)


def test_long_samples_is_validated_and_old_configs_default_to_crop():
    with pytest.raises(ValueError, match=r"long_samples must be one of \('crop', 'window'\), got 'slide'"):
        DataConfig(long_samples="slide")
    old = {k: v for k, v in DataConfig(max_frames=64).to_dict().items() if k != "long_samples"}
    assert DataConfig.from_dict(old).long_samples == "crop"
    assert DataConfig.from_dict({**old, "long_samples": "window"}).windowed


def test_window_mode_prepares_the_whole_sample_and_crop_mode_crops(caplog):
    sample = make_sample("holistic_reduced_178", frames=30)
    caplog.set_level(logging.WARNING, logger="signt5")
    whole = prepare_sample(sample, DataConfig())
    windowed = prepare_sample(sample, DataConfig(max_frames=8, long_samples="window"))
    assert not caplog.records  # the window warning comes with the windows, at decoding
    np.testing.assert_array_equal(windowed.coords, whole.coords)  # statistics of the whole sample
    cropped = prepare_sample(sample, DataConfig(max_frames=8))
    assert cropped.num_frames == 8
    assert any("cropped to the centre 8" in r.getMessage() for r in caplog.records)


def test_training_config_falls_back_to_cropping_with_one_warning(caplog):
    caplog.set_level(logging.WARNING, logger="signt5")
    config = training_data_config(DataConfig(max_frames=8, long_samples="window"))
    assert config.long_samples == "crop" and config.max_frames == 8
    assert [r.getMessage() for r in caplog.records if "long_samples" in r.getMessage()] == [
        "data.long_samples=window applies to inference and evaluation only: a window of a long sample has no "
        "label of its own, so training crops samples longer than data.max_frames (8) to their centre"]
    unchanged = DataConfig(max_frames=8)
    assert training_data_config(unchanged) is unchanged


def test_training_with_window_mode_crops_with_one_warning(tiny_corpus, caplog):
    """The trainer's data preparation: every sample at most max_frames, one warning for the whole run."""
    manifest = tiny_corpus / "manifest.csv"
    entries = read_manifest(manifest)
    full = prepare_all([e for e in entries if e.split == "train"], DataConfig())
    assert full.lengths().max() > 8  # the corpus has samples to crop
    config = TrainConfig(manifest=str(manifest), data=DataConfig(max_frames=8, long_samples="window"))
    caplog.set_level(logging.WARNING, logger="signt5")
    train, dev = prepare_splits(config, Distributed())
    assert train.lengths().max() == 8 and dev.lengths().max() <= 8
    assert len(train) == len(full)
    assert sum("long_samples=window" in r.getMessage() for r in caplog.records) == 1
    assert config.data.long_samples == "window"  # what the checkpoint saves, for inference
