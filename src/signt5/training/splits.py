"""A run's training data: the manifest's train and dev splits, checked and normalised once into the shared cache.

Apart from the loop (``trainer.py``) so that the data a run trains on can be prepared, and tested, without one.
"""

from __future__ import annotations

from pathlib import Path

from signt5.data.cache import PreparedSamples, prepare_all, training_data_config
from signt5.data.manifest import check_labels, read_manifest
from signt5.errors import TrainingError

from .config import TrainConfig
from .distributed import Distributed


def prepare_splits(config: TrainConfig, env: Distributed) -> tuple[PreparedSamples, PreparedSamples | None]:
    """Train and dev samples, normalised once: rank 0 pre-computes the cache, the others then read it."""
    manifest = Path(config.manifest)
    entries = read_manifest(manifest)
    train_entries = [e for e in entries if e.split == config.train_split]
    dev_entries = [e for e in entries if e.split == config.dev_split][: config.max_eval_samples]
    if not train_entries:
        raise TrainingError(f"{manifest}: no samples in split {config.train_split!r}")
    check_labels(train_entries + dev_entries, config.target, manifest)
    cache_dir = manifest.parent / ".signt5-cache"
    if not env.main:
        env.barrier()  # wait for rank 0's cache
    data_config = training_data_config(config.data)
    train_data = prepare_all(train_entries, data_config, cache_dir)
    dev_data = prepare_all(dev_entries, data_config, cache_dir) if dev_entries else None
    if env.main:
        env.barrier()
    return train_data, dev_data
