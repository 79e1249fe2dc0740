"""Pre-computed model input: read and normalise every sample once, then serve arrays memory-mapped.

Reading a ``.pose`` file and normalising it costs ~3 ms; an epoch of augmentation and
batching on top of cached arrays costs a fraction of that, so training never waits on
parsing. The cache lives next to the manifest, keyed by a fingerprint of the manifest
rows, the files' sizes and times, and the :class:`DataConfig`; it is rebuilt when any
of them changes. Samples that cannot be read are skipped and listed in ``skipped``.

Format: numpy memory maps (flat ``coords.bin`` float32 and ``mask.bin`` bool, shapes in ``meta.json``, sample
offsets in ``offsets.npy``), written one sample at a time. Plain files every numpy reads, with no dependency
beyond numpy; the pages are loaded on demand and shared by the processes of a node, so memory does not grow
with the corpus. Hugging Face ``datasets`` (Arrow) would do the same with a heavier dependency and a
per-sample conversion from its rows back to arrays.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import LayoutError, SignT5Error
from .augment import AugmentConfig, augment, draw_speed, draw_speeds, stretched_length
from .dataset import DataConfig, SampleLoader
from .item import PoseItem, pose_item
from .layout import KeypointLayout
from .mirror import mirror_permutation
from .manifest import ManifestEntry

logger = logging.getLogger(__name__)

CACHE_VERSION = 3  # 2: flat, memory-mapped coords.bin / mask.bin written sample by sample; 3: + the layout
SPEED_STREAM = 7  # seeds the speed draws made ahead of batching apart from the per-sample augmentation


@dataclass
class PreparedSamples:
    """Normalised samples of one split, concatenated along time: sample i is ``coords[offsets[i]:offsets[i+1]]``."""

    entries: list[ManifestEntry]
    coords: np.ndarray  # (sum T, K, C) float32
    mask: np.ndarray  # (sum T, K) bool
    offsets: np.ndarray  # (N + 1,) int64
    hand_slices: list[slice]
    skipped: list[str] = field(default_factory=list)  # "id: reason" for samples that could not be read
    layout: KeypointLayout | None = None  # of the prepared points (after selection)

    def __len__(self) -> int:
        return len(self.entries)

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def get(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = self.offsets[index], self.offsets[index + 1]
        return self.coords[a:b], self.mask[a:b]

    def items(self, target: str) -> list[PoseItem]:
        """Every sample as an item, un-augmented (evaluation, decoding)."""
        out = []
        for i, entry in enumerate(self.entries):
            coords, mask = self.get(i)
            out.append(pose_item(entry.id, coords, mask, entry.label(target), entry.sign_language))
        return out


def training_data_config(config: DataConfig) -> DataConfig:
    """The preprocessing training uses: ``long_samples="window"`` falls back to cropping, with a warning.

    A window of a long sample has no label of its own (the label belongs to the whole sample), so
    training cannot learn from windows; the saved checkpoint keeps ``window`` for inference and evaluation.
    Call it once per run: it warns each time.
    """
    if config.long_samples != "window":
        return config
    if config.max_frames:
        logger.warning("data.long_samples=window applies to inference and evaluation only: a window of a long "
                       "sample has no label of its own, so training crops samples longer than data.max_frames "
                       "(%d) to their centre", config.max_frames)
    return replace(config, long_samples="crop")


def _fingerprint(entries: Sequence[ManifestEntry], config: DataConfig) -> str:
    settings = config.to_dict()
    if settings["long_samples"] == "crop":  # the default: caches made before the setting existed stay valid
        del settings["long_samples"]
    h = hashlib.sha256(json.dumps([CACHE_VERSION, settings], sort_keys=True).encode())
    stats: dict[Path, str] = {}
    for e in entries:
        path = Path(e.path)
        if path not in stats:
            try:
                st = path.stat()
                stats[path] = f"{st.st_size}:{st.st_mtime_ns}"
            except OSError:
                stats[path] = "missing"
        h.update(f"{e.id}\t{path}\t{e.sample_key}\t{stats[path]}\n".encode())
    return h.hexdigest()[:16]


def prepare_all(entries: Sequence[ManifestEntry], config: DataConfig, cache_dir: str | Path | None = None
                ) -> PreparedSamples:
    """Load (from cache when fresh) the normalised arrays of ``entries``; bad samples are skipped and listed.

    With ``cache_dir`` the arrays are written sample by sample to flat files and read back memory-mapped, so
    neither building nor training holds the corpus in memory, and processes on one node share its pages.
    """
    key = _fingerprint(entries, config)
    folder = Path(cache_dir) / key if cache_dir else None
    if folder is not None and (folder / "meta.json").exists():
        logger.info("using pre-computed samples in %s", folder)
        return _open(entries, folder)
    if folder is None:
        return _prepare_in_memory(entries, config)
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        with (tmp / "coords.bin").open("wb") as coords_file, (tmp / "mask.bin").open("wb") as mask_file:
            kept, lengths, skipped, shape, layout = _stream(entries, config, coords_file, mask_file)
        np.save(tmp / "offsets.npy", np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))
        meta = {"ids": [e.id for e in kept], "skipped": skipped, "point_shape": list(shape),
                "hand_slices": [[sl.start, sl.stop] for sl in layout.hand_slices()], "layout": layout.to_dict()}
        (tmp / "meta.json").write_text(json.dumps(meta))
        try:
            os.replace(tmp, folder)
        except OSError:  # another process won the race: theirs is as good as ours
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _open(entries, folder)


def _stream(entries: Sequence[ManifestEntry], config: DataConfig, coords_file, mask_file
            ) -> tuple[list[ManifestEntry], list[int], list[str], tuple[int, int], KeypointLayout]:
    """Normalise each sample and append its (T, K, C) float32 coords and (T, K) mask to the files, one at a time."""
    loader = SampleLoader(config)
    kept: list[ManifestEntry] = []
    lengths: list[int] = []
    skipped: list[str] = []
    shape: tuple[int, int] | None = None  # (K, C) of the first good sample; the others must match
    layout: KeypointLayout | None = None  # the first good sample's, after selection
    for entry in entries:
        try:
            sample = loader.load(entry)
        except SignT5Error as e:
            skipped.append(f"{entry.id}: {e}")
            logger.warning("skipping sample %s: %s", entry.id, e)
            continue
        if shape is not None and sample.coords.shape[1:] != shape:
            skipped.append(f"{entry.id}: {sample.coords.shape[1]} points x {sample.coords.shape[2]} coordinates "
                           f"after selection, the others have {shape}")
            continue
        shape = shape or tuple(sample.coords.shape[1:])
        layout = layout or sample.layout
        coords_file.write(np.ascontiguousarray(sample.coords, dtype=np.float32).tobytes())
        mask_file.write(np.ascontiguousarray(sample.mask, dtype=bool).tobytes())
        kept.append(entry)
        lengths.append(sample.coords.shape[0])
    if not kept:
        raise SignT5Error(f"none of the {len(entries)} samples could be read; first problems: {skipped[:3]}")
    return kept, lengths, skipped, shape, layout


def _open(entries: Sequence[ManifestEntry], folder: Path) -> PreparedSamples:
    """A cache folder's samples, memory-mapped read-only."""
    meta = json.loads((folder / "meta.json").read_text())
    kept = set(meta["ids"])
    offsets = np.load(folder / "offsets.npy")
    points, channels = meta["point_shape"]
    frames = int(offsets[-1])
    coords = np.memmap(folder / "coords.bin", dtype=np.float32, mode="r", shape=(frames, points, channels))
    mask = np.memmap(folder / "mask.bin", dtype=bool, mode="r", shape=(frames, points))
    return PreparedSamples([e for e in entries if e.id in kept], coords, mask, offsets,
                           [slice(a, b) for a, b in meta["hand_slices"]], meta["skipped"],
                           KeypointLayout.from_dict(meta["layout"]))


def _prepare_in_memory(entries: Sequence[ManifestEntry], config: DataConfig) -> PreparedSamples:
    """Without a cache folder (evaluation, inference): the same arrays, held in memory."""
    coords_file, mask_file = io.BytesIO(), io.BytesIO()
    kept, lengths, skipped, (points, channels), layout = _stream(entries, config, coords_file, mask_file)
    frames = int(sum(lengths))
    coords = np.frombuffer(coords_file.getbuffer(), dtype=np.float32).reshape(frames, points, channels)
    mask = np.frombuffer(mask_file.getbuffer(), dtype=bool).reshape(frames, points)
    return PreparedSamples(kept, coords, mask, np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                           layout.hand_slices(), skipped, layout)


def _mirrorable(layout: KeypointLayout | None) -> KeypointLayout | None:
    """The layout when its samples can be mirrored (both hands, and every point's mirror image), else None."""
    if layout is None or len(layout.hand_slices()) != 2:
        return None
    try:
        mirror_permutation(layout)
    except LayoutError as e:
        logger.warning("mirror augmentation off: %s", e)
        return None
    return layout


class PreparedDataset:
    """Map-style data set over :class:`PreparedSamples` with deterministic per-(epoch, index) augmentation."""

    def __init__(self, samples: PreparedSamples, target: str = "gloss", augment_config: AugmentConfig | None = None,
                 seed: int = 0):
        self.samples = samples
        self.target = target
        self.augment_config = augment_config
        self.seed = seed
        self.mirror_layout = _mirrorable(samples.layout) if augment_config and augment_config.mirror > 0 else None
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self._speeds = self._draw_epoch_speeds()  # the sampler's lengths and the loaded samples share one draw

    def __len__(self) -> int:
        return len(self.samples)

    def epoch_speeds(self) -> np.ndarray | None:
        """This epoch's per-sample speed factors, drawn ahead of batching (``speed_draw`` bucketed), else None."""
        return self._speeds

    def _draw_epoch_speeds(self) -> np.ndarray | None:
        config = self.augment_config
        if config is None or not config.enabled or config.speed_draw != "bucketed":
            return None
        return draw_speeds(config, np.random.default_rng([self.seed, self.epoch, SPEED_STREAM]), len(self))

    def epoch_lengths(self) -> np.ndarray:
        """The samples' frame counts as this epoch will load them, for length bucketing."""
        lengths, speeds = self.samples.lengths(), self.epoch_speeds()
        if speeds is None:
            return lengths
        return np.array([stretched_length(int(n), float(f), self.augment_config) for n, f in zip(lengths, speeds)])

    def with_speeds(self, batches: Sequence[Sequence[int]]) -> list[list[int | tuple[int, float]]]:
        """Pair every index with the speed factor it is to load with, or leave ``batches`` as they are (factors
        drawn at load time).

        A batch pads to its longest sample: with per-sample factors drawn at load time, a batch of 16 from
        (0.5, 2.5) pads to nearly twice its mean length. Drawn ahead (bucketed), the sampler groups samples by
        their stretched lengths; ``batch`` draws one factor per batch.
        """
        config = self.augment_config
        if config is None or not config.enabled or config.speed_draw == "sample":
            return [list(b) for b in batches]
        if config.speed_draw == "bucketed":
            speeds = self.epoch_speeds()
            return [[(int(i), float(speeds[i])) for i in batch] for batch in batches]
        factors = [draw_speed(config, np.random.default_rng([self.seed, self.epoch, SPEED_STREAM, n]))
                   for n in range(len(batches))]
        return [[(int(i), factor) for i in batch] for batch, factor in zip(batches, factors)]

    def __getitem__(self, key: int | tuple[int, float]) -> PoseItem:
        index, speed = key if isinstance(key, tuple) else (key, None)
        entry = self.samples.entries[index]
        coords, mask = self.samples.get(index)
        if self.augment_config is not None and self.augment_config.enabled:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            coords, mask = augment(coords, mask, self.samples.hand_slices, rng, self.augment_config, speed,
                                   self.mirror_layout)
        return pose_item(entry.id, coords, mask, entry.label(self.target), entry.sign_language)
