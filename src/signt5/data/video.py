"""Videos to ``.pose`` files: MediaPipe Holistic on every frame, one file or a whole folder, in parallel.

Frames are decoded with pose-format's own video reader (``simple_video_utils``, PyAV) one at a time,
so a long video never sits in memory. Every file is written through a temporary file and ``os.replace``,
so a finished ``.pose`` is complete and a second run skips it. A folder's failures (not a video, no
person in it) are collected, never stop the others, and a manifest lists what was written.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any, Iterator

import numpy as np

from ..errors import PoseDataError, SignT5Error, VideoError
from .holistic import HolisticRunner, describe_backend, frame_rows, holistic_header
from .manifest import ManifestEntry, read_manifest, write_manifest
from .readers import read_pose_file
from .sample import PoseSample

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ts",
                  ".mts", ".ogv")
MANIFEST_NAME = "manifest.csv"


@dataclass(frozen=True)
class VideoInfo:
    """What a video's container says: frame size, frame rate and (best effort) frame count."""

    width: int
    height: int
    fps: float
    frames: int | None


@dataclass
class ExtractionReport:
    """What pose estimation found in one video: how many frames had a body, a face, each hand."""

    video: str
    sample_id: str
    output: str = ""
    frames: int = 0
    fps: float = 0.0
    width: int = 0
    height: int = 0
    seconds: float = 0.0
    found: dict[str, int] = field(default_factory=dict)  # part -> frames where it was found
    warnings: list[str] = field(default_factory=list)

    @property
    def hands_seen(self) -> bool:
        return self.found.get("left_hand", 0) + self.found.get("right_hand", 0) > 0


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def holds_videos(path: str | Path) -> bool:
    """Whether ``path`` is a video file (by suffix) or a folder with a video anywhere under it."""
    path = Path(path)
    return is_video(path) or (path.is_dir() and any(p.is_file() and is_video(p) for p in path.rglob("*")))


def read_video_info(path: str | Path) -> VideoInfo:
    """Size, frame rate and frame count of a video, or a VideoError naming the file."""
    from simple_video_utils.metadata import video_metadata

    source = str(path)
    if not Path(path).is_file():
        raise VideoError("file not found", source=source)
    try:
        meta = video_metadata(source)
    except Exception as e:  # PyAV raises many types on files that are not video
        cause = e.__cause__ or e
        reason = getattr(cause, "strerror", None) or f"{type(cause).__name__}: {cause}"
        raise VideoError(f"not a readable video ({reason})", source=source) from None
    if not meta.fps or not np.isfinite(meta.fps) or meta.width < 1 or meta.height < 1:
        raise VideoError(f"not a usable video: {meta.width}x{meta.height} pixels at {meta.fps} fps", source=source)
    return VideoInfo(int(meta.width), int(meta.height), float(meta.fps), meta.nb_frames)


def iter_video_frames(path: str | Path) -> Iterator[np.ndarray]:
    """The frames of a video as RGB arrays (H, W, 3) uint8, decoded one at a time (rotation applied)."""
    from simple_video_utils.frames import read_frames_exact

    count = 0
    try:
        for rgb in read_frames_exact(str(path)):
            count += 1
            yield rgb
    except Exception as e:  # a damaged stream: keep the frames decoded so far
        if count == 0:
            raise VideoError(f"no frame could be decoded ({type(e).__name__}: {e})", source=str(path)) from None
        logger.warning("%s: decoding stopped after %d frames (%s: %s); keeping those", path, count,
                       type(e).__name__, e)


def extract_pose(video: str | Path, holistic_model: str | Path | None = None, progress: bool = False,
                 sample_id: str | None = None) -> tuple[Any, ExtractionReport]:
    """A pose-format ``Pose`` of every frame of ``video`` (fps and frame size in its header) and a report.

    Raises a VideoError naming the file when it is not a video or when no person is found in any frame;
    a person whose hands are never seen gives a warning in the report.
    """
    from pose_format import Pose
    from pose_format.numpy import NumPyPoseBody
    from tqdm import tqdm

    video = Path(video)
    info = read_video_info(video)
    report = ExtractionReport(str(video), sample_id or video.stem, fps=info.fps)
    report.found = {part: 0 for part in ("body", "face", "left_hand", "right_hand")}
    rows, confidences = [], []
    start = time.perf_counter()
    with HolisticRunner(holistic_model) as holistic, tqdm(total=info.frames, unit="frame", desc=video.name,
                                                          disable=not progress, leave=False) as bar:
        for index, rgb in enumerate(iter_video_frames(video)):
            report.height, report.width = rgb.shape[:2]
            frame = holistic.landmarks(rgb, round(index * 1000 / info.fps))
            for part in report.found:
                report.found[part] += bool(len(getattr(frame, part)))
            data, confidence = frame_rows(frame, report.width, report.height)
            rows.append(data)
            confidences.append(confidence)
            bar.update()
    report.frames, report.seconds = len(rows), time.perf_counter() - start
    if not rows:
        raise VideoError("no frame could be decoded", source=str(video))
    if not any(report.found.values()):
        raise VideoError(f"no person found in any of its {report.frames} frames", source=str(video))
    if not report.hands_seen:
        report.warnings.append(
            f"{video}: no hands seen in any of its {report.frames} frames (body in {report.found['body']}, face in "
            f"{report.found['face']}); signs are read mostly from the hands, so expect a poor translation: film "
            "the signer with both hands in view")
    body = NumPyPoseBody(fps=info.fps, data=np.stack(rows)[:, None], confidence=np.stack(confidences)[:, None])
    return Pose(holistic_header(report.width, report.height), body), report


def write_video_pose(video: str | Path, output: str | Path, holistic_model: str | Path | None = None,
                     progress: bool = False, sample_id: str | None = None) -> ExtractionReport:
    """Extract ``video``'s poses into the ``.pose`` file ``output``, atomically (temporary file + os.replace)."""
    pose, report = extract_pose(video, holistic_model, progress, sample_id)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as f:
            pose.write(f)
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)
    report.output = str(output)
    return report


@dataclass
class ExtractionSummary:
    """What a run did: reports of the files written, the finished ones skipped, and the failures."""

    output_dir: Path
    backend: str = ""
    written: list[ExtractionReport] = field(default_factory=list)
    skipped: dict[str, Path] = field(default_factory=dict)  # sample id -> .pose already there
    failed: dict[str, str] = field(default_factory=dict)  # video -> message naming it
    manifest: Path | None = None
    videos: dict[str, Path] = field(default_factory=dict)  # sample id -> its video

    @property
    def poses(self) -> dict[str, Path]:
        """Sample id -> ``.pose`` file, for every video done (now or before)."""
        done = {r.sample_id: Path(r.output) for r in self.written}
        return dict(sorted({**self.skipped, **done}.items()))

    def to_text(self) -> str:
        frames = sum(r.frames for r in self.written)
        seconds = sum(r.seconds for r in self.written)
        done = f"{len(self.skipped)} already done, skipped" if self.skipped else ""
        lines = [f"wrote {len(self.written)} .pose file(s) to {self.output_dir} ({frames} frames, "
                 f"{frames / max(seconds, 1e-9):.1f} frames/s per worker)" + (f"; {done}" if done else "")
                 if self.written else f"wrote nothing to {self.output_dir}" + (f": {done}" if done else "")]
        no_hands = [r.video for r in self.written if not r.hands_seen]
        if no_hands:
            lines.append(f"{len(no_hands)} with no hands seen: {', '.join(no_hands[:5])}"
                         + (", ..." if len(no_hands) > 5 else ""))
        if self.manifest:
            lines.append(f"manifest: {self.manifest} (add text or gloss labels to train or evaluate on it)")
        if self.failed:
            lines.append(f"{len(self.failed)} video(s) failed:")
            lines.extend(f"  {message}" for message in self.failed.values())
        return "\n".join(lines)


def find_videos(path: str | Path) -> list[Path]:
    """``path`` itself, or every video file (by suffix) under the folder ``path``, sorted."""
    path = Path(path)
    if path.is_dir():
        videos = sorted(p for p in path.rglob("*") if p.is_file() and is_video(p))
        if not videos:
            raise VideoError(f"no video files ({' '.join(VIDEO_SUFFIXES)}) in this folder", source=str(path))
        return videos
    if not path.exists():
        raise VideoError("file or folder not found", source=str(path))
    return [path]


def _jobs(input_path: Path, output_dir: Path) -> tuple[list[tuple[Path, Path, str]], dict[str, str]]:
    """(video, .pose, sample id) per video; a second video that would write the same .pose is a failure."""
    root = input_path if input_path.is_dir() else input_path.parent
    jobs, failed, taken = [], {}, {}
    for video in find_videos(input_path):
        sample_id = video.relative_to(root).with_suffix("").as_posix()
        if sample_id in taken:
            failed[str(video)] = f"{video}: skipped, {taken[sample_id]} already writes {sample_id}.pose"
            continue
        taken[sample_id] = video
        jobs.append((video, output_dir / f"{sample_id}.pose", sample_id))
    return jobs, failed


def _run_job(video: Path, output: Path, sample_id: str, holistic_model: str | None,
             progress: bool = False) -> ExtractionReport | str:
    """One video's report, or the message of its failure (the other videos go on)."""
    try:
        return write_video_pose(video, output, holistic_model, progress, sample_id)
    except SignT5Error as e:
        return str(e)
    except Exception as e:  # a crash inside a decoder or MediaPipe must not stop a folder's other videos
        logger.debug("%s failed", video, exc_info=True)
        return f"{video}: pose extraction failed ({type(e).__name__}: {e})"


def extract_videos(input_path: str | Path, output_dir: str | Path, workers: int = 1,
                   holistic_model: str | Path | None = None, overwrite: bool = False, progress: bool = True,
                   manifest: bool = True, sign_language: str = "") -> ExtractionSummary:
    """Write ``output_dir/<name>.pose`` for a video or every video under a folder (subfolders kept).

    ``workers`` > 1 runs that many processes. Videos whose ``.pose`` exists are skipped unless ``overwrite``.
    With ``manifest``, ``output_dir/manifest.csv`` gets a row per pose file (labels empty; rows already
    there keep theirs). Warnings (no hands seen) are logged here, in the calling process.
    """
    from tqdm import tqdm

    input_path, output_dir = Path(input_path), Path(output_dir)
    model = None if holistic_model is None else str(holistic_model)
    jobs, failed = _jobs(input_path, output_dir)
    manifest_path = output_dir / MANIFEST_NAME
    existing = read_manifest(manifest_path) if manifest and manifest_path.is_file() else []
    summary = ExtractionSummary(output_dir, describe_backend(model), failed=failed,
                                videos={sample_id: video for video, _, sample_id in jobs})
    logger.info("pose estimation: %s", summary.backend)
    todo = []
    for video, output, sample_id in jobs:
        if output.is_file() and not overwrite:
            summary.skipped[sample_id] = output
        else:
            todo.append((video, output, sample_id))
    if summary.skipped:
        logger.info("%d video(s) already have their .pose file in %s: skipped (--overwrite redoes them)",
                    len(summary.skipped), output_dir)
    results: dict[Path, ExtractionReport | str] = {}
    if workers > 1 and len(todo) > 1:
        results = _run_in_processes(todo, model, workers, progress)
    else:
        for video, output, sample_id in tqdm(todo, unit="video", disable=not progress or len(todo) < 2):
            results[video] = _run_job(video, output, sample_id, model, progress=progress and len(todo) == 1)
    for video, _, _ in todo:
        result = results[video]
        if isinstance(result, str):
            summary.failed[str(video)] = result
            logger.error("%s", result)
        else:
            summary.written.append(result)
            for warning in result.warnings:
                logger.warning("%s", warning)
    if manifest and summary.poses:
        summary.manifest = _update_manifest(manifest_path, existing, summary.poses, sign_language)
    return summary


def _run_in_processes(todo: list[tuple[Path, Path, str]], model: str | None, workers: int,
                      progress: bool) -> dict[Path, ExtractionReport | str]:
    """Each video in one of ``workers`` fresh (spawned) processes: MediaPipe's threads do not survive a fork."""
    from tqdm import tqdm

    results: dict[Path, ExtractionReport | str] = {}
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=context) as pool:
        futures = {pool.submit(_run_job, video, output, sample_id, model): video for video, output, sample_id in todo}
        for future in tqdm(as_completed(futures), total=len(futures), unit="video", disable=not progress):
            video = futures[future]
            try:
                results[video] = future.result()
            except BrokenProcessPool as e:
                results[video] = f"{video}: the worker process died ({e})"
    return results


def _update_manifest(path: Path, existing: list[ManifestEntry], poses: dict[str, Path], sign_language: str) -> Path:
    """Add a row per new pose file to the manifest; rows already there (with any labels added) stay as they are."""
    known = {Path(e.path).resolve() for e in existing}
    taken = {e.id for e in existing}
    entries = list(existing)
    for sample_id, pose in poses.items():
        if pose.resolve() in known:
            continue
        if sample_id in taken:
            logger.warning("%s: id %r is taken by another row; %s left out of the manifest", path, sample_id, pose)
            continue
        entries.append(ManifestEntry(id=sample_id, path=pose, sign_language=sign_language))
    write_manifest(entries, path)
    logger.info("manifest %s: %d row(s), %d new", path, len(entries), len(entries) - len(existing))
    return path


def video_samples(input_path: str | Path, pose_dir: str | Path | None = None, workers: int = 1,
                  holistic_model: str | Path | None = None, progress: bool = True,
                  sign_language: str = "") -> tuple[list[PoseSample], ExtractionSummary]:
    """Samples of a video or of every video under a folder, poses extracted first, and the run's summary.

    The ``.pose`` files (and a manifest) are kept in ``pose_dir`` when given, else in a temporary folder that
    is removed. A sample's id is its video's path relative to the folder, without suffix; its source, the
    video. Raises when no video gave a sample; otherwise the failures are in the summary.
    """
    with TemporaryDirectory(prefix="signt5-pose-") as scratch:
        summary = extract_videos(input_path, pose_dir or scratch, workers, holistic_model, progress=progress,
                                 manifest=pose_dir is not None, sign_language=sign_language)
        samples = []
        for sample_id, pose in summary.poses.items():
            try:
                samples.append(read_pose_file(pose).replace(sample_id=sample_id, source=str(summary.videos[sample_id])))
            except PoseDataError as e:  # a .pose file left there by someone else
                summary.failed[str(summary.videos[sample_id])] = str(e)
    if not samples:
        failures = list(summary.failed.values())
        raise VideoError(failures[0] if len(failures) == 1 else "no video gave poses:\n  " + "\n  ".join(failures))
    return samples, summary
