"""`signt5 pose` in process on real video: a photograph of a person, nobody, not a video; resuming, manifest, workers.

The person is scikit-image's astronaut photograph, moved 3 pixels right in each frame of a 640x480 video:
MediaPipe finds her body and face, and no hands (her hands are out of the picture).
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace

import numpy as np
import pytest

from signt5.cli import main
from signt5.data import video as video_module
from signt5.errors import VideoError
from signt5.data.manifest import read_manifest, write_manifest
from signt5.data.readers import read_pose_file
from signt5.data.video import extract_videos, read_video_info

from ..video_clips import astronaut_frames, empty_frames, write_video

pytest.importorskip("mediapipe", reason="pose extraction needs mediapipe (pip install 'signt5[video]')")


@pytest.fixture(scope="module")
def astronaut(tmp_path_factory):
    """30 frames (1.2 s at 25 fps) of the photograph sliding right."""
    return write_video(tmp_path_factory.mktemp("videos") / "astronaut.mp4", astronaut_frames(30))


def _part_share(sample, component: str) -> np.ndarray:
    """Per frame, whether any point of ``component`` was found."""
    return sample.mask[:, sample.layout.component_slice(component)].any(axis=1)


def test_pose_of_a_photograph_of_a_person(astronaut, tmp_path, capsys, caplog):
    caplog.set_level(logging.INFO, logger="signt5")
    out = tmp_path / "poses"
    assert main(["pose", str(astronaut), "--output_dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "wrote 1 .pose file(s)" in printed and "1 with no hands seen" in printed

    sample = read_pose_file(out / "astronaut.pose")
    assert sample.layout.name == "holistic_576" and sample.num_frames == 30
    assert sample.fps == 25.0 and sample.resolution == (640, 480) and sample.coordinate_space == "pixels"
    assert _part_share(sample, "POSE_LANDMARKS").mean() >= 0.9
    assert _part_share(sample, "FACE_LANDMARKS").mean() >= 0.9
    assert not _part_share(sample, "LEFT_HAND_LANDMARKS").any()
    assert not _part_share(sample, "RIGHT_HAND_LANDMARKS").any()
    nose = sample.coords[:, sample.layout.index("POSE_LANDMARKS", "NOSE")]
    slope = np.polyfit(np.arange(sample.num_frames), nose[:, 0], 1)[0]
    assert 2.0 < slope < 4.0, f"the nose should follow the photo's 3 px per frame, moved {slope:.2f}"
    assert 20 < nose[0, 0] < 532 and 0 < nose[0, 1] < 240, "the nose lies on the photo, in the frame's upper half"

    messages = [r.getMessage() for r in caplog.records]
    assert any("MediaPipe Holistic solution" in m and "0.10.21" in m for m in messages), "the backend is logged"
    assert any("no hands seen in any of its 30 frames" in m and "astronaut.mp4" in m for m in messages)
    entries = read_manifest(out / "manifest.csv")
    assert [(e.id, e.path.name, e.text, e.gloss) for e in entries] == [("astronaut", "astronaut.pose", "", "")]


def test_second_run_skips_finished_files_and_keeps_the_labels_added(tmp_path, capsys):
    videos = tmp_path / "videos"
    write_video(videos / "a.mp4", astronaut_frames(6))
    write_video(videos / "signer2" / "b.mp4", astronaut_frames(6, shift=-2))
    out = tmp_path / "poses"
    assert main(["pose", str(videos), "--output_dir", str(out), "--sign_language", "ase"]) == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.pose")) == ["a.pose", "signer2/b.pose"]
    entries = read_manifest(out / "manifest.csv")
    assert [(e.id, e.sign_language) for e in entries] == [("a", "ase"), ("signer2/b", "ase")]
    write_manifest([replace(e, text=f"text of {e.id}") for e in entries], out / "manifest.csv")
    written = {p: p.stat().st_mtime_ns for p in out.rglob("*.pose")}
    capsys.readouterr()

    write_video(videos / "c.mp4", astronaut_frames(6))
    assert main(["pose", str(videos), "--output_dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "wrote 1 .pose file(s)" in printed and "2 already done, skipped" in printed
    assert {p: p.stat().st_mtime_ns for p in written} == written, "finished files are not redone"
    entries = {e.id: e for e in read_manifest(out / "manifest.csv")}
    assert sorted(entries) == ["a", "c", "signer2/b"]
    assert entries["a"].text == "text of a" and entries["signer2/b"].text == "text of signer2/b"
    assert entries["c"].text == "" and not list(out.rglob("*.tmp"))


def test_bad_videos_are_reported_by_name_and_the_others_kept(tmp_path, capsys, caplog):
    videos = tmp_path / "videos"
    write_video(videos / "good.mp4", astronaut_frames(6))
    write_video(videos / "nobody.mp4", empty_frames(6))
    (videos / "notes.mp4").write_text("not a video at all\n")
    (videos / "README.txt").write_text("not a video, and not named like one: ignored\n")
    out = tmp_path / "poses"
    assert main(["pose", str(videos), "--output_dir", str(out)]) == 2
    printed = capsys.readouterr().out
    assert "wrote 1 .pose file(s)" in printed and "2 video(s) failed:" in printed
    assert f"{videos / 'nobody.mp4'}: no person found in any of its 6 frames" in printed
    assert f"{videos / 'notes.mp4'}: not a readable video (Invalid data found" in printed
    assert [p.name for p in out.iterdir() if p.suffix == ".pose"] == ["good.pose"]
    assert [e.id for e in read_manifest(out / "manifest.csv")] == ["good"]


def test_a_single_bad_file_is_a_one_line_error(tmp_path, capsys):
    text = tmp_path / "clip.mp4"
    text.write_text("hello")
    assert main(["pose", str(text), "--output_dir", str(tmp_path / "out")]) == 2
    assert f"{text}: not a readable video" in capsys.readouterr().out
    with pytest.raises(VideoError, match="file not found"):
        read_video_info(tmp_path / "absent.mp4")
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoError, match="empty: no video files"):
        extract_videos(tmp_path / "empty", tmp_path / "out")


def test_two_worker_processes_give_the_same_poses(tmp_path):
    videos = tmp_path / "videos"
    for name, shift in (("a", 3), ("b", -3), ("c", 1)):
        write_video(videos / f"{name}.mp4", astronaut_frames(5, shift=shift))
    serial = extract_videos(videos, tmp_path / "serial", workers=1, progress=False)
    parallel = extract_videos(videos, tmp_path / "parallel", workers=2, progress=False)
    assert not serial.failed and not parallel.failed and len(parallel.written) == 3
    for name in "abc":
        one, two = (read_pose_file(tmp_path / run / f"{name}.pose") for run in ("serial", "parallel"))
        np.testing.assert_array_equal(one.mask, two.mask)
        np.testing.assert_allclose(one.coords, two.coords, atol=1e-3)


def test_an_interrupted_write_leaves_no_pose_file(astronaut, tmp_path, monkeypatch):
    from pose_format import Pose

    def broken_write(self, buffer):
        buffer.write(b"half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Pose, "write", broken_write)
    summary = extract_videos(astronaut, tmp_path, progress=False)
    assert "No space left on device" in summary.failed[str(astronaut)]
    assert sorted(os.listdir(tmp_path)) == [], "neither a .pose nor a temporary file is left"


def test_two_videos_writing_the_same_pose_file_is_a_failure(tmp_path):
    videos = tmp_path / "videos"
    write_video(videos / "clip.mp4", astronaut_frames(3))
    (videos / "clip.mov").write_bytes((videos / "clip.mp4").read_bytes())
    jobs, failed = video_module._jobs(videos, tmp_path / "out")
    assert [(v.name, o.name) for v, o, _ in jobs] == [("clip.mov", "clip.pose")]
    assert failed == {str(videos / "clip.mp4"): f"{videos / 'clip.mp4'}: skipped, {videos / 'clip.mov'} already "
                                                 "writes clip.pose"}
