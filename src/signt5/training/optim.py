"""The optimiser and schedule of every training loop (both stages, and stage 2's decoder phase)."""

from __future__ import annotations

import torch

from .config import TrainConfig


def build_optimizer(model: torch.nn.Module, config: TrainConfig, lr: float | None = None) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters; no weight decay on biases, norms and other vectors."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr if lr is None else lr, betas=(0.9, 0.98), eps=1e-8)


def build_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, warmup_ratio: float):
    """Linear warm-up over ``warmup_ratio`` of the steps, then cosine decay to 0."""
    from transformers import get_cosine_schedule_with_warmup

    return get_cosine_schedule_with_warmup(optimizer, max(1, int(total_steps * warmup_ratio)), total_steps)
