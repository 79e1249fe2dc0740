"""The training loop for both stages, single- or multi-process (torchrun + DDP), resumable step for step.

What a stage decides (its model, loss and dev score) is its recipe's (``recipes.py``); the loop is the
same for both. A run folder holds ``checkpoint-last`` (with optimiser, scheduler, RNG and data position),
``checkpoint-best`` (best dev score), ``train_config.json``, ``train_log.jsonl`` and
TensorBoard logs under ``runs/``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import resource
import shutil
import time
from functools import partial
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from signt5.data.cache import PreparedDataset
from signt5.data.dataset import pad_batch, split_batch
from signt5.data.sampler import BucketBatchSampler
from signt5.decoding.generate import autocast_for
from signt5.decoding.rate import median_signing_rate
from signt5.errors import TrainingError
from signt5.models.labels import ctc_units_for
from signt5.models.loading import load_run_model

from . import checkpoint as ckpt
from . import faults
from .memory import limit_heap_retention, limit_primitive_cache
from .config import TrainConfig
from .decoder_phase import freeze_for_phase, run_decoder_phase
from .distributed import Distributed, init_distributed
from .optim import build_optimizer, build_scheduler
from .recipes import DevResult, recipe_for
from .reporting import progress_bar, tensorboard_writer
from .splits import prepare_splits

logger = logging.getLogger(__name__)

# batches pad their frames to a multiple of this: a few distinct shapes instead of hundreds, so the C heap reuses
# freed activations rather than growing over a long run (BENCHMARKS.md, memory)
FRAME_MULTIPLE = 32


@dataclass
class RunState:
    """What a resumed run needs besides weights and optimiser: where it was and how it was doing."""

    epoch: int = 0
    batches_done: int = 0  # micro-batches of ``epoch`` already consumed
    global_step: int = 0
    best_score: float | None = None
    bad_epochs: int = 0
    nonfinite_in_a_row: int = 0
    decoder_phase_done: bool = False  # stage 2 with decoder_steps: its decoder phase ran (it follows the epochs)
    history: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _is_better(score: float, best: float | None, lower_is_better: bool) -> bool:
    return best is None or (score < best if lower_is_better else score > best)


def train(config: TrainConfig) -> dict[str, Any]:
    """Run a stage to the end (epochs, max_steps or early stopping); returns the final summary."""
    limit_heap_retention(config.malloc_mmap_threshold_kib * 1024)
    limit_primitive_cache(config.primitive_cache_capacity)
    env = init_distributed()
    if env.main:
        faults.ensure_writable(Path(config.output_dir))  # a clear error before the lock writes there
    with ckpt.RunLock(config.output_dir) if env.main else nullcontext():  # rank 0 holds it for all
        run = _Run(config, env)
        try:
            stopped = None
            while stopped is None and run.more_to_do():
                stopped = run.epoch()
            if stopped != "stop_after_steps" and run.decoder_phase_due():
                run.decoder_phase()
            return run.finish(stopped)
        finally:
            run.close()


def _start_fresh(out: Path) -> None:
    """A new run in a folder that held one: its log and TensorBoard events go, its checkpoints get replaced."""
    old = [p for p in (out / "train_log.jsonl", out / "runs") if p.exists()]
    if not old and not (out / "checkpoint-last").exists():
        return
    logger.warning("%s holds an earlier run: starting a new one there (its checkpoints will be replaced; "
                   "use --resume to continue it instead)", out)
    for path in old:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


class _Run:
    """One invocation of a stage: set up (fresh or resumed), then epochs of steps and dev evaluations."""

    def __init__(self, config: TrainConfig, env: Distributed):
        self.config, self.env = config, env
        self.recipe = recipe_for(config.stage)
        self.out = Path(config.output_dir)
        self.last_dir = self.out / "checkpoint-last"
        resume_from = ckpt.find_checkpoint(self.last_dir) if config.resume else None
        if config.resume and resume_from is None:
            logger.warning("--resume: no checkpoint in %s, starting from scratch", self.last_dir)
        if resume_from is not None and (resume_from / "train_config.json").is_file():
            changed = config.resume_differences(TrainConfig.load(resume_from / "train_config.json"))
            if changed:
                raise TrainingError(f"--resume {self.out}: these settings differ from the run being resumed, and "
                                    f"exact resumption needs them unchanged: {'; '.join(changed)}. Put them back, "
                                    f"or start a new run in another --output_dir")
        if env.main:  # train() checked the folder is writable before locking it
            if resume_from is None:
                _start_fresh(self.out)
            config.save(self.out / "train_config.json")
        _seed_everything(config.seed)

        self.train_data, self.dev_data = prepare_splits(config, env)
        self.skipped = self.train_data.skipped + (self.dev_data.skipped if self.dev_data else [])
        if resume_from is not None:
            self.model, self.tokenizer = load_run_model(resume_from, self.recipe.model_class)
            logger.info("resuming from %s", resume_from)
        elif config.decoder_stage_from:
            self.model, self.tokenizer = load_run_model(config.decoder_stage_from, self.recipe.model_class)
            logger.info("decoder stage: %s with its pose encoder and CTC head frozen", config.decoder_stage_from)
        else:
            languages = sorted({e.sign_language for e in self.train_data.entries if e.sign_language})
            self.model, self.tokenizer = self.recipe.build_model(
                config, languages, ctc_units_for(self.train_data.entries, config.target))
            if config.data.target_fps:  # decoding resamples samples signed far off this rate to it (rate.py)
                self.model.config.signing_rate = median_signing_rate(
                    [e.label(config.target) for e in self.train_data.entries], self.train_data.lengths(),
                    config.data.target_fps, config.target)
        if config.decoder_stage_from:  # frozen on resume too: no optimiser state for them either way
            freeze_for_phase(self.model, "decoder")
        elif config.decoder_steps:  # the epochs train the encoder phase; the decoder phase follows them
            freeze_for_phase(self.model, "encoder")
        self.model.to(env.device)
        n_params = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        (logger.info if env.main else logger.debug)(
            "%s: %.2fM trainable parameters, %d train / %d dev samples, %d process(es) on %s", config.stage,
            n_params / 1e6, len(self.train_data), len(self.dev_data or []), env.world_size, env.device)
        self.ddp_model = (torch.nn.parallel.DistributedDataParallel(
            self.model, device_ids=[env.device] if env.device.type == "cuda" else None)
            if env.world_size > 1 else self.model)

        self.dataset = PreparedDataset(self.train_data, config.target, config.augment, config.seed)
        self.sampler = BucketBatchSampler(self.train_data.lengths(), config.batch_size, shuffle=True,
                                          seed=config.seed, rank=env.rank, world_size=env.world_size)
        total_steps = config.max_steps or math.ceil(len(self.sampler) / config.grad_accum) * config.epochs
        self.optimizer = build_optimizer(self.model, config)
        self.scheduler = build_scheduler(self.optimizer, total_steps, config.warmup_ratio)
        self.state = RunState()
        if resume_from is not None:
            saved = ckpt.load_training_state(resume_from)
            self.optimizer.load_state_dict(saved["optimizer"])
            self.scheduler.load_state_dict(saved["scheduler"])
            self.state = RunState(**saved["run"])
            ckpt.set_rng_state(saved["rng"])

        self.writer = tensorboard_writer(self.out / "runs") if env.main else None
        self.progress = progress_bar(env.main, total_steps, self.state.global_step)
        self.workers = config.num_workers
        if self.workers < 0:
            self.workers = (min(4, max(0, (os.cpu_count() or 1) // env.world_size - 1))
                            if env.device.type == "cuda" else 0)
        self.start_step = self.state.global_step
        self.wait_seconds = self.step_seconds = 0.0
        self.samples_seen = 0

    def more_to_do(self) -> bool:
        state, config = self.state, self.config
        return state.global_step < config.max_steps if config.max_steps else state.epoch < config.epochs

    def save(self, target: Path, with_state: bool, metrics: dict | None = None) -> None:
        """Write a checkpoint atomically (rank 0); every rank waits for it."""
        def write(folder: Path) -> None:
            self.model.save_pretrained(folder)
            self.tokenizer.save_pretrained(folder)
            self.config.save(folder / "train_config.json")
            if metrics is not None:
                ckpt.write_json(folder / "dev_metrics.json", metrics)
            if with_state:
                ckpt.save_training_state(folder, {"optimizer": self.optimizer.state_dict(),
                                                  "scheduler": self.scheduler.state_dict(),
                                                  "run": self.state.to_dict(), "rng": ckpt.rng_state()})
        if self.env.main:
            try:
                ckpt.write_checkpoint_dir(target, write)
            except OSError as e:
                raise TrainingError(f"could not write checkpoint {target} ({faults.describe_os_error(e)}); "
                                    f"the previous checkpoint is kept") from None
        self.env.barrier()

    def epoch(self) -> str | None:
        """The rest of the current epoch, then dev evaluation and checkpoints; returns why it stopped, if it did."""
        config, state = self.config, self.state
        self.dataset.set_epoch(state.epoch)
        self.sampler.set_epoch(state.epoch, self.dataset.epoch_lengths())
        batches = self.dataset.with_speeds(list(self.sampler))[state.batches_done:]
        loader = DataLoader(self.dataset, batch_sampler=batches, num_workers=self.workers,
                            collate_fn=partial(pad_batch, frame_multiple=FRAME_MULTIPLE),
                            generator=torch.Generator().manual_seed(config.seed + state.epoch),
                            persistent_workers=False)
        self.ddp_model.train()
        iterator = iter(loader)
        stopped, micro, last_loss = None, 0, None
        while True:
            t0 = time.perf_counter()
            batch = next(iterator, None)
            self.wait_seconds += time.perf_counter() - t0
            if batch is None:
                break
            micro += 1
            state.batches_done += 1
            sync = micro % config.grad_accum == 0 or state.batches_done == len(self.sampler)
            loss = self._backward(batch, sync)
            last_loss = last_loss if loss is None else loss
            stepped = loss is not None and sync and self._optimizer_step(batch, loss)
            self.step_seconds += time.perf_counter() - t0  # every micro-batch's time, as its samples count
            if not stepped:
                continue
            if config.save_every_steps and state.global_step % config.save_every_steps == 0:
                self.save(self.last_dir, with_state=True)
            if config.max_steps and state.global_step >= config.max_steps:
                stopped = "max_steps"
                break
            if config.stop_after_steps and state.global_step - self.start_step >= config.stop_after_steps:
                stopped = "stop_after_steps"
                break
        epoch_done = stopped is None
        if epoch_done:
            state.epoch += 1
            state.batches_done = 0
        record: dict[str, Any] = {"epoch": state.epoch, "step": state.global_step, "loss": last_loss}
        if self.dev_data is not None and (not epoch_done or state.epoch % config.eval_every_epochs == 0):
            stopped = self._evaluate(record, epoch_done) or stopped
        state.history.append(record)
        if self.env.main:
            with (self.out / "train_log.jsonl").open("a") as f:
                f.write(json.dumps(record) + "\n")
        self.save(self.last_dir, with_state=True)
        return stopped

    def _backward(self, batch: dict, sync: bool) -> float | None:
        """Forward and backward of one micro-batch; None when its loss was not finite (step skipped).

        A batch of more than ``max_batch_frames`` padded frames runs in parts whose gradients add up to the whole
        batch's (one process only: ranks must agree on their number of backward passes).
        """
        env, config = self.env, self.config
        parts = split_batch(batch, config.max_batch_frames, FRAME_MULTIPLE) if env.world_size == 1 else [batch]
        if len(parts) > 1:
            with faults.named_out_of_memory(batch, config, env.device), autocast_for(env.device):
                loss = self.recipe.backward_in_parts(self.model, parts, self.tokenizer, config, env.device,
                                                     1.0 / config.grad_accum)
            if not bool(torch.isfinite(loss)):
                return self._skip_nonfinite(batch)
        else:
            no_sync = self.ddp_model.no_sync() if (env.world_size > 1 and not sync) else nullcontext()
            with faults.named_out_of_memory(batch, config, env.device), no_sync, autocast_for(env.device):
                loss = self.recipe.loss(self.ddp_model, self.model, batch, self.tokenizer, config, env.device)
            if env.any(not bool(torch.isfinite(loss))):
                return self._skip_nonfinite(batch)
            with faults.named_out_of_memory(batch, config, env.device), no_sync:
                (loss / config.grad_accum).backward()
        self.samples_seen += len(batch["ids"]) * env.world_size
        return float(loss.item())

    def _skip_nonfinite(self, batch: dict) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        faults.note_nonfinite(self.state, self.config, "loss", batch["ids"])  # raises after max_nonfinite_steps

    def _optimizer_step(self, batch: dict, loss: float) -> bool:
        """Clip, step, schedule and log; False when the gradients were not finite (step skipped)."""
        state = self.state
        if not faults.clip_or_skip(self.model, self.optimizer, state, self.config, batch["ids"]):
            return False
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        state.global_step += 1
        state.nonfinite_in_a_row = 0
        lr = self.scheduler.get_last_lr()[0]
        if self.progress is not None:
            self.progress.update(1)
            self.progress.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.1e}", epoch=state.epoch)
        if self.writer is not None and state.global_step % self.config.log_every_steps == 0:
            self.writer.add_scalar("train/loss", loss, state.global_step)
            self.writer.add_scalar("train/lr", lr, state.global_step)
        return True

    def _evaluate(self, record: dict[str, Any], epoch_done: bool) -> str | None:
        """Dev metrics into ``record``; keeps the best checkpoint; 'early_stopping' when patience ran out."""
        env, state, config = self.env, self.state, self.config
        options = {"decodings": ("ctc",)} if self.decoder_phase_due() else {}  # the decoder has not trained yet
        dev = (self.recipe.evaluate_dev(self.model, self.tokenizer, self.dev_data, config, env.device, **options)
               if env.main else DevResult({}, 0.0))
        if dev.decoding is not None:
            # the decoding that scored best on dev is the one this model's checkpoints (best and last) decode with
            self.model.config.decoding = dev.decoding
        record.update(dev.metrics)
        improved = env.main and _is_better(dev.score, state.best_score, self.recipe.lower_is_better)
        if env.main:
            logger.info("epoch %d step %d: dev %s", state.epoch, state.global_step,
                        ", ".join(f"{k} {v:.2f}" for k, v in dev.metrics.items()))
            if self.writer is not None:
                for k, v in dev.metrics.items():
                    self.writer.add_scalar(f"dev/{k}", v, state.global_step)
                self.writer.add_text("dev/examples", "\n\n".join(dev.examples), state.global_step)
        if improved:
            state.best_score, state.bad_epochs = dev.score, 0
        elif epoch_done:
            state.bad_epochs += 1
        if env.any(improved):
            self.save(self.out / "checkpoint-best", with_state=False, metrics=record)
        if epoch_done and env.any(env.main and state.bad_epochs >= config.patience):
            logger.info("no better dev score for %d epochs: stopping", state.bad_epochs)
            return "early_stopping"
        return None

    def decoder_phase_due(self) -> bool:
        return bool(self.config.decoder_steps) and not self.state.decoder_phase_done

    def decoder_phase(self) -> None:
        """The decoder trains on the best checkpoint's frozen encoder (decoder_phase.py); then the dev evaluation
        of every decoding, and the run's best and last checkpoints. A resume during it starts it again."""
        config, env, state = self.config, self.env, self.state
        best = ckpt.find_checkpoint(self.out / "checkpoint-best") if self.dev_data is not None else None
        loss = run_decoder_phase(self.model, self.tokenizer, self.dataset, self.sampler, config, env, best,
                                 first_epoch=state.epoch, global_step=state.global_step, writer=self.writer,
                                 frame_multiple=FRAME_MULTIPLE)
        state.decoder_phase_done = True
        record: dict[str, Any] = {"phase": "decoder", "epoch": state.epoch,
                                  "step": state.global_step + config.decoder_steps, "loss": loss}
        if self.dev_data is not None:
            state.best_score = None  # the decoder phase's model is the run's result: it keeps the best encoder
            self._evaluate(record, epoch_done=False)
        state.history.append(record)
        if env.main:
            with (self.out / "train_log.jsonl").open("a") as f:
                f.write(json.dumps(record) + "\n")
        self.save(self.last_dir, with_state=True)

    def finish(self, stopped: str | None) -> dict[str, Any]:
        """The run's summary (also ``train_summary.json``), with the samples that could not be read."""
        env, state = self.env, self.state
        if self.dev_data is None:  # every rank: save() ends with a barrier
            self.save(self.out / "checkpoint-best", with_state=False)
        summary = {"stage": self.config.stage, "stopped": stopped or "epochs", "epochs": state.epoch,
                   "steps": state.global_step, "best_score": state.best_score, "output_dir": str(self.out),
                   "train_samples_per_second": self.samples_seen / max(self.step_seconds, 1e-9),
                   "data_wait_share": self.wait_seconds / max(self.step_seconds, 1e-9),
                   "skipped_samples": self.skipped,
                   "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                   "world_size": env.world_size}
        if env.main:
            ckpt.write_json(self.out / "train_summary.json", summary)
            if self.skipped:
                logger.warning("%d sample(s) could not be read and were skipped:\n  %s", len(self.skipped),
                               "\n  ".join(self.skipped))
        return summary

    def close(self) -> None:
        if self.progress is not None:
            self.progress.close()
        if self.writer is not None:
            self.writer.close()
