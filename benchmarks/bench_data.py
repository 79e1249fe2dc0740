"""Data-loading throughput: samples/s to read and normalise the corpus, and peak memory.

    python benchmarks/bench_data.py --manifest data/fingerspelling/manifest.csv

Reads every sample twice: once from the ``.pose`` files, once from ``data.pkl`` (the
seed's format), each through the full model-input pipeline (read, pick the person,
resample to 25 fps, shoulder normalisation, select the default 84 points). Prints a
markdown table.
"""

from __future__ import annotations

import argparse
import gc
import resource
import time
import tracemalloc
from pathlib import Path

from signt5.data.dataset import DataConfig, SampleLoader
from signt5.data.manifest import read_manifest


def _run(entries, config: DataConfig, trace: bool) -> tuple[float, int, float]:
    gc.collect()
    if trace:
        tracemalloc.start()
    loader = SampleLoader(config)
    frames = 0
    start = time.perf_counter()
    for entry in entries:
        frames += loader.load(entry).num_frames
    seconds = time.perf_counter() - start
    peak = 0.0
    if trace:
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    return seconds, frames, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", default="data/fingerspelling/manifest.csv")
    parser.add_argument("--limit", type=int, default=None, help="first N samples only")
    args = parser.parse_args()

    manifest = Path(args.manifest)
    sources = {".pose files": manifest}
    if (manifest.parent / "manifest_pkl.csv").exists():
        sources["data.pkl"] = manifest.parent / "manifest_pkl.csv"
    config = DataConfig()
    rows = []
    for name, path in sources.items():
        entries = read_manifest(path)[: args.limit]
        seconds, frames, _ = _run(entries, config, trace=False)
        _, _, peak = _run(entries, config, trace=True)
        rows.append((name, len(entries), seconds, len(entries) / seconds, frames / seconds, peak))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("| source | samples | seconds | samples/s | frames/s | peak traced MiB |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, n, seconds, sps, fps, peak in rows:
        print(f"| {name} | {n} | {seconds:.2f} | {sps:.0f} | {fps:.0f} | {peak:.1f} |")
    print(f"\npeak RSS of the whole run: {rss:.0f} MiB")


if __name__ == "__main__":
    main()
