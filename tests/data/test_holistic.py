"""MediaPipe backends: rows as pose-format writes them, the Tasks API with a .task file, missing or older mediapipe."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import numpy as np
import pytest

from signt5.data import holistic
from signt5.errors import MissingDependencyError, VideoError
from signt5.data.holistic import FrameLandmarks, HolisticRunner, describe_backend, frame_rows, holistic_header
from signt5.data.layout import layout_by_name
from signt5.data.readers import read_pose_file
from signt5.data.video import extract_videos

from ..video_clips import astronaut_frames, write_video


def _solution_landmarks(results) -> FrameLandmarks:
    return FrameLandmarks(*(() if part is None else part.landmark for part in (
        results.pose_landmarks, results.face_landmarks, results.left_hand_landmarks, results.right_hand_landmarks,
        results.pose_world_landmarks)))


def test_rows_are_what_pose_formats_load_holistic_writes():
    mp = pytest.importorskip("mediapipe")
    pose_format_holistic = pytest.importorskip("pose_format.utils.holistic")
    frame = next(astronaut_frames(1))
    with mp.solutions.holistic.Holistic(static_image_mode=True) as solution:
        results = solution.process(frame)
    data, confidence = frame_rows(_solution_landmarks(results), 640, 480)
    their_data, their_confidence = pose_format_holistic._extract_frame_data(results, 640, 480, 0)
    np.testing.assert_allclose(data, their_data, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(confidence, their_confidence, rtol=1e-6)
    assert confidence[:33].min() > 0 and confidence[501:543].max() == 0, "a body found, no hands"


def test_header_is_pose_formats_holistic_layout():
    pytest.importorskip("mediapipe")
    pose_format_holistic = pytest.importorskip("pose_format.utils.holistic")

    def shape(components):
        return [(c.name, list(c.points), sorted(tuple(map(int, l)) for l in c.limbs)) for c in components]

    theirs = shape(pose_format_holistic.holistic_components("XYZC"))
    ours = shape(layout_by_name(holistic.HOLISTIC_LAYOUT).to_pose_header(640, 480, dims=3).components)
    assert ours == theirs, "the fallback header (no solutions API) must describe the same points and limbs"
    header = holistic_header(640, 480)
    assert (header.dimensions.width, header.dimensions.height) == (640, 480) and shape(header.components) == theirs


class StandInLandmarker:
    """Answers like a HolisticLandmarker: 478 face points, no visibility, a left hand in every other frame."""

    def __init__(self):
        self.calls: list = []

    def detect_for_video(self, image, timestamp_ms):
        self.calls.append((image.width, image.height, timestamp_ms))

        def points(count):  # the nose (point 0) at (0.5, 0.25); a hand's points apart, or it reads as undetected
            return [SimpleNamespace(x=0.5 + 0.01 * i, y=0.25, z=-0.1, visibility=None) for i in range(count)]

        hand = points(21) if len(self.calls) % 2 else []
        return SimpleNamespace(pose_landmarks=points(33), face_landmarks=points(478), left_hand_landmarks=hand,
                               right_hand_landmarks=[], pose_world_landmarks=points(33))

    def close(self):
        self.calls.append("closed")


def test_a_task_file_runs_through_the_tasks_api(tmp_path, monkeypatch):
    pytest.importorskip("mediapipe")
    from mediapipe.tasks.python import vision

    landmarker, options = StandInLandmarker(), []
    monkeypatch.setattr(vision.HolisticLandmarker, "create_from_options",
                        staticmethod(lambda given: options.append(given) or landmarker))
    model = tmp_path / "holistic_landmarker.task"
    model.write_bytes(b"stand-in")
    video = write_video(tmp_path / "clip.mp4", astronaut_frames(4), fps=30)
    summary = extract_videos(video, tmp_path / "poses", holistic_model=model, progress=False)
    assert "Tasks HolisticLandmarker" in summary.backend and str(model) in summary.backend
    assert options[0].base_options.model_asset_path == str(model)
    assert options[0].running_mode == vision.RunningMode.VIDEO
    assert landmarker.calls == [(640, 480, 0), (640, 480, 33), (640, 480, 67), (640, 480, 100), "closed"]
    sample = read_pose_file(tmp_path / "poses" / "clip.pose")
    assert sample.layout.name == "holistic_576", "the Tasks face mesh's 10 iris points are left out"
    nose = sample.coords[:, sample.layout.index("POSE_LANDMARKS", "NOSE")]
    np.testing.assert_allclose(nose[:, :2], [[320, 120]] * 4)
    assert sample.mask[:, sample.layout.component_slice("LEFT_HAND_LANDMARKS")].any(axis=1).tolist() == [
        True, False, True, False]
    assert summary.written[0].hands_seen and not summary.written[0].warnings


def test_a_file_that_is_no_holistic_model_is_named(tmp_path):
    pytest.importorskip("mediapipe")
    bad = tmp_path / "model.task"
    bad.write_bytes(b"not a model")
    with pytest.raises(VideoError, match=f"{bad}: not a usable HolisticLandmarker model .*holistic_landmarker.task"):
        HolisticRunner(bad)
    with pytest.raises(VideoError, match="absent.task: HolisticLandmarker model file not found"):
        describe_backend(tmp_path / "absent.task")


def test_without_mediapipe_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "mediapipe", None)
    with pytest.raises(MissingDependencyError, match=r"needs mediapipe .*pip install 'signt5\[video\]'"):
        describe_backend()


def test_a_mediapipe_without_bundled_models_asks_for_a_task_file(monkeypatch):
    monkeypatch.setattr(holistic, "import_mediapipe", lambda: SimpleNamespace(__version__="0.10.35"))
    with pytest.raises(MissingDependencyError, match="0.10.35 ships no Holistic models .*--holistic_model"):
        describe_backend()


def test_mediapipes_own_log_lines_stay_off_the_terminal(capfd):
    pytest.importorskip("mediapipe")
    with HolisticRunner() as runner:
        found = [runner.landmarks(frame, 40 * index) for index, frame in enumerate(astronaut_frames(3))]
    assert all(len(f.body) == 33 and len(f.face) == 468 for f in found)
    err = capfd.readouterr().err
    assert "W0000" not in err and "XNNPACK" not in err, err
