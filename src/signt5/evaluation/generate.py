"""Batched, length-bucketed generation: shared by dev evaluation, ``evaluate`` and ``inference``."""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Sequence

import torch

from signt5.data.dataset import pad_batch
from signt5.training.sampler import BucketBatchSampler

logger = logging.getLogger(__name__)


def autocast_for(device: torch.device):
    """bf16 autocast on CUDA (fp16 overflows T5), nothing on CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


@torch.no_grad()
def generate_texts(model: Any, tokenizer: Any, items: Sequence[dict], batch_size: int = 16, num_beams: int = 1,
                   max_new_tokens: int = 64, progress: Callable[[int], None] | None = None
                   ) -> tuple[list[str], float]:
    """Decode every item (``{"pose", "mask", "sign_language", ...}``); returns texts in input order and samples/s.

    Items are sorted by length into batches so little time goes to padding.
    """
    from signt5.models.modeling import model_inputs

    model.eval()
    device = next(model.parameters()).device
    lengths = [item["pose"].shape[0] for item in items]
    outputs: list[str] = [""] * len(items)
    start = time.perf_counter()
    for indices in BucketBatchSampler(lengths, batch_size, shuffle=False):
        batch = pad_batch([{**items[i], "label": "", "id": str(i)} for i in indices])
        batch["labels"] = None
        inputs = model_inputs(batch, model.config, None, device)
        with autocast_for(device):
            ids = model.generate(**inputs, num_beams=num_beams, max_new_tokens=max_new_tokens,
                                 do_sample=False)
        for i, text in zip(indices, tokenizer.batch_decode(ids, skip_special_tokens=True)):
            outputs[i] = text.strip()
        if progress is not None:
            progress(len(indices))
    seconds = time.perf_counter() - start
    return outputs, len(items) / max(seconds, 1e-9)
