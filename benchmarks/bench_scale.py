"""Does memory grow with the corpus? Cache build and training at 1x, 4x and 16x the default corpus.

The corpora are synthesised at the cache's size (the default corpus's 1,900 training samples per 1x, ~110 frames
each, the model's 84 input points), so 16x needs no 26 GB of ``.pose`` files: the sample loader is replaced by
a generator, the rest (cache writer, memory-mapped reader, trainer) is the real code. Every phase runs in a
process of its own and reports that process's peak RSS:

    python benchmarks/bench_scale.py --scales 1 4 16 --procs 1 2 --steps 100
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shutil
import subprocess
import sys
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRAIN_PER_SCALE, DEV = 1900, 16  # dev: as many as the runs evaluate (--max_eval_samples), so the cache key matches


def synthesise(folder: Path, scale: int) -> Path:
    """A manifest of 1,900 x scale training and 16 dev samples whose files do not exist."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / "manifest.csv"
    with manifest.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "path", "gloss", "sign_language", "split"])
        for split, count in (("train", TRAIN_PER_SCALE * scale), ("dev", DEV)):
            for i in range(count):
                writer.writerow([f"{split}-{i}", f"poses/{split}-{i}.pose", "A B C", "ase", split])
    return manifest


def build(manifest: str) -> None:
    """Child process: build the cache with generated samples in the model's input layout; print the figures."""
    sys.path.insert(0, str(ROOT / "src"))
    import numpy as np

    from signt5.data.cache import prepare_all, training_data_config
    from signt5.data.dataset import DataConfig, SampleLoader
    from signt5.data.manifest import read_manifest
    from signt5.data.sample import PoseSample
    from signt5.models.configuration import selected_layout

    layout = selected_layout(DataConfig())

    def generated(self, entry):
        rng = np.random.default_rng(zlib.crc32(entry.id.encode()))
        frames = int(rng.integers(40, 180))  # the corpus: 107 frames on average
        coords = rng.normal(0, 1, (frames, layout.num_points, 2)).astype(np.float32)
        return PoseSample(coords, np.ones(coords.shape[:2], bool), 25.0, layout, None, "unknown", entry.id, "")

    SampleLoader.load = generated
    entries = read_manifest(manifest)
    config = training_data_config(DataConfig())
    start = time.perf_counter()
    for split in ("train", "dev"):
        prepare_all([e for e in entries if e.split == split], config, Path(manifest).parent / ".signt5-cache")
    print(json.dumps({"seconds": time.perf_counter() - start,
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def train(manifest: Path, procs: int, steps: int, threads: int) -> dict:
    """Peak RSS of rank 0 (``train_summary.json``) after ``steps`` optimiser steps."""
    out = manifest.parent / f"run_p{procs}_s{steps}"
    shutil.rmtree(out, ignore_errors=True)
    args = ["train", "--manifest", str(manifest), "--output_dir", str(out), "--max_steps", str(steps),
            "--batch_size", "16", "--max_eval_samples", "16", "--eval_every_epochs", "1000", "--num_workers", "0"]
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs), "-m",
                 "signt5.cli"] if procs > 1 else [sys.executable, "-m", "signt5.cli"])
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT / "src")}
    start = time.perf_counter()
    subprocess.run(launcher + args, env=env, check=True, capture_output=True)
    summary = json.loads((out / "train_summary.json").read_text())
    return {"peak_rss_mib": summary["peak_rss_mib"], "seconds": time.perf_counter() - start}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1, help="per process")
    parser.add_argument("--work_dir", default="/tmp/signt5_bench_scale")
    parser.add_argument("--build_only", default=None, help=argparse.SUPPRESS)  # the child process's entry
    args = parser.parse_args(argv)
    if args.build_only:
        build(args.build_only)
        return
    print("| corpus | train samples | cache build s | cache MiB | build peak RSS MiB | processes "
          "| peak RSS, 1 step MiB | peak RSS, %d steps MiB |" % args.steps)
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for scale in args.scales:
        folder = Path(args.work_dir) / f"x{scale}"
        shutil.rmtree(folder, ignore_errors=True)
        manifest = synthesise(folder, scale)
        child = subprocess.run([sys.executable, __file__, "--build_only", str(manifest)], check=True,
                               capture_output=True, text=True)
        built = json.loads(child.stdout.strip().splitlines()[-1])
        size = sum(p.stat().st_size for p in (folder / ".signt5-cache").rglob("*") if p.is_file()) / 2**20
        for procs in args.procs:
            first, later = train(manifest, procs, 1, args.threads), train(manifest, procs, args.steps, args.threads)
            print(f"| {scale}x | {TRAIN_PER_SCALE * scale} | {built['seconds']:.1f} | {size:.0f} | "
                  f"{built['peak_rss_mib']:.0f} | {procs} | {first['peak_rss_mib']:.0f} | {later['peak_rss_mib']:.0f} |",
                  flush=True)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
