"""``signt5`` data commands: build the fingerspelling corpus, summarise a manifest, estimate poses of videos."""

from __future__ import annotations

import argparse
from collections import Counter

from .common import add_holistic_model, int_at_least


def add_commands(sub: argparse._SubParsersAction) -> None:
    """The data commands, in the order ``signt5 --help`` lists them."""
    _add_build_fingerspelling(sub)
    _add_data_summary(sub)
    _add_pose(sub)


def _add_build_fingerspelling(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("build-fingerspelling", help="build the fingerspelling corpus from spoken-to-signed's lexicon")
    p.add_argument("--output_dir", default="data/fingerspelling")
    p.add_argument("--sign_languages", nargs="*", default=None, help="ISO 639-3 codes (default: all 19)")
    p.add_argument("--train_words", type=int, default=100, help="words per sign language")
    p.add_argument("--dev_words", type=int, default=10)
    p.add_argument("--test_words", type=int, default=10)
    p.add_argument("--test_shifted_words", type=int, default=10)
    for split, what in (("test_slow", "about 1 letter/s"), ("test_fast", "about 6 letters/s"),
                        ("test_flicker", "hands lost for 1-3 frames"), ("test_left_handed", "the signer mirrored")):
        p.add_argument(f"--{split}_words", type=int, default=10, help=f"stress split, {what} (0: leave it out)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--multi_word_share", type=float, default=0.25,
                   help="share of each split spelled as multi-word names (first + last name, place names)")
    p.add_argument("--layout", default="holistic_reduced_178", choices=["holistic_reduced_178", "holistic_586"])
    p.add_argument("--formats", nargs="+", default=["pose", "pkl"], choices=["pose", "pkl"])
    p.set_defaults(func=_run_build_fingerspelling)


def _run_build_fingerspelling(args: argparse.Namespace) -> int:
    from signt5.data.fingerspelling import CorpusConfig, build_corpus

    config = CorpusConfig(
        output_dir=args.output_dir, sign_languages=args.sign_languages, train_words=args.train_words,
        dev_words=args.dev_words, test_words=args.test_words, test_shifted_words=args.test_shifted_words,
        test_slow_words=args.test_slow_words, test_fast_words=args.test_fast_words,
        test_flicker_words=args.test_flicker_words, test_left_handed_words=args.test_left_handed_words,
        seed=args.seed, multi_word_share=args.multi_word_share, layout=args.layout, formats=args.formats,
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
    from signt5.data.summary import summarize_manifest

    print(summarize_manifest(args.manifest, split=args.split).to_text())
    return 0


def _add_pose(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pose", help="MediaPipe Holistic poses of a video or a folder of videos: .pose files + manifest")
    p.add_argument("input", help="a video file, or a folder of videos (subfolders included)")
    p.add_argument("--output_dir", required=True, help="where the .pose files and manifest.csv go")
    p.add_argument("--workers", type=int_at_least(1), default=1, help="parallel processes, each about one CPU core")
    p.add_argument("--overwrite", action="store_true", help="redo videos whose .pose file exists (default: skip)")
    p.add_argument("--sign_language", default="", help="ISO 639-3 code for the manifest's new rows, e.g. ase")
    add_holistic_model(p)
    p.set_defaults(func=_run_pose)


def _run_pose(args: argparse.Namespace) -> int:
    from signt5.data.video import extract_videos

    summary = extract_videos(args.input, args.output_dir, args.workers, args.holistic_model, args.overwrite,
                             sign_language=args.sign_language)
    print(summary.to_text())
    return 2 if summary.failed else 0
