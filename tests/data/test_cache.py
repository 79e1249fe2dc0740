"""The pre-computed cache: written sample by sample, read back memory-mapped, equal to the in-memory arrays."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np

from signt5.data.cache import PreparedDataset, prepare_all
from signt5.data.dataset import DataConfig, SampleLoader
from signt5.data.manifest import ManifestEntry

from ..conftest import make_sample

FRAMES, SAMPLES = 400, 120  # 400 x 178 x 2 float32 = 0.57 MB a sample, 68 MB in all


def _synthetic(monkeypatch, tmp_path: Path) -> list[ManifestEntry]:
    """Entries whose loader returns generated samples (no files), each its own length and values."""
    def load(self, entry):
        index = int(entry.id.split("-")[1])
        sample = make_sample("holistic_reduced_178", frames=FRAMES - index % 7, seed=index)
        return sample.replace(sample_id=entry.id)

    monkeypatch.setattr(SampleLoader, "load", load)
    return [ManifestEntry(f"s-{i}", tmp_path / f"s-{i}.pose", gloss="A", split="train") for i in range(SAMPLES)]


def test_building_does_not_hold_the_corpus_in_memory(monkeypatch, tmp_path):
    entries = _synthetic(monkeypatch, tmp_path)
    config = DataConfig(components="full", normalization="none", target_fps=None)
    tracemalloc.start()
    prepared = prepare_all(entries, config, tmp_path / "cache")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    total = prepared.coords.nbytes + prepared.mask.nbytes
    assert total > 60e6 and peak < total / 5  # one sample at a time, not the corpus
    assert isinstance(prepared.coords, np.memmap) and not prepared.coords.flags.writeable
    in_memory = prepare_all(entries, config)  # no cache folder: the same arrays, in memory
    np.testing.assert_array_equal(prepared.coords, in_memory.coords)
    np.testing.assert_array_equal(prepared.mask, in_memory.mask)
    np.testing.assert_array_equal(prepared.offsets, in_memory.offsets)
    again = prepare_all(entries, config, tmp_path / "cache")  # read back: memory-mapped again, the same samples
    assert isinstance(again.coords, np.memmap) and [e.id for e in again.entries] == [e.id for e in entries]
    coords, mask = again.get(5)
    expected = make_sample("holistic_reduced_178", frames=FRAMES - 5, seed=5)
    np.testing.assert_array_equal(mask, expected.mask)
    np.testing.assert_array_equal(coords, np.where(expected.mask[..., None], expected.coords, 0))
    from signt5.data.augment import AugmentConfig

    augmented = PreparedDataset(again, "gloss", AugmentConfig(), seed=0)[5]  # a copy: the map stays read-only
    plain = PreparedDataset(again, "gloss")[5]  # a view into the map
    assert augmented["pose"].flags.writeable and not plain["pose"].flags.writeable and plain["label"] == "A"
