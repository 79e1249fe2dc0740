"""Can a pose encoder fit one fixed batch? Its CTC loss on 16 training words, step by step (a wiring check).

An encoder that cannot drive the CTC loss on one batch it sees every step toward zero has a fault (a mask, a
detached tensor); one that can but stays at blanks on the whole corpus (``ctc_probe.py``) learns too slowly to
generalise. The probe's model: the encoder, a sign-language embedding and a linear CTC head over letter classes.

    python benchmarks/overfit_probe.py --pose_config configs/pose_encoder_youtube_asl_cpu.json
    python benchmarks/overfit_probe.py --pose_config configs/pose_encoder_cpu.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from ctc_probe import CTCProbe  # noqa: E402
from signt5.data.cache import prepare_all  # noqa: E402
from signt5.data.dataset import DataConfig, pad_batch  # noqa: E402
from signt5.data.manifest import read_manifest  # noqa: E402
from signt5.models.configuration import selected_layout  # noqa: E402
from signt5.models.pose_encoder import PoseEncoderConfig  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data_dir", default=str(ROOT / "data" / "fingerspelling"))
    p.add_argument("--pose_config", default=str(ROOT / "configs" / "pose_encoder_cpu.json"))
    p.add_argument("--samples", type=int, default=16)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    manifest, data_config = Path(args.data_dir) / "manifest.csv", DataConfig()
    train = prepare_all(read_manifest(manifest, "train")[:args.samples], data_config, manifest.parent / ".signt5-cache")
    units = [[f"{e.sign_language}:{u}" for u in e.label("gloss").split(" ")] for e in train.entries]
    vocab = {u: i + 1 for i, u in enumerate(sorted({u for row in units for u in row}))}  # 0: blank
    pose_config = PoseEncoderConfig.from_dict({**json.loads(Path(args.pose_config).read_text()), "dropout": 0.0})
    pose_config = pose_config.with_layout(selected_layout(data_config))
    model = CTCProbe(pose_config, sorted({e.sign_language for e in train.entries}), len(vocab) + 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    batch = pad_batch(train.items("gloss"))
    targets = [[vocab[u] for u in row] for row in units]
    flat, lengths = torch.tensor([t for row in targets for t in row]), torch.tensor([len(row) for row in targets])
    print("| step | CTC loss |\n|---:|---:|")
    for step in range(1, args.steps + 1):
        logits, mask = model(batch)
        loss = F.ctc_loss(logits.float().log_softmax(-1).transpose(0, 1), flat, mask.sum(1), lengths,
                          zero_infinity=True)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % 25 == 0:
            print(f"| {step} | {loss.item():.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
