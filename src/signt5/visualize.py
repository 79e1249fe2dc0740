"""Look at pose samples: a self-contained HTML player, a PNG grid of frames, an animated GIF or MP4.

The HTML page embeds its data as compact JSON (missing keypoints are ``null``) and
needs no server, network or external script. Still images are drawn with Pillow;
MP4 encoding uses the ffmpeg binary shipped in the ``imageio-ffmpeg`` wheel.
Missing keypoints are never drawn, and limbs only join two present points.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Literal, Sequence

import numpy as np

from .errors import PoseDataError, SignT5Error
from .data.layout import component_part
from .data.normalize import to_pixel_space
from .data.readers import load_sample
from .data.sample import PoseSample
from .data.video import iter_video_frames

if TYPE_CHECKING:
    from PIL import Image as PILImage

logger = logging.getLogger(__name__)

Fit = Literal["auto", "points", "frame"]
FORMATS = ("html", "png", "gif", "mp4")
LABEL_KEYS = ("text", "label", "gloss", "translation", "sentence")
BACKGROUND = (13, 14, 17)
TEXT_COLOR = (232, 232, 234)
# Okabe-Ito colours (colour-blind safe); drawing order: face below body below hands.
GROUPS: dict[str, tuple[str, str]] = {
    "face": ("Face", "#009e73"),
    "body": ("Body", "#d9dbe1"),
    "other": ("Other", "#cc79a7"),
    "left_hand": ("Left hand", "#e69f00"),
    "right_hand": ("Right hand", "#56b4e9"),
}
VIDEO_FRAME_WIDTH = 400  # px: the player's video frames are downscaled to this width at most
MAX_VIDEO_FRAMES = 250  # a longer video shows every k-th frame, held until the next, to keep the page small
_STYLE = {"face": (1.0, 1.2), "body": (3.0, 3.5), "other": (2.0, 2.5), "left_hand": (2.0, 2.6),
          "right_hand": (2.0, 2.6)}  # (line width, point radius) per 500 px of canvas


class VisualizationError(SignT5Error, ValueError):
    """A visualisation request that cannot be met (unknown format, missing optional encoder)."""


@dataclass(frozen=True)
class _Part:
    """One drawable component: its global point indices, local limbs and drawing style."""

    name: str
    group: str
    indices: np.ndarray
    limbs: np.ndarray  # (E, 2) local indices; empty for a face drawn as points only
    line: float
    radius: float

    @property
    def color(self) -> str:
        return GROUPS[self.group][1]


@dataclass(frozen=True)
class _Scene:
    """A sample in pixel-like units, split into drawable parts, with the box to fit to the canvas."""

    sample: PoseSample
    parts: tuple[_Part, ...]
    view: tuple[float, float, float, float]  # x0, y0, x1, y1


def component_group(name: str) -> str | None:
    """Which checkbox a component belongs to (its part, ``component_part``); None for world landmarks (metres,
    never drawn)."""
    part = component_part(name)
    return None if part == "world" else part


def sample_label(sample: PoseSample) -> str | None:
    """The reference text to show with a sample: its ``text`` label, else ``label``/``gloss``/..."""
    for key in LABEL_KEYS:
        value = sample.labels.get(key)
        if isinstance(value, str):
            return value
    return None


def _view_box(sample: PoseSample, parts: Sequence[_Part], fit: Fit) -> tuple[float, float, float, float]:
    """The region to show: valid points' bounding box (clipped to the video frame when known) or the frame."""
    if fit not in ("auto", "points", "frame"):
        raise VisualizationError(f"fit must be one of auto, points, frame; got {fit!r}")
    frame = sample.resolution if sample.coordinate_space == "pixels" else None
    if fit == "frame" and frame:
        return 0.0, 0.0, float(frame[0]), float(frame[1])
    if fit == "frame":
        logger.info("%s: video frame size unknown; fitting the keypoints instead", sample.source)
    indices = np.concatenate([p.indices for p in parts]) if parts else np.zeros(0, dtype=np.int64)
    valid = sample.coords[:, indices, :2][sample.mask[:, indices]]
    if valid.size == 0:
        return (0.0, 0.0, float(frame[0]), float(frame[1])) if frame else (0.0, 0.0, 1.0, 1.0)
    x0, y0 = valid.min(axis=0).tolist()
    x1, y1 = valid.max(axis=0).tolist()
    if fit == "auto" and frame and min(x1, frame[0]) > max(x0, 0) and min(y1, frame[1]) > max(y0, 0):
        x0, y0, x1, y1 = max(x0, 0.0), max(y0, 0.0), min(x1, float(frame[0])), min(y1, float(frame[1]))
    pad = max(x1 - x0, y1 - y0, 1e-3) * 0.05
    return x0 - pad, y0 - pad, x1 + pad, y1 + pad


def _scene(sample: PoseSample, fit: Fit = "auto", hide: Iterable[str] = ()) -> _Scene:
    """Convert to pixel units when the resolution allows, and split the layout into drawable parts."""
    hidden = set(hide)
    unknown = hidden - set(GROUPS)
    if unknown:
        raise VisualizationError(f"unknown parts to hide {sorted(unknown)}; choose from {list(GROUPS)}")
    sample = to_pixel_space(sample)
    offsets = sample.layout.offsets()
    parts = []
    for comp in sample.layout.components:
        group = component_group(comp.name)
        if group is None or group in hidden:
            continue
        limbs = np.asarray(comp.limbs, dtype=np.int64).reshape(-1, 2)
        if group == "face" and len(limbs) > 2 * len(comp.points):  # a tesselation: points read better
            limbs = limbs[:0]
        line, radius = _STYLE[group]
        indices = np.arange(offsets[comp.name], offsets[comp.name] + len(comp.points))
        parts.append(_Part(comp.name, group, indices, limbs, line, radius))
    parts.sort(key=lambda p: list(GROUPS).index(p.group))
    return _Scene(sample, tuple(parts), _view_box(sample, parts, fit))


def _write_atomic(path: Path, data: bytes) -> Path:
    """Write through a temporary file so an interrupted run never leaves half a file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path


def _player_data(scene: _Scene, title: str, label: str | None, prediction: str | None) -> dict:
    """The JSON the page draws from: per part and frame a flat [x, y, ...] list, null where missing."""
    sample = scene.sample
    extent = max(scene.view[2] - scene.view[0], scene.view[3] - scene.view[1], 1e-6)
    decimals = max(0, math.ceil(math.log10(5000 / extent)))  # about 1/5000 of the view: sub-pixel
    parts = []
    for part in scene.parts:
        xy = np.round(sample.coords[:, part.indices, :2].astype(np.float64), decimals)
        if decimals == 0:
            xy = xy.astype(np.int64)
        present = sample.mask[:, part.indices]
        cells = xy.astype(object)
        cells[~present] = None
        frames = [row.reshape(-1).tolist() if ok.any() else None for row, ok in zip(cells, present)]
        parts.append({"name": part.name, "group": part.group, "color": part.color, "line": part.line,
                      "radius": part.radius, "limbs": part.limbs.tolist(), "frames": frames})
    groups = [{"id": g, "label": GROUPS[g][0], "color": GROUPS[g][1]}
              for g in GROUPS if any(p.group == g for p in scene.parts)]
    return {"title": title, "label": label, "prediction": prediction, "fps": sample.fps,
            "num_frames": sample.num_frames, "view": [round(v, decimals) for v in scene.view],
            "groups": groups, "parts": parts}


def _video_frames(video: str | Path, num_frames: int, width: int = VIDEO_FRAME_WIDTH,
                  max_frames: int = MAX_VIDEO_FRAMES) -> dict:
    """Every ``stride``-th frame of ``video`` (up to ``num_frames``) as a downscaled JPEG data URI."""
    from PIL import Image

    stride = max(1, math.ceil(num_frames / max_frames))
    frames = []
    for index, rgb in enumerate(iter_video_frames(video)):
        if index >= num_frames:
            break
        if index % stride:
            continue
        image = Image.fromarray(rgb)
        if image.width > width:
            image = image.resize((width, max(1, round(image.height * width / image.width))), Image.BILINEAR)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=70)
        frames.append("data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"))
    return {"stride": stride, "frames": frames}


def render_html(sample: PoseSample, path: str | Path, label: str | None = None, prediction: str | None = None,
                title: str | None = None, fit: Fit = "auto", video: str | Path | None = None) -> Path:
    """Write a self-contained interactive player (canvas, play/pause, slider, speed, part toggles).

    ``label`` defaults to the sample's own text label; ``prediction`` is shown when given. With ``video``
    (the sample's source video) its frames are drawn under the skeleton, and the whole frame is shown.
    """
    label = sample_label(sample) if label is None else label
    title = title or sample.sample_id or Path(sample.source or "pose").stem
    if video is not None and not sample.resolution:
        raise VisualizationError(f"{video}: the poses carry no frame size, so they cannot be drawn over the video")
    scene = _scene(sample, "frame" if video is not None else fit)
    data = _player_data(scene, title, label, prediction)
    if video is not None:
        data["video"] = {**_video_frames(video, sample.num_frames), "size": list(sample.resolution)}
    payload = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    payload = payload.replace("</", "<\\/").replace("<!--", "<\\!--")  # stay inside the <script> element
    x0, y0, x1, y1 = scene.view
    template = resources.files("signt5").joinpath("templates/player.html").read_text(encoding="utf-8")
    page = (template.replace("__TITLE__", html.escape(f"{title} - signt5 pose player"))
            .replace("__ASPECT__", f"{x1 - x0:.4g} / {y1 - y0:.4g}")
            .replace("__POSE_DATA__", payload))
    out = _write_atomic(Path(path), page.encode("utf-8"))
    logger.info("wrote %s (%d frames, %.0f kB)", out, sample.num_frames, out.stat().st_size / 1024)
    return out


def _font(size: int):
    """Pillow's bundled font at ``size`` (needs FreeType), else its fixed bitmap font."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, AttributeError, OSError):  # Pillow built without FreeType
        return ImageFont.load_default()


def _draw_frame(scene: _Scene, index: int, size: tuple[int, int], supersample: int = 2) -> "PILImage.Image":
    """Draw one frame, supersampled then downsized: Pillow's lines and circles are not anti-aliased."""
    from PIL import Image, ImageColor, ImageDraw

    width, height = size
    s = supersample
    image = Image.new("RGB", (width * s, height * s), BACKGROUND)
    draw = ImageDraw.Draw(image)
    x0, y0, x1, y1 = scene.view
    margin = 0.04 * min(width, height) * s
    scale = min((width * s - 2 * margin) / (x1 - x0), (height * s - 2 * margin) / (y1 - y0))
    offset = np.array([(width * s - scale * (x1 - x0)) / 2 - scale * x0,
                       (height * s - scale * (y1 - y0)) / 2 - scale * y0])
    unit = min(width, height) * s / 500
    for part in scene.parts:
        present = scene.sample.mask[index, part.indices]
        if not present.any():
            continue
        xy = scene.sample.coords[index, part.indices, :2] * scale + offset
        color = ImageColor.getrgb(part.color)
        line = max(1, round(part.line * unit))
        for a, b in part.limbs:
            if present[a] and present[b]:
                draw.line([tuple(xy[a]), tuple(xy[b])], fill=color, width=line)
        radius = max(0.75 * s, part.radius * unit)
        for x, y in xy[present]:
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=color)
    return image.resize(size, Image.LANCZOS) if s > 1 else image


def render_frame(sample: PoseSample, index: int, size: tuple[int, int] = (480, 480), fit: Fit = "auto",
                 hide: Iterable[str] = ()) -> "PILImage.Image":
    """One frame as a Pillow image (no text), for embedding elsewhere."""
    if not 0 <= index < sample.num_frames:
        raise VisualizationError(f"frame {index} outside the sample's {sample.num_frames} frames")
    return _draw_frame(_scene(sample, fit, hide), index, size)


def _caption(image: "PILImage.Image", text: str, where: Literal["top", "bottom"], font_size: int) -> None:
    """Write a line of text at the image's top or bottom left."""
    from PIL import ImageDraw

    font = _font(font_size)
    y = 4 if where == "top" else image.height - font_size - 6
    ImageDraw.Draw(image).text((6, y), text, fill=TEXT_COLOR, font=font)


def render_grid_png(sample: PoseSample, path: str | Path, frames: int = 8, columns: int = 4,
                    size: tuple[int, int] = (320, 320), label: str | None = None, fit: Fit = "auto",
                    hide: Iterable[str] = ()) -> Path:
    """Write evenly spaced frames as a grid of ``size`` cells, captioned with frame numbers.

    A header line with the label is added when there is one (``label=""`` leaves it out).
    """
    from PIL import Image

    if frames < 1 or columns < 1:
        raise VisualizationError(f"frames and columns must be at least 1, got {frames} and {columns}")
    label = sample_label(sample) if label is None else label
    scene = _scene(sample, fit, hide)
    indices = np.unique(np.linspace(0, sample.num_frames - 1, min(frames, sample.num_frames)).round().astype(int))
    columns = min(columns, len(indices))
    rows = math.ceil(len(indices) / columns)
    header = 28 if label else 0
    grid = Image.new("RGB", (columns * size[0], rows * size[1] + header), BACKGROUND)
    if label:
        _caption(grid, f"{sample.sample_id or ''}  {label}".strip(), "top", 16)
    for n, index in enumerate(indices):
        cell = _draw_frame(scene, int(index), size)
        _caption(cell, f"frame {index + 1}/{sample.num_frames}", "bottom", 12)
        grid.paste(cell, ((n % columns) * size[0], header + (n // columns) * size[1]))
    buffer = io.BytesIO()
    grid.save(buffer, format="PNG", optimize=True)
    out = _write_atomic(Path(path), buffer.getvalue())
    logger.info("wrote %s (%d frames in a %dx%d grid)", out, len(indices), columns, rows)
    return out


def animation_frames(sample: PoseSample, fps: float | None = None) -> np.ndarray:
    """Frame indices shown at ``fps`` so the animation keeps the clip's real-time duration."""
    fps = fps or sample.fps
    if not math.isfinite(fps) or fps <= 0:
        raise VisualizationError(f"fps must be a positive number, got {fps}")
    count = max(1, round(sample.num_frames * fps / sample.fps))
    times = np.arange(count) * (sample.fps / fps) + 1e-6  # 11 * 29.97 / 29.97 must stay 11, not 10.999
    return np.minimum(times.astype(int), sample.num_frames - 1)


def render_animation(sample: PoseSample, path: str | Path, fps: float | None = None,
                     size: tuple[int, int] = (480, 480), label: str | None = None, fit: Fit = "auto",
                     hide: Iterable[str] = ()) -> Path:
    """Write an animated ``.gif`` (Pillow) or ``.mp4`` (H.264 via imageio-ffmpeg) at ``fps`` (default: the clip's).

    GIF delays are whole hundredths of a second and browsers slow delays under 20 ms, so GIFs
    are capped at 50 fps (frames are skipped to keep the duration).
    """
    out = Path(path)
    suffix = out.suffix.lower()
    if suffix not in (".gif", ".mp4"):
        raise VisualizationError(f"animation path must end in .gif or .mp4, got {out.name!r}")
    fps = float(fps or sample.fps)
    if suffix == ".gif" and fps > 50:
        logger.info("GIF frame rate capped at 50 fps (asked %.3g)", fps)
        fps = 50.0
    if suffix == ".mp4":  # H.264 in yuv420p needs even sizes; 16 avoids ffmpeg's rescaling
        size = (max(16, size[0] // 16 * 16), max(16, size[1] // 16 * 16))
    label = sample_label(sample) if label is None else label
    scene = _scene(sample, fit, hide)
    indices = animation_frames(sample, fps)
    images = []
    for index in indices:
        image = _draw_frame(scene, int(index), size)
        if label:
            _caption(image, label, "top", 16)
        _caption(image, f"{index + 1}/{sample.num_frames}", "bottom", 12)
        images.append(image)
    if suffix == ".gif":
        buffer = io.BytesIO()
        images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], loop=0,
                       duration=max(20, round(100 / fps) * 10))
        _write_atomic(out, buffer.getvalue())
    else:
        _write_mp4(images, out, fps)
    logger.info("wrote %s (%d frames at %.3g fps)", out, len(images), fps)
    return out


def _write_mp4(images: Sequence["PILImage.Image"], path: Path, fps: float) -> None:
    """Encode H.264 with the ffmpeg binary that the imageio-ffmpeg wheel ships, then move into place."""
    try:
        import imageio_ffmpeg
    except ImportError:
        raise VisualizationError("MP4 export needs the imageio-ffmpeg package (it ships an ffmpeg binary): "
                                 "pip install imageio-ffmpeg, or write a .gif instead") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.mp4")
    writer = imageio_ffmpeg.write_frames(str(tmp), images[0].size, fps=fps, codec="libx264", pix_fmt_in="rgb24",
                                         pix_fmt_out="yuv420p", quality=7, macro_block_size=16,
                                         ffmpeg_log_level="error", output_params=["-movflags", "+faststart"])
    writer.send(None)
    try:
        for image in images:
            writer.send(image.tobytes())
    finally:
        writer.close()
    tmp.replace(path)


def output_format(path: str | Path, fmt: str | None = None) -> str:
    """The format asked for explicitly, else the one the output's suffix names."""
    fmt = (fmt or Path(path).suffix.lstrip(".")).lower()
    if fmt == "htm":
        fmt = "html"
    if fmt not in FORMATS:
        raise VisualizationError(f"cannot tell the output format from {str(path)!r}; use a path ending in "
                                 f"{', '.join('.' + f for f in FORMATS)} or name the format ({', '.join(FORMATS)})")
    return fmt


def render(sample: PoseSample, path: str | Path, fmt: str | None = None, label: str | None = None,
           prediction: str | None = None, fit: Fit = "auto", fps: float | None = None,
           hide: Iterable[str] = (), video: str | Path | None = None) -> Path:
    """Write ``sample`` as ``fmt`` or as ``path``'s suffix names (html, png, gif, mp4).

    ``prediction`` and ``video`` (frames under the skeleton) are shown by the HTML player only; ``fps`` applies
    to animations; ``hide`` (face, body, left_hand, right_hand, other) to still images and animations (the
    player has checkboxes).
    """
    fmt = output_format(path, fmt)
    if fmt == "html":
        return render_html(sample, path, label=label, prediction=prediction, fit=fit, video=video)
    if prediction is not None or video is not None:
        logger.info("the prediction and the video's frames are shown in the HTML player only")
    if fmt == "png":
        return render_grid_png(sample, path, label=label, fit=fit, hide=hide)
    if Path(path).suffix.lower() != f".{fmt}":
        raise VisualizationError(f"a {fmt} animation must be written to a path ending in .{fmt}, got {str(path)!r}")
    return render_animation(sample, path, fps=fps, label=label, fit=fit, hide=hide)
