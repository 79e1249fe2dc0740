"""Every decoding on every split: CER, exact match and samples/s of one trained model, as a markdown table.

Decodings: greedy CTC; attention (the UMT5 decoder) greedy and beam 4; joint CTC/attention greedy and
beam 4. The data are prepared once per split and the model is loaded once.

    python benchmarks/bench_decoding.py --model_dir output/sign_language_model --data_dir data/fingerspelling \
        --splits test test_shifted
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from signt5.evaluation.evaluate import evaluate_model  # noqa: E402
from signt5.decoding.predictor import Predictor  # noqa: E402

DECODINGS = (("ctc", 1), ("attention", 1), ("attention", 4), ("joint", 1), ("joint", 4))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_dir", default="output/sign_language_model")
    parser.add_argument("--data_dir", default="data/fingerspelling")
    parser.add_argument("--splits", nargs="+", default=["test", "test_shifted"])
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--ctc_weight", type=float, default=None, help="joint decoding's CTC weight (default: "
                        "the checkpoint's)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    predictor = Predictor.load(args.model_dir)
    manifest = Path(args.data_dir) / "manifest.csv"
    print(f"model: {predictor.model_dir} (target {predictor.target}, default decoding "
          f"{predictor.model.config.decoding}); {args.threads} threads, batch {args.batch_size}\n")
    print("| split | decoding | beams | CER % | exact match % | samples/s |\n|---|---|---:|---:|---:|---:|")
    for split in args.splits:
        for decoding, beams in DECODINGS:
            start = time.perf_counter()
            result = evaluate_model(args.model_dir, manifest, split, batch_size=args.batch_size, num_beams=beams,
                                    predictor=predictor, decoding=decoding, ctc_weight=args.ctc_weight)
            overall = result.report.overall
            print(f"| {split} | {decoding} | {beams} | {overall['cer']:.2f} | {overall['exact_match']:.1f} | "
                  f"{result.samples_per_second:.0f} |", flush=True)
            logging.info("%s %s x%d took %.1f s", split, decoding, beams, time.perf_counter() - start)


if __name__ == "__main__":
    main()
