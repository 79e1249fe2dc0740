"""The training loop for both stages, single- or multi-process (torchrun + DDP), resumable step for step.

Stage 1 (``pretrain``) aligns pooled pose and text embeddings with InfoNCE; stage 2
(``finetune``) trains pose encoder + UMT5 decoder to generate the target. A run folder
holds ``checkpoint-last`` (with optimiser, scheduler, RNG and data position),
``checkpoint-best`` (best dev score), ``train_config.json``, ``train_log.jsonl`` and
TensorBoard logs under ``runs/``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import resource
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from signt5.data.cache import PreparedDataset, prepare_all
from signt5.data.dataset import pad_batch
from signt5.data.errors import SignT5Error
from signt5.data.manifest import check_labels, read_manifest
from signt5.evaluation.generate import autocast_for

from . import checkpoint as ckpt
from . import faults
from .config import TrainConfig
from .model_setup import build_model, load_run_model, model_class
from .sampler import BucketBatchSampler
from .steps import evaluate_dev, training_loss

logger = logging.getLogger(__name__)


class TrainingError(SignT5Error):
    """A run that cannot go on (diverged, no data); the last good checkpoint is kept."""


@dataclass
class RunState:
    """What a resumed run needs besides weights and optimiser: where it was and how it was doing."""

    epoch: int = 0
    batches_done: int = 0  # micro-batches of ``epoch`` already consumed
    global_step: int = 0
    best_score: float | None = None
    bad_epochs: int = 0
    nonfinite_in_a_row: int = 0
    history: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def any(self, flag: bool) -> bool:
        if self.world_size == 1:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(t)
        return bool(t.item() > 0)


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def init_distributed() -> Distributed:
    """Read torchrun's environment; gloo on CPU, NCCL on GPUs. One process without torchrun."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local_rank}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return Distributed(rank, world_size, local_rank, device)


def _seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.98), eps=1e-8)


def _scheduler(optimizer: torch.optim.Optimizer, total_steps: int, warmup_ratio: float):
    from transformers import get_cosine_schedule_with_warmup

    return get_cosine_schedule_with_warmup(optimizer, max(1, int(total_steps * warmup_ratio)), total_steps)


def _is_better(score: float, best: float | None, lower_is_better: bool) -> bool:
    return best is None or (score < best if lower_is_better else score > best)


def train(config: TrainConfig) -> dict[str, Any]:
    """Run a stage to the end (epochs, max_steps or early stopping); returns the final summary."""
    env = init_distributed()
    out = Path(config.output_dir)
    last_dir = out / "checkpoint-last"
    resume_from = ckpt.find_checkpoint(last_dir) if config.resume else None
    if config.resume and resume_from is None:
        logger.warning("--resume: no checkpoint in %s, starting from scratch", last_dir)
    if env.main:
        faults.ensure_writable(out)
        config.save(out / "train_config.json")
    _seed_everything(config.seed)

    manifest = Path(config.manifest)
    entries = read_manifest(manifest)
    train_entries = [e for e in entries if e.split == config.train_split]
    dev_entries = [e for e in entries if e.split == config.dev_split][: config.max_eval_samples]
    if not train_entries:
        raise TrainingError(f"{manifest}: no samples in split {config.train_split!r}")
    check_labels(train_entries + dev_entries, config.target, manifest)
    cache_dir = manifest.parent / ".signt5-cache"
    if env.main:  # rank 0 pre-computes, the others read its cache
        train_data = prepare_all(train_entries, config.data, cache_dir)
        dev_data = prepare_all(dev_entries, config.data, cache_dir) if dev_entries else None
    env.barrier()
    if not env.main:
        train_data = prepare_all(train_entries, config.data, cache_dir)
        dev_data = prepare_all(dev_entries, config.data, cache_dir) if dev_entries else None
    skipped = train_data.skipped + (dev_data.skipped if dev_data else [])

    sign_languages = sorted({e.sign_language for e in train_entries if e.sign_language})
    if resume_from is not None:
        model, tokenizer = load_run_model(resume_from, model_class(config.stage))
        logger.info("resuming from %s", resume_from)
    else:
        model, tokenizer = build_model(config, sign_languages)
    model.to(env.device)
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    (logger.info if env.main else logger.debug)("%s: %.2fM trainable parameters, %d train / %d dev samples, %d process(es) on %s", config.stage,
                n_params / 1e6, len(train_data), len(dev_data or []), env.world_size, env.device)
    ddp_model = (torch.nn.parallel.DistributedDataParallel(model, device_ids=[env.device] if env.device.type == "cuda"
                                                           else None) if env.world_size > 1 else model)

    dataset = PreparedDataset(train_data, config.target, config.augment, config.seed)
    sampler = BucketBatchSampler(train_data.lengths(), config.batch_size, shuffle=True, seed=config.seed,
                                 rank=env.rank, world_size=env.world_size)
    steps_per_epoch = math.ceil(len(sampler) / config.grad_accum)
    total_steps = config.max_steps or steps_per_epoch * config.epochs
    optimizer = _optimizer(model, config)
    scheduler = _scheduler(optimizer, total_steps, config.warmup_ratio)
    state = RunState()
    if resume_from is not None:
        saved = ckpt.load_training_state(resume_from)
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        state = RunState(**saved["run"])
        ckpt.set_rng_state(saved["rng"])

    writer = _tensorboard(out / "runs") if env.main else None
    lower_is_better = config.stage == "finetune"  # finetune: CER; pretrain: retrieval accuracy

    def save(target: Path, with_state: bool, metrics: dict | None = None) -> None:
        def write(folder: Path) -> None:
            model.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
            config.save(folder / "train_config.json")
            if metrics is not None:
                ckpt.write_json(folder / "dev_metrics.json", metrics)
            if with_state:
                ckpt.save_training_state(folder, {"optimizer": optimizer.state_dict(),
                                                  "scheduler": scheduler.state_dict(), "run": state.to_dict(),
                                                  "rng": ckpt.rng_state()})
        if env.main:
            try:
                ckpt.write_checkpoint_dir(target, write)
            except OSError as e:
                raise TrainingError(f"could not write checkpoint {target} ({faults.describe_os_error(e)}); "
                                    f"the previous checkpoint is kept") from None
        env.barrier()

    workers = config.num_workers
    if workers < 0:
        workers = min(4, max(0, (os.cpu_count() or 1) // env.world_size - 1)) if env.device.type == "cuda" else 0
    progress = _progress(env.main, total_steps, state.global_step)
    start_step = state.global_step
    wait_seconds = step_seconds = 0.0
    samples_seen = 0
    stopped = None
    def more_to_do() -> bool:
        return state.global_step < config.max_steps if config.max_steps else state.epoch < config.epochs

    while stopped is None and more_to_do():
        sampler.set_epoch(state.epoch)
        dataset.set_epoch(state.epoch)
        batches = list(sampler)[state.batches_done:]
        loader = DataLoader(dataset, batch_sampler=batches, collate_fn=pad_batch, num_workers=workers,
                            generator=torch.Generator().manual_seed(config.seed + state.epoch),
                            persistent_workers=False)
        ddp_model.train()
        iterator = iter(loader)
        micro = 0
        last_loss = None
        while True:
            t0 = time.perf_counter()
            batch = next(iterator, None)
            t1 = time.perf_counter()
            wait_seconds += t1 - t0
            if batch is None:
                break
            micro += 1
            state.batches_done += 1
            sync = micro % config.grad_accum == 0 or state.batches_done == len(sampler)
            no_sync = ddp_model.no_sync() if (env.world_size > 1 and not sync) else nullcontext()
            with faults.named_out_of_memory(batch, config, env.device), no_sync, autocast_for(env.device):
                loss = training_loss(ddp_model, model, batch, tokenizer, config, env.device)
            if env.any(not bool(torch.isfinite(loss))):
                optimizer.zero_grad(set_to_none=True)
                faults.note_nonfinite(state, config, "loss", batch["ids"])  # raises after max_nonfinite_steps
                continue
            with faults.named_out_of_memory(batch, config, env.device), no_sync:
                (loss / config.grad_accum).backward()
            samples_seen += len(batch["ids"]) * env.world_size
            last_loss = float(loss.item())
            if not sync:
                continue
            if not faults.clip_or_skip(model, optimizer, state, config, batch["ids"]):
                continue
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state.global_step += 1
            state.nonfinite_in_a_row = 0
            step_seconds += time.perf_counter() - t0
            if progress is not None:
                progress.update(1)
                progress.set_postfix(loss=f"{last_loss:.3f}", lr=f"{scheduler.get_last_lr()[0]:.1e}",
                                     epoch=state.epoch)
            if writer is not None and state.global_step % config.log_every_steps == 0:
                writer.add_scalar("train/loss", loss.item(), state.global_step)
                writer.add_scalar("train/lr", scheduler.get_last_lr()[0], state.global_step)
            if config.save_every_steps and state.global_step % config.save_every_steps == 0:
                save(last_dir, with_state=True)
            if config.max_steps and state.global_step >= config.max_steps:
                stopped = "max_steps"
                break
            if config.stop_after_steps and state.global_step - start_step >= config.stop_after_steps:
                stopped = "stop_after_steps"
                break
        if stopped is None:
            state.epoch += 1
            state.batches_done = 0
        epoch_done = stopped is None
        record: dict[str, Any] = {"epoch": state.epoch, "step": state.global_step, "loss": last_loss}
        if dev_data is not None and (not epoch_done or state.epoch % config.eval_every_epochs == 0):
            metrics, score, examples = (evaluate_dev(model, tokenizer, dev_data, config, env.device)
                                        if env.main else ({}, 0.0, []))
            record.update(metrics)
            improved = env.main and _is_better(score, state.best_score, lower_is_better)
            if env.main:
                logger.info("epoch %d step %d: dev %s", state.epoch, state.global_step,
                            ", ".join(f"{k} {v:.2f}" for k, v in metrics.items()))
                if writer is not None:
                    for k, v in metrics.items():
                        writer.add_scalar(f"dev/{k}", v, state.global_step)
                    writer.add_text("dev/examples", "\n\n".join(examples), state.global_step)
            if improved:
                state.best_score, state.bad_epochs = score, 0
            elif epoch_done:
                state.bad_epochs += 1
            if env.any(improved):
                save(out / "checkpoint-best", with_state=False, metrics=record)
            if epoch_done and env.any(env.main and state.bad_epochs >= config.patience):
                stopped = "early_stopping"
                logger.info("no better dev score for %d epochs: stopping", state.bad_epochs)
        state.history.append(record)
        if env.main:
            with (out / "train_log.jsonl").open("a") as f:
                f.write(json.dumps(record) + "\n")
        save(last_dir, with_state=True)
    if dev_data is None and env.main:
        save(out / "checkpoint-best", with_state=False)
    if progress is not None:
        progress.close()
    if writer is not None:
        writer.close()
    summary = {"stage": config.stage, "stopped": stopped or "epochs", "epochs": state.epoch,
               "steps": state.global_step, "best_score": state.best_score, "output_dir": str(out),
               "train_samples_per_second": samples_seen / max(step_seconds, 1e-9),
               "data_wait_share": wait_seconds / max(step_seconds, 1e-9), "skipped_samples": skipped,
               "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "world_size": env.world_size}
    if env.main:
        ckpt.write_json(out / "train_summary.json", summary)
        if skipped:
            logger.warning("%d sample(s) could not be read and were skipped:\n  %s", len(skipped),
                           "\n  ".join(skipped))
    return summary


def _tensorboard(folder: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # pragma: no cover - tensorboard is a dependency
        logger.warning("tensorboard not installed: no TensorBoard logs")
        return None
    return SummaryWriter(str(folder))


def _progress(enabled: bool, total: int, initial: int):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="train", unit="step", dynamic_ncols=True, mininterval=1.0)
