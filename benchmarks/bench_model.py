"""Time and peak memory of the pose encoder and full SignT5 vs. a flattened-keypoints + UMT5 baseline.

The baseline is the YouTube-ASL recipe: each frame's keypoints flattened, a linear layer, then a
plain UMT5 encoder (relative position bias, no down-sampling) and the UMT5 decoder. Both models
are measured in the same run, on the same inputs. Prints markdown tables.

    python benchmarks/bench_model.py --lengths 64 128 256 512 1024 --repeats 5 --device cpu --threads 2
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from transformers import UMT5ForConditionalGeneration

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from signt5.models.configuration import build_config  # noqa: E402
from signt5.models.modeling import SignT5ForConditionalGeneration  # noqa: E402
from signt5.models.pose_encoder import PoseEncoderConfig  # noqa: E402
from signt5.models.text import umt5_config  # noqa: E402


class FlatKeypointsUMT5(nn.Module):
    """Baseline: flattened (K*C) keypoints -> linear -> UMT5 encoder -> UMT5 decoder."""

    def __init__(self, num_points: int, dims: int, text_config, encoder_layers: int):
        super().__init__()
        config = copy.deepcopy(text_config)
        config.num_layers = encoder_layers
        self.input = nn.Linear(num_points * dims, config.d_model)
        self.umt5 = UMT5ForConditionalGeneration(config)

    def encode(self, pose: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        embeds = self.input(pose.flatten(2))  # (B, T, D)
        return self.umt5.encoder(inputs_embeds=embeds, attention_mask=frame_mask.long()).last_hidden_state

    def forward(self, pose: torch.Tensor, frame_mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        embeds = self.input(pose.flatten(2))
        return self.umt5(inputs_embeds=embeds, attention_mask=frame_mask.long(), labels=labels).loss


class PeakMemory:
    """Peak memory allocated by one call, above what was allocated before it.

    CUDA: the allocator's statistics. CPU: PyTorch's ``MemTracker`` (a dispatch mode that sees every
    tensor allocation and free), the CPU analogue of ``torch.cuda.max_memory_allocated``.
    """

    def __init__(self, device: torch.device):
        self.device = device

    def measure(self, fn: Callable[[], None]) -> float:
        """MiB (NaN when it cannot be measured)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
            fn()
            torch.cuda.synchronize()
            return (torch.cuda.max_memory_allocated() - before) / 2 ** 20
        try:
            from torch.distributed._tools.mem_tracker import MemTracker
        except ImportError:
            return float("nan")
        tracker = MemTracker()
        with tracker, warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Module is None")  # hooks of an earlier graph
            fn()
        return tracker.get_tracker_snapshot("peak")[self.device]["Total"] / 2 ** 20


def timed(fn: Callable[[], None], repeats: int, device: torch.device) -> float:
    """Median wall time in ms over ``repeats`` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def step_fns(model: nn.Module, run: Callable[[], torch.Tensor], autocast) -> tuple[Callable, Callable]:
    def forward() -> None:
        model.eval()
        with torch.no_grad(), autocast():
            run()

    def forward_backward() -> None:
        model.train()
        with autocast():
            loss = run()
        loss.backward()
        model.zero_grad(set_to_none=True)

    return forward, forward_backward


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lengths", type=int, nargs="+", default=[64, 128, 256, 512, 1024])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--batch_size", type=int, default=4)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--pose_config", default=str(ROOT / "configs/pose_encoder_cpu.json"))
    p.add_argument("--umt5_config", default=str(ROOT / "configs/umt5_cpu.json"))
    p.add_argument("--baseline_layers", type=int, default=None, help="baseline UMT5 encoder depth "
                   "(default: the pose encoder's transformer depth)")
    p.add_argument("--label_length", type=int, default=16)
    args = p.parse_args(argv)

    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    # bf16 autocast on CUDA only; never fp16 (T5 overflows in fp16)
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if device.type == "cuda" else nullcontext
    torch.manual_seed(0)
    pose_config = PoseEncoderConfig.from_json(args.pose_config)
    text_config = umt5_config(args.umt5_config)
    ours = SignT5ForConditionalGeneration(build_config(pose_config, text_config)).to(device)
    pose_config = ours.config.pose_encoder_config
    k, c = pose_config.keypoint_layout.num_points, pose_config.input_dims
    base = FlatKeypointsUMT5(k, c, text_config, args.baseline_layers or pose_config.n_layers).to(device)

    def n_params(module: nn.Module) -> float:
        return sum(p.numel() for p in module.parameters()) / 1e6

    params = {"ours_enc": n_params(ours.encoder), "ours_full": n_params(ours),
              "base_enc": n_params(base.input) + n_params(base.umt5.encoder), "base_full": n_params(base)}

    def runs_for(length: int) -> dict[str, tuple[nn.Module, Callable[[], torch.Tensor]]]:
        g = torch.Generator().manual_seed(length)
        b = args.batch_size
        point_mask = torch.rand(b, length, k, generator=g) > 0.1
        pose = (torch.randn(b, length, k, c, generator=g) * point_mask.unsqueeze(-1)).to(device)
        lengths = torch.linspace(length // 2, length, b).round().long()  # a realistic mix of padding
        frame_mask = (torch.arange(length)[None, :] < lengths[:, None]).to(device)
        point_mask = point_mask.to(device)
        labels = torch.randint(3, 259, (b, args.label_length), generator=g).to(device)
        return {
            "ours_enc": (ours, lambda: ours.encoder(pose, point_mask, frame_mask).last_hidden_state.float()
                         .square().mean()),
            "ours_full": (ours, lambda: ours(pose=pose, point_mask=point_mask, frame_mask=frame_mask,
                                             labels=labels).loss),
            "base_enc": (base, lambda: base.encode(pose, frame_mask).float().square().mean()),
            "base_full": (base, lambda: base(pose, frame_mask, labels)),
        }

    for model, run in runs_for(args.lengths[0]).values():  # warm up threads and kernels before any timing
        for step in step_fns(model, run, autocast):
            step()
    times: dict[tuple[str, int], tuple[float, float]] = {}
    for length in args.lengths:  # timing first, with the allocator left at its defaults
        for name, (model, run) in runs_for(length).items():
            fwd, fwd_bwd = step_fns(model, run, autocast)
            times[name, length] = (timed(fwd, args.repeats, device), timed(fwd_bwd, args.repeats, device))
            print(f"  {name:9s} T={length:5d}: {times[name, length][0]:.1f} / {times[name, length][1]:.1f} ms",
                  file=sys.stderr, flush=True)
    memory = PeakMemory(device)  # measured apart from timing: the tracker slows every op
    results: dict[tuple[str, int], tuple[float, float, float, float]] = {}
    for length in args.lengths:
        for name, (model, run) in runs_for(length).items():
            fwd, fwd_bwd = step_fns(model, run, autocast)
            fwd_bwd()  # one-time caches (RoPE tables) are built before measuring
            results[name, length] = times[name, length] + (memory.measure(fwd), memory.measure(fwd_bwd))

    where = torch.cuda.get_device_name(device) + ", bf16 autocast" if device.type == "cuda" else \
        f"CPU, {torch.get_num_threads()} threads, fp32"
    print(f"\nDevice: {where}; batch {args.batch_size} (lengths T/2..T, padded to T), "
          f"{k} keypoints x {c}, {args.label_length} target tokens; median of {args.repeats}.\n")
    for part, ours_key, base_key in (("Pose encoder", "ours_enc", "base_enc"), ("Full model", "ours_full", "base_full")):
        print(f"**{part}** — ours {params[ours_key]:.2f} M params, baseline {params[base_key]:.2f} M params\n")
        print(f"| frames | ours fwd ms | baseline fwd ms | ours fwd+bwd ms | baseline fwd+bwd ms "
              f"| ours peak fwd / fwd+bwd MiB | baseline peak fwd / fwd+bwd MiB |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for length in args.lengths:
            o, s = results[ours_key, length], results[base_key, length]
            print(f"| {length} | {o[0]:.0f} | {s[0]:.0f} | {o[1]:.0f} | {s[1]:.0f} "
                  f"| {o[2]:.0f} / {o[3]:.0f} | {s[2]:.0f} / {s[3]:.0f} |")
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
