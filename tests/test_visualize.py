"""The HTML player (in a real headless Chromium), the PNG grid, GIF/MP4 export and sample lookup."""

from __future__ import annotations

import base64
import io
import json
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from signt5.errors import PoseDataError
from signt5.data.readers import write_pose_file
from signt5.visualize import (BACKGROUND, VisualizationError, _video_frames, animation_frames, component_group,
                              load_sample, output_format, render, render_animation, render_frame, render_grid_png,
                              render_html)

from .conftest import make_sample
from .video_clips import astronaut_frames, write_video

Image = pytest.importorskip("PIL.Image")
CHROMIUM = os.environ.get("SIGNT5_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def embedded_data(page: str) -> dict:
    match = re.search(r'<script type="application/json" id="pose-data">(.*?)</script>', page, re.S)
    assert match, "no embedded pose data"
    return json.loads(match.group(1))


def non_background(image, background=BACKGROUND, tolerance: int = 24) -> int:
    pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    return int((np.abs(pixels - np.array(background)).max(axis=-1) > tolerance).sum())


def sample_without_left_hand(frames: int = 12):
    """A holistic sample whose points lie in [200, 400] px of a 640x480 frame, left hand never detected."""
    sample = make_sample("holistic_586", frames=frames)
    coords = 200 + (sample.coords - 50) * (200 / 350)
    mask = sample.mask.copy()
    mask[:, sample.layout.component_slice("LEFT_HAND_LANDMARKS")] = False
    coords[~mask] = 0.0
    return sample.replace(coords=coords.astype(np.float32), mask=mask)


# --- HTML page ---------------------------------------------------------------------------------------------

def test_html_embeds_label_prediction_and_no_external_resource(tmp_path):
    sample = make_sample("holistic_reduced_178").replace(labels={"text": "snowden", "gloss": "S N O W D E N"})
    out = render_html(sample, tmp_path / "player.html", prediction="</script><b>snowdon</b>")
    page = out.read_text(encoding="utf-8")
    data = embedded_data(page)
    assert data["label"] == "snowden" and data["prediction"] == "</script><b>snowdon</b>"
    assert page.count("</script>") == 2  # the prediction cannot close the data element
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", page), "page must not load external resources"
    assert data["num_frames"] == 12 and len(data["parts"][0]["frames"]) == 12


def test_html_missing_points_are_null_and_world_landmarks_left_out(tmp_path):
    sample = sample_without_left_hand()
    body = sample.layout.component_slice("POSE_LANDMARKS")
    sample.mask[3, body.start + 5] = False
    sample.coords[3, body.start + 5] = 0.0
    data = embedded_data(render_html(sample, tmp_path / "p.html").read_text(encoding="utf-8"))
    parts = {p["name"]: p for p in data["parts"]}
    assert "POSE_WORLD_LANDMARKS" not in parts
    assert all(frame is None for frame in parts["LEFT_HAND_LANDMARKS"]["frames"])
    body_frame = parts["POSE_LANDMARKS"]["frames"][3]
    assert body_frame[10:12] == [None, None] and None not in body_frame[:10]
    assert [g["id"] for g in data["groups"]] == ["face", "body", "left_hand", "right_hand"]
    assert parts["FACE_LANDMARKS"]["limbs"] == []  # 2,564 tesselation limbs drawn as points instead


def test_html_page_size_stays_small(tmp_path):
    out = render_html(make_sample("holistic_586", frames=100), tmp_path / "big.html")
    assert out.stat().st_size < 2_000_000


def test_normalised_coordinates_keep_precision(tmp_path):
    sample = make_sample("holistic_reduced_178")
    small = sample.replace(coords=sample.coords / 1000, resolution=None, coordinate_space="normalized")
    data = embedded_data(render_html(small, tmp_path / "n.html").read_text(encoding="utf-8"))
    first = data["parts"][1]["frames"][0]
    expected = small.coords[0, small.layout.component_slice(data["parts"][1]["name"]), :2].reshape(-1)
    assert np.allclose(first, expected, atol=1e-4)


def test_component_groups():
    assert component_group("POSE_LANDMARKS") == component_group("pose_keypoints_2d") == "body"
    assert component_group("LEFT_HAND_LANDMARKS") == component_group("hand_left_keypoints_2d") == "left_hand"
    assert component_group("hand_right_keypoints_2d") == "right_hand"
    assert component_group("face_keypoints_2d") == "face"
    assert component_group("POSE_WORLD_LANDMARKS") is None


# --- still images and animations ---------------------------------------------------------------------------

def test_grid_png_size_and_content(tmp_path):
    out = render_grid_png(make_sample("holistic_reduced_178"), tmp_path / "grid.png", frames=8, columns=4,
                          size=(160, 120))
    with Image.open(out) as image:
        assert image.size == (4 * 160, 2 * 120)
        assert non_background(image) > 2000
    labelled = make_sample("holistic_reduced_178").replace(labels={"text": "abc"})
    with Image.open(render_grid_png(labelled, tmp_path / "l.png", frames=3, size=(100, 100))) as image:
        assert image.size == (300, 100 + 28)


def test_missing_points_are_not_drawn_at_origin(tmp_path):
    sample = sample_without_left_hand()
    out = render_grid_png(sample, tmp_path / "grid.png", frames=1, columns=1, size=(320, 240), fit="frame")
    with Image.open(out) as image:
        assert non_background(image) > 500
        assert non_background(image.crop((0, 0, 60, 60))) == 0
    shown = sample.layout.component_slice("LEFT_HAND_LANDMARKS")
    sample.mask[:, shown] = True  # the same zeros, now claimed present, do land in the corner
    assert non_background(render_frame(sample, 0, (320, 240), fit="frame").crop((0, 0, 60, 60))) > 0


def test_gif_has_one_frame_per_sample_frame(tmp_path):
    sample = make_sample("holistic_reduced_178", frames=10, fps=25.0)
    with Image.open(render_animation(sample, tmp_path / "a.gif", size=(120, 96))) as gif:
        assert gif.n_frames == 10
        assert gif.info["duration"] == 40
    with Image.open(render_animation(sample, tmp_path / "half.gif", fps=12.5, size=(120, 96))) as gif:
        assert gif.n_frames == 5
    assert animation_frames(make_sample("holistic_reduced_178", frames=20, fps=100.0), 50).tolist() == \
        list(range(0, 20, 2))
    odd_fps = float(np.float32(29.97))
    clip = make_sample("holistic_reduced_178", frames=90, fps=odd_fps)
    assert animation_frames(clip).tolist() == list(range(90))
    assert animation_frames(clip, odd_fps).tolist() == list(range(90))


def test_mp4_export(tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    out = render(make_sample("holistic_reduced_178", frames=6), tmp_path / "a.mp4")
    head = out.read_bytes()[:12]
    assert head[4:8] == b"ftyp" and out.stat().st_size > 1000


def test_mp4_without_encoder_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "imageio_ffmpeg", None)
    with pytest.raises(VisualizationError, match="imageio-ffmpeg"):
        render_animation(make_sample("holistic_reduced_178", frames=3), tmp_path / "a.mp4", size=(64, 64))
    assert not (tmp_path / "a.mp4").exists()


def test_output_format():
    assert output_format("x.HTML") == "html" and output_format("x.out", "gif") == "gif"
    with pytest.raises(VisualizationError, match="html, png, gif, mp4"):
        output_format("x.webm")
    with pytest.raises(VisualizationError, match=r"\.gif"):
        render(make_sample("holistic_reduced_178", frames=2), "x.png", fmt="gif")
    with pytest.raises(VisualizationError, match="unknown parts to hide"):
        render(make_sample("holistic_reduced_178", frames=2), "x.png", hide=["hands"])


# --- finding the sample ------------------------------------------------------------------------------------

@pytest.fixture()
def pickle_file(tmp_path) -> Path:
    samples = {f"ase-train-{i:05d}": {"keypoints": make_sample("holistic_reduced_178", frames=4, seed=i).coords,
                                      "fps": 25.0, "text": f"word{i}"} for i in range(3)}
    path = tmp_path / "data.pkl"
    path.write_bytes(pickle.dumps(samples))
    return path


def test_load_sample_from_pickle_by_id(pickle_file):
    sample = load_sample(pickle_file, "ase-train-00001")
    assert sample.sample_id == "ase-train-00001" and sample.labels["text"] == "word1"


def test_unknown_sample_id_lists_close_matches(pickle_file):
    with pytest.raises(PoseDataError, match=r"no sample 'ase-train-0001'.*close matches: ase-train-0000\d"):
        load_sample(pickle_file, "ase-train-0001")
    with pytest.raises(PoseDataError, match="no close match; the file's first ids: ase-train-00000"):
        load_sample(pickle_file, "zzz")
    with pytest.raises(PoseDataError, match="holds 3 samples; choose one"):
        load_sample(pickle_file)


def test_load_sample_from_npz_and_pose(tmp_path):
    npz = tmp_path / "many.npz"
    np.savez(npz, first=make_sample("holistic_reduced_178", frames=3).coords, second=make_sample(
        "holistic_reduced_178", frames=5).coords)
    assert load_sample(npz, "second").num_frames == 5
    with pytest.raises(PoseDataError, match="close matches: second"):
        load_sample(npz, "secnd")
    pose = tmp_path / "clip.pose"
    write_pose_file(make_sample("holistic_reduced_178", frames=3), pose)
    assert load_sample(pose).num_frames == 3 and load_sample(pose, "clip").sample_id == "clip"
    with pytest.raises(PoseDataError, match="close matches: clip"):
        load_sample(pose, "clips")
    with pytest.raises(PoseDataError, match="file not found"):
        load_sample(tmp_path / "absent.pose")


# --- in a real browser -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        if os.environ.get("SIGNT5_REQUIRE_BROWSER"):
            pytest.fail(f"{CHROMIUM} not found but SIGNT5_REQUIRE_BROWSER is set (CI installs chromium)")
        pytest.skip(f"{CHROMIUM} not found (Debian: apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def canvas_image(page):
    url = page.evaluate("document.getElementById('pose-canvas').toDataURL('image/png')")
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGBA")


def drawn_pixels(image) -> int:
    return int((np.asarray(image)[..., 3] > 0).sum())


def test_player_in_headless_chromium(browser, real_clip_path, tmp_path):
    sample = load_sample(real_clip_path)
    out = render_html(sample, tmp_path / "player.html", label="A", prediction="A")
    page = browser.new_page(viewport={"width": 800, "height": 900})
    errors, foreign = [], []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("request", lambda request: None if request.url.startswith(("file:", "data:"))
            else foreign.append(request.url))
    page.goto(out.resolve().as_uri())
    assert errors == [], f"console errors on load: {errors}"
    counter = page.locator("#frame-counter")
    assert counter.text_content().startswith(f"Frame 1 / {sample.num_frames}")
    assert "A" in page.locator("#texts").text_content()

    first = canvas_image(page)
    assert drawn_pixels(first) > 2000
    page.evaluate("""() => { const s = document.getElementById('frame-slider');
                              s.value = '20'; s.dispatchEvent(new Event('input', {bubbles: true})); }""")
    assert counter.text_content().startswith(f"Frame 21 / {sample.num_frames}")
    last = canvas_image(page)
    assert np.asarray(last).tobytes() != np.asarray(first).tobytes()
    page.get_by_label("Frame", exact=True).focus()
    page.keyboard.press("Home")
    assert counter.text_content().startswith("Frame 1 /")

    page.get_by_label("Right hand").uncheck()
    hidden = canvas_image(page)
    assert 0 < drawn_pixels(hidden) < drawn_pixels(first)
    page.get_by_label("Right hand").check()

    page.get_by_role("button", name="Play").click()
    page.wait_for_function("document.getElementById('pose-canvas').dataset.frame !== '0'", timeout=5000)
    page.get_by_role("button", name="Pause").click()
    page.get_by_label("Speed").select_option("2")

    shot = Image.open(io.BytesIO(page.locator("#pose-canvas").screenshot()))
    assert non_background(shot, background=(13, 14, 17)) > 2000
    page.close()
    assert errors == [] and foreign == []



def test_long_videos_are_thinned_to_keep_the_page_small(tmp_path):
    video = write_video(tmp_path / "clip.mp4", astronaut_frames(30))
    frames = _video_frames(video, num_frames=30, width=160, max_frames=10)
    assert frames["stride"] == 3 and len(frames["frames"]) == 10
    first = Image.open(io.BytesIO(base64.b64decode(frames["frames"][0].split(",", 1)[1])))
    assert first.format == "JPEG" and first.size == (160, 120)


def test_player_draws_the_video_under_the_skeleton(browser, tmp_path):
    video = write_video(tmp_path / "clip.mp4", astronaut_frames(12))
    out = render_html(make_sample("holistic_576", frames=12), tmp_path / "player.html", video=video)
    page = browser.new_page(viewport={"width": 800, "height": 900})
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(out.resolve().as_uri())
    page.wait_for_function("document.getElementById('pose-canvas').dataset.frame === '0'")
    page.wait_for_timeout(300)  # the frames' images decode asynchronously, then redraw
    with_video = canvas_image(page)
    page.get_by_label("Video").uncheck()
    without_video = canvas_image(page)
    area = np.asarray(with_video).shape[0] * np.asarray(with_video).shape[1]
    assert drawn_pixels(with_video) > 0.8 * area, "the video frame fills the canvas"
    assert 0 < drawn_pixels(without_video) < 0.5 * area, "the skeleton alone covers much less"
    page.close()
    assert errors == []
