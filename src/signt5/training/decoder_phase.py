"""Stage 2 in two phases: the pose encoder and CTC head first, then the UMT5 decoder on the encoder as it ended.

The encoder learns from CTC alone (``decoder_gradient_to_encoder`` 0), so a decoder trained beside it chases a
moving target: on the same finished encoder, the demo's jointly trained decoder read dev at 7.3 % CER and a fresh
decoder trained on the still encoder at 2.9-3.5 % (BENCHMARKS.md). With ``decoder_steps`` the epochs train the
encoder and CTC head alone (the decoder is not run, so they are also faster), then the decoder trains that many
steps on the frozen encoder's outputs, computed once over a few augmented passes of the training split: a step
then costs the decoder's time alone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from signt5.data.cache import PreparedDataset
from signt5.data.dataset import pad_batch, split_batch
from signt5.data.sampler import BucketBatchSampler
from signt5.decoding.generate import autocast_for
from signt5.models.labels import model_inputs
from signt5.models.loading import load_weights
from signt5.models.text import IGNORE_INDEX

from . import faults
from .config import TrainConfig
from .distributed import Distributed
from .memory import release_free_heap
from .optim import build_optimizer, build_scheduler
from .reporting import progress_bar
from .splice import Splicer, splice_rows, stack_rows

logger = logging.getLogger(__name__)

ENCODER_PREFIXES = ("encoder.", "ctc_head.")  # what the first phase trains; the second trains the rest
DECODER_PHASE_STREAM = 7919  # tags this phase's random stream (batch order)
CACHE_DTYPE = torch.float16  # the cached features: half the bytes, ~1e-3 relative rounding (values are O(1))


def freeze_for_phase(model: torch.nn.Module, phase: str) -> None:
    """``encoder``: the pose encoder and CTC head train, the decoder side (decoder, LM head) is frozen;
    ``decoder``: the reverse. Frozen parameters get no gradient and no optimiser state."""
    if phase not in ("encoder", "decoder"):
        raise ValueError(f"phase must be encoder or decoder, got {phase!r}")
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name.startswith(ENCODER_PREFIXES) == (phase == "encoder"))


@dataclass
class CachedBatch:
    """One training batch as the frozen encoder saw it: what the decoder's forward needs, and nothing else."""

    features: torch.Tensor  # (B, T', D_pose), CACHE_DTYPE: the pose encoder's output, narrower than the memory
    mask: torch.Tensor  # (B, T')
    sign_language_ids: torch.Tensor | None  # (B,)
    labels: torch.Tensor  # (B, L)
    ids: list[str]  # the samples, for the messages about a batch
    alignment: list | None = None  # the labels' CTC forced alignment on these features, when the model reads one

    def forward(self, model: torch.nn.Module) -> torch.Tensor:
        """The decoder's loss on this batch (teacher-forced, plus the model's guided-attention prior)."""
        encoder = model.module.encoder if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model.encoder
        with torch.no_grad():  # the projection is the frozen encoder's too
            encoded = encoder.project(self.features.float(), self.mask)
        return model(encoder_outputs=encoded, labels=self.labels, sign_language_ids=self.sign_language_ids,
                     ctc_alignment=self.alignment).loss


@torch.no_grad()
def cache_encoder_outputs(model: Any, tokenizer: Any, dataset: PreparedDataset, sampler: BucketBatchSampler,
                          config: TrainConfig, device: torch.device, first_epoch: int,
                          frame_multiple: int = 1) -> list[CachedBatch]:
    """The frozen encoder's outputs (eval mode) over ``config.decoder_passes`` augmented passes of the training
    split, epochs ``first_epoch`` on: new augmentation draws, batched as the epochs were."""
    was_training = model.training
    model.eval()
    batches = []
    try:
        for epoch in range(first_epoch, first_epoch + config.decoder_passes):
            dataset.set_epoch(epoch)
            sampler.set_epoch(epoch, dataset.epoch_lengths())
            for keys in dataset.with_speeds(list(sampler)):
                batch = pad_batch([dataset[key] for key in keys], frame_multiple=frame_multiple)
                batches.append(_encode(model, tokenizer, batch, config, device, frame_multiple))
    finally:
        model.train(was_training)
    megabytes = sum(b.features.numel() * b.features.element_size() for b in batches) / 2**20
    logger.info("decoder phase: %d batches of encoder outputs cached (%.0f MiB)", len(batches), megabytes)
    return batches


def _encode(model: Any, tokenizer: Any, batch: dict, config: TrainConfig, device: torch.device,
            frame_multiple: int) -> CachedBatch:
    """One batch through the frozen encoder, in parts of at most ``max_batch_frames`` padded frames as in training
    (a long batch's activations would otherwise set the run's peak memory), its parts padded back together."""
    parts = split_batch(batch, config.max_batch_frames, frame_multiple)
    features, masks, languages, labels, ids = [], [], [], [], []
    for part in parts:
        inputs = model_inputs(part, model.config, tokenizer, device, config.max_target_length)
        with autocast_for(device):
            part_features, mask = model.encoder.pose_features(inputs["pose"], inputs["point_mask"],
                                                              inputs["frame_mask"], inputs.get("sign_language_ids"))
        features.append(part_features.to(CACHE_DTYPE))  # (b, T'_part, D_pose)
        masks.append(mask)
        languages.append(inputs.get("sign_language_ids"))
        labels.append(inputs["labels"])
        ids += part["ids"]
    mask = _pad_cat(masks, False)
    width = int(mask.any(0).nonzero().max()) + 1 if mask.any() else mask.shape[1]  # no all-padding frames to read
    cached = CachedBatch(_pad_cat(features, 0)[:, :width].contiguous(), mask[:, :width].contiguous(),
                         None if languages[0] is None else torch.cat(languages), _pad_cat(labels, IGNORE_INDEX), ids)
    cached.alignment = _forced_alignment(model, cached, device)
    return cached


def _forced_alignment(model: Any, batch: CachedBatch, device: torch.device) -> list | None:
    """The labels' CTC forced alignment on the cached features, as the model's forward would find it at every step
    (the encoder and CTC head are frozen, so it cannot change); None when the model reads none."""
    if not model.aligns_labels(guided=model.config.guided_attention_weight > 0):  # the phase trains: the prior is on
        return None
    with autocast_for(device):
        log_probs, _ = model.ctc_log_probs(model.encoder.project(batch.features.float(), batch.mask))
    return model.forced_alignment(log_probs, batch.mask, batch.labels, batch.sign_language_ids)


def _pad_cat(tensors: list[torch.Tensor], value: float | bool) -> torch.Tensor:
    """Concatenate along the batch dimension, padding dimension 1 to the longest with ``value``."""
    if len(tensors) == 1:
        return tensors[0]
    width = max(t.shape[1] for t in tensors)
    return torch.cat([F.pad(t, (0, 0) * (t.dim() - 2) + (0, width - t.shape[1]), value=value) for t in tensors])


def train_decoder(model: Any, batches: list[CachedBatch], config: TrainConfig, env: Distributed,
                  on_step: Callable[[int, float, float], None] | None = None) -> float:
    """``config.decoder_steps`` AdamW steps of the decoder side on random cached batches, warm-up then cosine
    decay from ``decoder_lr``; returns the mean loss of the last 10 % of the steps. ``on_step(step, loss, lr)``
    reports progress. Under torchrun every rank draws from its own shard's cache and DDP averages the gradients.
    """
    freeze_for_phase(model, "decoder")
    forward_model = (torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[env.device] if env.device.type == "cuda" else None)
        if env.world_size > 1 else model)
    lr = config.decoder_lr if config.decoder_lr is not None else config.lr
    optimizer = build_optimizer(model, config, lr)
    scheduler = build_scheduler(optimizer, config.decoder_steps, config.warmup_ratio)
    rng = np.random.default_rng([config.seed, DECODER_PHASE_STREAM, env.rank, 0])  # apart from the epochs' draws
    splicer = (Splicer(splice_rows(batches, config.max_target_length), config.max_target_length,
                        config.decoder_splice_pieces)
               if config.decoder_splice > 0 else None)
    if splicer is not None and not len(splicer):
        logger.warning("decoder_splice: no cached sample can be spliced (a text target, or no CTC alignment)")
    model.train()
    model.encoder.eval()  # not run here; kept out of training mode all the same
    losses, faults_state = [], SimpleNamespace(nonfinite_in_a_row=0, global_step=0)
    for step in range(1, config.decoder_steps + 1):
        batch = batches[rng.integers(len(batches))]
        if splicer and rng.random() < config.decoder_splice:
            batch = CachedBatch(**stack_rows(splicer.draw(len(batch.ids), rng)))
        faults_state.global_step = step
        with autocast_for(env.device):
            loss = batch.forward(forward_model)
        if env.any(not bool(torch.isfinite(loss))):
            faults.note_nonfinite(faults_state, config, "decoder-phase loss", batch.ids)  # raises after too many
            continue
        loss.backward()
        if not faults.clip_or_skip(model, optimizer, faults_state, config, batch.ids):
            continue
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        faults_state.nonfinite_in_a_row = 0
        losses.append(float(loss.item()))
        if on_step is not None:
            on_step(step, losses[-1], scheduler.get_last_lr()[0])
    tail = losses[-max(1, len(losses) // 10):]
    return float(np.mean(tail)) if tail else float("nan")


def run_decoder_phase(model: Any, tokenizer: Any, dataset: PreparedDataset, sampler: BucketBatchSampler,
                      config: TrainConfig, env: Distributed, best: Path | None, first_epoch: int, global_step: int,
                      writer: Any = None, frame_multiple: int = 1) -> float:
    """A run's decoder phase: the pose encoder and CTC head of its ``best`` checkpoint (when it has one) loaded,
    their outputs cached from epoch ``first_epoch`` on, then :func:`train_decoder` on them, reported on a progress
    bar and to ``writer`` (TensorBoard, steps counted on from ``global_step``). Returns the phase's loss."""
    if best is not None:
        load_weights(model, best, ENCODER_PREFIXES, "pose encoder and CTC head")
        logger.info("decoder phase: %d steps on the frozen encoder of %s", config.decoder_steps, best)
    batches = cache_encoder_outputs(model, tokenizer, dataset, sampler, config, env.device,
                                    first_epoch=first_epoch, frame_multiple=frame_multiple)
    progress = progress_bar(env.main, config.decoder_steps, 0, "decoder")

    def report(step: int, loss: float, lr: float) -> None:
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.1e}")
        if writer is not None and step % config.log_every_steps == 0:
            writer.add_scalar("decoder/loss", loss, global_step + step)
            writer.add_scalar("decoder/lr", lr, global_step + step)

    try:
        loss = train_decoder(model, batches, config, env, report)
    finally:
        if progress is not None:
            progress.close()
    del batches
    release_free_heap()  # the cache's pages, before decoding allocates its own
    return loss
