"""Inference latency: imports, loading a model, reading one 10 s .pose file, translating it, and a batch of 32.

    python benchmarks/bench_inference.py [--model_dir RUN_OR_CHECKPOINT] [--threads N]

Without ``--model_dir`` it builds the demo's CPU model (``configs/pose_encoder_cpu.json`` + UMT5 preset ``cpu``)
with random weights and saves it as a checkpoint, so loading is the real thing. The input is a real MediaPipe
recording from the fingerspelling lexicon, tiled to 250 frames at 25 fps (10 s), written as a .pose file.

An untrained decoder rarely emits end-of-sequence, so greedy decoding runs to the cap (64 new tokens, what
``infer`` and ``evaluate`` use); the table gives the tokens generated, and a row capped at 16 tokens, the
length of a typical fingerspelled gloss ("H E L L O" = 10 tokens with end-of-sequence). Ends with the
wall time of the whole ``signt5 infer`` command on the same file, in a fresh process. Prints markdown.
"""

from __future__ import annotations

import time

START = time.perf_counter()

import argparse  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from signt5.data.readers import write_pose_file  # noqa: E402
from signt5.decoding.predictor import Predictor  # noqa: E402
from signt5.inference import collect_samples  # noqa: E402
from signt5.models import modeling  # noqa: E402,F401  (imported by Predictor.load; timed here, not there)

IMPORTED = time.perf_counter()

FRAMES, FPS, BATCH = 250, 25.0, 32


def random_cpu_model(folder: Path) -> Path:
    """The demo's model shape, untrained, saved as ``train`` saves a checkpoint."""
    from signt5.training.config import TrainConfig
    from signt5.training.recipes import build_model

    config = TrainConfig(pose_config=str(ROOT / "configs" / "pose_encoder_cpu.json"), text_config="cpu",
                         umt5_dir=str(folder / "no-umt5"))
    model, tokenizer = build_model(config, ["ase"])
    model.save_pretrained(folder / "checkpoint")
    tokenizer.save_pretrained(folder / "checkpoint")
    return folder / "checkpoint"


def ten_second_pose(folder: Path) -> Path:
    """A real lexicon clip (ASL letter A, 586 points) tiled to 250 frames at 25 fps."""
    from signt5.data.lexicon import FingerspellingLexicon
    from signt5.data.readers import read_pose_file

    clip = read_pose_file(FingerspellingLexicon.load().letters("ase")[0].path)
    frames = np.arange(FRAMES) % clip.num_frames
    sample = clip.replace(coords=clip.coords[frames], mask=clip.mask[frames], fps=FPS, sample_id="ten_seconds")
    path = folder / "ten_seconds.pose"
    write_pose_file(sample, path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_dir", default=None, help="a run or checkpoint folder (default: random CPU model)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = Path(args.model_dir) if args.model_dir else random_cpu_model(tmp)
        pose = ten_second_pose(tmp)

        start = time.perf_counter()
        predictor = Predictor.load(model_dir, device="cpu")
        loaded = time.perf_counter() - start

        tokens: list[int] = []
        generate = predictor.model.generate

        def counting_generate(*a, **k):
            out = generate(*a, **k)
            tokens.append(int(out.shape[1]) - 1)  # without the decoder start token
            return out

        predictor.model.generate = counting_generate

        start = time.perf_counter()
        sample = collect_samples(pose)[0]
        read = time.perf_counter() - start

        start = time.perf_counter()
        predictor.predict_samples([sample], "ase")
        first = time.perf_counter() - start
        first_tokens = tokens[-1]

        start = time.perf_counter()
        predictor.predict_samples([sample], "ase")
        warm = time.perf_counter() - start

        item = {**predictor.prepare(sample), "sign_language": "ase"}
        start = time.perf_counter()
        predictor.predict_items([item], max_new_tokens=16)
        capped = time.perf_counter() - start
        capped_tokens = tokens[-1]

        start = time.perf_counter()
        predictor.predict_items([item] * BATCH, batch_size=BATCH)
        batch = time.perf_counter() - start
        batch_tokens = tokens[-1]

        env = {**os.environ, **({"OMP_NUM_THREADS": str(args.threads)} if args.threads else {})}
        command = [sys.executable, "-m", "signt5.cli", "infer", "--model_dir", str(model_dir),
                   "--input_file", str(pose), "--sign_language", "ase"]
        start = time.perf_counter()
        subprocess.run(command, env=env, check=True, capture_output=True)
        whole = time.perf_counter() - start

    params = sum(p.numel() for p in predictor.model.parameters()) / 1e6
    print(f"model: {'random ' if not args.model_dir else ''}{params:.2f} M params, {predictor.layout.num_points} "
          f"points; CPU, {torch.get_num_threads()} thread(s), fp32; input: {FRAMES} frames at {FPS:g} fps (10 s)\n")
    print("| step | seconds | notes |")
    print("|---|---:|---|")
    print(f"| imports (torch, transformers, signt5) | {IMPORTED - START:.2f} | |")
    print(f"| load model | {loaded:.2f} | config, weights, tokenizer |")
    print(f"| read + check the .pose file | {read:.3f} | |")
    print(f"| predict 1 sample, first call | {first:.2f} | {first_tokens} tokens generated (cap 64) |")
    print(f"| predict 1 sample, again | {warm:.2f} | |")
    print(f"| predict 1 sample, cap 16 tokens | {capped:.2f} | {capped_tokens} tokens generated |")
    print(f"| predict a batch of {BATCH} | {batch:.2f} | **{BATCH / batch:.1f} samples/s**, "
          f"{batch_tokens} tokens each |")
    print(f"| `signt5 infer` on the file, whole process | {whole:.2f} | Python start, imports, load, read, predict |")


if __name__ == "__main__":
    main()
