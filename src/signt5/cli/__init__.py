"""The ``signt5`` command line. Library code never parses argv or prints; this module does both.

``main(argv)`` returns an exit code, so tests call it in process. Each group of commands has its module (``data``,
``train``, ``evaluate``, ``tools``) and the options several share are in ``common``; every command imports the
library inside its ``_run_*`` function, so that parsing (and ``signt5 --help``) loads no torch.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from signt5.errors import SignT5Error

from . import data, evaluate, tools, train
from .train import _train_config  # noqa: F401  (tests turn parsed flags into a TrainConfig through it)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="signt5", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    data.add_commands(sub)  # build-fingerspelling, data-summary, pose
    train.add_commands(sub)  # pretrain, train
    evaluate.add_commands(sub)  # evaluate, infer
    tools.add_commands(sub)  # visualize, download
    return parser


# Commands that load or save transformers models (visualize only with --model_dir).
_MODEL_COMMANDS = frozenset({"pretrain", "train", "evaluate", "infer", "visualize"})


def _quiet_libraries(verbose: bool) -> None:
    """Silence transformers' load reports and its "Loading weights"/"Writing model shards" bars, and the Hub's bars.

    They bury the lines a command prints. Our own training bar (plain tqdm) and our logging are untouched;
    ``-v`` brings transformers' warnings back. ``download`` is not quieted: it imports no transformers, and a
    download of hundreds of MB needs the Hub's progress bars.
    """
    from huggingface_hub.utils import disable_progress_bars
    from transformers.utils import logging as hf_logging

    if verbose:
        hf_logging.set_verbosity_warning()
    else:
        hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    disable_progress_bars()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if args.command in _MODEL_COMMANDS and (args.command != "visualize" or args.model_dir):
        _quiet_libraries(args.verbose)
    try:
        return args.func(args)
    except SignT5Error as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
