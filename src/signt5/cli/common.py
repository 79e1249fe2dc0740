"""Options and helpers that several ``signt5`` commands share: decoding, data overrides, the Holistic model, and
loading a predictor with those overrides applied. Parsing them imports no torch; loading does, when a command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from signt5.decoding.predictor import Predictor


def _weight(value: str) -> float:
    weight = float(value)
    if not 0.0 <= weight <= 1.0:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1], got {weight}")
    return weight


def add_decoding(p: argparse.ArgumentParser) -> None:
    p.add_argument("--decoding", choices=["attention", "ctc", "joint"], default=None,
                   help="attention: the decoder (greedy or --num_beams); ctc: greedy CTC on the encoder; joint: the "
                        "decoder's hypotheses rescored by CTC prefix scores (ESPnet's joint decoding); default: the "
                        "one the checkpoint chose on dev")
    p.add_argument("--joint_ctc_weight", "--ctc_weight_decoding", dest="joint_ctc_weight", type=_weight, default=None,
                   help="joint decoding's CTC weight w: score = (1 - w) log P_decoder + w log P_ctc (default: the "
                        "checkpoint's, else 0.5; 0 = attention alone)")


def int_at_least(minimum: int, zero_means: str = "") -> Callable[[str], int]:
    """An argparse type: a whole number of at least ``minimum`` (``zero_means`` says what 0 does, if allowed)."""
    def parse(value: str) -> int:
        number = int(value)
        if number < minimum:
            raise argparse.ArgumentTypeError(f"must be {minimum}{zero_means} or more, got {number}")
        return number
    parse.__name__ = "int"  # argparse names the type in "invalid int value: 'x'"
    return parse


def add_data_overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max_frames", type=int_at_least(0, " (no limit)"), default=None,
                   help="longest model input, in frames after resampling to the model's frame rate; overrides "
                        "the checkpoint's data.max_frames for this call (0: no limit)")
    p.add_argument("--long_samples", choices=["crop", "window"], default=None,
                   help="a sample longer than max_frames: 'crop' keeps its centre; 'window' decodes consecutive "
                        "windows of max_frames frames and joins their texts with a space (default: the "
                        "checkpoint's data.long_samples, usually crop); both warn")
    p.add_argument("--handedness", choices=["right", "keep"], default=None,
                   help="'right' mirrors left-handed signing into the right-handed frame, 'keep' leaves it "
                        "(default: the checkpoint's data.handedness)")
    p.add_argument("--fill_hand_gaps", type=int_at_least(0, " (off)"), default=None,
                   help="fill a hand missing for at most this many frames (0: off; default: the checkpoint's)")
    p.add_argument("--rate_band", type=_rate_band, default=None,
                   help="resample a sample whose letters per second are off the training data's by more than this "
                        "factor to that rate before decoding (0: off; default: the checkpoint's, 2)")


def _rate_band(value: str) -> float:
    """``--rate_band``: 0 (off) or a factor above 1 (a band of 1 or less would resample nothing or everything)."""
    band = float(value)
    if band != 0 and not band > 1:
        raise argparse.ArgumentTypeError(f"must be 0 (off) or above 1, got {value}")
    return band


def add_holistic_model(p: argparse.ArgumentParser) -> None:
    p.add_argument("--holistic_model", default=None, metavar="FILE",
                   help="a MediaPipe HolisticLandmarker .task file, run with the Tasks API (needed with mediapipe "
                        ">= 0.10.30); default: the Holistic models inside mediapipe 0.10.21")


def load_predictor(args: argparse.Namespace) -> Predictor:
    """The model of ``--model_dir`` with the data overrides (``--max_frames``, ``--handedness``...) applied."""
    from signt5.decoding.predictor import Predictor  # noqa: F811  (here, not at parse time: it loads torch)

    predictor = Predictor.load(args.model_dir)
    changes: dict = {}
    if args.max_frames is not None:
        changes["max_frames"] = args.max_frames or None
    for name in ("long_samples", "handedness", "fill_hand_gaps"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    if changes:
        predictor.override_data(**changes)
    if args.rate_band is not None:
        predictor.rate_band = args.rate_band
    return predictor


def manifest_arg(args: argparse.Namespace) -> str:
    if args.manifest:
        return args.manifest
    return str(Path(args.data_dir or "data/fingerspelling") / "manifest.csv")
