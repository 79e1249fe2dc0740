"""Symmetric InfoNCE: log(B) at chance, lower when pairs match, equal to a hand-written formula."""

from __future__ import annotations

import math

import numpy as np
import torch

from signt5.models.losses import LOGIT_SCALE_INIT, LOGIT_SCALE_MAX, ContrastiveHead, info_nce


def reference_info_nce(pose: np.ndarray, text: np.ndarray, scale: float) -> float:
    pose = pose / np.linalg.norm(pose, axis=1, keepdims=True)
    text = text / np.linalg.norm(text, axis=1, keepdims=True)
    logits = scale * pose @ text.T

    def ce_rows(m: np.ndarray) -> float:
        m = m - m.max(1, keepdims=True)
        log_softmax = m - np.log(np.exp(m).sum(1, keepdims=True))
        return float(-np.diag(log_softmax).mean())

    return 0.5 * (ce_rows(logits) + ce_rows(logits.T))


def test_equal_logits_give_log_batch_size():
    for b in (2, 5, 16):
        same = torch.randn(1, 8).expand(b, 8)  # every similarity identical
        assert math.isclose(info_nce(same, same, math.log(10.0)).item(), math.log(b), rel_tol=1e-5)


def test_matching_pairs_lower_the_loss_and_formula_matches():
    torch.manual_seed(0)
    text = torch.randn(6, 16)
    matched = info_nce(text + 0.01 * torch.randn(6, 16), text, LOGIT_SCALE_INIT)
    shuffled = info_nce(text[torch.randperm(6)], text, LOGIT_SCALE_INIT)
    assert matched < math.log(6) < shuffled + 1.0 and matched < 0.1
    pose = torch.randn(6, 16)
    expected = reference_info_nce(pose.numpy().astype(np.float64), text.numpy().astype(np.float64), math.exp(2.0))
    assert math.isclose(info_nce(pose, text, 2.0).item(), expected, rel_tol=1e-5)
    assert math.isclose(info_nce(pose, text, 2.0).item(), info_nce(text, pose, 2.0).item(), rel_tol=1e-6)


def test_head_learns_its_temperature_and_clamps_it():
    head = ContrastiveHead(8, 12, 4)
    assert math.isclose(head.logit_scale.item(), math.log(1 / 0.07), rel_tol=1e-6)
    loss, pose_emb, text_emb = head(torch.randn(3, 8), torch.randn(3, 12))
    loss.backward()
    assert head.logit_scale.grad is not None and pose_emb.shape == text_emb.shape == (3, 4)
    with torch.no_grad():
        head.logit_scale.fill_(50.0)
    assert math.isclose(head.clamped_logit_scale().item(), LOGIT_SCALE_MAX, rel_tol=1e-6)
