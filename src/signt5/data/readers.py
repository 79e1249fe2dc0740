"""Readers for the pose formats users bring: ``.pose``, the seed's ``data.pkl``, ``.npy``/``.npz``.

Every failure is a :class:`PoseDataError` naming the file (and sample).
"""

from __future__ import annotations

import difflib
import io
import logging
import pickle
import struct
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from ..errors import LayoutError, PoseDataError, UnsafePickleError
from .layout import KeypointLayout, layout_by_name, layout_for_count
from .sample import PoseSample, sample_from_array, select_person

logger = logging.getLogger(__name__)

DEFAULT_FPS = 25.0
POSE_SUFFIXES = (".pose",)
ARRAY_SUFFIXES = (".npy", ".npz")
MAX_ARCHIVE_BYTES = 4 * 2**30  # what one .npz may unpack to: 100,000 frames x 586 points x 3 float32 is 0.7 GB
PICKLE_SUFFIXES = (".pkl", ".pickle")

# The only globals a data pickle may name: numpy's array/scalar reconstruction and plain containers.
_SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("collections", "OrderedDict"),
    # protocols 0 and 1 store an array's bytes as a latin-1 string turned back into bytes by this;
    # it only converts data between text and bytes
    ("_codecs", "encode"),
}


# What numpy and plain Python raise on values of the wrong type or shape (a float() of a string, an
# argmax of nothing, an axis that is not there): hostile input, not a bug, so it becomes a PoseDataError.
_VALUE_ERRORS = (ValueError, TypeError, IndexError, KeyError, AttributeError, OverflowError, struct.error,
                 np.exceptions.AxisError)


@contextmanager
def named_errors(source: str, sample_id: str | None = None) -> Iterator[None]:
    """Turn raw value errors and file-less LayoutErrors raised inside into a PoseDataError naming the file."""
    try:
        yield
    except PoseDataError:
        raise
    except LayoutError as e:
        raise PoseDataError(str(e), source=source, sample_id=sample_id) from None
    except _VALUE_ERRORS as e:
        raise PoseDataError(f"unusable value ({type(e).__name__}: {e})", source=source, sample_id=sample_id) from None


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that admits plain containers, strings, numbers and numpy arrays, nothing else.

    ``pickle.load`` runs whatever callable a file names; this one refuses every global
    outside a short allow-list before anything is called.
    """

    def __init__(self, file, source: str = ""):
        super().__init__(file)
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE_GLOBALS or (module == "numpy.dtypes" and name.endswith("DType")):
            return super().find_class(module, name)
        raise UnsafePickleError(
            f"refused to load: the pickle asks for {module}.{name}, and only plain containers and "
            "numpy arrays are allowed (pickle can run code; convert untrusted data to .npz or .pose)",
            source=self._source,
        )


def restricted_load(path: str | Path) -> Any:
    """Load a pickle through :class:`RestrictedUnpickler`, mapping every failure to a clear error."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            return RestrictedUnpickler(f, str(path)).load()
    except UnsafePickleError:
        raise
    except FileNotFoundError:
        raise PoseDataError("file not found", source=str(path)) from None
    except Exception as e:  # truncated or corrupt pickles raise many types
        raise PoseDataError(f"not a readable pickle ({type(e).__name__}: {e})", source=str(path)) from None


def read_pose_file(path: str | Path, person: int | str = "most_confident") -> PoseSample:
    """Read a ``.pose`` file with pose-format; the layout comes from the file's header."""
    from pose_format import Pose

    path = Path(path)
    source = str(path)
    try:
        buffer = path.read_bytes()
    except OSError as e:
        raise PoseDataError(f"cannot read file ({e.strerror})", source=source) from None
    try:
        pose = Pose.read(buffer)
        data = np.ma.getdata(pose.body.data)
        confidence = np.asarray(pose.body.confidence)
    except Exception as e:  # pose-format raises struct.error, ValueError, IndexError, ... on bad bytes
        raise PoseDataError(f"not a readable .pose file, truncated or corrupt ({type(e).__name__}: {e})",
                            source=source) from None
    expected = pose.header.total_points()
    if data.ndim != 4 or data.shape[2] != expected:
        raise PoseDataError(f"body shaped {data.shape} does not match the header's {expected} points", source=source)
    # pose-format reads a truncated body as fewer frames without complaint: check the byte count.
    frame_bytes = expected * data.shape[1] * (data.shape[3] + 1) * 4
    if data.shape[0] > 0 and len(buffer) < data.shape[0] * frame_bytes:
        raise PoseDataError("file is truncated: fewer bytes than its frames need", source=source)
    if data.shape[0] == 0:
        raise PoseDataError("has zero frames", source=source)
    with named_errors(source, path.stem):
        if np.ma.is_masked(pose.body.data):
            confidence = np.where(np.ma.getmaskarray(pose.body.data).any(axis=-1), 0.0, confidence)
        chosen = select_person(data, confidence, person, source)
        layout = KeypointLayout.from_pose_header(pose.header)
        dims = pose.header.dimensions
        resolution = (int(dims.width), int(dims.height)) if dims.width > 1 and dims.height > 1 else None
        space = "pixels" if resolution else "unknown"
        return sample_from_array(data[:, chosen], layout, fps=float(pose.body.fps),
                                 confidence=confidence[:, chosen], resolution=resolution, coordinate_space=space,
                                 sample_id=path.stem, source=source)


def _layout_for(array: np.ndarray, layout: str | KeypointLayout | None, source: str, sample_id: str | None):
    if isinstance(layout, KeypointLayout):
        return layout
    if isinstance(layout, str):
        return layout_by_name(layout)
    if array.ndim != 3:
        raise PoseDataError(f"expected keypoints shaped (frames, points, channels), got shape {array.shape}",
                            source=source, sample_id=sample_id)
    try:
        return layout_for_count(array.shape[-2])
    except LayoutError as e:
        raise PoseDataError(str(e), source=source, sample_id=sample_id) from None


def sample_from_record(record: Any, source: str, sample_id: str, *, fps: float = DEFAULT_FPS,
                       layout: str | KeypointLayout | None = None, resolution: tuple[int, int] | None = None,
                       person: int | str = "most_confident") -> PoseSample:
    """A sample from an array or a dict holding one (``keypoints``/``pose``/``data`` + labels and metadata).

    A 4-D array (frames, people, points, channels) is reduced to one person.
    """
    with named_errors(source, sample_id):
        return _sample_from_record(record, source, sample_id, fps=fps, layout=layout, resolution=resolution,
                                   person=person)


def _sample_from_record(record: Any, source: str, sample_id: str, *, fps: float,
                        layout: str | KeypointLayout | None, resolution: tuple[int, int] | None,
                        person: int | str) -> PoseSample:
    labels: dict = {}
    confidence = None
    if isinstance(record, Mapping):
        key = next((k for k in ("keypoints", "pose", "data", "poses") if k in record), None)
        if key is None:
            raise PoseDataError(f"dict has no keypoint array (looked for keypoints/pose/data/poses; "
                                f"keys: {sorted(map(str, record))[:10]})", source=source, sample_id=sample_id)
        array = record[key]
        confidence = record.get("confidence")
        fps = float(record.get("fps", fps))
        layout = record.get("layout", layout)
        if record.get("resolution") is not None:
            resolution = tuple(int(v) for v in record["resolution"])
        labels = {k: v for k, v in record.items() if isinstance(v, str) and k not in ("layout",)}
    else:
        array = record
    if resolution is not None and (len(resolution) != 2 or min(resolution) <= 0):
        raise PoseDataError(f"resolution must be (width, height) > 0, got {resolution}", source=source,
                            sample_id=sample_id)
    if not isinstance(array, np.ndarray):
        raise PoseDataError(f"keypoints must be a numpy array, got {type(array).__name__}", source=source,
                            sample_id=sample_id)
    if array.dtype.kind not in "fiu":
        raise PoseDataError(f"keypoints must be numbers, got dtype {array.dtype}", source=source, sample_id=sample_id)
    if confidence is not None:
        confidence = np.asarray(confidence, dtype=np.float32)
        if confidence.shape != array.shape[:-1]:
            raise PoseDataError(f"confidence shaped {confidence.shape} does not match keypoints {array.shape[:-1]}",
                                source=source, sample_id=sample_id)
    if array.ndim == 4:
        conf4 = confidence if confidence is not None else (array[..., 3] if array.shape[-1] == 4 else
                                                           np.isfinite(array).all(-1).astype(np.float32))
        chosen = select_person(array, np.asarray(conf4), person, f"{source} [{sample_id}]")
        array = array[:, chosen]
        if confidence is not None:
            confidence = np.asarray(confidence)[:, chosen]
    layout_obj = _layout_for(array, layout, source, sample_id)
    return sample_from_array(array, layout_obj, fps=fps, confidence=confidence, resolution=resolution,
                             sample_id=sample_id, source=source, labels=labels)


def read_pickle(path: str | Path, **kwargs) -> dict[str, PoseSample]:
    """Read the seed's ``data.pkl``: ``{sample_id: array}`` or ``{sample_id: {keypoints..., labels}}``."""
    source = str(path)
    content = restricted_load(path)
    if not isinstance(content, Mapping):
        raise PoseDataError(f"expected a dict of sample_id -> keypoints, got {type(content).__name__}", source=source)
    return {str(k): sample_from_record(v, source, str(k), **kwargs) for k, v in content.items()}


def read_pickle_keys(path: str | Path) -> Mapping[str, Any]:
    """The raw records of a ``data.pkl`` (restricted load), for reading one sample at a time."""
    content = restricted_load(path)
    if not isinstance(content, Mapping):
        raise PoseDataError(f"expected a dict of sample_id -> keypoints, got {type(content).__name__}", source=str(path))
    return {str(k): v for k, v in content.items()}


def check_archive_sizes(path: Path, limit: int | None = None) -> None:
    """Refuse an ``.npz`` that would unpack past ``limit`` bytes, or whose arrays claim more data than their
    members hold (numpy allocates the claimed shape first): a zip bomb fails before it unpacks."""
    limit = MAX_ARCHIVE_BYTES if limit is None else limit
    with zipfile.ZipFile(path) as archive:
        members = archive.infolist()
        total = sum(info.file_size for info in members)
        if total > limit:
            raise PoseDataError(f"the archive unpacks to {total / 2**30:.1f} GiB, over the {limit / 2**30:.1f} GiB "
                                f"limit for one file (a zip bomb, or split it into several files)", source=str(path))
        for info in members:
            with archive.open(info) as member:
                try:
                    version = np.lib.format.read_magic(member)
                    header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                              else np.lib.format.read_array_header_2_0)
                    shape, _, dtype = header(member)
                except ValueError:
                    continue  # not an array member; np.load names the problem
            claimed = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            if claimed > info.file_size:
                raise PoseDataError(f"member {info.filename!r} claims {claimed} bytes of array data but holds "
                                    f"{info.file_size}", source=str(path))


def read_numpy(path: str | Path, **kwargs) -> dict[str, PoseSample]:
    """``.npy`` holds one sample; ``.npz`` holds one (``keypoints`` + ``confidence``/``fps``) or many by name."""
    path = Path(path)
    source = str(path)
    try:
        with path.open("rb") as f:
            magic = f.read(6)
    except OSError as e:
        raise PoseDataError(f"cannot read file ({e.strerror or e})", source=source) from None
    if not magic.startswith((b"\x93NUMPY", b"PK")):  # np.load would take anything else for a pickle
        raise PoseDataError("not a numpy file: it starts with neither the .npy nor the .npz (zip) signature",
                            source=source)
    try:
        if magic.startswith(b"PK"):
            check_archive_sizes(path)
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            arrays = None
        else:
            with loaded:
                arrays = {k: loaded[k] for k in loaded.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise PoseDataError(f"not a readable numpy file ({type(e).__name__}: {e})", source=source) from None
    if arrays is None:
        return {path.stem: sample_from_record(loaded, source, path.stem, **kwargs)}
    if any(k in arrays for k in ("keypoints", "pose", "data")):
        record: dict[str, Any] = dict(arrays)
        with named_errors(source, path.stem):
            if "fps" in record:
                record["fps"] = float(np.asarray(record["fps"]).reshape(-1)[0])
            if "resolution" in record:
                record["resolution"] = tuple(int(v) for v in np.asarray(record["resolution"]).reshape(-1)[:2])
            if "layout" in record:
                record["layout"] = str(record["layout"])
        return {path.stem: sample_from_record(record, source, path.stem, **kwargs)}
    if not arrays:
        raise PoseDataError("archive holds no arrays", source=source)
    return {k: sample_from_record(v, source, k, **kwargs) for k, v in arrays.items()}


def read_samples(path: str | Path, **kwargs) -> dict[str, PoseSample]:
    """Read every sample of a file, choosing the reader by suffix."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in POSE_SUFFIXES:
        sample = read_pose_file(path, person=kwargs.get("person", "most_confident"))
        return {sample.sample_id: sample}
    if suffix in PICKLE_SUFFIXES:
        return read_pickle(path, **kwargs)
    if suffix in ARRAY_SUFFIXES:
        return read_numpy(path, **kwargs)
    raise PoseDataError(f"unknown pose file type {suffix!r}; expected one of "
                        f"{POSE_SUFFIXES + PICKLE_SUFFIXES + ARRAY_SUFFIXES}", source=str(path))


def pick_sample_id(ids: Sequence[str], sample_id: str | None, source: str) -> str:
    """Resolve the requested sample id, or raise listing close matches (or the file's ids)."""
    if sample_id is None:
        if len(ids) == 1:
            return ids[0]
        shown = ", ".join(ids[:10]) + (", ..." if len(ids) > 10 else "")
        raise PoseDataError(f"the file holds {len(ids)} samples; choose one with a sample id ({shown})", source=source)
    if sample_id in ids:
        return sample_id
    close = difflib.get_close_matches(sample_id, ids, n=5, cutoff=0.6)
    hint = (f"close matches: {', '.join(close)}" if close else
            f"no close match; the file's first ids: {', '.join(ids[:5])}{', ...' if len(ids) > 5 else ''}")
    raise PoseDataError(f"no sample {sample_id!r} among {len(ids)}; {hint}", source=source)


def load_sample(input_file: str | Path, sample_id: str | None = None,
                person: int | str = "most_confident") -> PoseSample:
    """Read one sample from a ``.pose`` file, a ``data.pkl`` or an ``.npz``, choosing it by id."""
    path = Path(input_file)
    if not path.is_file():
        raise PoseDataError("file not found", source=str(path))
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        records = read_pickle_keys(path)
        chosen = pick_sample_id(list(records), sample_id, str(path))
        return sample_from_record(records[chosen], str(path), chosen, person=person)
    if suffix in POSE_SUFFIXES:
        sample = read_pose_file(path, person=person)
        pick_sample_id([str(sample.sample_id)], sample_id, str(path))
        return sample
    if suffix in ARRAY_SUFFIXES:
        samples = read_samples(path, person=person)
        return samples[pick_sample_id(list(samples), sample_id, str(path))]
    raise PoseDataError(f"unknown pose file type {suffix!r}; expected one of "
                        f"{POSE_SUFFIXES + PICKLE_SUFFIXES + ARRAY_SUFFIXES}", source=str(path))


def write_pose_file(sample: PoseSample, path: str | Path) -> None:
    """Write a sample as a ``.pose`` file (pose-format), atomically; missing points get confidence 0."""
    from pose_format import Pose
    from pose_format.numpy import NumPyPoseBody

    path = Path(path)
    width, height = sample.resolution or (1, 1)
    dims = sample.coords.shape[-1]
    header = sample.layout.to_pose_header(width, height, depth=width if dims == 3 else 0, dims=dims)
    data = np.ma.masked_array(sample.coords[:, None], mask=np.repeat(~sample.mask[:, None, :, None], dims, axis=-1))
    body = NumPyPoseBody(fps=sample.fps, data=data, confidence=sample.mask[:, None].astype(np.float32))
    buffer = io.BytesIO()
    Pose(header, body).write(buffer)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(buffer.getvalue())
    tmp.replace(path)
