"""Pose extraction speed (frames/s, 1 and 2 worker processes) and the whole `signt5 infer clip.mp4`, by part.

The clip is scikit-image's astronaut photograph swaying left and right on a 640x480 frame at 25 fps (a real
person: MediaPipe finds her body and face in every frame, no hands). Run with the video extra installed:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_video.py --model_dir output/sign_language_model
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

WIDTH, HEIGHT, FPS = 640, 480, 25


def write_clip(path: Path, seconds: float) -> Path:
    """The photograph swaying 60 px either way once every 2 s, as H.264 (imageio-ffmpeg's bundled ffmpeg)."""
    import imageio_ffmpeg
    from skimage import data

    photo = data.astronaut()[16:16 + HEIGHT]
    writer = imageio_ffmpeg.write_frames(str(path), (WIDTH, HEIGHT), fps=FPS, macro_block_size=16,
                                         ffmpeg_log_level="error")
    writer.send(None)
    for index in range(round(seconds * FPS)):
        frame = np.full((HEIGHT, WIDTH, 3), 128, dtype=np.uint8)
        x = 64 + round(60 * math.sin(2 * math.pi * index / (2 * FPS)))
        frame[:, x:x + photo.shape[1]] = photo[:, :WIDTH - x]
        writer.send(frame.tobytes())
    writer.close()
    return path


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the worker processes)."""
    return sum(u.ru_utime + u.ru_stime for u in (resource.getrusage(resource.RUSAGE_SELF),
                                                  resource.getrusage(resource.RUSAGE_CHILDREN)))


def extraction(input_path: Path, output: Path, workers: int) -> tuple[int, float, float]:
    """Frames estimated, wall seconds and CPU seconds of one ``extract_videos`` run into a fresh folder."""
    from signt5.data.video import extract_videos

    shutil.rmtree(output, ignore_errors=True)
    start, cpu = time.perf_counter(), _cpu_seconds()
    summary = extract_videos(input_path, output, workers=workers, progress=False, manifest=False)
    seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu
    assert not summary.failed, summary.failed
    return sum(r.frames for r in summary.written), seconds, cpu


def infer_command(clip: Path, model_dir: str) -> dict[str, float]:
    """Wall time of `signt5 infer` as a fresh process, and the parts its log reports."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    signt5 = str(Path(sys.executable).with_name("signt5"))
    start = time.perf_counter()
    done = subprocess.run([signt5, "infer", "--model_dir", model_dir, "--input_file", str(clip)], env=env,
                          capture_output=True, text=True, check=True)
    parts = {"whole": time.perf_counter() - start}
    poses = re.search(r"poses of 1 video\(s\) in ([\d.]+) s", done.stderr)
    model = re.search(r"model loaded in ([\d.]+) s; .* predicted in ([\d.]+) s", done.stderr)
    parts.update(extraction=float(poses[1]), load=float(model[1]), predict=float(model[2]))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import signt5.cli; signt5.cli.build_parser(); import signt5.inference, "
                    "signt5.models.loading"], env=env, check=True)
    parts["imports"] = time.perf_counter() - start
    return parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_dir", default="output/sign_language_model")
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length")
    parser.add_argument("--copies", type=int, default=4, help="clips in the folder run")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # not the clips' "no hands seen" warnings
    with tempfile.TemporaryDirectory(prefix="bench-video-") as folder:
        root = Path(folder)
        clip = write_clip(root / "clip.mp4", args.seconds)
        videos = root / "videos"
        videos.mkdir()
        for index in range(args.copies):
            shutil.copy(clip, videos / f"clip{index}.mp4")
        print(f"clip: {args.seconds:g} s, {WIDTH}x{HEIGHT}, {FPS} fps; OMP_NUM_THREADS="
              f"{os.environ.get('OMP_NUM_THREADS', 'unset')}; load average before: {os.getloadavg()[0]:.2f}")
        print("| run | workers | frames | seconds | frames/s | CPU ms/frame |\n|---|---:|---:|---:|---:|---:|")
        for name, input_path, workers in (("one clip", clip, 1), (f"{args.copies} clips", videos, 1),
                                          (f"{args.copies} clips", videos, 2)):
            frames, seconds, cpu = extraction(input_path, root / "poses", workers)
            print(f"| {name} | {workers} | {frames} | {seconds:.2f} | {frames / seconds:.1f} | "
                  f"{1000 * cpu / frames:.0f} |", flush=True)
        if Path(args.model_dir).exists():
            parts = infer_command(clip, args.model_dir)
            print("\n`signt5 infer --input_file clip.mp4`, seconds: " + ", ".join(
                f"{name} {value:.2f}" for name, value in parts.items()))
        print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
