"""Pose-encoder step time (forward + backward) for spatial-GCN variants, on a real batch of the demo corpus.

One bucketed batch of 32 samples of 68-76 frames, 84 points; the minimum of 4 repeats. Prints a markdown table.

    python benchmarks/bench_gcn.py --variants '[{}, {"gcn_layers": 1, "gcn_channels": 16}, {"gcn_layers": 0}]'
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from signt5.data.cache import PreparedDataset, prepare_all  # noqa: E402
from signt5.data.dataset import DataConfig, pad_batch  # noqa: E402
from signt5.data.manifest import read_manifest  # noqa: E402
from signt5.models.configuration import selected_layout  # noqa: E402
from signt5.models.pose_encoder import PoseEncoder, PoseEncoderConfig  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_dir", default=str(ROOT / "data" / "fingerspelling"))
    p.add_argument("--base", default=str(ROOT / "configs" / "pose_encoder_cpu.json"))
    p.add_argument("--variants", default='[{"gcn_layers": 2, "gcn_channels": 32}, {"gcn_layers": 1, "gcn_channels": 32}, '
                   '{"gcn_layers": 2, "gcn_channels": 16}, {"gcn_layers": 1, "gcn_channels": 16}, {"gcn_layers": 0}]')
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    data_config = DataConfig()
    manifest = Path(args.data_dir) / "manifest.csv"
    train = prepare_all(read_manifest(manifest, "train"), data_config, manifest.parent / ".signt5-cache")
    lengths = train.lengths()
    indices = np.where((lengths >= 68) & (lengths <= 76))[0][: args.batch_size]
    dataset = PreparedDataset(train, "gloss", None)
    batch = pad_batch([dataset[int(i)] for i in indices])
    base = json.loads(Path(args.base).read_text())
    print(f"batch {tuple(batch['pose'].shape)}, {args.threads} threads\n")
    print("| variant | parameters | ms / batch | samples/s |\n|---|---:|---:|---:|")
    for overrides in json.loads(args.variants):
        torch.manual_seed(0)
        encoder = PoseEncoder(PoseEncoderConfig.from_dict({**base, **overrides}).with_layout(selected_layout(data_config)))
        times = []
        for _ in range(4):
            start = time.perf_counter()
            features, _ = encoder(batch["pose"], batch["point_mask"], batch["frame_mask"])
            features.sum().backward()
            times.append(time.perf_counter() - start)
        n = sum(q.numel() for q in encoder.parameters())
        print(f"| `{json.dumps(overrides)}` | {n:,} | {1000 * min(times):.0f} | {len(indices) / min(times):.0f} |")


if __name__ == "__main__":
    main()
