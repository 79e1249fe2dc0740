"""A readable summary of a data set: sizes, lengths, frame rates, resolutions, missing points, bad samples."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import SignT5Error
from .dataset import DataConfig, SampleLoader
from .manifest import read_manifest


@dataclass
class DataSummary:
    manifest: str
    splits: Counter = field(default_factory=Counter)
    languages: dict = field(default_factory=lambda: defaultdict(Counter))
    frames: list = field(default_factory=list)
    fps: Counter = field(default_factory=Counter)
    resolutions: Counter = field(default_factory=Counter)
    layouts: Counter = field(default_factory=Counter)
    missing_points: list = field(default_factory=list)
    missing_hand_frames: list = field(default_factory=list)
    label_chars: list = field(default_factory=list)
    errors: list = field(default_factory=list)

    def to_text(self) -> str:
        frames = np.asarray(self.frames or [0])
        lines = [
            f"manifest: {self.manifest}",
            f"samples: {sum(self.splits.values())} ({', '.join(f'{k} {v}' for k, v in sorted(self.splits.items()))})",
            f"sign languages: {len(self.languages)}",
        ]
        for lang, counts in sorted(self.languages.items()):
            lines.append(f"  {lang:5s} " + " ".join(f"{k}={v}" for k, v in sorted(counts.items())))
        lines += [
            f"frames per sample: min {frames.min()}, mean {frames.mean():.1f}, max {frames.max()}",
            f"fps: {dict(sorted(self.fps.items()))}",
            f"resolutions: {dict(self.resolutions.most_common())}",
            f"layouts: {dict(self.layouts)}",
            f"missing points: {100 * float(np.mean(self.missing_points or [0])):.1f}%; "
            f"frames with a hand undetected: {100 * float(np.mean(self.missing_hand_frames or [0])):.1f}%",
            f"label length (chars): mean {float(np.mean(self.label_chars or [0])):.1f}, max {max(self.label_chars or [0])}",
            f"unreadable samples: {len(self.errors)}",
        ]
        lines += [f"  {e}" for e in self.errors[:20]]
        return "\n".join(lines)


def summarize_manifest(manifest: str | Path, split: str | None = None, config: DataConfig | None = None) -> DataSummary:
    """Read every sample (without normalising) and collect statistics; bad samples are listed, not fatal."""
    entries = read_manifest(manifest, split=split)
    loader = SampleLoader(config or DataConfig())
    summary = DataSummary(str(manifest))
    for entry in entries:
        try:
            sample = loader.raw(entry)
        except SignT5Error as e:
            summary.errors.append(str(e))
            continue
        summary.splits[entry.split or "(none)"] += 1
        summary.languages[entry.sign_language or "(none)"][entry.split or "(none)"] += 1
        summary.frames.append(sample.num_frames)
        summary.fps[round(sample.fps, 2)] += 1
        summary.resolutions["x".join(map(str, sample.resolution)) if sample.resolution else "unknown"] += 1
        summary.layouts[sample.layout.name] += 1
        summary.missing_points.append(1.0 - float(sample.mask.mean()))
        hands = sample.layout.hand_slices()
        if hands:
            summary.missing_hand_frames.append(float(np.mean([~sample.mask[:, h].any(axis=1) for h in hands])))
        summary.label_chars.append(len(entry.text or entry.gloss))
    return summary
