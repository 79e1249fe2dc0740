"""Train the demo recipe on a lent GPU machine that has no .pose files, no internet and no pip index.

Why: the remote gets the working tree plus ``.gpu/`` (wheels and the packed training cache, see
``.gpu/RUN.md``). The trainer's cache is keyed by the .pose files' sizes and times, which the remote
lacks, so this script unpacks ``.gpu/data`` and patches the trainer to serve those arrays instead.
``--pack`` writes ``.gpu/data`` from this machine's cache (float16 coords, bit-packed masks).
``--variants "a=FLAGS;b=FLAGS"`` runs each variant as its own process, concurrently on the one GPU,
and prints one markdown table; any other flag is passed on to ``signt5 train``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

logger = logging.getLogger("gpu_train")
MANIFEST = Path("data/fingerspelling/manifest.csv")
RECIPE = ["--data_dir", "data/fingerspelling", "--epochs", "18", "--batch_size", "16", "--lr", "2e-3",
          "--eval_every_epochs", "6"]
COLUMNS = ["variant", "epochs", "steps", "train samples/s", "peak alloc MiB", "peak reserved MiB", "wall s",
           "cer", "cer_ctc", "cer_attention", "cer_joint"]


def pack(folder: Path) -> None:
    """Train and dev as ``signt5 train`` picks them; coords as float16 bits, delta-coded along time, byte planes."""
    from signt5.data.cache import prepare_all, training_data_config
    from signt5.data.manifest import read_manifest
    from signt5.training.config import TrainConfig

    config, entries = TrainConfig(manifest=str(MANIFEST)), read_manifest(MANIFEST)
    data_config = training_data_config(config.data)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(MANIFEST, folder / "manifest.csv")
    for name in (config.train_split, config.dev_split):
        split = [e for e in entries if e.split == name][: None if name == config.train_split else config.max_eval_samples]
        p = prepare_all(split, data_config, MANIFEST.parent / ".signt5-cache")
        bits = p.coords.astype(np.float16).view(np.uint16).transpose(1, 2, 0)  # (K, C, T): time contiguous
        delta = np.ascontiguousarray(np.diff(bits, axis=-1, prepend=np.zeros_like(bits[..., :1]))).view(np.uint8)
        meta = {"ids": [e.id for e in p.entries], "skipped": p.skipped, "data_config": data_config.to_dict(),
                "hand_slices": [[s.start, s.stop] for s in p.hand_slices], "shape": list(p.coords.shape)}
        path = folder / f"{name}.npz"
        np.savez_compressed(path, lo=delta[..., 0::2], hi=delta[..., 1::2], offsets=p.offsets,
                            mask=np.packbits(p.mask), meta=np.array(json.dumps(meta)))
        back = unpack(path)  # the round trip: masks exact, coords exactly their float16 values
        assert np.array_equal(back.mask, p.mask) and np.array_equal(back.offsets, p.offsets)
        assert np.array_equal(back.coords, p.coords.astype(np.float16).astype(np.float32))
        logger.info("%s: %d samples, %.1f MB, max |error| %.1e", name, len(p), path.stat().st_size / 1e6,
                    float(np.abs(back.coords - p.coords).max()))


def unpack(path: Path) -> SimpleNamespace:
    z = np.load(path)
    meta = json.loads(str(z["meta"]))
    t, k, c = meta["shape"]
    delta = np.stack([z["lo"], z["hi"]], axis=-1).reshape(k, c, t * 2).view(np.uint16)
    coords = np.cumsum(delta, axis=-1, dtype=np.uint16).view(np.float16).transpose(2, 0, 1).astype(np.float32)
    mask = np.unpackbits(z["mask"], count=t * k).reshape(t, k).astype(bool)
    return SimpleNamespace(coords=coords, mask=mask, offsets=z["offsets"], meta=meta)


def patch_trainer(folder: Path) -> list[str]:
    """PATCH: the trainer's ``prepare_all`` serves the packed splits (or a subset) instead of reading .pose files."""
    import signt5.training.trainer as trainer
    from signt5.data.cache import PreparedSamples

    packs, hits = [unpack(p) for p in sorted(folder.glob("*.npz"))], []

    def prepare_all(entries, config, cache_dir=None) -> PreparedSamples:
        ids = [e.id for e in entries]
        pk = next((p for p in packs if set(ids) <= set(p.meta["ids"])), None)
        if pk is None or pk.meta["data_config"] != json.loads(json.dumps(config.to_dict())):
            raise RuntimeError(f"{folder}: no packed split holds these {len(ids)} samples with this data config")
        row = {i: n for n, i in enumerate(pk.meta["ids"])}
        spans = [np.arange(pk.offsets[row[i]], pk.offsets[row[i] + 1]) for i in ids]
        take, offsets = np.concatenate(spans), np.cumsum([0] + [len(s) for s in spans], dtype=np.int64)
        hits.append(f"{len(ids)} samples from {folder}")
        logger.info("patched prepare_all: %s", hits[-1])
        return PreparedSamples(list(entries), pk.coords[take], pk.mask[take], offsets,
                               [slice(a, b) for a, b in pk.meta["hand_slices"]], pk.meta["skipped"])

    trainer.prepare_all = prepare_all
    return hits


def run_one(args: argparse.Namespace, extra: list[str]) -> dict:
    """One training run in this process; returns its table row."""
    import torch

    from signt5.cli import main

    hits = patch_trainer(args.data)
    cuda = torch.cuda.is_available()
    logger.info("torch %s on %s, bf16 supported: %s", torch.__version__,
                torch.cuda.get_device_name() if cuda else "cpu", cuda and torch.cuda.is_bf16_supported())
    start = time.perf_counter()
    rc = main(["train", *RECIPE, "--output_dir", str(args.out), *extra])
    wall = time.perf_counter() - start
    if rc != 0 or not hits:  # no hit would mean the trainer read .pose files after all
        raise SystemExit(f"training failed (exit {rc}, patched loads: {hits})")
    summary = json.loads((args.out / "train_summary.json").read_text())
    log = [json.loads(line) for line in (args.out / "train_log.jsonl").read_text().splitlines()]
    dev = next((r for r in reversed(log) if "cer" in r), {})
    mib = [f"{f() / 2**20:.0f}" if cuda else "-" for f in (torch.cuda.max_memory_allocated,
                                                            torch.cuda.max_memory_reserved)]
    return dict(zip(COLUMNS, [args.name, summary["epochs"], summary["steps"],
                              f"{summary['train_samples_per_second']:.1f}", *mib, f"{wall:.0f}",
                              *(f"{dev[k]:.2f}" if k in dev else "-" for k in COLUMNS[7:])]))


def run_variants(args: argparse.Namespace, extra: list[str]) -> list[dict]:
    """Each ``NAME=FLAGS`` as its own process (OMP_NUM_THREADS=2), all at once; their rows in order."""
    variants = [[s.strip() for s in v.split("=", 1)] for v in args.variants.split(";") if v.strip()]
    procs = []
    for name, flags in variants:
        out = args.out_root / name
        out.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, __file__, "--name", name, "--out", str(out), "--data", str(args.data), *extra,
               *shlex.split(flags)]
        logger.info("start %s: %s (log in %s)", name, shlex.join(cmd), out / "log.txt")
        with (out / "log.txt").open("w") as log:
            procs.append(subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "2"}, stdout=log,
                                          stderr=subprocess.STDOUT))
    rows = []
    for (name, _), proc in zip(variants, procs):
        rc, row = proc.wait(), args.out_root / name / "row.json"
        rows.append(json.loads(row.read_text()) if rc == 0 and row.exists() else {"variant": f"{name} (exit {rc})"})
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    return "\n".join(lines + ["| " + " | ".join(str(r.get(c, "-")) for c in COLUMNS) + " |" for r in rows])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("--data", type=Path, default=Path(".gpu/data"), help="packed splits and manifest.csv")
    p.add_argument("--pack", action="store_true", help="write --data from data/fingerspelling's cache, then stop")
    p.add_argument("--name", default="demo")
    p.add_argument("--out", type=Path, default=Path("output/gpu_train"), help="this run's output_dir")
    p.add_argument("--variants", default=None, help='"NAME=FLAGS;NAME2=FLAGS2", run concurrently')
    p.add_argument("--out_root", type=Path, default=Path("output/gpu_variants"))
    args, extra = p.parse_known_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.pack:
        pack(args.data)
        return
    if not MANIFEST.exists():  # the remote has no data/: the packed manifest stands in (once, before any variant)
        MANIFEST.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(args.data / "manifest.csv", MANIFEST)
    if args.variants:
        rows = run_variants(args, extra)
        (args.out_root / "table.md").write_text(table(rows) + "\n")
    else:
        rows = [run_one(args, extra)]
        (args.out / "row.json").write_text(json.dumps(rows[0]))  # read by --variants
    print(table(rows))
    sys.exit(int(any("steps" not in row for row in rows)))  # a variant that failed fails the command


if __name__ == "__main__":
    main()
