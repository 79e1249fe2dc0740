"""Short test videos: a real photograph of a person (scikit-image's astronaut) moving across the frame, or nobody."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

WIDTH, HEIGHT, FPS = 640, 480, 25.0


def astronaut_frames(count: int, shift: int = 3) -> Iterator[np.ndarray]:
    """The 512x512 photo on a grey 640x480 frame, ``shift`` pixels further right in each frame (held at the edges)."""
    from skimage import data

    photo = data.astronaut()[16:16 + HEIGHT]
    for index in range(count):
        frame = np.full((HEIGHT, WIDTH, 3), 128, dtype=np.uint8)
        x = min(max(20 + shift * index, 0), WIDTH // 2)
        frame[:, x:x + photo.shape[1]] = photo[:, :WIDTH - x]
        yield frame


def empty_frames(count: int) -> Iterator[np.ndarray]:
    """A grey wall with a slowly moving gradient: a video, but nobody in it."""
    ramp = np.linspace(60, 200, WIDTH, dtype=np.float32)
    for index in range(count):
        row = np.roll(ramp, 4 * index).astype(np.uint8)
        yield np.repeat(np.repeat(row[None, :, None], HEIGHT, axis=0), 3, axis=2)


def write_video(path: Path, frames: Iterable[np.ndarray], fps: float = FPS) -> Path:
    """Encode RGB frames as H.264 MP4 with the ffmpeg binary inside the imageio-ffmpeg wheel."""
    import imageio_ffmpeg

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = imageio_ffmpeg.write_frames(str(path), (WIDTH, HEIGHT), fps=fps, macro_block_size=16,
                                         ffmpeg_log_level="error")
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame).tobytes())
    writer.close()
    return path
