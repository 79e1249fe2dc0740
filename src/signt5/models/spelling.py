"""The CTC head's reading, spelled in the decoder's own tokens and added to its memory (``memory_spelling``).

Self-conditioned CTC (Nozaki & Komatsu 2021) feeds the CTC posteriors back into the encoder. Here the
posterior over units (a letter of a sign language, or a token) is turned into the expected *spelling*
of the frame: the decoder's embeddings of the unit's bytes, one learned projection per byte slot. A
rare letter ("gss:Ψ", two bytes) is then read through the same byte embeddings the decoder writes with,
instead of an embedding learned from its few examples; the decoder still reads the frames beside it.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .text import BYTE_OFFSET


def unit_spelling_table(ctc_units: Sequence[str] | None, num_classes: int) -> torch.Tensor:
    """(C, J) token ids spelling each CTC class, -1 where a unit is shorter; class 0 (blank) spells nothing.

    Letter units ("language:letter") are spelled in UTF-8 bytes of the byte vocabulary; without units a
    class is a token and spells itself.
    """
    if not ctc_units:
        table = torch.arange(num_classes).unsqueeze(1)  # (C, 1)
        table[0] = -1
        return table
    spellings = [[b + BYTE_OFFSET for b in unit.split(":", 1)[-1].encode("utf-8")] for unit in ctc_units]
    width = max(len(s) for s in spellings)
    table = torch.full((num_classes, width), -1, dtype=torch.long)
    for i, spelling in enumerate(spellings, start=1):
        table[i, : len(spelling)] = torch.tensor(spelling)
    return table


class MemorySpelling(nn.Module):
    """Adds to each memory frame Σ_c p(c | frame) · spelling(c), with p the (detached) CTC posteriors."""

    def __init__(self, ctc_units: Sequence[str] | None, num_classes: int, d_model: int):
        super().__init__()
        self.units, self.num_classes = list(ctc_units or []), num_classes
        slots = max((len(u.split(":", 1)[-1].encode("utf-8")) for u in self.units), default=1)  # the table's J
        # derived from the config: built again at first use, since from_pretrained creates modules on the meta
        # device and leaves a non-persistent buffer uninitialised
        self._table: torch.Tensor | None = None
        # one projection per token slot of a spelling, (J, D_in, D_out); zero at the start, so the decoder first
        # trains as it would without the spelling and learns how much to read of it (N(0, 0.02) put it at a
        # third of the memory's scale and slowed the decoder: BENCHMARKS.md). A Parameter, not Linear layers,
        # so transformers' generic initialisation leaves it at zero.
        self.slot_weights = nn.Parameter(torch.zeros(slots, d_model, d_model))
        self.blank = nn.Parameter(torch.zeros(d_model))

    def forward(self, ctc_log_probs: torch.Tensor, token_embeddings: nn.Embedding) -> torch.Tensor:
        """(B, T', D) to add to the memory, from the CTC head's log-probabilities (B, T', C).

        Σ_j W_j (P @ E_j), with E_j the embeddings of every class's j-th token: the projections run per frame
        rather than per class, which keeps a token-level CTC over a 256k vocabulary affordable.
        """
        probs = ctc_log_probs.detach().exp().to(token_embeddings.weight.dtype)  # (B, T', C)
        if self._table is None or self._table.device != probs.device:
            self._table = unit_spelling_table(self.units, self.num_classes).to(probs.device)
        table = self._table
        present = (table >= 0).unsqueeze(-1)  # (C, J, 1)
        tokens = token_embeddings(table.clamp_min(0)) * present  # (C, J, D)
        spelled = sum((probs @ tokens[:, j]) @ weight for j, weight in enumerate(self.slot_weights))  # (B, T', D)
        return spelled + probs[..., :1] * self.blank
