"""Batched, length-bucketed decoding (attention, CTC or joint): shared by dev evaluation, ``evaluate`` and
``inference``."""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Sequence

import torch

from signt5.data.dataset import pad_batch
from signt5.data.item import PoseItem, pose_item
from signt5.data.sampler import BucketBatchSampler

logger = logging.getLogger(__name__)

DECODINGS = ("attention", "ctc", "joint")
# ESPnet uses 0.3 with strong decoders. 0.7 won while ours was young; with memory_spelling and the decoder phase
# 0.5 read dev at 1.74 % against 0.7's 1.87 %, and no test split worse (BENCHMARKS.md, tenth session)
DEFAULT_JOINT_CTC_WEIGHT = 0.5
EVAL_MAX_FRAMES = 4096  # padded frames per decoding batch: memory bounded whatever the longest sample


def autocast_for(device: torch.device):
    """bf16 autocast on CUDA (fp16 overflows T5), nothing on CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


@torch.no_grad()
def generate_texts(model: Any, tokenizer: Any, items: Sequence[PoseItem], batch_size: int = 16, num_beams: int = 1,
                   max_new_tokens: int = 64, progress: Callable[[int], None] | None = None,
                   decoding: str | None = None, ctc_weight: float | None = None,
                   max_frames: int = EVAL_MAX_FRAMES) -> tuple[list[str], float]:
    """Decode every item (its pose, mask and sign language); returns texts in input order and samples/s.

    Items are sorted by length into batches so little time goes to padding; a batch of long samples holds fewer
    of them, at most ``max_frames`` padded frames, so memory does not follow the longest sample. ``decoding`` (default: the
    model's own) is ``attention`` (``generate()``, greedy or beam), ``ctc`` (greedy CTC on the encoder) or
    ``joint`` (``generate()`` rescored by CTC prefix scores with weight ``ctc_weight``, default the model's).
    """
    decoding = decoding or getattr(model.config, "decoding", "attention")
    if decoding not in DECODINGS:
        raise ValueError(f"decoding must be one of {', '.join(DECODINGS)}, got {decoding!r}")
    if ctc_weight is None:
        ctc_weight = joint_ctc_weight(model.config)
    from signt5.models.labels import model_inputs

    model.eval()
    device = next(model.parameters()).device
    lengths = [item["pose"].shape[0] for item in items]
    outputs: list[str] = [""] * len(items)
    start = time.perf_counter()
    for indices in BucketBatchSampler(lengths, batch_size, shuffle=False, max_frames=max_frames):
        batch = pad_batch([pose_item(str(i), items[i]["pose"], items[i]["mask"], sign_language=items[i]["sign_language"])
                           for i in indices])
        batch["labels"] = None
        inputs = model_inputs(batch, model.config, None, device)
        with autocast_for(device):
            if decoding == "ctc":
                texts = [ctc_text(model.config, tokenizer, ids) for ids in model.ctc_decode(**inputs)]
            else:
                ids = _generate(model, inputs, num_beams, max_new_tokens, ctc_weight if decoding == "joint" else None)
                texts = tokenizer.batch_decode(ids, skip_special_tokens=True)
        for i, text in zip(indices, texts):
            outputs[i] = text.strip()
        if progress is not None:
            progress(len(indices))
    seconds = time.perf_counter() - start
    return outputs, len(items) / max(seconds, 1e-9)


def joint_ctc_weight(config: Any) -> float:
    """The CTC weight of joint decoding a checkpoint chose (``joint_ctc_weight``), else the default."""
    value = getattr(config, "joint_ctc_weight", None)
    return DEFAULT_JOINT_CTC_WEIGHT if value is None else float(value)


def _generate(model: Any, inputs: dict, num_beams: int, max_new_tokens: int,
              ctc_weight: float | None) -> torch.Tensor:
    """``generate()``; the encoder runs once and feeds the decoder and the CTC side: with ``ctc_weight`` the joint
    scorer, else the cap that ends a hypothesis past the memory's letters (length.py)."""
    from transformers import LogitsProcessorList

    from .joint import joint_processor
    from .length import length_cap

    encoder_outputs = model.get_encoder()(**inputs)  # carries its own frame mask (attention_mask)
    processor = (length_cap(model, encoder_outputs) if ctc_weight is None else
                 joint_processor(model, encoder_outputs, inputs.get("sign_language_ids"), ctc_weight))
    return model.generate(encoder_outputs=encoder_outputs,
                          logits_processor=LogitsProcessorList([processor] if processor is not None else []),
                          num_beams=num_beams, max_new_tokens=max_new_tokens, do_sample=False)


def ctc_text(config: Any, tokenizer: Any, ids: list[int]) -> str:
    """Text of CTC output ids: letter classes (``config.ctc_units``) come back as a spaced gloss. Token
    CTC is trained without spaces on the byte vocabulary, so a gloss target gets its letters spaced
    again (a multi-character letter such as SCH comes out as S C H; CER, which ignores whitespace, is
    unaffected)."""
    from signt5.models.labels import ctc_units_text
    from signt5.models.text import is_byte_vocabulary

    if getattr(config, "ctc_units", None):
        return ctc_units_text(config.ctc_units, ids)
    text = tokenizer.decode(ids, skip_special_tokens=True)
    if config.target == "gloss" and is_byte_vocabulary(config.text_config, getattr(config, "letter_tokens", None)):
        return " ".join(text.replace(" ", ""))
    return text
