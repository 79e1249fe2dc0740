"""MediaPipe Holistic on video frames, as pose-format's holistic rows.

Two backends: the Holistic *solution* whose models ship inside the mediapipe 0.10.21 wheel (offline,
the default), or the Tasks API's ``HolisticLandmarker`` with a ``.task`` model file the user downloaded
(the only way with mediapipe >= 0.10.30, which dropped the solutions). Either way a frame becomes the
576 rows that ``pose_format.utils.holistic.load_holistic`` writes (33 body, 468 face, 2 x 21 hands,
33 world points; x and y in pixels; confidence = visibility for body points, 1 for face and hands,
0 where a part was not found), so our files and pose-format's ``video_to_pose`` files are interchangeable.
``load_holistic`` itself is not used: it needs every frame of the video in memory at once, and its module
imports the solutions API, which later mediapipe versions lack.
"""

from __future__ import annotations

import logging
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, NamedTuple, Sequence

import numpy as np

from ..errors import MissingDependencyError, VideoError
from .layout import layout_by_name

logger = logging.getLogger(__name__)

HOLISTIC_LAYOUT = "holistic_576"
BODY_POINTS, FACE_POINTS, HAND_POINTS = 33, 468, 21
COMPONENT_SIZES = (BODY_POINTS, FACE_POINTS, HAND_POINTS, HAND_POINTS, BODY_POINTS)
TASK_MODEL_URL = ("https://storage.googleapis.com/mediapipe-models/holistic_landmarker/holistic_landmarker/"
                  "float16/latest/holistic_landmarker.task")
INSTALL_HINT = "pip install 'signt5[video]' (mediapipe 0.10.21, whose wheel ships the Holistic models)"


class FrameLandmarks(NamedTuple):
    """What MediaPipe found in one frame; a part it did not find is an empty sequence."""

    body: Sequence[Any]
    face: Sequence[Any]
    left_hand: Sequence[Any]
    right_hand: Sequence[Any]
    world: Sequence[Any]


def import_mediapipe() -> Any:
    """The mediapipe module, or an error saying how to install it."""
    try:
        with native_stderr_silenced():
            import mediapipe
    except ImportError as e:
        raise MissingDependencyError(f"pose estimation from video needs mediapipe ({e}); {INSTALL_HINT}") from None
    return mediapipe


@contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null meanwhile: MediaPipe's C++ side logs there at every model start.

    Python's own stderr (our logging, progress bars) is restored between frames; ``-v`` (debug logging)
    keeps MediaPipe's lines.
    """
    if logger.isEnabledFor(logging.DEBUG):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    os.close(null)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _component_rows(landmarks: Sequence[Any], count: int, width: float, height: float,
                    visibility: bool) -> tuple[np.ndarray, np.ndarray]:
    data = np.zeros((count, 3), dtype=np.float32)
    confidence = np.zeros(count, dtype=np.float32)
    points = list(landmarks)[:count]  # the Tasks face mesh has 478 points: the 10 iris points come last
    if points:
        data[:len(points)] = [(p.x * width, p.y * height, p.z) for p in points]
        confidence[:len(points)] = [1.0 if not visibility or p.visibility is None else p.visibility for p in points]
    return data, confidence


def frame_rows(frame: FrameLandmarks, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """(576, 3) points and (576,) confidences of one frame, as pose-format's ``load_holistic`` writes them.

    World landmarks are scaled by width and height like pose-format does, for files identical to its own.
    """
    parts = [_component_rows(points, count, width, height, visibility=part in ("body", "world"))
             for part, points, count in zip(FrameLandmarks._fields, frame, COMPONENT_SIZES)]
    return np.concatenate([d for d, _ in parts]), np.concatenate([c for _, c in parts])


def holistic_header(width: int, height: int) -> Any:
    """A pose-format header for :func:`frame_rows`: pose-format's own holistic components when its module imports.

    ``pose_format.utils.holistic`` needs mediapipe's solutions API; without it, our copy of the same layout
    (same components, points and limbs; a test checks) is used.
    """
    from pose_format.pose_header import PoseHeader, PoseHeaderDimensions

    try:
        with native_stderr_silenced():
            from pose_format.utils.holistic import holistic_components
    except (ImportError, AttributeError):
        return layout_by_name(HOLISTIC_LAYOUT).to_pose_header(width, height, dims=3)
    return PoseHeader(0.2, PoseHeaderDimensions(width, height, 0), holistic_components("XYZC"))


def _solutions(mp: Any) -> Any:
    """mediapipe's legacy solutions, or an error saying what to do where this mediapipe has none."""
    solutions = getattr(mp, "solutions", None)
    if solutions is None:
        raise MissingDependencyError(
            f"mediapipe {mp.__version__} ships no Holistic models (0.10.21 is the last that does): pass "
            f"--holistic_model with a HolisticLandmarker .task file ({TASK_MODEL_URL}), or {INSTALL_HINT}")
    return solutions


class HolisticRunner:
    """One MediaPipe Holistic instance for one video: frames go in in order, landmarks come out.

    ``model_path`` (a HolisticLandmarker ``.task`` file) selects the Tasks API; without it the solution
    bundled with mediapipe 0.10.21 runs. Use as a context manager so the graph is closed.
    """

    def __init__(self, model_path: str | Path | None = None):
        self._mp = import_mediapipe()
        self._last_timestamp = -1
        with native_stderr_silenced():
            if model_path is None:
                self._holistic = self._solution()
                self._landmarker = None
            else:
                self._holistic = None
                self._landmarker = self._task(Path(model_path))

    def _solution(self) -> Any:
        holistic = _solutions(self._mp).holistic.Holistic(static_image_mode=False, model_complexity=1)
        # The graph loads its models in the background; a blank frame (no person: tracking starts afresh
        # at the first real frame) waits for that, so their log lines fall in this silenced stretch.
        holistic.process(np.full((256, 256, 3), 255, dtype=np.uint8))
        return holistic

    def _task(self, path: Path) -> Any:
        from mediapipe.tasks.python import vision
        from mediapipe.tasks.python.core.base_options import BaseOptions

        if not path.is_file():
            raise VideoError("HolisticLandmarker model file not found", source=str(path))
        options = vision.HolisticLandmarkerOptions(base_options=BaseOptions(model_asset_path=str(path)),
                                                   running_mode=vision.RunningMode.VIDEO)
        try:
            return vision.HolisticLandmarker.create_from_options(options)
        except (RuntimeError, ValueError, OSError) as e:
            raise VideoError(f"not a usable HolisticLandmarker model ({e}); download one from {TASK_MODEL_URL}",
                             source=str(path)) from None

    def landmarks(self, rgb: np.ndarray, timestamp_ms: int) -> FrameLandmarks:
        """The landmarks of one RGB frame (H, W, 3) uint8; timestamps must grow (the Tasks API tracks by them)."""
        timestamp_ms = max(int(timestamp_ms), self._last_timestamp + 1)
        self._last_timestamp = timestamp_ms
        with native_stderr_silenced():
            if self._landmarker is not None:
                image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))
                found = self._landmarker.detect_for_video(image, timestamp_ms)
                return FrameLandmarks(found.pose_landmarks, found.face_landmarks, found.left_hand_landmarks,
                                      found.right_hand_landmarks, found.pose_world_landmarks)
            found = self._holistic.process(rgb)
        return FrameLandmarks(*(() if part is None else part.landmark for part in (
            found.pose_landmarks, found.face_landmarks, found.left_hand_landmarks, found.right_hand_landmarks,
            found.pose_world_landmarks)))

    def close(self) -> None:
        for graph in (self._holistic, self._landmarker):
            if graph is not None:
                graph.close()

    def __enter__(self) -> "HolisticRunner":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def describe_backend(model_path: str | Path | None = None) -> str:
    """Which MediaPipe pose estimation runs, for the log; raises early when it cannot run at all."""
    mp = import_mediapipe()
    if model_path is not None:
        if not Path(model_path).is_file():
            raise VideoError("HolisticLandmarker model file not found", source=str(model_path))
        return f"MediaPipe Tasks HolisticLandmarker, model {model_path} (mediapipe {mp.__version__})"
    _solutions(mp)
    return f"MediaPipe Holistic solution, models bundled with mediapipe {mp.__version__}"
