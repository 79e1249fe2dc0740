"""What differs between the stages: the training loss and the dev evaluation."""

from __future__ import annotations

from typing import Any

import torch

from signt5.data.cache import PreparedSamples
from signt5.data.dataset import pad_batch
from signt5.decoding.generate import autocast_for, generate_texts, joint_ctc_weight
from signt5.evaluation.metrics import compute_metrics
from signt5.models.modeling import model_inputs

from .config import TrainConfig


def _text_inputs(tokenizer: Any, texts: list[str], device: torch.device, max_length: int) -> dict[str, torch.Tensor]:
    enc = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    return {"input_ids": enc["input_ids"].to(device), "attention_mask": enc["attention_mask"].to(device)}


def training_loss(forward_model: torch.nn.Module, model: Any, batch: dict, tokenizer: Any, config: TrainConfig,
                  device: torch.device) -> torch.Tensor:
    """One micro-batch's loss; ``forward_model`` may be the DDP wrapper of ``model``."""
    if config.stage == "pretrain":
        inputs = model_inputs(batch, model.config, None, device)
        inputs.update(_text_inputs(tokenizer, batch["labels"], device, config.max_target_length))
        return forward_model(**inputs).loss
    inputs = model_inputs(batch, model.config, tokenizer, device, config.max_target_length)
    return forward_model(**inputs).loss


@torch.no_grad()
def evaluate_dev(model: Any, tokenizer: Any, data: PreparedSamples, config: TrainConfig,
                 device: torch.device) -> tuple[dict[str, float], float, list[str]]:
    """Dev metrics, the score that picks the best checkpoint, and a few decoded examples."""
    was_training = model.training
    model.eval()
    items = data.items(config.target)
    try:
        if config.stage == "finetune":
            refs = [item["label"] for item in items]
            has_ctc = getattr(model, "ctc_head", None) is not None
            decodings = ["attention"] + (["ctc", "joint"] if has_ctc else [])
            results = {}
            for decoding in decodings:  # joint: same beams, the checkpoint's CTC weight (ESPnet's 0.3 by default)
                hyps, speed = generate_texts(model, tokenizer, items, config.eval_batch_size, config.num_beams,
                                             config.max_target_length, decoding=decoding,
                                             ctc_weight=joint_ctc_weight(model.config))
                results[decoding] = (compute_metrics(refs, hyps), hyps, speed)
            best = min(decodings, key=lambda d: results[d][0].overall["cer"])
            model.config.decoding = best  # the checkpoint decodes the way that scored best on dev
            report, hyps, speed = results[best]
            metrics = {k: report.overall[k] for k in ("cer", "wer", "bleu4", "chrf", "exact_match")}
            metrics.update({f"cer_{d}": results[d][0].overall["cer"] for d in decodings})
            metrics.update({f"samples_per_second_{d}": results[d][2] for d in decodings})
            metrics["samples_per_second"] = speed
            examples = [f"[{best}] {r}  ->  {h}" for r, h in list(zip(refs, hyps))[:8]]
            return metrics, metrics["cer"], examples
        metrics = _contrastive_dev(model, tokenizer, items, config, device)
        return metrics, metrics["retrieval_top1"], []
    finally:
        model.train(was_training)


def _contrastive_dev(model: Any, tokenizer: Any, items: list[dict], config: TrainConfig,
                     device: torch.device) -> dict[str, float]:
    pose_embs, text_embs = [], []
    for start in range(0, len(items), config.eval_batch_size):
        batch = pad_batch(items[start:start + config.eval_batch_size])
        inputs = model_inputs(batch, model.config, None, device)
        inputs.update(_text_inputs(tokenizer, batch["labels"], device, config.max_target_length))
        with autocast_for(device):
            out = model(**inputs)
        pose_embs.append(out.pose_embeds.float())
        text_embs.append(out.text_embeds.float())
    pose, text = torch.cat(pose_embs), torch.cat(text_embs)
    similarity = pose @ text.t()  # (N, N)
    labels = [item["label"] for item in items]
    same = torch.tensor([[a == b for b in labels] for a in labels], device=similarity.device)
    pose_to_text = same[torch.arange(len(items)), similarity.argmax(1)].float().mean().item()
    text_to_pose = same[similarity.argmax(0), torch.arange(len(items))].float().mean().item()
    return {"retrieval_top1": 50.0 * (pose_to_text + text_to_pose), "pose_to_text_top1": 100 * pose_to_text,
            "text_to_pose_top1": 100 * text_to_pose}
