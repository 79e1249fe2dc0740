"""How fast does a pose-encoder configuration learn? Train encoder + linear CTC head only, report dev CER.

The decoder, checkpoints and evaluation of ``signt5 train`` are left out, so one configuration
costs a few minutes; this is how the demo's encoder size, batch size and initialisation were
chosen (BENCHMARKS.md, "Getting the demo model good"). The budget is wall time (``--minutes``)
or optimiser steps (``--steps``, comparable under load); the schedule is warm-up + cosine over it.

    python benchmarks/ctc_probe.py --minutes 3 --batch_size 16 --pose '{"gcn_layers": 1, "gcn_channels": 16}'
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from signt5.data.augment import AugmentConfig  # noqa: E402
from signt5.data.cache import PreparedDataset, prepare_all  # noqa: E402
from signt5.data.dataset import DataConfig, pad_batch  # noqa: E402
from signt5.data.manifest import read_manifest  # noqa: E402
from signt5.models.configuration import selected_layout  # noqa: E402
from signt5.models.peer import FlatPoseEncoder  # noqa: E402
from signt5.models.pose_encoder import PoseEncoder, PoseEncoderConfig  # noqa: E402


def edit_distance(a: list, b: list) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        previous, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (x != y))
    return row[-1]


class CTCProbe(nn.Module):
    """PoseEncoder (or the YouTube-ASL peer's) + sign-language embedding + linear CTC head (class 0 = blank)."""

    def __init__(self, config: PoseEncoderConfig, languages: list[str], vocab_size: int):
        super().__init__()
        self.languages = languages
        self.encoder = FlatPoseEncoder(config) if config.architecture == "youtube_asl" else PoseEncoder(config)
        self.language = nn.Embedding(len(languages) + 1, config.d_model)
        self.head = nn.Linear(config.d_model, vocab_size)

    def forward(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        ids = torch.tensor([self.languages.index(code) + 1 if code in self.languages else 0
                            for code in batch["sign_languages"]])
        x, mask = self.encoder(batch["pose"], batch["point_mask"], batch["frame_mask"], self.language(ids))
        return self.head(x), mask  # (B, T', V), (B, T')


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_dir", default=str(ROOT / "data" / "fingerspelling"))
    p.add_argument("--pose_config", default=str(ROOT / "configs" / "pose_encoder_cpu.json"))
    p.add_argument("--pose", default="{}", help="JSON overrides of the pose config")
    p.add_argument("--minutes", type=float, default=3.0)
    p.add_argument("--steps", type=int, default=0, help="budget in steps instead of minutes")
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=float, default=0.05)
    p.add_argument("--no_augment", action="store_true")
    p.add_argument("--units", choices=["bytes", "letters"], default="bytes",
                   help="CTC classes: UTF-8 bytes (as signt5's CTC head) or one class per letter per language")
    p.add_argument("--init", choices=["torch", "hf"], default="torch", help="hf: every weight ~ N(0, 0.02)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)

    manifest, data_config = Path(args.data_dir) / "manifest.csv", DataConfig()
    cache = manifest.parent / ".signt5-cache"
    train = prepare_all(read_manifest(manifest, "train"), data_config, cache)
    dev = prepare_all(read_manifest(manifest, "dev"), data_config, cache)

    def units(entry) -> list:
        if args.units == "letters":
            return [f"{entry.sign_language}:{u}" for u in entry.label("gloss").split(" ")]
        return list(entry.label("gloss").replace(" ", "").encode())

    vocab: dict = {}
    for entry in train.entries + dev.entries:
        for u in units(entry):
            vocab.setdefault(u, len(vocab) + 1)
    pose_config = PoseEncoderConfig.from_dict({**json.loads(Path(args.pose_config).read_text()),
                                               **json.loads(args.pose)}).with_layout(selected_layout(data_config))
    model = CTCProbe(pose_config, sorted({e.sign_language for e in train.entries}), len(vocab) + 1)
    if args.init == "hf":
        for module in model.modules():
            if isinstance(module, (nn.Linear, nn.Embedding, nn.Conv1d)):
                nn.init.normal_(module.weight, 0.0, 0.02)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
    augment = AugmentConfig(enabled=not args.no_augment)
    dataset = PreparedDataset(train, "gloss", augment, args.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    lengths, rng = train.lengths(), np.random.default_rng(args.seed)

    def lr_at(progress: float) -> float:
        if progress < args.warmup:
            return args.lr * progress / args.warmup
        return args.lr * 0.5 * (1 + math.cos(math.pi * (progress - args.warmup) / (1 - args.warmup)))

    @torch.no_grad()
    def dev_cer() -> float:
        model.eval()
        errors = total = 0
        items = dev.items("gloss")
        for start in range(0, len(items), 64):
            logits, mask = model(pad_batch(items[start:start + 64]))
            for row, valid, entry in zip(logits.argmax(-1).tolist(), mask.tolist(), dev.entries[start:start + 64]):
                hyp, previous = [], None
                for token, ok in zip(row, valid):
                    if ok and token != previous and token != 0:
                        hyp.append(token)
                    previous = token if ok else previous
                ref = [vocab[u] for u in units(entry)]
                errors, total = errors + edit_distance(hyp, ref), total + len(ref)
        model.train()
        return 100 * errors / total

    print(f"parameters {sum(q.numel() for q in model.parameters())}, classes {len(vocab) + 1}", flush=True)
    start, step, epoch, next_report, done = time.time(), 0, 0, 60.0, False
    while not done:
        dataset.set_epoch(epoch)
        order = rng.permutation(len(dataset))
        batches = []
        for chunk in (order[i:i + args.batch_size * 50] for i in range(0, len(order), args.batch_size * 50)):
            chunk = chunk[np.argsort(lengths[chunk])]  # length-bucketed within chunks of 50 batches
            batches += [chunk[i:i + args.batch_size] for i in range(0, len(chunk), args.batch_size)]
        rng.shuffle(batches)
        for indices in batches:
            elapsed = time.time() - start
            progress = step / args.steps if args.steps else elapsed / (60 * args.minutes)
            if progress >= 1:
                done = True
                break
            for group in optimizer.param_groups:
                group["lr"] = lr_at(progress)
            logits, mask = model(pad_batch([dataset[int(i)] for i in indices]))
            targets = [[vocab[u] for u in units(train.entries[int(i)])] for i in indices]
            loss = F.ctc_loss(logits.float().log_softmax(-1).transpose(0, 1),
                              torch.tensor([t for row in targets for t in row]), mask.sum(1),
                              torch.tensor([len(row) for row in targets]), zero_infinity=True)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            step += 1
            if (args.steps and step % 200 == 0) or (not args.steps and elapsed > next_report):
                print(f"{elapsed:6.0f} s  step {step}  epoch {epoch}  loss {loss.item():.3f}  dev CER {dev_cer():.1f}",
                      flush=True)
                next_report += 60
        epoch += 1
    seconds = time.time() - start
    print(f"| {args.pose} | {args.batch_size} | {args.units} | {args.init} | {'off' if args.no_augment else 'on'} "
          f"| {step} | {seconds:.0f} | {step * args.batch_size / seconds:.0f} | {dev_cer():.2f} |")


if __name__ == "__main__":
    main()
