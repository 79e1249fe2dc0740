"""Attention decoding stops where the memory's letters end.

With ``positions`` ctc the decoder finds its place by counting: letters written on its side, CTC emissions on the
memory's. Past the last emission there is nothing left to read, yet a decoder that misses the end-of-sequence
there runs on to the token cap (three test words of the tenth session's demo model: "ه ر ب و ا" written with 30
letters more). This processor lets a hypothesis finish at most ``margin`` letters past the emissions of the CTC
head's best path, then only end-of-sequence.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import LogitsProcessor

# the demo model's CTC wrote one letter too few on 22 of 1,140 test words and two on one: margin 1 leaves those
# to the decoder (its gloss test CER with margin 0 / 1 / 2: 2.17 / 2.43 / 2.62 %; text: 17.3 / 17.0 %; BENCHMARKS.md)
EMISSION_MARGIN = 1


def emission_counts(log_probs: torch.Tensor, mask: torch.Tensor, blank: int = 0) -> torch.Tensor:
    """(B,) units on each sample's CTC best path: the frames' argmax (B, T, C), repeats merged, blanks dropped."""
    best = log_probs.argmax(-1)  # (B, T)
    new = torch.ones_like(mask)
    new[:, 1:] = best[:, 1:] != best[:, :-1]
    return (new & mask & (best != blank)).sum(1)


def tokens_per_unit(config: Any) -> int:
    """The most decoder tokens one unit and its separator take: a letter unit spelled in UTF-8 bytes (letter tokens
    take fewer), or a token (token-level CTC)."""
    units = getattr(config, "ctc_units", None)
    return 1 + (max(len(u.split(":", 1)[-1].encode("utf-8")) for u in units) if units else 1)


class EmissionLengthCap(LogitsProcessor):
    """Only end-of-sequence once a hypothesis has finished ``margin`` units (letters) more than its sample's CTC
    best path emits, or written as many tokens as those units could take (a run-away inside one letter finishes
    none); ``counts`` (B,) per sample, hypotheses in ``generate()``'s order (each sample's beams together)."""

    def __init__(self, model: Any, counts: torch.Tensor, margin: int = EMISSION_MARGIN):
        self.model = model
        self.limits = counts + margin
        self.token_limits = self.limits * tokens_per_unit(model.config)
        self.eos = model.config.text_config.eos_token_id

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        beams = input_ids.shape[0] // self.limits.shape[0]
        limits = self.limits.to(input_ids.device).repeat_interleave(beams)  # (B * beams,)
        token_limits = self.token_limits.to(input_ids.device).repeat_interleave(beams)
        written = self.model.decoder_unit_counts(input_ids)[:, -1]  # (B * beams,) letters finished
        done = (written >= limits) | (input_ids.shape[1] - 1 >= token_limits)  # the first input is the start
        if done.any():
            eos_scores = scores[done, self.eos].clone()
            scores[done] = float("-inf")
            scores[done, self.eos] = eos_scores
        return scores


def length_cap(model: Any, encoder_outputs: Any) -> EmissionLengthCap | None:
    """The cap for ``model``'s attention decoding, or None where the decoder does not count CTC emissions."""
    if getattr(model.config, "positions", None) != "ctc" or getattr(model, "ctc_head", None) is None:
        return None
    from signt5.models.modeling import CTC_BLANK

    log_probs, mask = model.ctc_log_probs(encoder_outputs)
    return EmissionLengthCap(model, emission_counts(log_probs, mask, CTC_BLANK))
