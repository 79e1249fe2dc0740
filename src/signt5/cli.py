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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="signt5", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_build_fingerspelling(sub)
    _add_data_summary(sub)
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
