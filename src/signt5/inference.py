"""Translate pose files and videos with a trained model: one sample, a file, a video, or a folder of them.

The samples are read here (videos go through pose estimation first); the model, its preprocessing and
its decoding are :class:`~signt5.decoding.predictor.Predictor`'s.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .data.readers import ARRAY_SUFFIXES, PICKLE_SUFFIXES, POSE_SUFFIXES, load_sample, read_samples
from .data.sample import PoseSample
from .data.video import holds_videos, video_samples
from .decoding.predictor import Predictor
from .errors import PoseDataError

logger = logging.getLogger(__name__)


@dataclass
class Prediction:
    """One sample's text, with where it came from."""

    sample_id: str
    text: str
    source: str
    sign_language: str = ""


def collect_samples(input_file: str | Path, sample_id: str | None = None) -> list[PoseSample]:
    """The samples named by ``input_file`` (+ ``sample_id``): a file, every sample of a data file, or a folder."""
    path = Path(input_file)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in POSE_SUFFIXES + ARRAY_SUFFIXES)
        if not files:
            raise PoseDataError(f"no {POSE_SUFFIXES + ARRAY_SUFFIXES} files in this folder", source=str(path))
        return [s for f in files for s in read_samples(f).values()]
    if sample_id is not None or path.suffix.lower() in POSE_SUFFIXES:
        return [load_sample(path, sample_id)]
    if not path.is_file():
        raise PoseDataError("file not found", source=str(path))
    if path.suffix.lower() in PICKLE_SUFFIXES + ARRAY_SUFFIXES:
        return list(read_samples(path).values())
    return [load_sample(path, sample_id)]


def collect_inputs(input_file: str | Path, sample_id: str | None = None, save_pose: str | Path | None = None,
                   workers: int = 1,
                   holistic_model: str | Path | None = None) -> tuple[list[PoseSample], dict[str, str]]:
    """The samples ``input_file`` names, a video or a folder of videos going through pose estimation first,
    and the videos that failed (video -> message; the others still give samples).

    ``save_pose`` keeps the videos' ``.pose`` files (and a manifest) in that folder.
    """
    if not holds_videos(input_file):
        return collect_samples(input_file, sample_id), {}
    if sample_id is not None:
        raise PoseDataError("a video holds one sample: --sample_id is for data.pkl/.npz files", source=str(input_file))
    start = time.perf_counter()
    samples, summary = video_samples(input_file, save_pose, workers, holistic_model)
    frames = sum(r.frames for r in summary.written)
    seconds = time.perf_counter() - start
    logger.info("poses of %d video(s) in %.2f s (%d frames estimated, %.1f frames/s)%s", len(samples), seconds, frames,
                frames / max(seconds, 1e-9), f"; .pose files in {save_pose}" if save_pose else "")
    return samples, summary.failed


def predict_files(predictor: Predictor, input_file: str | Path, sample_id: str | None = None,
                  sign_language: str | None = None, num_beams: int = 1,
                  batch_size: int = 8, decoding: str | None = None,
                  samples: Sequence[PoseSample] | None = None,
                  ctc_weight: float | None = None) -> tuple[list[Prediction], dict[str, float]]:
    """Predictions for everything ``input_file`` names (or ``samples``, already read), plus timings."""
    start = time.perf_counter()
    if samples is None:
        samples = collect_samples(input_file, sample_id)
    loaded = time.perf_counter()
    texts = predictor.predict_samples(samples, sign_language, num_beams, batch_size, decoding, ctc_weight)
    done = time.perf_counter()
    predictions = [Prediction(str(s.sample_id), t, str(s.source), sign_language or s.labels.get("sign_language", ""))
                   for s, t in zip(samples, texts)]
    timing = {"read_seconds": loaded - start, "predict_seconds": done - loaded,
              "samples_per_second": len(samples) / max(done - loaded, 1e-9)}
    return predictions, timing

