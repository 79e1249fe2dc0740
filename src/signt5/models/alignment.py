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


def emission_places(emissions: torch.Tensor, mask: torch.Tensor, blank: int = 0) -> torch.Tensor:
    """(B, S) each frame's place among the emitted CTC units: k on the frames of the k-th unit emitted, k - 1/2
    on the blanks before it (and after the last unit). emissions (B, S) is each frame's CTC class."""
    unit = emissions.ne(blank) & mask  # (B, S)
    starts = unit.clone()
    starts[:, 1:] &= emissions[:, 1:] != emissions[:, :-1]
    count = starts.long().cumsum(1).float()  # units begun up to each frame
    return torch.where(unit, count - 1, count - 0.5)


def emission_positions(places: torch.Tensor, mask: torch.Tensor, dim: int, dtype: torch.dtype = torch.float32,
                       shift: torch.Tensor | None = None) -> torch.Tensor:
    """(B, S, dim): memory positions counted in CTC emissions (``places``, see :func:`emission_places`), from
    the start (half the channels) and the end.

    The decoder's n-th letter then reads position n whatever the signing speed: frame positions alone leave it
    to count frames. A ``shift`` (B, 1) moves the count from the start (training: randomised positions, Ruoss et
    al. 2023, so that counts past the longest training word are not new at test time).
    """
    units = (places.masked_fill(~mask, -1).amax(1, keepdim=True).floor() + 1).clamp_min(0)  # (B, 1) emitted
    from_end = (units - 1 - places).clamp_min(-0.5)
    position = places if shift is None else places + shift  # counts from the start begin there, from the end do not
    half = dim // 2
    return torch.cat([sinusoids(position, half), sinusoids(from_end, dim - half)], -1).to(dtype)


def aligned_attention_bias(places: torch.Tensor, mask: torch.Tensor, counts: torch.Tensor, slope: float,
                           dtype: torch.dtype) -> torch.Tensor:
    """(B, 1, L, S) added to the decoder's cross-attention logits: 0 on the frames of the letter a token reads
    (its unit count; the blanks either side included), ``slope`` less per unit further, padding masked.

    Teacher-forced, the demo's decoder put 0.8 of its attention on the next letter's frames for 27 of its 46
    wrong test letters, though positions told it where it was (BENCHMARKS.md): this keeps it on its letter
    unless the frames disagree strongly (unscaled UMT5 logits are O(10))."""
    distance = ((places[:, None, :] - counts[:, :, None].to(places.dtype)).abs() - 0.5).clamp_min(0)  # (B, L, S)
    bias = (distance * -slope).masked_fill(~mask[:, None, :], torch.finfo(dtype).min)
    return bias[:, None].to(dtype)


def unit_positions(counts: torch.Tensor, offset: int, dim: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(B, L, dim) for the decoder's inputs: half the channels the units finished so far (``counts``, matching
    :func:`emission_positions`' count from the start), half the token index from ``offset``."""
    half = dim // 2
    index = torch.arange(offset, offset + counts.shape[1], device=counts.device).expand(counts.shape[0], -1)
    return torch.cat([sinusoids(counts, half), sinusoids(index, dim - half)], -1).to(dtype)


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


def ctc_viterbi(log_probs: torch.Tensor, lengths: Sequence[int], targets: Sequence[Sequence[int]],
                blank: int = 0) -> list[list[int] | None]:
    """The best CTC alignment of each target: per frame the index of its target unit, -1 for blank.

    log_probs (B, T, C) and each sample's frame count; None where the target cannot fit its frames.
    Batched over samples, one step per frame (the forced alignment of CTC segmentation and ESPnet).
    """
    log_probs = log_probs.detach().float()
    b, t_max, _ = log_probs.shape
    n_max = max((len(t) for t in targets), default=0)
    states = 2 * n_max + 1
    ext = torch.full((b, states), blank, dtype=torch.long, device=log_probs.device)  # (B, S): blank u1 blank u2 ..
    for i, row in enumerate(targets):
        if row:
            ext[i, 1:2 * len(row):2] = torch.tensor(list(row), dtype=torch.long, device=log_probs.device)
    used = torch.tensor([2 * len(row) + 1 for row in targets], device=log_probs.device)
    valid = torch.arange(states, device=log_probs.device) < used.unsqueeze(1)  # (B, S)
    skip = torch.zeros_like(valid)
    skip[:, 2:] = (ext[:, 2:] != blank) & (ext[:, 2:] != ext[:, :-2])  # may jump over a blank
    emit = log_probs.gather(2, ext.unsqueeze(1).expand(b, t_max, states))  # (B, T, S)
    neg = torch.tensor(float("-inf"), device=log_probs.device)
    score = torch.full((b, states), float("-inf"), device=log_probs.device)
    score[:, :2] = emit[:, 0, :2]
    score = torch.where(valid, score, neg)
    back = torch.zeros(b, t_max, states, dtype=torch.long, device=log_probs.device)  # 0 stay, 1 or 2 states back
    frames = torch.as_tensor(list(lengths), device=log_probs.device)
    for t in range(1, t_max):
        one = _shifted_right(score, 1)
        two = torch.where(skip, _shifted_right(score, 2), neg)
        best, step = torch.stack([score, one, two], -1).max(-1)  # (B, S)
        new = torch.where(valid, best + emit[:, t], neg)
        active = (t < frames).unsqueeze(1)
        score = torch.where(active, new, score)
        back[:, t] = torch.where(active, step, 0)
    paths: list[list[int] | None] = []
    back_rows, score_rows = back.tolist(), score.tolist()
    for i, row in enumerate(targets):
        last = 2 * len(row)
        ends = [s for s in (last, last - 1) if s >= 0]
        state = max(ends, key=lambda s: score_rows[i][s])
        if not math.isfinite(score_rows[i][state]) or int(lengths[i]) < 1:
            paths.append(None)
            continue
        path = []
        for t in range(int(lengths[i]) - 1, -1, -1):
            path.append((state - 1) // 2 if state % 2 else -1)
            state -= back_rows[i][t][state]
        paths.append(path[::-1])
    return paths


def _shifted_right(score: torch.Tensor, shift: int) -> torch.Tensor:
    """score shifted ``shift`` states to the right along dim 1, -inf coming in: the predecessors' scores."""
    out = torch.full_like(score, float("-inf"))
    out[:, shift:] = score[:, :-shift]
    return out


def aligned_frames(path: Sequence[int], token_units: Sequence[int | None], width: int) -> torch.Tensor:
    """(L, width) bool: the frames each target token should read, from a CTC alignment ``path``.

    ``token_units[l]`` is the unit a token spells (k >= 0), ``-(k + 1)`` for a token written between units
    k - 1 and k (a space, or end-of-sequence after the last), None for padding. A unit reads its own frames;
    a gap token the frames between its neighbours, or the two facing edges where they touch.
    """
    frames = torch.zeros(len(token_units), width, dtype=torch.bool)
    spans: dict[int, list[int]] = {}
    for t, unit in enumerate(path):
        if unit >= 0:
            spans.setdefault(unit, [t, t])[1] = t
    count = len(path)
    for l, unit in enumerate(token_units):
        if unit is None:
            continue
        if unit >= 0:
            if unit in spans:
                frames[l, spans[unit][0]:spans[unit][1] + 1] = True
            continue
        k = -unit - 1
        left = spans[k - 1][1] if k - 1 in spans else -1
        right = spans[k][0] if k in spans else count
        if right - left > 1:
            frames[l, left + 1:right] = True
        else:
            frames[l, [max(left, 0), min(right, count - 1)]] = True
    return frames


def aligned_attention_loss(cross_attentions: Sequence[torch.Tensor], frames: torch.Tensor,
                           token_mask: torch.Tensor) -> torch.Tensor:
    """-log of the cross-attention mass on each token's aligned frames, averaged over tokens and layers.

    frames (B, L, S) bool from :func:`aligned_frames`; attention (B, H, L, S) per layer is averaged over
    heads first, as in :func:`guided_attention_loss`.
    """
    token_mask = token_mask & frames.any(-1)
    losses = []
    for attention in cross_attentions:
        mass = (attention.float().mean(1) * frames).sum(-1)  # (B, L)
        loss = -torch.log(mass.clamp_min(1e-6))
        losses.append((loss * token_mask).sum() / token_mask.sum().clamp_min(1))
    return torch.stack(losses).mean()
