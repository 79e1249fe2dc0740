"""Training killed for real (SIGKILL) at random moments while it writes checkpoints, then resumed.

After every kill the last completed checkpoint must load (weights finite, state readable, step never
going back), a half-written ``.tmp`` must never be the one picked, and ``--resume`` must finish the run.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from signt5.cli import main
from signt5.training import checkpoint as ckpt
from signt5.models.loading import load_run_model

from ..conftest import tiny_train_args

SRC = Path(__file__).parents[2] / "src"


def _args(corpus, pose_config, out, max_steps: int) -> list[str]:
    return tiny_train_args(corpus, pose_config, out, "--max_steps", str(max_steps), "--save_every_steps", "1",
                           "--max_eval_samples", "0", "--no_augment", "--epochs", "1000")


def _start(args: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    with log.open("ab") as f:
        return subprocess.Popen([sys.executable, "-m", "signt5.cli", "train", *args], env=env, stdout=f,
                                stderr=subprocess.STDOUT)


def _wait_for(condition, proc: subprocess.Popen, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"training exited ({proc.returncode}) before it was killed:\n"
                                 f"{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"timed out waiting:\n{log.read_text()[-3000:]}")
        time.sleep(0.02)


def _check_checkpoint(out: Path) -> int:
    """The checkpoint resume would pick is complete and sane; returns its step."""
    found = ckpt.find_checkpoint(out / "checkpoint-last")
    assert found is not None and not found.name.endswith(".tmp")
    model, _ = load_run_model(found)
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())
    return int(ckpt.load_training_state(found)["run"]["global_step"])


def _kill_and_resume(corpus, pose_config, out: Path, kills: int, seed: int, max_steps: int) -> dict:
    """Odd kills land at a random moment, even ones just after a checkpoint write has begun."""
    rng = random.Random(seed)
    args, log = _args(corpus, pose_config, out, max_steps), out.parent / f"{out.name}.log"
    steps, mid_write = [], 0
    for i in range(kills):
        proc = _start(args + (["--resume"] if i else []), log)
        before = steps[-1] if steps else 0
        # wait until this process has written a checkpoint of its own, then kill at a random moment
        _wait_for(lambda: (out / "checkpoint-last" / ckpt.STATE_FILE).exists() and _saved_step(out) > before,
                  proc, 240, log)
        if i % 2:
            _wait_for(lambda: (out / "checkpoint-last.tmp").exists(), proc, 60, log)
            time.sleep(rng.uniform(0.0, 0.05))
        else:
            time.sleep(rng.uniform(0.0, 1.0))
        mid_write += (out / "checkpoint-last.tmp").exists()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        step = _check_checkpoint(out)
        assert before <= step < max_steps, f"kill {i}: step {step} after {before}"
        steps.append(step)
    # --resume goes on from the last kill's checkpoint (a few steps: the schedule is long so no kill comes late)
    assert main(["train", *args, "--resume", "--stop_after_steps", "3"]) == 0
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["steps"] == steps[-1] + 3 and _check_checkpoint(out) == steps[-1] + 3
    assert not list(out.glob("*.tmp"))
    return {"steps_at_kills": steps, "kills_with_tmp_on_disk": mid_write}


def _saved_step(out: Path) -> int:
    try:
        return int(ckpt.load_training_state(out / "checkpoint-last")["run"]["global_step"])
    except Exception:  # mid-swap: the folder is being replaced right now
        return -1


def test_sigkill_during_checkpointing_then_resume(tiny_corpus, tiny_pose_config, tmp_path):
    result = _kill_and_resume(tiny_corpus, tiny_pose_config, tmp_path / "run", kills=2, seed=0, max_steps=1000)
    print(f"SIGKILL x2: {result}")


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_sigkill_many_times_at_random(tiny_corpus, tiny_pose_config, tmp_path, seed):
    result = _kill_and_resume(tiny_corpus, tiny_pose_config, tmp_path / "run", kills=6, seed=seed, max_steps=1000)
    print(f"SIGKILL x6 (seed {seed}): {result}")


def test_half_written_checkpoint_is_never_picked(tiny_corpus, tiny_pose_config, tmp_path, monkeypatch):
    """Killed between the two renames of a swap: only ``.old`` (complete) and ``.tmp`` remain."""
    out = tmp_path / "run"
    args = _args(tiny_corpus, tiny_pose_config, out, max_steps=5)
    assert main(["train", *args, "--stop_after_steps", "3"]) == 0
    real_replace, calls = os.replace, [0]

    def dies_mid_swap(src, dst):
        calls[0] += 1
        if calls[0] == 2:  # target -> .old done, .tmp -> target not yet
            raise KeyboardInterrupt("killed")
        real_replace(src, dst)

    monkeypatch.setattr(ckpt.os, "replace", dies_mid_swap)
    with pytest.raises(KeyboardInterrupt):
        main(["train", *args, "--resume"])
    monkeypatch.setattr(ckpt.os, "replace", real_replace)
    assert not (out / "checkpoint-last").exists() and (out / "checkpoint-last.old").exists()
    # make the leftover .tmp look tempting: newer step, but broken
    (out / "checkpoint-last.tmp" / ckpt.STATE_FILE).write_bytes(b"\x80\x02truncated")
    assert ckpt.find_checkpoint(out / "checkpoint-last") == out / "checkpoint-last.old"
    assert _check_checkpoint(out) == 3
    assert main(["train", *args, "--resume"]) == 0
    assert _check_checkpoint(out) == 5
    assert not (out / "checkpoint-last.tmp").exists() and not (out / "checkpoint-last.old").exists()
