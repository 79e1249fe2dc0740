"""`signt5 infer` and `signt5 visualize` on videos, in process, with the tiny trained model.

The tiny model's text is junk: the checks compare the video's prediction with the model's prediction on the
``.pose`` file that ``--save_pose`` kept, never with hard-coded text.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import replace

import pytest

from signt5.cli import main
from signt5.data.manifest import read_manifest, write_manifest
from signt5.data.readers import read_pose_file
from signt5.decoding.predictor import Predictor

from .conftest import tiny_train_args
from .video_clips import astronaut_frames, empty_frames, write_video

pytest.importorskip("mediapipe", reason="pose extraction needs mediapipe (pip install 'signt5[video]')")


@pytest.fixture(scope="module")
def astronaut(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("videos") / "astronaut.mp4", astronaut_frames(30))


def test_infer_on_a_video_runs_end_to_end_and_says_no_hands_were_seen(tiny_model, astronaut, tmp_path, capsys,
                                                                      caplog):
    caplog.set_level(logging.INFO, logger="signt5")
    saved = tmp_path / "poses"
    capsys.readouterr()
    assert main(["infer", "--model_dir", str(tiny_model), "--input_file", str(astronaut), "--save_pose", str(saved),
                 "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["id"] == "astronaut" and printed["source"] == str(astronaut)
    messages = [r.getMessage() for r in caplog.records]
    assert any(f"{astronaut}: no hands seen in any of its 30 frames" in m for m in messages)
    assert any(re.search(r"poses of 1 video\(s\) in [\d.]+ s \(30 frames estimated", m) for m in messages)
    assert [e.id for e in read_manifest(saved / "manifest.csv")] == ["astronaut"]
    kept = read_pose_file(saved / "astronaut.pose")
    assert printed["text"] == Predictor.load(tiny_model).predict_samples([kept])[0]


def test_infer_on_a_folder_prints_the_good_videos_and_names_the_bad(tiny_model, tmp_path, capsys):
    videos = tmp_path / "videos"
    write_video(videos / "one.mp4", astronaut_frames(6))
    write_video(videos / "two.mp4", astronaut_frames(6, shift=-3))
    write_video(videos / "nobody.mp4", empty_frames(6))
    capsys.readouterr()
    assert main(["infer", "--model_dir", str(tiny_model), "--input_file", str(videos)]) == 2
    printed = capsys.readouterr()
    assert [line.split("\t")[0] for line in printed.out.splitlines()] == ["one", "two"]
    assert f"1 video(s) failed:\n  {videos / 'nobody.mp4'}: no person found in any of its 6 frames" in printed.err


def test_infer_on_a_video_without_a_person_is_a_one_line_error(tiny_model, tmp_path, capsys):
    nobody = write_video(tmp_path / "nobody.mp4", empty_frames(4))
    assert main(["infer", "--model_dir", str(tiny_model), "--input_file", str(nobody)]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"error: {nobody}: no person found in any of its 4 frames")
    assert main(["infer", "--model_dir", str(tiny_model), "--input_file", str(nobody), "--sample_id", "x"]) == 2
    assert "--sample_id is for data.pkl/.npz files" in capsys.readouterr().err


def test_visualize_a_video_shows_its_frames_and_the_prediction(tiny_model, astronaut, tmp_path, capsys):
    out = tmp_path / "astronaut.html"
    capsys.readouterr()
    assert main(["visualize", "--input_file", str(astronaut), "--model_dir", str(tiny_model), "--output",
                 str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    page = out.read_text(encoding="utf-8")
    data = json.loads(re.search(r'<script type="application/json" id="pose-data">(.*?)</script>', page, re.S)[1])
    assert data["prediction"] is not None and data["num_frames"] == 30
    assert data["video"]["stride"] == 1 and len(data["video"]["frames"]) == 30 and data["video"]["size"] == [640, 480]
    assert all(f.startswith("data:image/jpeg;base64,") for f in data["video"]["frames"])
    assert data["view"] == [0, 0, 640, 480], "the whole video frame is shown"


def test_from_a_folder_of_videos_to_a_trained_model(tiny_pose_config, tmp_path, capsys):
    """The README's "From your own videos": pose a folder, add labels to the manifest, train, evaluate, infer."""
    videos = tmp_path / "videos"
    for index, shift in enumerate((3, -3, 2, -2)):
        write_video(videos / f"clip{index}.mp4", astronaut_frames(6, shift=shift))
    poses = tmp_path / "poses"
    assert main(["pose", str(videos), "--output_dir", str(poses), "--sign_language", "ase"]) == 0
    labelled = [replace(e, text=("hello", "world")[i % 2], split="train" if i < 3 else "dev")
                for i, e in enumerate(read_manifest(poses / "manifest.csv"))]
    write_manifest(labelled, poses / "manifest.csv")
    run = tmp_path / "run"
    assert main(["train", *tiny_train_args(poses, tiny_pose_config, run, "--max_steps", "2", "--target", "text")]) == 0
    assert main(["evaluate", "--model_dir", str(run), "--manifest", str(poses / "manifest.csv"), "--split", "dev",
                 "--output_file", str(tmp_path / "scores.txt")]) == 0
    capsys.readouterr()
    assert main(["infer", "--model_dir", str(run), "--input_file", str(videos / "clip3.mp4")]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1
