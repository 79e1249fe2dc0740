"""Hostile input for every reader: each file either loads as a valid sample or raises our own error naming it.

Hypothesis drives random bytes, truncations and byte flips of real files, arrays of every
rank/dtype/shape with NaN and inf, hostile metadata and manifests. Reading must never raise a raw
numpy/struct/Unicode error, and a sample that loads must also go through ``prepare_sample``.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import pickle
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from signt5.data.dataset import DataConfig, prepare_sample
from signt5.errors import ManifestError, PoseDataError, SignT5Error
from signt5.data.manifest import ManifestEntry, check_labels, read_manifest, write_manifest
from signt5.data.readers import load_sample, read_pose_file, read_samples
from signt5.data.sample import PoseSample
from signt5.models.text import byte_tokenizer, tokenize_targets

FUZZ = settings(max_examples=30, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])
SUFFIXES = (".pose", ".pkl", ".npy", ".npz")
READ_SECONDS = 10.0  # one small file taking longer than this would be a hang


def _check_sample(sample: PoseSample) -> None:
    t, k, c = sample.coords.shape
    assert t > 0 and c in (2, 3) and sample.mask.shape == (t, k)
    assert sample.coords.dtype == np.float32 and np.isfinite(sample.coords).all()
    assert (sample.coords[~sample.mask] == 0).all() and sample.mask.any()


def loads_or_names_file(path: Path, read: Callable[[], object]) -> list[PoseSample]:
    """Run ``read``: the samples it returns are valid, or it raised a SignT5Error naming ``path``."""
    start = time.perf_counter()
    try:
        result = read()
    except SignT5Error as e:
        assert path.name in str(e), f"error does not name the file: {e}"
        return []
    finally:
        assert time.perf_counter() - start < READ_SECONDS
    samples = list(result.values()) if isinstance(result, dict) else [result]
    for sample in samples:
        _check_sample(sample)
        try:  # the whole pipeline, not just the reader: normalising must not crash either
            _check_sample(prepare_sample(sample, DataConfig(components="full", max_frames=64)))
        except SignT5Error as e:
            assert path.name in str(e), f"error does not name the file: {e}"
    return samples


def _every_reader(path: Path) -> list[PoseSample]:
    samples = loads_or_names_file(path, lambda: read_samples(path))
    loads_or_names_file(path, lambda: load_sample(path, sample_id=samples[0].sample_id if samples else None))
    return samples


@pytest.fixture(scope="module")
def real_files(real_clip_path, tmp_path_factory) -> dict[str, bytes]:
    """Valid files of every format, from the real clip: the seeds that truncations and flips damage."""
    folder = tmp_path_factory.mktemp("real_files")
    sample = read_pose_file(real_clip_path)
    arr = np.concatenate([sample.coords, sample.mask[..., None].astype(np.float32)], axis=-1)
    (folder / "a.pkl").write_bytes(pickle.dumps({"a": {"keypoints": arr, "gloss": "A", "fps": 25.0}}))
    np.save(folder / "a.npy", sample.coords)
    np.savez(folder / "a.npz", keypoints=sample.coords, confidence=sample.mask.astype(np.float32), fps=25.0)
    files = {".pose": real_clip_path.read_bytes()}
    files.update({s: (folder / f"a{s}").read_bytes() for s in (".pkl", ".npy", ".npz")})
    return files


def _write(data: bytes, suffix: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="fuzz"))
    path = folder / f"hostile{suffix}"
    path.write_bytes(data)
    return path


@FUZZ
@given(data=st.binary(max_size=4096), suffix=st.sampled_from(SUFFIXES))
def test_random_bytes(data, suffix):
    assert _every_reader(_write(data, suffix)) == []


@FUZZ
@given(suffix=st.sampled_from(SUFFIXES), cut=st.floats(0, 1, exclude_max=True))
def test_truncated_real_files(real_files, suffix, cut):
    data = real_files[suffix]
    samples = _every_reader(_write(data[: int(len(data) * cut)], suffix))
    # a cut inside the data must never pass as a shorter clip (npz's zip directory is at the end; pickles stop early)
    assert samples == [] or suffix == ".pose" and samples[0].num_frames == 0


@FUZZ
@given(suffix=st.sampled_from(SUFFIXES), flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True),
                                                                  st.integers(1, 255)), min_size=1, max_size=4))
def test_corrupted_real_files(real_files, suffix, flips):
    data = bytearray(real_files[suffix])
    for where, xor in flips:
        data[int(len(data) * where)] ^= xor
    _every_reader(_write(bytes(data), suffix))


def test_intact_real_files_load(real_files):
    for suffix, data in real_files.items():
        (sample,) = _every_reader(_write(data, suffix))
        assert sample.num_points == 586 and sample.num_frames > 1


# --- arrays of every rank, dtype and shape ------------------------------------------------------------

DTYPES = st.sampled_from(["float16", "float32", "float64", "int8", "int32", "int64", "uint8", "bool", "complex64"])
DIM = st.sampled_from([0, 1, 2, 3])
POINTS = st.sampled_from([0, 1, 137, 178])
CHANNELS = st.sampled_from([1, 2, 3, 4, 5])


@st.composite
def hostile_arrays(draw) -> np.ndarray:
    rank = draw(st.integers(1, 5))
    if rank >= 3:  # (..., points, channels) with a real layout's point count often enough to get past it
        shape = tuple(draw(DIM) for _ in range(rank - 2)) + (draw(POINTS), draw(CHANNELS))
    else:
        shape = tuple(draw(st.integers(0, 8)) for _ in range(rank))
    dtype = np.dtype(draw(DTYPES))
    fill = draw(st.sampled_from(["random", "nan", "inf", "zeros", "mixed"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    values = rng.uniform(1, 500, shape)
    if fill == "nan":
        values[:] = np.nan
    elif fill == "inf":
        values[:] = np.inf
    elif fill == "zeros":
        values[:] = 0
    elif fill == "mixed" and values.size:
        values.flat[rng.integers(0, values.size, max(1, values.size // 3))] = rng.choice([np.nan, np.inf, -np.inf, 0])
    with np.errstate(invalid="ignore", over="ignore"):
        return values.astype(dtype) if dtype.kind in "fc" else np.nan_to_num(values, posinf=1, neginf=1).astype(dtype)


@FUZZ
@given(array=hostile_arrays(), container=st.sampled_from(["npy", "npz", "npz_keypoints", "pkl", "pkl_record"]))
def test_hostile_arrays(array, container):
    if container == "npy":
        buf = io.BytesIO()
        np.save(buf, array)
        path = _write(buf.getvalue(), ".npy")
    elif container.startswith("npz"):
        buf = io.BytesIO()
        np.savez(buf, **({"keypoints": array} if container == "npz_keypoints" else {"s1": array}))
        path = _write(buf.getvalue(), ".npz")
    else:
        record = {"keypoints": array, "gloss": "X"} if container == "pkl_record" else array
        path = _write(pickle.dumps({"s1": record}), ".pkl")
    samples = _every_reader(path)
    usable = array.ndim in (3, 4) and array.dtype.kind in "fiu" and array.shape[0] > 0 and \
        array.shape[-2] in (137, 178) and array.shape[-1] in (2, 3, 4) and (array.ndim == 3 or array.shape[1] > 0)
    if not usable:
        assert samples == []


@FUZZ
@given(fps=st.one_of(st.none(), st.text(max_size=5), st.floats(allow_nan=True), st.integers(-5, 10**9),
                     st.lists(st.integers(), max_size=2)),
       resolution=st.one_of(st.none(), st.integers(), st.text(max_size=3),
                            st.lists(st.integers(-10, 10**6), max_size=4)),
       layout=st.one_of(st.none(), st.text(max_size=8), st.integers(), st.sampled_from(["openpose_137",
                                                                                         "holistic_586"])),
       confidence=st.one_of(st.none(), st.text(max_size=3), st.tuples(DIM, POINTS), st.just((4, 137))),
       person=st.one_of(st.integers(-2, 3), st.just("most_confident")))
def test_hostile_metadata(fps, resolution, layout, confidence, person):
    record = {"keypoints": np.random.default_rng(0).uniform(1, 400, (4, 137, 2)).astype(np.float32)}
    for key, value in (("fps", fps), ("resolution", resolution), ("layout", layout)):
        if value is not None:
            record[key] = value
    if isinstance(confidence, tuple):
        record["confidence"] = np.ones(confidence, np.float32)
    elif confidence is not None:
        record["confidence"] = confidence
    path = _write(pickle.dumps({"s1": record}), ".pkl")
    loads_or_names_file(path, lambda: load_sample(path, "s1", person=person))
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in record.items() if not isinstance(v, list) or v})
    npz = _write(buf.getvalue(), ".npz")
    loads_or_names_file(npz, lambda: read_samples(npz, person=person))


# --- frame counts, missing data -----------------------------------------------------------------------

@pytest.mark.parametrize("frames", [1, 2])
def test_one_and_two_frames_go_through_the_pipeline(tmp_path, frames):
    np.save(tmp_path / "short.npy", np.random.default_rng(0).uniform(50, 400, (frames, 137, 2)).astype(np.float32))
    (sample,) = read_samples(tmp_path / "short.npy").values()
    prepared = prepare_sample(sample.replace(fps=30.0), DataConfig())
    assert prepared.num_frames == (1 if frames == 1 else 2) and np.isfinite(prepared.coords).all()


def test_all_missing_hands_load_masked(tmp_path):
    arr = np.random.default_rng(0).uniform(50, 400, (6, 137, 3)).astype(np.float32)
    arr[:, 95:137] = 0  # OpenPose writes undetected hands as zeros
    np.save(tmp_path / "nohands.npy", arr)
    (sample,) = read_samples(tmp_path / "nohands.npy").values()
    assert not sample.mask[:, 95:].any() and sample.mask[:, :95].all()
    prepared = prepare_sample(sample, DataConfig(components="hands"))
    hands = slice(prepared.num_points - 42, prepared.num_points)
    assert not prepared.mask[:, hands].any() and (prepared.coords[:, hands] == 0).all()


def test_100k_frames_cropped_with_warning_in_bounded_memory(tmp_path, caplog):
    """Peak memory stays a small multiple of the file itself, and the crop is announced."""
    arr = np.random.default_rng(0).uniform(50, 400, (100_000, 137, 2)).astype(np.float32)
    np.save(tmp_path / "long.npy", arr)
    file_mib = arr.nbytes / 2**20
    del arr
    tracemalloc.start()
    try:
        with caplog.at_level(logging.WARNING, logger="signt5.data.dataset"):
            (sample,) = read_samples(tmp_path / "long.npy").values()
            prepared = prepare_sample(sample, DataConfig(max_frames=512, components="full"))
            del sample
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert prepared.coords.shape == (512, 137, 2) and np.isfinite(prepared.coords).all()
    assert "100000 frames cropped to the centre 512" in caplog.text and "long.npy" in caplog.text
    peak_mib = peak / 2**20
    print(f"100k frames: file {file_mib:.0f} MiB, peak traced {peak_mib:.0f} MiB")
    assert peak_mib < 3.5 * file_mib


def test_crop_keeps_the_centre(tmp_path):
    arr = np.zeros((1000, 137, 2), np.float32)
    arr[..., 0] = np.arange(1000, dtype=np.float32)[:, None] + 100  # x grows with time
    arr[..., 1] = 200 + np.arange(137)
    np.save(tmp_path / "ramp.npy", arr)
    (sample,) = read_samples(tmp_path / "ramp.npy").values()
    full = prepare_sample(sample, DataConfig(normalization="none", components="full"))
    cropped = prepare_sample(sample, DataConfig(normalization="none", components="full", max_frames=100))
    assert cropped.num_frames == 100
    np.testing.assert_allclose(cropped.coords, full.coords[450:550])


# --- labels and manifests -----------------------------------------------------------------------------

LABELS = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)


@FUZZ
@given(label=LABELS, fmt=st.sampled_from([".csv", ".jsonl"]))
def test_labels_in_any_script_round_trip_to_the_tokenizer(label, fmt):
    """Text in scripts the tokenizer has never seen is bytes to it: every label encodes and decodes back."""
    folder = Path(tempfile.mkdtemp(prefix="fuzz"))
    manifest = folder / f"m{fmt}"
    write_manifest([ManifestEntry("a", folder / "a.pose", text=label, gloss=label, split="train")], manifest)
    (entry,) = read_manifest(manifest)
    assert entry.gloss == label.strip()
    if not entry.gloss.strip():
        with pytest.raises(ManifestError, match="empty 'gloss'"):
            check_labels([entry], "gloss", manifest)
        return
    tokenizer = byte_tokenizer()
    ids = tokenize_targets(tokenizer, [entry.gloss], max_length=None)
    assert int(ids.max()) < len(tokenizer)
    assert tokenizer.decode(ids[0], skip_special_tokens=True) == entry.gloss


def test_lone_surrogate_label_is_a_manifest_error(tmp_path):
    (tmp_path / "m.jsonl").write_text('{"id": "a", "path": "a.pose", "text": "ok \\ud800"}\n')
    with pytest.raises(ManifestError, match=r"m.jsonl:1: column 'text'.*not valid Unicode"):
        read_manifest(tmp_path / "m.jsonl")


@FUZZ
@given(data=st.binary(max_size=2048), suffix=st.sampled_from([".csv", ".jsonl"]))
def test_manifest_random_bytes(data, suffix):
    path = _write(data, suffix)
    try:
        read_manifest(path)
    except ManifestError as e:
        assert path.name in str(e)


@FUZZ
@given(rows=st.lists(st.dictionaries(st.sampled_from(["id", "path", "text", "gloss", "split", "key", "x"]),
                                     st.one_of(st.text(max_size=10), st.integers(), st.none(),
                                               st.lists(st.integers(), max_size=2)), max_size=7), max_size=5),
       fmt=st.sampled_from([".csv", ".jsonl"]))
def test_manifest_hostile_rows(rows, fmt):
    folder = Path(tempfile.mkdtemp(prefix="fuzz"))
    path = folder / f"m{fmt}"
    if fmt == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            for r in rows:
                writer.writerow([str(v) for v in r.values()])
    try:
        entries = read_manifest(path)
    except ManifestError as e:
        assert path.name in str(e)
        return
    assert all(e.id and str(e.path) for e in entries)
