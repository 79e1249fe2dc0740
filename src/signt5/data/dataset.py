"""From manifest rows to model-ready tensors: read, pick a person, resample, normalise, select points."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import LayoutError, PoseDataError
from .gaps import fill_short_gaps
from .item import PoseItem, pose_item
from .sampler import pack_by_length, round_up
from .layout import (HOLISTIC_BODY, HOLISTIC_FACE, HOLISTIC_LEFT_HAND, HOLISTIC_RIGHT_HAND, OPENPOSE_BODY,
                     OPENPOSE_FACE, OPENPOSE_LEFT_HAND, OPENPOSE_RIGHT_HAND, KeypointLayout, face_subset)
from .manifest import ManifestEntry
from .mirror import to_right_dominant
from .normalize import NORMALIZATIONS, normalize_sample, resample_fps
from .readers import PICKLE_SUFFIXES, read_pickle_keys, read_samples, sample_from_record
from .sample import PoseSample

logger = logging.getLogger(__name__)

# MediaPipe face-mesh indices (all within reduce_holistic's contours): outer lips, eyes, eyebrows.
HOLISTIC_FACE_SUBSET = [str(i) for i in (
    0, 17, 37, 39, 40, 61, 84, 91, 146, 181, 185, 267, 269, 270, 291, 314, 321, 375, 405, 409,
    33, 133, 145, 159, 263, 362, 374, 386, 70, 105, 107, 300, 334, 336)]
HOLISTIC_UPPER_BODY = ["LEFT_SHOULDER", "RIGHT_SHOULDER", "LEFT_ELBOW", "RIGHT_ELBOW", "LEFT_WRIST", "RIGHT_WRIST",
                       "LEFT_HIP", "RIGHT_HIP"]
OPENPOSE_UPPER_BODY = ["Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist", "MidHip",
                       "REye", "LEye", "REar", "LEar"]
PRESETS = ("default", "hands", "full")
LONG_SAMPLES = ("crop", "window")
HANDEDNESS = ("right", "keep")


@dataclass
class DataConfig:
    """How raw poses become model input; saved with every checkpoint."""

    components: str | dict = "default"  # a preset name (default, hands, full) or {component: [points] | null}
    normalization: str = "shoulders"  # shoulders | minmax | none (see signt5.data.normalize)
    target_fps: float | None = 25.0  # resample every sample to this rate (None keeps the source's)
    dims: int = 2  # 2: x, y; 3: x, y, z
    max_frames: int | None = None  # longest model input, in frames after resampling (None: no limit)
    long_samples: str = "crop"  # a longer sample: crop (centre) or window (inference only), with a warning
    person: int | str = "most_confident"  # which person when several are detected
    resolution: list | None = None  # (width, height) for header-less inputs in [0, 1] coordinates
    handedness: str = "right"  # right: mirror left-dominant signers into the right-dominant frame; keep: leave them
    fill_hand_gaps: int = 3  # fill a hand lost for at most this many frames (at target_fps), seen on both sides; 0: off

    def __post_init__(self) -> None:
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {self.normalization!r}")
        if self.dims not in (2, 3):
            raise ValueError(f"dims must be 2 or 3, got {self.dims}")
        if isinstance(self.components, str) and self.components not in PRESETS:
            raise ValueError(f"components preset must be one of {PRESETS} or a dict, got {self.components!r}")
        if self.long_samples not in LONG_SAMPLES:
            raise ValueError(f"long_samples must be one of {LONG_SAMPLES}, got {self.long_samples!r}")
        if self.handedness not in HANDEDNESS:
            raise ValueError(f"handedness must be one of {HANDEDNESS}, got {self.handedness!r}")
        if self.fill_hand_gaps < 0:
            raise ValueError(f"fill_hand_gaps must be at least 0, got {self.fill_hand_gaps}")

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def windowed(self) -> bool:
        """Whether samples longer than ``max_frames`` are split into windows rather than cropped."""
        return bool(self.max_frames) and self.long_samples == "window"

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "DataConfig":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        known.setdefault("handedness", "keep")  # a config saved before mirroring existed: samples as they were
        known.setdefault("fill_hand_gaps", 0)  # a config saved before gap filling existed: keep it off
        return cls(**known)

    @classmethod
    def from_json(cls, path: str | Path) -> "DataConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))


def resolve_components(layout: KeypointLayout, spec: str | Mapping) -> dict[str, list[str] | None]:
    """Turn a preset name into an explicit {component: points} selection for ``layout``."""
    if not isinstance(spec, str):
        return dict(spec)
    names = set(layout.component_names)
    if HOLISTIC_BODY in names:
        body, face, hands = HOLISTIC_BODY, HOLISTIC_FACE, [HOLISTIC_LEFT_HAND, HOLISTIC_RIGHT_HAND]
        upper, face_points = HOLISTIC_UPPER_BODY, face_subset(layout, HOLISTIC_FACE_SUBSET)
    elif OPENPOSE_BODY in names:
        body, face, hands = OPENPOSE_BODY, OPENPOSE_FACE, [OPENPOSE_LEFT_HAND, OPENPOSE_RIGHT_HAND]
        upper, face_points = OPENPOSE_UPPER_BODY, [p for p in layout.component(OPENPOSE_FACE).points
                                                   if p.startswith(("FE", "FL", "FN"))]
    else:
        if spec == "full":
            return {c: None for c in layout.component_names}
        raise LayoutError(f"preset {spec!r} is defined for MediaPipe Holistic and OpenPose layouts; "
                          f"layout {layout.name!r} needs an explicit components dict")
    if spec == "full":
        return {c: None for c in layout.component_names if c != "POSE_WORLD_LANDMARKS"}
    body_points = [p for p in upper if p in layout.component(body).points]
    selection: dict[str, list[str] | None] = {body: body_points}
    if spec == "default" and face in names and face_points:
        selection[face] = face_points
    selection.update({h: None for h in hands if h in names})
    return selection


def prepare_sample(sample: PoseSample, config: DataConfig) -> PoseSample:
    """Resample, normalise in the full layout (shoulders are needed), then select the configured points.

    A sample longer than ``max_frames`` is cropped to its centre, unless ``long_samples`` is ``window``:
    then it comes back whole, normalised with the statistics of the whole sample, and the caller cuts
    it into windows (:func:`window_slices`).
    """
    if sample.resolution is None and config.resolution:
        sample = sample.replace(resolution=tuple(config.resolution))
    sample = _crop_source(sample, config)
    if config.target_fps:
        sample = resample_fps(sample, config.target_fps)
    if config.fill_hand_gaps:
        coords, mask = fill_short_gaps(sample.coords, sample.mask, sample.layout.hand_slices(), config.fill_hand_gaps)
        sample = sample.replace(coords=coords, mask=mask)
    if config.handedness == "right":  # before normalising and selecting: mirroring needs the full layout
        sample = to_right_dominant(sample)
    sample = normalize_sample(sample, config.normalization)  # type: ignore[arg-type]
    try:
        selected, indices = sample.layout.select(resolve_components(sample.layout, config.components))
    except LayoutError as e:
        raise sample.error(str(e)) from None
    coords = sample.coords[:, indices, : config.dims]
    if coords.shape[-1] < config.dims:
        raise sample.error(f"config asks for {config.dims} coordinates but the data has {coords.shape[-1]}")
    mask = sample.mask[:, indices]
    if config.max_frames and not config.windowed and sample.num_frames > config.max_frames:
        start = (sample.num_frames - config.max_frames) // 2
        coords, mask = coords[start:start + config.max_frames], mask[start:start + config.max_frames]
    if not np.isfinite(coords).all():  # e.g. coordinates near float32's limit overflow when normalised
        raise sample.error("coordinates are out of range: not finite after normalisation")
    return sample.replace(coords=np.ascontiguousarray(coords), mask=np.ascontiguousarray(mask), layout=selected)


def _crop_source(sample: PoseSample, config: DataConfig) -> PoseSample:
    """Cut a sample longer than ``max_frames`` to the centre source frames it needs, with a warning.

    Cropping before resampling and normalising keeps the memory of a pathological
    100 000-frame file to one copy of its window; the exact centre crop follows in ``prepare_sample``.
    """
    if not config.max_frames or config.windowed:
        return sample
    ratio = sample.fps / config.target_fps if config.target_fps else 1.0
    frames_after = round(sample.num_frames / ratio) if config.target_fps else sample.num_frames
    if frames_after <= config.max_frames:
        return sample
    logger.warning("%s: %d frames cropped to the centre %d (data.max_frames)", sample.source, frames_after,
                   config.max_frames)
    needed = min(sample.num_frames, int(np.ceil((config.max_frames + 2) * ratio)) + 2)
    start = (sample.num_frames - needed) // 2
    return sample.replace(coords=sample.coords[start:start + needed], mask=sample.mask[start:start + needed])


def window_slices(num_frames: int, max_frames: int) -> list[slice]:
    """Consecutive, non-overlapping windows of at most ``max_frames`` covering every frame once, in order.

    Non-overlapping because the window texts are joined: a sign in an overlap would be decoded
    twice and appear twice (a doubled letter) in the joined text. The last window may be short.
    """
    if max_frames < 1:
        raise ValueError(f"max_frames must be at least 1, got {max_frames}")
    return [slice(start, min(start + max_frames, num_frames)) for start in range(0, num_frames, max_frames)]


class SampleLoader:
    """Reads manifest entries' samples, caching multi-sample files (``data.pkl``, ``.npz``) once per file."""

    def __init__(self, config: DataConfig | None = None):
        self.config = config or DataConfig()
        self._records: dict[Path, Mapping[str, Any]] = {}

    def raw(self, entry: ManifestEntry) -> PoseSample:
        path = Path(entry.path)
        kwargs = {"person": self.config.person}
        if path.suffix.lower() in PICKLE_SUFFIXES:
            if path not in self._records:
                self._records[path] = read_pickle_keys(path)
            records = self._records[path]
            if entry.sample_key not in records:
                raise PoseDataError(f"no sample with key {entry.sample_key!r} (file has {len(records)} samples)",
                                    source=str(path), sample_id=entry.id)
            sample = sample_from_record(records[entry.sample_key], str(path), entry.sample_key, **kwargs)
        else:
            samples = read_samples(path, **kwargs)
            if len(samples) == 1 and not entry.key:
                sample = next(iter(samples.values()))
            elif entry.sample_key in samples:
                sample = samples[entry.sample_key]
            else:
                raise PoseDataError(f"no sample with key {entry.sample_key!r}", source=str(path), sample_id=entry.id)
        return sample.replace(sample_id=entry.id)

    def load(self, entry: ManifestEntry) -> PoseSample:
        return prepare_sample(self.raw(entry), self.config)


class PoseDataset:
    """A map-style data set (usable by ``torch.utils.data.DataLoader``) over manifest entries."""

    def __init__(self, entries: Sequence[ManifestEntry], config: DataConfig | None = None, target: str = "gloss"):
        self.entries = list(entries)
        self.loader = SampleLoader(config)
        self.target = target

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> PoseItem:
        entry = self.entries[index]
        sample = self.loader.load(entry)
        return pose_item(entry.id, sample.coords, sample.mask, entry.label(self.target), entry.sign_language)


def pad_batch(items: Sequence[PoseItem], frame_multiple: int = 1) -> dict[str, Any]:
    """Collate variable-length samples: zero-padded poses (B, T, K, C) and masks; padded frames are False.

    ``frame_multiple`` rounds T up to a multiple: fewer distinct tensor shapes let the C heap reuse freed blocks
    instead of growing over a long run.
    """
    import torch

    lengths = [item["pose"].shape[0] for item in items]
    batch, longest = len(items), max(lengths)
    longest = round_up(longest, frame_multiple)
    points, channels = items[0]["pose"].shape[1:]
    pose = np.zeros((batch, longest, points, channels), dtype=np.float32)
    mask = np.zeros((batch, longest, points), dtype=bool)
    for i, item in enumerate(items):
        pose[i, : lengths[i]] = item["pose"]
        mask[i, : lengths[i]] = item["mask"]
    frame_mask = np.arange(longest)[None, :] < np.asarray(lengths)[:, None]
    return {
        "ids": [item["id"] for item in items],
        "pose": torch.from_numpy(pose),  # (B, T, K, C)
        "point_mask": torch.from_numpy(mask),  # (B, T, K)
        "frame_mask": torch.from_numpy(frame_mask),  # (B, T)
        "labels": [item["label"] for item in items],
        "sign_languages": [item["sign_language"] for item in items],
    }


def split_batch(batch: dict[str, Any], max_frames: int, frame_multiple: int = 1) -> list[dict[str, Any]]:
    """Cut a collated batch into parts of at most ``max_frames`` padded frames (samples x longest), by length.

    A part holds at least one sample, and each is trimmed to its own longest sample (rounded up to
    ``frame_multiple``), so memory is bounded by the budget rather than by the batch's slowest sample.
    """
    lengths = batch["frame_mask"].sum(1).tolist()
    if max_frames <= 0 or len(lengths) * batch["frame_mask"].shape[1] <= max_frames:
        return [batch]
    parts = []
    for group in pack_by_length(lengths, max_frames, frame_multiple=frame_multiple):
        longest = round_up(max(max(lengths[i] for i in group), 1), frame_multiple)
        part = {key: (value[group, :longest] if key in ("pose", "point_mask", "frame_mask")
                      else [value[i] for i in group]) for key, value in batch.items()}
        parts.append(part)
    return parts
