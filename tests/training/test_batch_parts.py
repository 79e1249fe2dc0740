"""Batches run in parts under a frame budget: the parts cover the batch, and their gradients add up to its own."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from signt5.cli import main
from signt5.data.dataset import pad_batch, split_batch
from signt5.data.item import pose_item
from signt5.training.config import TrainConfig
from signt5.training.recipes import build_model, recipe_for

from ..conftest import tiny_train_args


def _items(lengths: list[int], labels: list[str] | None = None, points: int = 5) -> list:
    rng = np.random.default_rng(0)
    labels = labels or [f"W{i}" for i in range(len(lengths))]
    return [pose_item(f"s{i}", rng.normal(size=(t, points, 2)).astype(np.float32), np.ones((t, points), bool),
                      labels[i], "ase") for i, t in enumerate(lengths)]


def test_pad_batch_rounds_the_frames_up_to_a_multiple():
    batch = pad_batch(_items([5, 9, 3]), frame_multiple=8)
    assert batch["pose"].shape[:2] == (3, 16)
    assert batch["frame_mask"].sum(1).tolist() == [5, 9, 3]
    assert not batch["point_mask"][:, 9:].any() and not batch["pose"][:, 9:].any()


def test_split_batch_keeps_every_sample_within_the_budget():
    lengths = [3, 40, 7, 12, 25, 9, 31, 5]
    batch = pad_batch(_items(lengths), frame_multiple=4)
    parts = split_batch(batch, max_frames=48, frame_multiple=4)
    assert len(parts) > 1
    seen = [i for part in parts for i in part["ids"]]
    assert sorted(seen) == sorted(batch["ids"])
    for part in parts:
        n, t = part["pose"].shape[:2]
        own = part["frame_mask"].sum(1)
        assert n * t <= 48 or n == 1  # a sample longer than the budget still runs, alone
        assert t % 4 == 0 and t >= own.max() and t - own.max() < 4  # trimmed to its own longest sample
        for row, sample_id in enumerate(part["ids"]):
            whole = batch["ids"].index(sample_id)
            k = int(own[row])
            torch.testing.assert_close(part["pose"][row, :k], batch["pose"][whole, :k])
            assert part["labels"][row] == batch["labels"][whole]
    assert split_batch(batch, max_frames=0) == [batch] and split_batch(batch, max_frames=10_000) == [batch]


def _grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("stage", ["finetune", "pretrain"])
def test_parts_give_the_whole_batch_gradient(tiny_corpus, tiny_pose_config, stage):
    """Stage 2's loss is a mean over samples (equal-length labels: the token mean is one too), so parts weighted
    by their share add up to it; stage 1 recomputes the parts against the whole batch's InfoNCE (GradCache)."""
    torch.manual_seed(0)
    config = TrainConfig(manifest=str(tiny_corpus / "manifest.csv"), pose_config=str(tiny_pose_config),
                         text_config="tiny", umt5_dir="/nonexistent", stage=stage, guided_attention_weight=0.0)
    model, tokenizer = build_model(config, ["ase"])
    model.eval()  # no dropout: the whole batch and its parts see the same network
    labels = ["A B C", "D E F", "G H I", "J K L", "M N O", "P Q R"]
    points = model.config.pose_encoder_config.keypoint_layout.num_points
    batch = pad_batch(_items([6, 30, 11, 24, 8, 17], labels, points=points))
    recipe = recipe_for(stage)
    loss = recipe.loss(model, model, batch, tokenizer, config, torch.device("cpu"))
    loss.backward()
    whole = _grads(model)
    model.zero_grad(set_to_none=True)
    parts = split_batch(batch, max_frames=60)
    assert len(parts) >= 3
    parted_loss = recipe.backward_in_parts(model, parts, tokenizer, config, torch.device("cpu"), 0.5)
    torch.testing.assert_close(parted_loss, loss.detach(), rtol=1e-5, atol=1e-5)
    parted = _grads(model)
    assert parted.keys() == whole.keys()
    for name in whole:
        torch.testing.assert_close(parted[name], 0.5 * whole[name], rtol=1e-4, atol=1e-6, msg=name)


def test_contrastive_parts_replay_their_dropout(tiny_corpus, tiny_pose_config):
    """In training mode each part is embedded twice (without, then with a graph): the same dropout both times,
    or the gradient would belong to another network than the loss."""
    torch.manual_seed(0)
    config = TrainConfig(manifest=str(tiny_corpus / "manifest.csv"), pose_config=str(tiny_pose_config),
                         text_config="tiny", umt5_dir="/nonexistent", stage="pretrain")
    model, tokenizer = build_model(config, ["ase"])
    model.train()
    batch = pad_batch(_items([6, 30, 11, 24], points=model.config.pose_encoder_config.keypoint_layout.num_points))
    parts = split_batch(batch, max_frames=40)
    embeddings = []
    original = model.pose_features

    def recording(*args, **kwargs):
        out = original(*args, **kwargs)
        embeddings.append(out.detach().clone())
        return out

    model.pose_features = recording
    recipe_for("pretrain").backward_in_parts(model, parts, tokenizer, config, torch.device("cpu"), 1.0)
    first, second = embeddings[:len(parts)], embeddings[len(parts):]
    assert len(first) == len(second) == len(parts)
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("command", ["train", "pretrain"])
def test_training_under_a_small_frame_budget(tiny_corpus, tiny_pose_config, tmp_path, command):
    out = tmp_path / "run"
    args = tiny_train_args(tiny_corpus, tiny_pose_config, out, "--max_steps", "3", "--max_batch_frames", "40",
                           "--max_eval_samples", "2")
    assert main([command, *args]) == 0
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["steps"] == 3
    assert TrainConfig.load(out / "train_config.json").max_batch_frames == 40
