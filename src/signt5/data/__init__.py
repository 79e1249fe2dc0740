"""Pose data: layouts, readers, manifests, normalisation, data sets and the fingerspelling corpus."""

from ..errors import LayoutError, ManifestError, PoseDataError, SignT5Error, UnsafePickleError
from .dataset import DataConfig, PoseDataset, SampleLoader, pad_batch, prepare_sample
from .item import PoseItem, pose_item
from .layout import KeypointLayout, known_layouts, layout_by_name, layout_for_count
from .manifest import ManifestEntry, read_manifest, write_manifest
from .readers import read_numpy, read_pickle, read_pose_file, read_samples, write_pose_file
from .sample import PoseSample

__all__ = [
    "DataConfig", "PoseDataset", "SampleLoader", "pad_batch", "prepare_sample", "PoseItem", "pose_item",
    "LayoutError", "ManifestError", "PoseDataError", "SignT5Error", "UnsafePickleError", "KeypointLayout",
    "known_layouts", "layout_by_name", "layout_for_count", "ManifestEntry", "read_manifest", "write_manifest",
    "read_numpy", "read_pickle", "read_pose_file", "read_samples", "write_pose_file", "PoseSample",
]
