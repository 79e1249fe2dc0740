"""Training run configuration: one dataclass for both stages, saved as ``train_config.json`` in each run."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from signt5.data.augment import AugmentConfig
from signt5.data.dataset import DataConfig
from signt5.models.choices import DECODER_MEMORIES, GUIDES, POSITIONS

STAGES = ("pretrain", "finetune")
# settings a --resume may change: how long and how often, not what a step sees or what the model is
RESUMABLE_CHANGES = frozenset({"output_dir", "resume", "epochs", "max_steps", "stop_after_steps", "patience",
                               "eval_every_epochs", "save_every_steps", "log_every_steps", "num_workers",
                               "max_eval_samples", "eval_batch_size", "num_beams", "max_nonfinite_steps",
                               "malloc_mmap_threshold_kib", "primitive_cache_capacity", "max_batch_frames"})


@dataclass
class TrainConfig:
    """Every knob of a run; each default works on a 2-core CPU with the fingerspelling corpus."""

    stage: str = "finetune"  # pretrain (stage 1, contrastive) | finetune (stage 2, generation)
    manifest: str = "data/fingerspelling/manifest.csv"
    train_split: str = "train"
    dev_split: str = "dev"
    output_dir: str = "output/sign_language_model"
    pose_config: str = "configs/pose_encoder_cpu.json"
    text_config: str = "cpu"  # UMT5 preset (tiny, cpu) or JSON file, used without pretrained weights
    umt5_dir: str = "models/umt5"  # a local pretrained UMT5, used when present
    init_from: str | None = None  # stage 2: the stage-1 run (its pose encoder initialises ours)
    # stage 2: a finished stage-2 run to continue with its pose encoder and CTC head frozen: the decoder alone trains,
    # on an encoder that no longer moves (a decoder trained beside the encoder chases it)
    decoder_stage_from: str | None = None
    target: str = "gloss"  # gloss | text
    sign_language_conditioning: bool = True
    ctc_classes: str = "letters"  # stage 2 CTC classes: letters (one per letter per sign language) | tokens
    ctc_weight: float = 0.7  # stage 2: weight of the CTC loss on the encoder beside the decoder's (0: decoder only)
    decoder_memory: str = "frames"  # stage 2: cross-attention reads the encoder frames | ctc_segments (CTC runs)
    positions: str = "ctc"  # stage 2: decoder positions: ctc (counted in CTC emissions and letters written) | both_ends | sinusoidal | none
    guided_attention_weight: float = 2.0  # stage 2: weight of the prior on cross-attention (0: off)
    guided_attention: str = "ctc"  # stage 2: the prior: ctc (each token's CTC-aligned frames) | diagonal
    letter_tokens: bool = True  # stage 2, gloss target, byte vocabulary: one decoder token per letter of several bytes
    # stage 2: add the CTC posteriors' spelling (decoder token embeddings) to the decoder's memory; with the decoder
    # phase it took joint decoding below CTC on dev and test in both seeds tried (BENCHMARKS.md, tenth session)
    memory_spelling: bool = True
    label_smoothing: float = 0.0  # stage 2: the decoder's targets smoothed by this share (cross-entropy)
    # stage 2, positions ctc: cross-attention logits lowered by this much per CTC unit away from the letter a token
    # reads (models/alignment.py: aligned_attention_bias; 0: off). On the demo's frozen encoder dev / test attention
    # CER went from 2.99 / 2.81 % to 1.00 / 1.09 % and 0.87 / 1.15 % (two seeds; BENCHMARKS.md, twelfth session)
    aligned_attention_slope: float = 4.0
    decoder_gradient_to_encoder: float = 0.0  # stage 2: share of the decoder's gradient the pose encoder gets (0: CTC's alone)
    # stage 2 in two phases (training/decoder_phase.py): the epochs train the pose encoder and CTC head alone, then
    # the decoder trains this many steps on the frozen encoder's cached outputs (0: decoder and encoder together)
    decoder_steps: int = 0
    decoder_lr: float | None = None  # the decoder phase's peak learning rate (None: lr)
    decoder_passes: int = 5  # augmented passes over the training split whose encoder outputs the decoder phase caches
    # share of the decoder phase's batches made of spliced words (training/splice.py): 0.9 took test attention CER
    # from 3.20 / 2.56 % to 2.17 / 2.05 % in two seeds on the demo's frozen encoder (BENCHMARKS.md, eleventh session)
    decoder_splice: float = 0.9
    decoder_splice_pieces: int = 2  # cached words a spliced word is cut from (2: one word's start, another's end)
    epochs: int = 30
    max_steps: int | None = None  # train for this many optimiser steps (overrides epochs; sets the schedule)
    stop_after_steps: int | None = None  # pause after N steps of this invocation (checkpointed; --resume goes on)
    batch_size: int = 32
    grad_accum: int = 1
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.05
    grad_clip: float = 1.0
    seed: int = 0
    num_workers: int = -1  # data-loader worker processes for augmentation; -1: 0 on CPU (a worker would take a
    # core from the model), min(4, cores - 1) per process on GPU
    save_every_steps: int = 0  # also checkpoint every N steps (0: at each epoch end only)
    eval_every_epochs: int = 1
    patience: int = 8  # early stopping: epochs without a better dev score
    max_eval_samples: int | None = 400
    eval_batch_size: int = 64
    num_beams: int = 1  # dev decoding (evaluate.py can use more)
    max_target_length: int = 64
    max_nonfinite_steps: int = 5  # stop after this many non-finite losses in a row
    resume: bool = False
    log_every_steps: int = 10
    malloc_mmap_threshold_kib: int = 0  # allocations this large get a mapping of their own, freed to the OS (glibc;
    # 0: its default). 1024 halves a long CPU run's RSS but costs ~40 % of the speed (BENCHMARKS.md)
    max_batch_frames: int = 2048  # a batch of more padded frames (B x T) runs in parts (one process); 0: never
    primitive_cache_capacity: int = 4  # oneDNN kernels kept per process (its default 1,024 grew RSS); 0: as set
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {self.stage!r}")
        if self.ctc_classes not in ("letters", "tokens"):
            raise ValueError(f"ctc_classes must be letters or tokens, got {self.ctc_classes!r}")
        for name, allowed in (("decoder_memory", DECODER_MEMORIES), ("positions", POSITIONS),
                              ("guided_attention", GUIDES)):  # the model's own choices
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if not 0.0 <= self.decoder_gradient_to_encoder <= 1.0:
            raise ValueError(f"decoder_gradient_to_encoder must lie in [0, 1], got {self.decoder_gradient_to_encoder}")
        if self.decoder_stage_from and (self.stage != "finetune" or self.init_from):
            raise ValueError("decoder_stage_from continues a stage-2 run: stage 2 only, and without init_from")
        if self.aligned_attention_slope < 0:
            raise ValueError(f"aligned_attention_slope must be >= 0, got {self.aligned_attention_slope}")
        if not 0.0 <= self.decoder_splice <= 1.0:
            raise ValueError(f"decoder_splice must lie in [0, 1], got {self.decoder_splice}")
        if self.decoder_splice_pieces < 2:
            raise ValueError(f"decoder_splice_pieces must be >= 2, got {self.decoder_splice_pieces}")
        if self.decoder_steps < 0 or self.decoder_passes < 1:
            raise ValueError(f"decoder_steps must be >= 0 and decoder_passes >= 1, got {self.decoder_steps} and "
                             f"{self.decoder_passes}")
        if self.decoder_steps and (self.stage != "finetune" or self.ctc_weight <= 0 or self.decoder_stage_from):
            raise ValueError("decoder_steps splits stage 2 into an encoder phase (CTC) and a decoder phase: stage 2 "
                             "only, with ctc_weight > 0, and not with decoder_stage_from")
        if self.target not in ("gloss", "text"):
            raise ValueError(f"target must be gloss or text, got {self.target!r}")
        if isinstance(self.data, Mapping):
            self.data = DataConfig.from_dict(self.data)
        if isinstance(self.augment, Mapping):
            self.augment = AugmentConfig.from_dict(self.augment)

    def resume_differences(self, saved: "TrainConfig") -> list[str]:
        """What differs from the resumed run's config ("field: saved -> new"), outside ``RESUMABLE_CHANGES``:
        the batch, seed, data, augmentation or model settings, which would skip or repeat samples or be ignored."""
        mine, theirs = self.to_dict(), saved.to_dict()
        return [f"{k}: {theirs.get(k)!r} -> {v!r}" for k, v in mine.items()
                if k not in RESUMABLE_CHANGES and theirs.get(k) != v]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["data"], d["augment"] = self.data.to_dict(), self.augment.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrainConfig":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))
