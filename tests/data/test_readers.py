"""Readers: .pose, the seed's data.pkl (restricted unpickler), .npy/.npz, manifests; bad input named clearly."""

from __future__ import annotations

import io
import os
import pickle
import subprocess

import numpy as np
import pytest
from pose_format import Pose
from pose_format.numpy import NumPyPoseBody
from pose_format.utils.generic import fake_pose

from signt5.errors import ManifestError, PoseDataError, UnsafePickleError
from signt5.data.layout import known_layouts, layout_by_name
from signt5.data.manifest import check_labels, read_manifest
from signt5.data.readers import read_numpy, read_pickle, read_pose_file, read_samples, write_pose_file


def _write_pose(pose: Pose, path):
    buf = io.BytesIO()
    pose.write(buf)
    path.write_bytes(buf.getvalue())
    return path


# --- .pose ---------------------------------------------------------------------------------------

def test_real_pose_file_layout_comes_from_header(real_clip_path):
    sample = read_pose_file(real_clip_path)
    assert sample.layout.name == "holistic_586"
    assert sample.coords.shape == (sample.num_frames, 586, 3)
    assert sample.resolution == (500, 500) and sample.fps == 25.0
    # the ASL lexicon removed the left hand: all of it must be masked, never (0, 0) coordinates
    left = sample.layout.component_slice("LEFT_HAND_LANDMARKS")
    assert not sample.mask[:, left].any()
    assert sample.mask[:, sample.layout.component_slice("RIGHT_HAND_LANDMARKS")].all()


def test_pose_round_trip(tmp_path, real_clip):
    write_pose_file(real_clip, tmp_path / "a.pose")
    back = read_pose_file(tmp_path / "a.pose")
    np.testing.assert_allclose(back.coords, real_clip.coords)
    np.testing.assert_array_equal(back.mask, real_clip.mask)
    assert back.layout.same_points(real_clip.layout) and back.fps == real_clip.fps


def test_openpose_file_and_most_confident_person(tmp_path):
    pose = fake_pose(8, num_people=2, components=layout_by_name("openpose_137").to_pose_header().components)
    pose.body.confidence[:, 0] = 0.2
    pose.body.confidence[:, 1] = 0.9
    pose.header.dimensions.width, pose.header.dimensions.height = 640, 480
    sample = read_pose_file(_write_pose(pose, tmp_path / "two_people.pose"))
    assert sample.layout.name == "openpose_137"
    np.testing.assert_allclose(sample.coords, np.asarray(pose.body.data[:, 1], dtype=np.float32), rtol=1e-6)
    assert read_pose_file(tmp_path / "two_people.pose", person=0).coords[0, 0, 0] == pytest.approx(
        float(pose.body.data[0, 0, 0, 0]))


@pytest.mark.parametrize("cut", [0, 10, 2000, -7])
def test_truncated_pose_is_a_clear_error(tmp_path, real_clip_path, cut):
    data = real_clip_path.read_bytes()
    bad = tmp_path / "broken.pose"
    bad.write_bytes(data[:cut] if cut >= 0 else data[:cut])
    with pytest.raises(PoseDataError, match="broken.pose"):
        read_pose_file(bad)


def test_random_bytes_pose(tmp_path):
    bad = tmp_path / "noise.pose"
    bad.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(PoseDataError, match="noise.pose"):
        read_pose_file(bad)


def test_zero_frame_pose(tmp_path, real_clip_path):
    pose = Pose.read(real_clip_path.read_bytes())
    empty = NumPyPoseBody(25.0, np.ma.zeros((0, 1, 586, 3), dtype=np.float32), np.zeros((0, 1, 586), np.float32))
    path = _write_pose(Pose(pose.header, empty), tmp_path / "empty.pose")
    with pytest.raises(PoseDataError, match="empty.pose.*zero frames"):
        read_pose_file(path)


# --- data.pkl --------------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", [l.name for l in known_layouts()])
def test_pickle_layout_recognised_from_count(tmp_path, layout):
    n = layout_by_name(layout).num_points
    arr = np.random.default_rng(0).uniform(1, 100, (6, n, 3)).astype(np.float32)
    path = tmp_path / "data.pkl"
    path.write_bytes(pickle.dumps({"s1": arr}))
    sample = read_pickle(path)["s1"]
    assert sample.layout.name == layout and sample.sample_id == "s1"
    np.testing.assert_allclose(sample.coords, arr)


def test_pickle_records_with_labels_and_confidence(tmp_path):
    arr = np.random.default_rng(0).uniform(1, 100, (5, 137, 4)).astype(np.float32)
    arr[:, :10, 3] = 0  # confidence 0: missing
    path = tmp_path / "data.pkl"
    path.write_bytes(pickle.dumps({"a": {"keypoints": arr, "text": "hello", "gloss": "H E L L O", "fps": 30}}))
    sample = read_pickle(path)["a"]
    assert sample.labels == {"text": "hello", "gloss": "H E L L O"} and sample.fps == 30
    assert sample.coords.shape == (5, 137, 3)
    assert not sample.mask[:, :10].any() and sample.mask[:, 10:].all()
    assert (sample.coords[:, :10] == 0).all()


def test_pickle_unknown_keypoint_count_names_sample_and_known_counts(tmp_path):
    path = tmp_path / "data.pkl"
    path.write_bytes(pickle.dumps({"odd": np.ones((4, 100, 2), np.float32)}))
    with pytest.raises(PoseDataError, match=r"data.pkl.*'odd'.*100 keypoints.*543"):
        read_pickle(path)


class _SystemExploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _EvalExploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"open({str(self.marker)!r}, 'w').close()",))


class _SubprocessExploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (subprocess.call, (["touch", str(self.marker)],))


@pytest.mark.parametrize("exploit", [_SystemExploit, _EvalExploit, _SubprocessExploit])
def test_pickle_that_runs_code_is_refused(tmp_path, exploit):
    marker = tmp_path / "pwned"
    path = tmp_path / "data.pkl"
    path.write_bytes(pickle.dumps({"x": np.zeros((2, 137, 2)), "y": exploit(marker)}))
    with pytest.raises(UnsafePickleError, match="refused"):
        read_pickle(path)
    assert not marker.exists()


def test_pickle_not_a_dict_and_truncated(tmp_path):
    path = tmp_path / "data.pkl"
    path.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(PoseDataError, match="dict of sample_id"):
        read_pickle(path)
    good = pickle.dumps({"a": np.ones((3, 137, 2), np.float32)})
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(PoseDataError, match="data.pkl.*not a readable pickle"):
        read_pickle(path)


# --- .npy / .npz --------------------------------------------------------------------------------------

def test_npy_and_npz(tmp_path):
    arr = np.random.default_rng(1).uniform(1, 50, (7, 553, 3)).astype(np.float32)
    np.save(tmp_path / "one.npy", arr)
    assert read_samples(tmp_path / "one.npy")["one"].layout.name == "holistic_553"
    np.savez(tmp_path / "single.npz", keypoints=arr, confidence=np.ones((7, 553)), fps=np.array(29.97))
    single = read_numpy(tmp_path / "single.npz")["single"]
    assert single.fps == pytest.approx(29.97)
    np.savez(tmp_path / "many.npz", a=arr, b=arr[:3])
    many = read_numpy(tmp_path / "many.npz")
    assert set(many) == {"a", "b"} and many["b"].num_frames == 3


def test_npz_bombs_fail_before_they_unpack(tmp_path, monkeypatch):
    """An archive over the size limit, and a member whose header claims more data than it holds (numpy would
    allocate the claimed shape first), are refused naming the file; a small honest archive still reads."""
    import zipfile

    import signt5.data.readers as readers

    zeros = np.zeros((400, 553, 3), np.float32)  # 2.6 MB unpacked, a few KB deflated
    np.savez_compressed(tmp_path / "bomb.npz", keypoints=zeros)
    monkeypatch.setattr(readers, "MAX_ARCHIVE_BYTES", 2**20)
    with pytest.raises(PoseDataError, match="bomb.npz.*unpacks to .* over the"):
        read_numpy(tmp_path / "bomb.npz")
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                  "shape": (10**9, 553, 3)})
    with zipfile.ZipFile(tmp_path / "liar.npz", "w") as archive:
        archive.writestr("keypoints.npy", header.getvalue() + b"\0" * 64)  # magic and header, then 64 bytes
    with pytest.raises(PoseDataError, match="liar.npz.*claims .* bytes of array data but holds"):
        read_numpy(tmp_path / "liar.npz")
    np.savez(tmp_path / "fine.npz", keypoints=zeros[:20] + 1)
    assert read_numpy(tmp_path / "fine.npz")["fine"].num_frames == 20


@pytest.mark.parametrize("array, message", [
    (np.zeros((0, 137, 2), np.float32), "zero frames"),
    (np.full((3, 137, 2), np.nan, np.float32), "no valid keypoint"),
    (np.full((3, 137, 2), np.inf, np.float32), "no valid keypoint"),
    (np.ones((3, 137), np.float32), "shape"),
    (np.ones((3, 137, 5), np.float32), "channels"),
    (np.array([["a", "b"]]), "numbers"),
])
def test_bad_arrays_name_the_file(tmp_path, array, message):
    np.save(tmp_path / "bad.npy", array)
    with pytest.raises(PoseDataError, match=f"bad.npy.*{message}"):
        read_samples(tmp_path / "bad.npy")


def test_nan_and_inf_points_are_masked_not_fatal(tmp_path):
    arr = np.random.default_rng(2).uniform(1, 50, (4, 137, 2)).astype(np.float32)
    arr[0, 3] = np.nan
    arr[1, 4, 0] = np.inf
    np.save(tmp_path / "holes.npy", arr)
    sample = read_samples(tmp_path / "holes.npy")["holes"]
    assert not sample.mask[0, 3] and not sample.mask[1, 4]
    assert np.isfinite(sample.coords).all() and sample.mask.sum() == 4 * 137 - 2


def test_unknown_suffix(tmp_path):
    (tmp_path / "x.mp4").write_bytes(b"")
    with pytest.raises(PoseDataError, match="x.mp4.*unknown pose file type"):
        read_samples(tmp_path / "x.mp4")


# --- manifests ----------------------------------------------------------------------------------------

def test_manifest_csv_and_jsonl(tmp_path):
    (tmp_path / "m.csv").write_text("id,path,text,gloss,sign_language,split,extra\n"
                                    "a,poses/a.pose,hi,H I,ase,train,ignored\n")
    (entry,) = read_manifest(tmp_path / "m.csv")
    assert entry.path == tmp_path / "poses" / "a.pose" and entry.gloss == "H I" and entry.split == "train"
    (tmp_path / "m.jsonl").write_text('{"id": "b", "path": "data.pkl", "text": "yo", "sign_language": "gsg"}\n\n')
    (entry,) = read_manifest(tmp_path / "m.jsonl")
    assert entry.sample_key == "b" and entry.gloss == ""
    with pytest.raises(ManifestError, match="empty 'gloss'"):
        check_labels([entry], "gloss", "m.jsonl")


@pytest.mark.parametrize("content, message", [
    ("id,text\na,hi\n", r"missing column\(s\) \['path'\]"),
    ("id,path,sign_language\na,x.pose,ase\n", "text or gloss"),
    ("id,path,text\na,x.pose,hi\na,y.pose,ho\n", "m.csv:3: duplicate id 'a'"),
    ("id,path,text\n,x.pose,hi\n", "m.csv:2: empty or missing id"),
    ("id,path,text\n", "no rows"),
])
def test_manifest_errors(tmp_path, content, message):
    (tmp_path / "m.csv").write_text(content)
    with pytest.raises(ManifestError, match=message):
        read_manifest(tmp_path / "m.csv")
