"""Faults during training, each injected into a real (tiny) run through the CLI.

Broken samples, NaN/inf losses and gradients, a full disk, an unwritable output folder and
out-of-memory: the run either goes on and reports, or stops with our own error and a good checkpoint.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from signt5.cli import main
from signt5.data.manifest import read_manifest, write_manifest
from signt5.errors import TrainingError
from signt5.training import checkpoint as ckpt
from signt5.training import faults
from signt5.training.config import TrainConfig
from signt5.training.recipes import GenerationRecipe

from ..conftest import tiny_train_args

QUICK = ("--max_eval_samples", "0", "--no_augment")  # no dev decoding: it dominates a tiny run


def _run(corpus, pose_config, out, *flags, manifest=None) -> int:
    args = tiny_train_args(corpus, pose_config, out, *QUICK, *flags)
    if manifest is not None:
        args[args.index("--manifest") + 1] = str(manifest)
    return main(["train", *args])


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    out = {}
    for f in folder.glob("*.safetensors"):
        out.update(load_file(str(f)))
    assert out, f"no weights in {folder}"
    return out


def _all_finite(folder: Path) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in _weights(folder).values())


def _step_on_disk(folder: Path) -> int:
    return ckpt.load_training_state(folder)["run"]["global_step"]


def _patch_loss(monkeypatch, change) -> list[int]:
    """Wrap stage 2's loss: ``change(call, loss)`` may alter the loss of micro-batch ``call`` (1-based)."""
    calls = [0]
    real = GenerationRecipe.loss

    def loss(*args, **kwargs):
        calls[0] += 1
        return change(calls[0], real(*args, **kwargs))

    monkeypatch.setattr(GenerationRecipe, "loss", loss)
    return calls


# --- broken samples ------------------------------------------------------------------------------

@pytest.fixture()
def broken_corpus(tiny_corpus, tmp_path) -> tuple[Path, list[str]]:
    """The tiny corpus plus five broken train samples of five kinds; returns the manifest and their ids."""
    entries = read_manifest(tiny_corpus / "manifest.csv")
    good = next(e for e in entries if e.split == "train" and e.path.suffix == ".pose")
    bad = tmp_path / "bad"
    bad.mkdir()
    data = good.path.read_bytes()
    (bad / "truncated.pose").write_bytes(data[: len(data) // 2])
    (bad / "noise.npz").write_bytes(np.random.default_rng(0).bytes(3000))
    (bad / "data.pkl").write_bytes(pickle.dumps({"other": np.ones((3, 178, 2), np.float32)}))
    (bad / "evil.pkl").write_bytes(pickle.dumps({"x": eval}))  # refers to builtins.eval: refused
    broken = {"truncated": (bad / "truncated.pose", ""), "missing": (bad / "gone.pose", ""),
              "noise": (bad / "noise.npz", ""), "wrong_key": (bad / "data.pkl", "no_such_key"),
              "evil": (bad / "evil.pkl", "x")}
    rows = list(entries)
    for i, (name, (path, key)) in enumerate(broken.items()):
        rows.insert(2 * i, good.__class__(f"broken_{name}", path, good.text, good.gloss, good.sign_language,
                                          "train", key))
    manifest = tmp_path / "manifest.csv"
    write_manifest(rows, manifest)
    return manifest, [f"broken_{n}" for n in broken]


def test_broken_samples_are_skipped_and_reported_at_the_end(broken_corpus, tiny_corpus, tiny_pose_config,
                                                           tmp_path, capsys, caplog):
    manifest, broken_ids = broken_corpus
    out = tmp_path / "run"
    with caplog.at_level(logging.WARNING):
        assert _run(tiny_corpus, tiny_pose_config, out, "--max_steps", "2", manifest=manifest) == 0
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["steps"] == 2
    skipped = summary["skipped_samples"]
    assert sorted(line.split(":")[0] for line in skipped) == sorted(broken_ids)
    reasons = "\n".join(skipped)
    for expected in ("truncated", "No such file", "not a numpy file", "no_such_key", "refused to load"):
        assert expected in reasons
    printed = capsys.readouterr().out
    assert "5 unreadable sample(s) skipped" in printed and all(i in printed for i in broken_ids)
    final = caplog.records[-1].getMessage()  # the log's last word is the list, not buried mid-run
    assert "5 sample(s) could not be read" in final and all(i in final for i in broken_ids)


# --- non-finite losses and gradients --------------------------------------------------------------

def test_nan_loss_is_skipped_logged_and_training_recovers(tiny_corpus, tiny_pose_config, tmp_path, monkeypatch,
                                                          caplog):
    _patch_loss(monkeypatch, lambda call, loss: loss * float("nan") if call in (2, 3) else loss)
    out = tmp_path / "run"
    with caplog.at_level(logging.WARNING, logger="signt5.training.faults"):
        assert _run(tiny_corpus, tiny_pose_config, out, "--max_steps", "4") == 0
    warnings = [r.getMessage() for r in caplog.records if "non-finite loss" in r.getMessage()]
    assert len(warnings) == 2 and "(2 in a row)" in warnings[1] and "batch: " in warnings[0]
    assert json.loads((out / "train_summary.json").read_text())["steps"] == 4
    assert _all_finite(out / "checkpoint-last")


def test_nan_losses_in_a_row_stop_with_a_message_and_finite_weights(tiny_corpus, tiny_pose_config, tmp_path,
                                                                   monkeypatch, capsys):
    _patch_loss(monkeypatch, lambda call, loss: loss * float("inf") if call > 2 else loss)
    out = tmp_path / "run"
    assert _run(tiny_corpus, tiny_pose_config, out, "--max_steps", "20", "--save_every_steps", "1") == 2
    err = capsys.readouterr().err
    assert "error: 5 non-finite losses in a row at step 2" in err and "last checkpoint is kept" in err
    assert _step_on_disk(out / "checkpoint-last") == 2 and _all_finite(out / "checkpoint-last")


class _InfGradient(torch.autograd.Function):
    """The identity forward, inf backward: a finite loss whose gradients overflow."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("inf")


def test_inf_gradients_with_a_finite_loss_never_reach_the_weights(tiny_corpus, tiny_pose_config, tmp_path,
                                                                   monkeypatch, caplog):
    _patch_loss(monkeypatch, lambda call, loss: _InfGradient.apply(loss) if call == 2 else loss)
    out = tmp_path / "run"
    with caplog.at_level(logging.WARNING, logger="signt5.training.faults"):
        assert _run(tiny_corpus, tiny_pose_config, out, "--max_steps", "3") == 0
    assert any("non-finite gradient norm at step 1" in r.getMessage() for r in caplog.records)
    assert json.loads((out / "train_summary.json").read_text())["steps"] == 3
    assert _all_finite(out / "checkpoint-last")


# --- disk full, unwritable output ----------------------------------------------------------------

def test_disk_full_while_checkpointing_keeps_the_previous_checkpoint(tiny_corpus, tiny_pose_config, tmp_path,
                                                                    monkeypatch, capsys):
    real, calls = ckpt.save_training_state, [0]

    def full_disk(folder, state):
        calls[0] += 1
        if calls[0] == 3:  # a half-written file, then the disk is full
            (folder / ckpt.STATE_FILE).write_bytes(b"\x80\x02partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(folder / ckpt.STATE_FILE))
        real(folder, state)

    monkeypatch.setattr(ckpt, "save_training_state", full_disk)
    out = tmp_path / "run"
    assert _run(tiny_corpus, tiny_pose_config, out, "--max_steps", "6", "--save_every_steps", "1") == 2
    err = capsys.readouterr().err
    assert "checkpoint-last" in err and "No space left on device" in err and "the disk is full" in err
    assert "previous checkpoint is kept" in err
    assert ckpt.find_checkpoint(out / "checkpoint-last") == out / "checkpoint-last"
    assert _step_on_disk(out / "checkpoint-last") == 2 and _all_finite(out / "checkpoint-last")
    assert not list(out.glob("*.tmp")) and not list(out.glob("*.old"))
    monkeypatch.setattr(ckpt, "save_training_state", real)  # space freed: --resume goes on from step 2
    assert _run(tiny_corpus, tiny_pose_config, out, "--max_steps", "6", "--resume") == 0
    assert json.loads((out / "train_summary.json").read_text())["steps"] == 6


def test_output_dir_that_cannot_be_created_fails_at_the_start(tiny_corpus, tiny_pose_config, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")  # a file where a folder should be: unwritable even for root
    assert _run(tiny_corpus, tiny_pose_config, blocker / "run", "--max_steps", "1") == 2
    err = capsys.readouterr().err
    assert f"output folder {blocker / 'run'} is not writable" in err and "--output_dir" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through chmod 0555; the file-as-folder and monkeypatched "
                                              "variants cover it")
def test_read_only_output_dir(tiny_corpus, tiny_pose_config, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    out.chmod(0o555)
    try:
        assert _run(tiny_corpus, tiny_pose_config, out, "--max_steps", "1") == 2
    finally:
        out.chmod(0o755)
    assert "is not writable" in capsys.readouterr().err


def test_permission_denied_probe_is_a_clear_error(tmp_path, monkeypatch):
    def denied(self, data):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))

    monkeypatch.setattr(Path, "write_bytes", denied)
    with pytest.raises(TrainingError, match=r"run is not writable \(Permission denied\)"):
        faults.ensure_writable(tmp_path / "run")


def test_os_error_descriptions():
    assert "disk is full" in faults.describe_os_error(OSError(errno.ENOSPC, "No space left on device"))
    assert "no permission" in faults.describe_os_error(OSError(errno.EROFS, "Read-only file system"))


# --- out of memory ---------------------------------------------------------------------------------

class _OomInBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 68719476736 bytes.")


@pytest.mark.parametrize("where", ["forward", "backward"])
def test_out_of_memory_names_batch_and_the_options_that_lower_memory(tiny_corpus, tiny_pose_config, tmp_path,
                                                                    monkeypatch, capsys, where):
    def change(call, loss):
        if where == "forward":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return _OomInBackward.apply(loss)

    _patch_loss(monkeypatch, change)
    assert _run(tiny_corpus, tiny_pose_config, tmp_path / "run", "--max_steps", "2") == 2
    err = capsys.readouterr().err
    assert "error: out of memory on cpu on a batch of 4 samples x " in err
    assert "--batch_size 2" in err and "--grad_accum 2" in err and "data.max_frames" in err
    assert "Traceback" not in err


def test_other_runtime_errors_are_not_mistaken_for_out_of_memory():
    batch = {"ids": ["a"], "pose": torch.zeros(1, 5, 3, 2)}
    with pytest.raises(RuntimeError, match="shape mismatch"):
        with faults.named_out_of_memory(batch, TrainConfig()):
            raise RuntimeError("shape mismatch")
    with pytest.raises(TrainingError, match=r"1 samples x 5 frames x 3 keypoints.*batch_size 32"):
        with faults.named_out_of_memory(batch, TrainConfig()):
            raise MemoryError()
