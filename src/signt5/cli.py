"""The ``signt5`` command line. Library code never parses argv or prints; this module does both.

``main(argv)`` returns an exit code, so tests call it in process.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter
from pathlib import Path
from typing import Sequence

from .data.errors import SignT5Error

logger = logging.getLogger("signt5")


def _add_build_fingerspelling(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("build-fingerspelling", help="build the fingerspelling corpus from spoken-to-signed's lexicon")
    p.add_argument("--output_dir", default="data/fingerspelling")
    p.add_argument("--sign_languages", nargs="*", default=None, help="ISO 639-3 codes (default: all 19)")
    p.add_argument("--train_words", type=int, default=100, help="words per sign language")
    p.add_argument("--dev_words", type=int, default=10)
    p.add_argument("--test_words", type=int, default=10)
    p.add_argument("--test_shifted_words", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--layout", default="holistic_reduced_178", choices=["holistic_reduced_178", "holistic_586"])
    p.add_argument("--formats", nargs="+", default=["pose", "pkl"], choices=["pose", "pkl"])
    p.set_defaults(func=_run_build_fingerspelling)


def _run_build_fingerspelling(args: argparse.Namespace) -> int:
    from .data.fingerspelling import CorpusConfig, build_corpus

    config = CorpusConfig(
        output_dir=args.output_dir, sign_languages=args.sign_languages, train_words=args.train_words,
        dev_words=args.dev_words, test_words=args.test_words, test_shifted_words=args.test_shifted_words,
        seed=args.seed, layout=args.layout, formats=args.formats,
    )
    entries = build_corpus(config)
    splits = Counter(e.split for e in entries)
    print(f"built {len(entries)} samples in {args.output_dir}: " + ", ".join(f"{k} {v}" for k, v in splits.items()))
    return 0


def _add_data_summary(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data-summary", help="read every sample of a manifest and summarise it")
    p.add_argument("--manifest", default="data/fingerspelling/manifest.csv")
    p.add_argument("--split", default=None)
    p.set_defaults(func=_run_data_summary)


def _run_data_summary(args: argparse.Namespace) -> int:
    from .data.summary import summarize_manifest

    print(summarize_manifest(args.manifest, split=args.split).to_text())
    return 0


def _add_visualize(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("visualize", help="HTML player, PNG grid, GIF or MP4 of one pose sample")
    p.add_argument("--input_file", required=True, help=".pose, data.pkl or .npz")
    p.add_argument("--sample_id", default=None, help="sample of a data.pkl/.npz (needed when it holds several)")
    p.add_argument("--output", default=None, help="output path (default: <sample_id>.<format>)")
    p.add_argument("--format", choices=["html", "png", "gif", "mp4"], default=None,
                   help="default: --output's suffix, else html")
    p.add_argument("--model_dir", default=None, help="show this model's prediction in the player")
    p.add_argument("--label", default=None, help="reference text to show (default: the sample's own label)")
    p.add_argument("--fit", choices=["auto", "points", "frame"], default="auto")
    p.add_argument("--fps", type=float, default=None, help="GIF/MP4 frame rate (default: the clip's)")
    p.add_argument("--hide", nargs="*", default=[], choices=["face", "body", "left_hand", "right_hand", "other"])
    p.set_defaults(func=_run_visualize)


def _run_visualize(args: argparse.Namespace) -> int:
    from .visualize import load_sample, output_format, render

    sample = load_sample(args.input_file, args.sample_id)
    fmt = args.format or (output_format(args.output) if args.output else "html")
    prediction = _predict_for_visualize(args.model_dir, sample) if args.model_dir else None
    out = render(sample, args.output or f"{sample.sample_id}.{fmt}", fmt, label=args.label, prediction=prediction,
                 fit=args.fit, fps=args.fps, hide=args.hide)
    print(out)
    return 0


def _predict_for_visualize(model_dir: str, sample) -> str:
    from .inference import Predictor

    return Predictor.load(model_dir).predict_samples([sample])[0]


def _add_download(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("download", help="fetch UMT5 and/or a data set from the Hugging Face hub, or install local copies")
    p.add_argument("--dataset_repo_id", default=None, help="USER/NAME of a dataset repo")
    p.add_argument("--model_repo_id", default="google/umt5-small")
    p.add_argument("--local_path", default=None, help="data set folder, manifest or data.pkl already on disk")
    p.add_argument("--local_model_path", default=None, help="model folder already on disk")
    p.add_argument("--data_dir", default="data")
    p.add_argument("--model_dir", default="models/umt5")
    p.add_argument("--revision", default=None, help="data set revision")
    p.add_argument("--model_revision", default=None)
    p.add_argument("--skip_model", action="store_true", help="only the data set")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_run_download)


def _run_download(args: argparse.Namespace) -> int:
    from .resources import download_dataset, download_model

    if not args.skip_model:
        path = download_model(args.model_repo_id, args.model_dir, args.model_revision, args.local_model_path,
                              overwrite=args.overwrite)
        print(f"model: {path}")
    if args.dataset_repo_id or args.local_path:
        path = download_dataset(args.dataset_repo_id, args.data_dir, args.revision, args.local_path,
                                overwrite=args.overwrite)
        print(f"data: {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="signt5", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_build_fingerspelling(sub)
    _add_data_summary(sub)
    _add_visualize(sub)
    _add_download(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return args.func(args)
    except SignT5Error as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
