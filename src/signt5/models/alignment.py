"""How the UMT5 decoder finds its way along the signing: positions, and a diagonal prior on cross-attention.

UMT5 has relative position biases in self-attention only, so its cross-attention sees the pose
encoder's output as an unordered set (issue 10: dev attention CER ~380 %, cross-attention on one or two
fixed frames). Absolute positions give both sides an order; the guided-attention loss says where to look.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
from transformers import PreTrainedConfig

GUIDED_ATTENTION_WIDTH = 0.2  # g of Tachibana et al. (2017): how far off the diagonal attention goes unpunished


def sinusoidal_positions(length: int, dim: int, offset: int = 0, device: torch.device | str | None = None,
                         dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Transformer sinusoids (length, dim) for positions offset .. offset + length - 1, amplitude 1.

    UMT5 has relative position biases in self-attention only, so its cross-attention sees the memory
    as an unordered set: nothing says which frame comes first. These give both sides an order.
    """
    position = torch.arange(offset, offset + length, device=device, dtype=torch.float32)  # (L,)
    return sinusoids(position, dim).to(dtype)


def sinusoids(position: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoids (..., dim) of any float positions (...): sin and cos of position / 10000^(2i/dim)."""
    frequency = torch.exp(torch.arange(0, dim, 2, device=position.device, dtype=torch.float32)
                          * (-math.log(10000.0) / dim))
    angle = position.float().unsqueeze(-1) * frequency  # (..., ceil(dim / 2))
    table = torch.zeros(*position.shape, dim, device=position.device, dtype=torch.float32)
    table[..., 0::2] = torch.sin(angle)
    table[..., 1::2] = torch.cos(angle[..., : dim // 2])
    return table


def memory_positions(mask: torch.Tensor, dim: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(B, S, dim): half the channels count frames from the start, half from each sample's own end.

    From the start alone, the last frame of a short sample looks like any middle frame of a long one,
    so the decoder cannot see where the signing ends and when to stop.
    """
    index = torch.arange(mask.shape[1], device=mask.device)  # (S,)
    from_end = (mask.sum(1, keepdim=True) - 1 - index).clamp_min(0)  # (B, S)
    half = dim // 2
    start = sinusoids(index, half).expand(mask.shape[0], -1, -1)  # (B, S, half)
    return torch.cat([start, sinusoids(from_end, dim - half)], -1).to(dtype)


@contextmanager
def eager_attention(config: PreTrainedConfig, enabled: bool = True) -> Iterator[None]:
    """Run the decoder with eager attention for one call, so that it returns its attention weights."""
    if not enabled:
        yield
        return
    previous = config._attn_implementation
    config._attn_implementation = "eager"
    try:
        yield
    finally:
        config._attn_implementation = previous


def guided_attention_loss(cross_attentions: Sequence[torch.Tensor], target_mask: torch.Tensor,
                          memory_mask: torch.Tensor, width: float = GUIDED_ATTENTION_WIDTH) -> torch.Tensor:
    """Attention mass far from the diagonal (Tachibana et al. 2017), averaged over layers and target steps.

    Target step i of L and memory slot j of S are penalised by 1 - exp(-(j/S - i/L)^2 / 2g^2): a monotonic
    prior that tells cross-attention where to look long before it finds out by itself. Attention
    (B, H, L, S) per layer is averaged over heads first, so single heads may still look elsewhere.
    """
    target_length = target_mask.sum(1, keepdim=True).clamp_min(1).to(torch.float32)  # (B, 1)
    memory_length = memory_mask.sum(1, keepdim=True).clamp_min(1).to(torch.float32)  # (B, 1)
    i = (torch.arange(target_mask.shape[1], device=target_mask.device) + 0.5) / target_length  # (B, L)
    j = (torch.arange(memory_mask.shape[1], device=memory_mask.device) + 0.5) / memory_length  # (B, S)
    penalty = 1 - torch.exp(-(j.unsqueeze(1) - i.unsqueeze(2)) ** 2 / (2 * width ** 2))  # (B, L, S)
    penalty = penalty * memory_mask.unsqueeze(1)
    losses = []
    for attention in cross_attentions:
        mass = (attention.float().mean(1) * penalty).sum(-1)  # (B, L)
        losses.append((mass * target_mask).sum() / target_mask.sum().clamp_min(1))
    return torch.stack(losses).mean()
