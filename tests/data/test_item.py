"""Every producer of a sample item (data sets, the sample cache, the predictor) gives one typed shape, built by
``pose_item``: the same keys, and for the same sample the same arrays."""

from __future__ import annotations

import numpy as np

from signt5.data.cache import PreparedDataset, prepare_all
from signt5.data.dataset import DataConfig, PoseDataset
from signt5.data.item import PoseItem
from signt5.data.manifest import read_manifest
from signt5.data.readers import load_sample
from signt5.decoding.predictor import Predictor, split_long_items


def test_every_producer_gives_a_pose_item_with_the_same_arrays(tiny_corpus, tiny_model):
    entries = read_manifest(tiny_corpus / "manifest.csv", split="dev")
    predictor = Predictor.load(tiny_model)
    config = predictor.data_config
    produced = {
        "PoseDataset": PoseDataset(entries, config)[0],
        "PreparedSamples.items": prepare_all(entries, config).items("gloss")[0],
        "PreparedDataset": PreparedDataset(prepare_all(entries, config), "gloss")[0],
        "Predictor.prepare": predictor.prepare(load_sample(entries[0].path)),
    }
    for name, item in produced.items():
        assert set(item) == PoseItem.__required_keys__, name
        assert item["id"] == entries[0].id, name
        np.testing.assert_array_equal(item["pose"], produced["PoseDataset"]["pose"], err_msg=name)
        np.testing.assert_array_equal(item["mask"], produced["PoseDataset"]["mask"], err_msg=name)
    assert produced["PoseDataset"]["label"] == entries[0].gloss and produced["Predictor.prepare"]["label"] == ""
    assert produced["PoseDataset"]["sign_language"] == entries[0].sign_language
    assert produced["Predictor.prepare"]["source"] == str(entries[0].path)

    windows, owners = split_long_items([produced["Predictor.prepare"]], DataConfig(max_frames=8, long_samples="window"))
    assert len(windows) > 1 and owners == [0] * len(windows)
    assert all(set(w) == PoseItem.__required_keys__ and w["source"] == str(entries[0].path) for w in windows)
