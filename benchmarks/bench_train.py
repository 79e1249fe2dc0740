"""Training throughput and memory of both stages, 1 process vs 2 (torchrun, gloo), on the demo config.

    python benchmarks/bench_train.py --data_dir data/fingerspelling --steps 30

Each cell is a real ``signt5 pretrain|train`` run of ``--steps`` optimiser steps in a fresh
process (so import and start-up are excluded from samples/s, which the trainer measures
over its steps). Two processes on a 2-core machine run one thread each. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(stage: str, processes: int, args: argparse.Namespace, workdir: Path) -> dict:
    out = workdir / f"{stage}-{processes}"
    flags = ["--data_dir", args.data_dir, "--output_dir", str(out), "--max_steps", str(args.steps),
             "--batch_size", str(args.batch_size), "--max_eval_samples", "32"]
    command = "pretrain" if stage == "pretrain" else "train"
    env = dict(os.environ)
    if processes == 1:
        cmd = [sys.executable, "-m", "signt5.cli", command, *flags]
    else:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 2) // processes))
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
               "-m", "signt5.cli", command, *flags]
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    summary = json.loads((out / "train_summary.json").read_text())
    summary["wall_seconds"] = time.perf_counter() - start
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default="data/fingerspelling")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch_size", type=int, default=32, help="per process")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for stage in ("pretrain", "finetune"):
            for processes in args.processes:
                s = run(stage, processes, args, Path(tmp))
                rows.append((stage, processes, s))
    print(f"| stage | processes | batch/process | steps | samples/s | data wait | peak RSS MiB (rank 0) | wall s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for stage, processes, s in rows:
        print(f"| {stage} | {processes} | {args.batch_size} | {s['steps']} | {s['train_samples_per_second']:.1f} | "
              f"{100 * s['data_wait_share']:.1f}% | {s['peak_rss_mib']:.0f} | {s['wall_seconds']:.0f} |")


if __name__ == "__main__":
    main()
