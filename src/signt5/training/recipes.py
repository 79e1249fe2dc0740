"""One object per training stage: everything that differs between stage 1 (contrastive) and stage 2 (generation).

The trainer asks its recipe for the model, the loss of a micro-batch, the dev evaluation and which way the dev
score is better, and never which stage it runs (as in open_clip's and torchtune's recipes). Stage 1
(``pretrain``) aligns pooled pose and text embeddings with InfoNCE; stage 2 (``finetune``) trains the pose
encoder and the UMT5 decoder to generate the target.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from signt5.data.cache import PreparedSamples
from signt5.data.dataset import pad_batch
from signt5.data.item import PoseItem
from signt5.data.sampler import BucketBatchSampler
from signt5.decoding.generate import EVAL_MAX_FRAMES, autocast_for, generate_texts, joint_ctc_weight
from signt5.decoding.metrics import character_edits, compute_metrics
from signt5.decoding.selection import choose_decoding
from signt5.models.configuration import build_config
from signt5.models.contrastive import SignT5ForContrastivePretraining
from signt5.models.labels import model_inputs
from signt5.models.loading import load_pose_encoder
from signt5.models.modeling import SignT5ForConditionalGeneration
from signt5.models.pose_encoder import PoseEncoderConfig
from signt5.models.text import (add_letter_tokens, load_tokenizer, multi_byte_letters, pretrained_umt5_dir,
                                umt5_config)

from .config import TrainConfig

logger = logging.getLogger(__name__)


@dataclass
class DevResult:
    """A dev evaluation: metrics, the score that picks the best checkpoint, a few decoded examples, and (stage 2)
    the decoding that scored best, which the trainer writes into the model's config."""

    metrics: dict[str, float]
    score: float
    examples: list[str] = field(default_factory=list)
    decoding: str | None = None


class Recipe:
    """What a stage decides; building the model (around a local pretrained UMT5, else from scratch) is shared."""

    stage: str
    model_class: type
    lower_is_better: bool  # of the dev score

    def build_model(self, config: TrainConfig, sign_languages: Sequence[str],
                    ctc_units: Sequence[str] | None = None) -> tuple[Any, Any]:
        """A fresh model and its tokenizer for this stage."""
        pose_config = PoseEncoderConfig.from_json(config.pose_config)
        languages = list(sign_languages) if config.sign_language_conditioning else []
        pretrained = pretrained_umt5_dir(config.umt5_dir)
        tokenizer = load_tokenizer(pretrained)
        options = self.model_options(config, languages, ctc_units, pretrained)
        if options.get("letter_tokens"):
            add_letter_tokens(tokenizer, options["letter_tokens"])  # before the vocabulary size is read
        if pretrained is not None:
            model = self.model_class.from_umt5(pretrained, pose_config, config.data, languages, config.target,
                                               **options)
        else:
            text = umt5_config(config.text_config, vocab_size=len(tokenizer))
            model = self.model_class(build_config(pose_config, text, config.data, languages, config.target,
                                                  **options))
        self.initialise(model, config, pretrained)
        return model, tokenizer

    def model_options(self, config: TrainConfig, languages: list[str], ctc_units: Sequence[str] | None,
                      pretrained: Path | None) -> dict[str, Any]:
        """This stage's settings of the model config, beyond the pose encoder, data, languages and target."""
        return {}

    def initialise(self, model: Any, config: TrainConfig, pretrained: Path | None) -> None:
        """Anything done to a freshly built model before training (e.g. weights from an earlier stage)."""

    def loss(self, forward_model: torch.nn.Module, model: Any, batch: dict, tokenizer: Any, config: TrainConfig,
             device: torch.device) -> torch.Tensor:
        """One micro-batch's loss; ``forward_model`` may be the DDP wrapper of ``model``."""
        raise NotImplementedError

    def backward_in_parts(self, model: Any, parts: Sequence[dict], tokenizer: Any, config: TrainConfig,
                          device: torch.device, scale: float) -> torch.Tensor:
        """Accumulate the gradients of the batch made of ``parts`` (times ``scale``); returns its loss, detached.

        The loss is a mean over samples, so each part's counts by its share of them. A part whose loss is not
        finite stops it and is returned, before any backward of its own.
        """
        total = sum(len(part["ids"]) for part in parts)
        loss_sum = torch.zeros((), device=device)
        for part in parts:
            loss = self.loss(model, model, part, tokenizer, config, device)
            if not bool(torch.isfinite(loss)):
                return loss.detach()
            share = len(part["ids"]) / total
            (loss * share * scale).backward()
            loss_sum += loss.detach().float() * share
        return loss_sum

    @torch.no_grad()
    def evaluate_dev(self, model: Any, tokenizer: Any, data: PreparedSamples, config: TrainConfig,
                     device: torch.device, **options: Any) -> DevResult:
        """Score the dev samples in eval mode (``options`` go to :meth:`dev_result`); the model goes back to the
        mode it was in."""
        was_training = model.training
        model.eval()
        try:
            return self.dev_result(model, tokenizer, data.items(config.target), config, device, **options)
        finally:
            model.train(was_training)

    def dev_result(self, model: Any, tokenizer: Any, items: list[PoseItem], config: TrainConfig,
                   device: torch.device, **options: Any) -> DevResult:
        raise NotImplementedError


class ContrastiveRecipe(Recipe):
    """Stage 1: InfoNCE between pooled pose and text embeddings; dev score = retrieval top-1 accuracy."""

    stage = "pretrain"
    model_class = SignT5ForContrastivePretraining
    lower_is_better = False

    def backward_in_parts(self, model: Any, parts: Sequence[dict], tokenizer: Any, config: TrainConfig,
                          device: torch.device, scale: float) -> torch.Tensor:
        """InfoNCE contrasts the whole batch, so parts would see fewer negatives: embed the parts without a graph,
        take the loss's gradient with respect to the embeddings, then re-run each part with its dropout as before
        and back-propagate that gradient (GradCache, Gao et al. 2021). Memory is one part's; gradients are exact.
        """
        pose_inputs = [model_inputs(part, model.config, None, device) for part in parts]
        rng_states, pooled = [], []
        with torch.no_grad():
            for inputs in pose_inputs:
                rng_states.append(_rng_state(device))
                pooled.append(model.pose_features(**inputs))
        pose_pooled = torch.cat(pooled).requires_grad_(True)  # (B, D), the parts' order
        labels = [label for part in parts for label in part["labels"]]
        text_pooled = model.text_features(**_text_inputs(tokenizer, labels, device, config.max_target_length))
        loss, _, _ = model.head(pose_pooled, text_pooled)
        if not bool(torch.isfinite(loss)):
            return loss.detach()
        (loss * scale).backward()  # the head and the text tower get theirs; pose_pooled.grad is the rest
        grads = pose_pooled.grad.split([len(part["ids"]) for part in parts])
        for inputs, state, grad in zip(pose_inputs, rng_states, grads):
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                _set_rng_state(device, state)
                model.pose_features(**inputs).backward(grad)
        return loss.detach()

    def initialise(self, model: Any, config: TrainConfig, pretrained: Path | None) -> None:
        if pretrained is not None:
            logger.info("stage 1: text tower = pretrained UMT5 encoder from %s, frozen", pretrained)
        else:
            logger.info("stage 1: no pretrained UMT5 in %s, so both towers train from scratch (CLIP-style); "
                        "aligning to a frozen random text encoder would align to noise", config.umt5_dir)

    def loss(self, forward_model: torch.nn.Module, model: Any, batch: dict, tokenizer: Any, config: TrainConfig,
             device: torch.device) -> torch.Tensor:
        inputs = model_inputs(batch, model.config, None, device)
        inputs.update(_text_inputs(tokenizer, batch["labels"], device, config.max_target_length))
        return forward_model(**inputs).loss

    def dev_result(self, model: Any, tokenizer: Any, items: list[PoseItem], config: TrainConfig,
                   device: torch.device, **options: Any) -> DevResult:
        pose_embs, text_embs, order = [], [], []
        lengths = [item["pose"].shape[0] for item in items]
        for indices in BucketBatchSampler(lengths, config.eval_batch_size, shuffle=False, max_frames=EVAL_MAX_FRAMES):
            batch = pad_batch([items[i] for i in indices])
            inputs = model_inputs(batch, model.config, None, device)
            inputs.update(_text_inputs(tokenizer, batch["labels"], device, config.max_target_length))
            with autocast_for(device):
                out = model(**inputs)
            pose_embs.append(out.pose_embeds.float())
            text_embs.append(out.text_embeds.float())
            order += indices
        back = torch.as_tensor(order).argsort()  # the items' own order again
        pose, text = torch.cat(pose_embs)[back], torch.cat(text_embs)[back]
        similarity = pose @ text.t()  # (N, N)
        labels = [item["label"] for item in items]
        same = torch.tensor([[a == b for b in labels] for a in labels], device=similarity.device)
        pose_to_text = same[torch.arange(len(items)), similarity.argmax(1)].float().mean().item()
        text_to_pose = same[similarity.argmax(0), torch.arange(len(items))].float().mean().item()
        metrics = {"retrieval_top1": 50.0 * (pose_to_text + text_to_pose), "pose_to_text_top1": 100 * pose_to_text,
                   "text_to_pose_top1": 100 * text_to_pose}
        return DevResult(metrics, metrics["retrieval_top1"])


class GenerationRecipe(Recipe):
    """Stage 2: pose encoder + UMT5 decoder with the hybrid CTC/attention loss; dev score = the best decoding's CER."""

    stage = "finetune"
    model_class = SignT5ForConditionalGeneration
    lower_is_better = True

    def model_options(self, config: TrainConfig, languages: list[str], ctc_units: Sequence[str] | None,
                      pretrained: Path | None) -> dict[str, Any]:
        """``ctc_units`` ("language:letter" classes of the training labels) replace token ids as CTC classes
        when ``config.ctc_classes`` is ``letters``, the target a gloss, the vocabulary bytes and the sign
        language known; otherwise CTC runs over the tokenizer's ids."""
        options: dict[str, Any] = {
            "ctc_weight": config.ctc_weight, "decoder_memory": config.decoder_memory,
            "guided_attention_weight": config.guided_attention_weight, "positions": config.positions,
            "guided_attention": config.guided_attention,
            "memory_spelling": config.memory_spelling and config.ctc_weight > 0 and config.decoder_memory == "frames",
            "decoder_gradient_to_encoder": config.decoder_gradient_to_encoder,
            "label_smoothing": config.label_smoothing,
            "aligned_attention_slope": config.aligned_attention_slope if config.positions == "ctc" else 0.0}
        if (config.ctc_classes == "letters" and ctc_units and languages and pretrained is None
                and config.target == "gloss"):
            options["ctc_units"] = list(ctc_units)
            if config.letter_tokens:
                options["letter_tokens"] = multi_byte_letters(ctc_units)
        return options

    def initialise(self, model: Any, config: TrainConfig, pretrained: Path | None) -> None:
        if config.init_from:  # the pose encoder of a stage-1 run
            load_pose_encoder(model, config.init_from)

    def loss(self, forward_model: torch.nn.Module, model: Any, batch: dict, tokenizer: Any, config: TrainConfig,
             device: torch.device) -> torch.Tensor:
        inputs = model_inputs(batch, model.config, tokenizer, device, config.max_target_length)
        if config.decoder_steps:  # the encoder phase: the decoder trains afterwards (decoder_phase.py)
            inputs["ctc_only"] = True
        return forward_model(**inputs).loss

    def dev_result(self, model: Any, tokenizer: Any, items: list[PoseItem], config: TrainConfig,
                   device: torch.device, decodings: Sequence[str] | None = None, **options: Any) -> DevResult:
        """Every decoding the model has (attention; with a CTC head also CTC and joint), or those of
        ``decodings``, scored on dev; the chosen one (``decoding/selection.py``: the lowest CER unless dev cannot
        tell it from joint or attention) gives the result's metrics and examples."""
        refs = [item["label"] for item in items]
        has_ctc = getattr(model, "ctc_head", None) is not None
        decodings = list(decodings or ["attention"] + (["joint", "ctc"] if has_ctc else []))
        results = {}
        for decoding in decodings:  # joint: same beams, the checkpoint's CTC weight (ESPnet's 0.3 by default)
            hyps, speed = generate_texts(model, tokenizer, items, config.eval_batch_size, config.num_beams,
                                         config.max_target_length, decoding=decoding,
                                         ctc_weight=joint_ctc_weight(model.config))
            results[decoding] = (compute_metrics(refs, hyps), hyps, speed)
        best = choose_decoding({d: [character_edits(r, h) for r, h in zip(refs, results[d][1])] for d in decodings})
        report, hyps, speed = results[best]
        metrics = {k: report.overall[k] for k in ("cer", "wer", "bleu4", "chrf", "exact_match")}
        metrics.update({f"cer_{d}": results[d][0].overall["cer"] for d in decodings})
        metrics.update({f"samples_per_second_{d}": results[d][2] for d in decodings})
        metrics["samples_per_second"] = speed
        examples = [f"[{best}] {r}  ->  {h}" for r, h in list(zip(refs, hyps))[:8]]
        return DevResult(metrics, metrics["cer"], examples, decoding=best)


RECIPES: dict[str, Recipe] = {"pretrain": ContrastiveRecipe(), "finetune": GenerationRecipe()}


def recipe_for(stage: str) -> Recipe:
    """The recipe of ``TrainConfig.stage`` (``pretrain`` or ``finetune``)."""
    return RECIPES[stage]


def build_model(config: TrainConfig, sign_languages: Sequence[str],
                ctc_units: Sequence[str] | None = None) -> tuple[Any, Any]:
    """A fresh model and tokenizer for ``config.stage``."""
    return recipe_for(config.stage).build_model(config, sign_languages, ctc_units)


def _rng_state(device: torch.device) -> tuple:
    return (torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None)


def _set_rng_state(device: torch.device, state: tuple) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def _text_inputs(tokenizer: Any, texts: list[str], device: torch.device, max_length: int) -> dict[str, torch.Tensor]:
    enc = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    return {"input_ids": enc["input_ids"].to(device), "attention_mask": enc["attention_mask"].to(device)}
