"""Both stages end to end in process, overfitting, exact resume, and a 2-process torchrun run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from signt5.cli import main
from signt5.training.config import TrainConfig
from signt5.training.recipes import GenerationRecipe, build_model
from signt5.data.manifest import read_manifest
from signt5.data.dataset import DataConfig, PoseDataset, pad_batch
from signt5.models.labels import model_inputs

from ..conftest import tiny_train_args


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    out = {}
    for f in folder.glob("*.safetensors"):
        out.update(load_file(str(f)))
    return out


def test_pretrain_then_train(tiny_corpus, tiny_pose_config, tmp_path, capsys):
    stage1 = tmp_path / "stage1"
    assert main(["pretrain", *tiny_train_args(tiny_corpus, tiny_pose_config, stage1)]) == 0
    assert "pretrain: " in capsys.readouterr().out
    for name in ("checkpoint-best", "checkpoint-last"):
        assert (stage1 / name / "config.json").exists()
    log = [json.loads(line) for line in (stage1 / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 2 and "retrieval_top1" in log[0]
    assert list((stage1 / "runs").iterdir())  # TensorBoard event files

    stage2 = tmp_path / "stage2"
    args = tiny_train_args(tiny_corpus, tiny_pose_config, stage2, "--contrastive_model_dir", str(stage1))
    assert main(["train", *args]) == 0
    out = capsys.readouterr().out
    assert "finetune: " in out and "samples/s" in out
    s1, s2 = _weights(stage1 / "checkpoint-best"), _weights(stage2 / "checkpoint-last")
    assert any(k.startswith("encoder.") for k in s2) and not any(k.startswith("text_encoder.") for k in s2)
    summary = json.loads((stage2 / "train_summary.json").read_text())
    assert summary["steps"] == 2 * 3 and 0 <= summary["data_wait_share"] < 1
    metrics = json.loads((stage2 / "checkpoint-best" / "dev_metrics.json").read_text())
    assert {"cer", "bleu4", "wer", "cer_attention", "cer_ctc", "cer_joint"} <= set(metrics)
    chosen = json.loads((stage2 / "checkpoint-best" / "config.json").read_text())["decoding"]
    assert chosen in ("attention", "ctc", "joint")  # the rule itself: tests/decoding/test_selection.py
    assert metrics["cer"] == metrics[f"cer_{chosen}"]
    assert (stage2 / "checkpoint-best" / "train_config.json").exists()
    assert json.loads((stage2 / "checkpoint-best" / "config.json").read_text())["target"] == "gloss"
    # the pose tower started from stage 1: its first layer, which stage 2 barely moves, is still close to stage 1's
    key = "encoder.pose_encoder.spatial.input.weight"
    assert key in s1 and key in s2
    fresh = tmp_path / "fresh"
    assert main(["train", *tiny_train_args(tiny_corpus, tiny_pose_config, fresh, "--max_steps", "1")]) == 0
    init = _weights(fresh / "checkpoint-last")
    # measured: 0.6 % of a fresh model's distance from stage 1 when stage 2 starts there, 100 % when it does not
    assert (s2[key] - s1[key]).abs().mean() < 0.1 * (init[key] - s1[key]).abs().mean()


def test_loss_falls_on_a_batch_it_overfits(tiny_corpus, tiny_pose_config):
    torch.manual_seed(0)
    # no attention prior: the CTC-aligned one chases the CTC head's alignment as it changes (tested on its own
    # in tests/models/test_ctc_guided_attention.py); here the hybrid CTC/attention loss must overfit
    config = TrainConfig(manifest=str(tiny_corpus / "manifest.csv"), pose_config=str(tiny_pose_config),
                         text_config="tiny", umt5_dir="/nonexistent", guided_attention_weight=0.0)
    entries = read_manifest(tiny_corpus / "manifest.csv", split="train")[:4]
    model, tokenizer = build_model(config, ["ase", "ukl"])
    batch = pad_batch([PoseDataset(entries, DataConfig())[i] for i in range(4)])
    inputs = model_inputs(batch, model.config, tokenizer)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    losses = []
    for _ in range(40):
        loss = model(**inputs).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.25 * losses[0]


def test_resume_matches_unbroken_run(tiny_corpus, tiny_pose_config, tmp_path):
    flags = ["--max_eval_samples", "2"]
    unbroken = tmp_path / "unbroken"
    assert main(["train", *tiny_train_args(tiny_corpus, tiny_pose_config, unbroken, *flags)]) == 0
    broken = tmp_path / "broken"
    args = tiny_train_args(tiny_corpus, tiny_pose_config, broken, *flags)
    assert main(["train", *args, "--stop_after_steps", "4"]) == 0  # interrupted in the middle of epoch 2
    state = torch.load(broken / "checkpoint-last" / "training_state.pt", weights_only=True)
    assert state["run"]["global_step"] == 4 and state["run"]["batches_done"] == 1
    assert main(["train", *args, "--resume"]) == 0
    a, b = _weights(unbroken / "checkpoint-last"), _weights(broken / "checkpoint-last")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)


@pytest.mark.parametrize("command, stage, extra", [("train", "finetune", ()), ("pretrain", "pretrain", ()),
                                                   ("train", "finetune", ("--decoder_steps", "2"))])
def test_two_processes_with_torchrun(tiny_corpus, tiny_pose_config, tmp_path, command, stage, extra):
    """Both stages under torchrun; stage 1 gathers its negatives across the ranks while training, and its dev
    evaluation on rank 0 alone must not wait for the other rank. Stage 2's decoder phase runs under DDP too."""
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
           "signt5.cli", command, *tiny_train_args(tiny_corpus, tiny_pose_config, out, "--max_steps", "2", *extra)]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 process(es)" in result.stderr
    assert result.stdout.count(f"{stage}: ") == 1  # only rank 0 reports
    assert (out / "checkpoint-last" / "config.json").exists()
    assert not list(out.glob("*.tmp"))
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["steps"] == 2
    if extra:
        assert json.loads((out / "train_log.jsonl").read_text().splitlines()[-1])["phase"] == "decoder"


def test_a_new_run_in_an_old_run_folder_starts_a_fresh_log(tiny_corpus, tiny_pose_config, tmp_path, caplog):
    out = tmp_path / "run"
    args = tiny_train_args(tiny_corpus, tiny_pose_config, out, "--max_eval_samples", "2", "--max_steps", "2")
    assert main(["train", *args]) == 0
    first = (out / "train_log.jsonl").read_text()
    with caplog.at_level("WARNING", logger="signt5.training.trainer"):
        assert main(["train", *args, "--max_steps", "3"]) == 0
    records = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert first and [r["step"] for r in records][-1] == 3 and all(r["step"] > 0 for r in records)
    assert len(records) == len(first.splitlines())  # replaced, not appended to
    assert "holds an earlier run" in caplog.text
    before = (out / "train_log.jsonl").read_text()
    assert main(["train", *args, "--max_steps", "4", "--resume"]) == 0  # a resumed run appends
    after = (out / "train_log.jsonl").read_text()
    assert after.startswith(before) and json.loads(after.splitlines()[-1])["step"] == 4


def test_stage_two_learns_one_ctc_class_per_letter_of_each_sign_language(tiny_model, tiny_corpus):
    from signt5.data.manifest import read_manifest

    config = json.loads((tiny_model / "checkpoint-best" / "config.json").read_text())
    train = read_manifest(tiny_corpus / "manifest.csv", "train")
    expected = sorted({f"{e.sign_language}:{letter}" for e in train for letter in e.gloss.split()})
    assert config["ctc_units"] == expected and config["target"] == "gloss"


def test_grad_accum_reports_the_same_throughput(tiny_corpus, tiny_pose_config, tmp_path, monkeypatch):
    """Samples/s counts every micro-batch's samples and time alike: with each forward taking one (fake) second,
    the report is the micro-batch size per second whatever --grad_accum is (it was k times too high)."""
    import types

    import signt5.training.trainer as trainer

    clock = [0.0]
    real_loss = GenerationRecipe.loss

    def one_second_loss(*args, **kwargs):
        clock[0] += 1.0
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(trainer, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))
    monkeypatch.setattr(GenerationRecipe, "loss", one_second_loss)
    rates = {}
    for accum in (1, 4):
        out = tmp_path / f"accum{accum}"
        args = tiny_train_args(tiny_corpus, tiny_pose_config, out, "--max_steps", "2", "--batch_size", "2",
                               "--grad_accum", str(accum))
        assert main(["train", *args]) == 0
        summary = json.loads((out / "train_summary.json").read_text())
        rates[accum] = summary["train_samples_per_second"]
    assert rates[1] == pytest.approx(2.0, rel=0.2) and rates[4] == pytest.approx(2.0, rel=0.2)


def test_a_decoder_stage_trains_the_decoder_alone(tiny_model, tiny_corpus, tiny_pose_config, tmp_path):
    """Continuing a finished stage-2 run with --decoder_stage_from: the pose encoder and CTC head stay exactly as the
    run left them, the decoder moves."""
    out = tmp_path / "decoder"
    args = tiny_train_args(tiny_corpus, tiny_pose_config, out, "--max_steps", "3", "--max_eval_samples", "2",
                           "--decoder_stage_from", str(tiny_model))
    assert main(["train", *args]) == 0
    before, after = _weights(tiny_model / "checkpoint-best"), _weights(out / "checkpoint-last")
    assert before.keys() == after.keys()
    frozen = [k for k in before if k.startswith(("encoder.", "ctc_head."))]
    moved = [k for k in before if k.startswith("decoder.") and not torch.equal(before[k], after[k])]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    assert moved
    assert TrainConfig.load(out / "train_config.json").decoder_stage_from == str(tiny_model)
    with pytest.raises(ValueError, match="decoder_stage_from"):
        TrainConfig(stage="pretrain", decoder_stage_from=str(tiny_model))
