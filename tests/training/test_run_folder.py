"""A run folder belongs to one run at a time, and --resume refuses settings that break exact resumption."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from signt5.cli import main
from signt5.errors import SignT5Error
from signt5.training.checkpoint import RunLock
from signt5.training.config import TrainConfig

from ..conftest import tiny_train_args


def test_a_second_run_in_a_locked_folder_fails_naming_the_other(tmp_path):
    with RunLock(tmp_path):
        holder = json.loads((tmp_path / ".lock").read_text())
        assert holder["pid"] == os.getpid()
        with pytest.raises(SignT5Error, match=f"in use by another run \\(pid {os.getpid()}"):
            RunLock(tmp_path).__enter__()
    assert not (tmp_path / ".lock").exists()  # released


def test_a_stale_lock_is_taken_over(tmp_path):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock = RunLock(tmp_path)
    (tmp_path / ".lock").write_text(json.dumps({"pid": int(gone.stdout), "host": lock.owner["host"]}))
    with lock:
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    (tmp_path / ".lock").write_text("{cut short")  # a crash mid-write: unreadable, taken over too
    with RunLock(tmp_path):
        pass


def test_train_refuses_a_locked_folder(tiny_corpus, tiny_pose_config, tmp_path, capsys):
    out = tmp_path / "run"
    with RunLock(out):
        assert main(["train", *tiny_train_args(tiny_corpus, tiny_pose_config, out, "--max_steps", "1")]) != 0
    assert "in use by another run" in capsys.readouterr().err
    assert not (out / "train_log.jsonl").exists()


def test_resume_differences_name_what_breaks_exact_resumption():
    saved = TrainConfig(batch_size=16, seed=0, epochs=10)
    assert saved.resume_differences(TrainConfig(batch_size=16, seed=0, epochs=30, resume=True)) == []
    changed = TrainConfig(batch_size=32, seed=1, epochs=10, positions="both_ends").resume_differences(saved)
    assert sorted(changed) == ["batch_size: 16 -> 32", "positions: 'ctc' -> 'both_ends'", "seed: 0 -> 1"]
    data = TrainConfig.from_dict({**saved.to_dict(), "data": {**saved.data.to_dict(), "fill_hand_gaps": 0}})
    assert data.resume_differences(saved) == [f"data: {saved.data.to_dict()!r} -> {data.data.to_dict()!r}"]


def test_resume_with_another_batch_size_is_refused(tiny_corpus, tiny_pose_config, tmp_path, capsys):
    out = tmp_path / "run"
    args = tiny_train_args(tiny_corpus, tiny_pose_config, out, "--max_eval_samples", "2")
    assert main(["train", *args, "--stop_after_steps", "2"]) == 0
    capsys.readouterr()
    assert main(["train", *args, "--resume", "--batch_size", "2"]) != 0
    assert "batch_size: 4 -> 2" in capsys.readouterr().err
    assert main(["train", *args, "--resume", "--epochs", "3"]) == 0  # a longer run is fine
