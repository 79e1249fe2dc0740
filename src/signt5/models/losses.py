"""Contrastive (CLIP-style) alignment of pose and text embeddings."""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

LOGIT_SCALE_INIT = math.log(1 / 0.07)  # CLIP's initial temperature
LOGIT_SCALE_MAX = math.log(100.0)  # CLIP clamps the scale at 100


def gather_across_ranks(x: torch.Tensor) -> torch.Tensor:
    """Every process's rows (B_r, E), concatenated in rank order, with gradients for the local part (open_clip's
    ``gather_with_grad``); unequal batch sizes (a last, shorter batch) are padded for the gather and cut after.
    Without torch.distributed, or with one process, ``x`` itself."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    size = torch.tensor([x.shape[0]], device=x.device)
    sizes = [torch.zeros_like(size) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, size)
    longest = int(max(s.item() for s in sizes))
    padded = F.pad(x, (0, 0, 0, longest - x.shape[0]))
    parts = all_gather(padded)  # differentiable: each rank's gradient flows back to its own rows
    return torch.cat([part[: int(n.item())] for part, n in zip(parts, sizes)])


def info_nce(pose_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor | float,
             gather: bool = True) -> torch.Tensor:
    """Symmetric InfoNCE over a batch whose i-th pose and i-th text belong together.

    Embeddings (B, E) are L2-normalised here; ``logit_scale`` is the log of the inverse temperature. Under
    torch.distributed every process contrasts against all processes' pairs (world_size x B negatives, not B):
    each computes the loss of the whole gathered batch, so with DDP's gradient averaging the update equals one
    process's on the concatenated batch. ``gather=False`` keeps to the local batch (evaluation on one rank).
    """
    pose_emb = F.normalize(pose_emb.float(), dim=-1)
    text_emb = F.normalize(text_emb.float(), dim=-1)
    if gather:
        pose_emb, text_emb = gather_across_ranks(pose_emb), gather_across_ranks(text_emb)
    scale = torch.as_tensor(logit_scale, dtype=torch.float32, device=pose_emb.device).exp()
    logits = scale * pose_emb @ text_emb.t()  # (B, B): row i = pose i against every text
    targets = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets))


class ContrastiveHead(nn.Module):
    """Projects pooled pose and text features to a shared space, with a learnable temperature."""

    def __init__(self, pose_dim: int, text_dim: int, embed_dim: int):
        super().__init__()
        self.pose_projection = nn.Linear(pose_dim, embed_dim, bias=False)
        self.text_projection = nn.Linear(text_dim, embed_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(LOGIT_SCALE_INIT))

    def reset_logit_scale(self) -> None:
        with torch.no_grad():
            self.logit_scale.fill_(LOGIT_SCALE_INIT)

    def clamped_logit_scale(self) -> torch.Tensor:
        return self.logit_scale.clamp(0.0, LOGIT_SCALE_MAX)

    def forward(self, pose_pooled: torch.Tensor, text_pooled: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (loss, pose embeddings, text embeddings); the embeddings are L2-normalised."""
        pose_emb, text_emb = self.pose_projection(pose_pooled), self.text_projection(text_pooled)
        # training: every rank's pairs as negatives; evaluation (rank 0 alone under DDP) would wait for the others
        loss = info_nce(pose_emb, text_emb, self.clamped_logit_scale(), gather=self.training)
        return loss, F.normalize(pose_emb, dim=-1), F.normalize(text_emb, dim=-1)
