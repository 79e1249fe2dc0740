"""CTC prefix scores for joint CTC/attention decoding, many hypotheses at once.

Algorithm 2 of Watanabe et al., "Hybrid CTC/attention architecture for end-to-end speech
recognition" (2017), vectorised over hypotheses and candidate labels as in ESPnet's
``CTCPrefixScoreTH``: per hypothesis h the forward variables r^n_t(h) (paths whose frame t emits
h's last label) and r^b_t(h) (frame t is blank), and the prefix score psi(h) = log P(h is a prefix
of the collapsed alignment). Padded frames emit blank with probability 1, so every score of a
shorter element stops at its last real frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

LOG_ZERO = -1e10  # log(0) kept finite (as ESPnet does): differences of two impossible scores stay finite


@dataclass
class CTCState:
    """Forward variables of N hypotheses: r (T, 2, N) with [:, 0] = r^n and [:, 1] = r^b, and their scores."""

    r: torch.Tensor  # (T, 2, N)
    score: torch.Tensor  # (N,) prefix score psi(h)
    last: torch.Tensor  # (N,) last label, -1 for the empty prefix
    length: torch.Tensor  # (N,) number of labels in h

    def select(self, index: torch.Tensor) -> "CTCState":
        """The hypotheses at ``index`` (N',), in that order."""
        return CTCState(self.r[:, :, index], self.score[index], self.last[index], self.length[index])

    @staticmethod
    def cat(states: list["CTCState"]) -> "CTCState":
        return CTCState(torch.cat([s.r for s in states], 2), torch.cat([s.score for s in states]),
                        torch.cat([s.last for s in states]), torch.cat([s.length for s in states]))


class CTCPrefixScorer:
    """Prefix and full-sequence CTC scores over one batch of CTC outputs; hypotheses name their batch element."""

    def __init__(self, log_probs: torch.Tensor, frame_mask: torch.Tensor | None = None, blank: int = 0):
        """``log_probs`` (B, T, C) log-softmaxed CTC outputs, ``frame_mask`` (B, T) True on real frames."""
        log_probs = log_probs.float()
        if frame_mask is None:
            frame_mask = torch.ones(log_probs.shape[:2], dtype=torch.bool, device=log_probs.device)
        mask = frame_mask.bool().unsqueeze(-1)  # (B, T, 1)
        x = log_probs.masked_fill(~mask, LOG_ZERO)
        x[..., blank] = torch.where(mask[..., 0], log_probs[..., blank], torch.zeros_like(log_probs[..., blank]))
        self.x = x.transpose(0, 1).contiguous()  # (T, B, C)
        self.blank = blank

    @property
    def batch_size(self) -> int:
        return self.x.shape[1]

    def initial_state(self, batch_index: torch.Tensor) -> CTCState:
        """The empty prefix for each batch element in ``batch_index`` (N,): only blanks so far, psi = log 1."""
        n = len(batch_index)
        blanks = self.x[:, batch_index, self.blank].cumsum(0)  # (T, N)
        r = torch.stack([torch.full_like(blanks, LOG_ZERO), blanks], 1)  # (T, 2, N)
        device = self.x.device
        return CTCState(r, torch.zeros(n, device=device), torch.full((n,), -1, dtype=torch.long, device=device),
                        torch.zeros(n, dtype=torch.long, device=device))

    def extend(self, state: CTCState, parent: torch.Tensor, batch_index: torch.Tensor,
               labels: torch.Tensor) -> CTCState:
        """h + c for M requests: hypothesis ``parent`` (M,) of ``state``, of batch element ``batch_index`` (M,),
        extended by label ``labels`` (M,) (never blank)."""
        r_parent = state.r[:, :, parent]  # (T, 2, M)
        x_label = self.x[:, batch_index, labels]  # (T, M)
        x_blank = self.x[:, batch_index, self.blank]  # (T, M)
        # A repeated label needs a blank in between: only r^b of h may precede it.
        repeat = (labels == state.last[parent]).unsqueeze(0)  # (1, M)
        phi = torch.logaddexp(r_parent[:, 1], r_parent[:, 0].masked_fill(repeat, LOG_ZERO))  # (T, M)
        empty = state.length[parent] == 0  # (M,)
        frames = x_label.shape[0]
        # Frames before len(h) cannot hold h + c: start the recursion where it can.
        start = max(1, int(state.length[parent].min().item())) if len(parent) else 1
        start = min(start, frames)
        r_n = [torch.full_like(x_label[0], LOG_ZERO)] * start
        r_b = [torch.full_like(x_label[0], LOG_ZERO)] * start
        if start == 1:
            r_n[0] = torch.where(empty, x_label[0], torch.full_like(x_label[0], LOG_ZERO))
        for t in range(start, frames):
            r_n.append(torch.logaddexp(r_n[t - 1], phi[t - 1]) + x_label[t])
            r_b.append(torch.logaddexp(r_n[t - 1], r_b[t - 1]) + x_blank[t])
        r = torch.stack([torch.stack(r_n), torch.stack(r_b)], 1)  # (T, 2, M)
        starts = torch.cat([r[:1, 0], phi[:-1] + x_label[1:]], 0)  # (T, M): c first emitted at frame t
        return CTCState(r, torch.logsumexp(starts, 0), labels.clone(), state.length[parent] + 1)

    @staticmethod
    def full_score(state: CTCState) -> torch.Tensor:
        """log P(the collapsed alignment is exactly h) for each hypothesis (N,): the end-of-sequence score."""
        return torch.logaddexp(state.r[-1, 0], state.r[-1, 1])

    def state_of(self, batch_index: int, labels: list[int]) -> CTCState:
        """One hypothesis built from scratch, label by label (when no cached state holds it)."""
        index = torch.tensor([batch_index], device=self.x.device)
        state = self.initial_state(index)
        zero = torch.zeros(1, dtype=torch.long, device=self.x.device)
        for label in labels:
            state = self.extend(state, zero, index, torch.tensor([label], device=self.x.device))
        return state
