"""A trained model ready to decode samples: its checkpoint loaded with the preprocessing it was trained with.

The model's checkpoint carries its preprocessing (``DataConfig``) and input layout, so a
sample is prepared exactly as in training, and a sample whose keypoints cannot be mapped
onto the model's layout is refused with a message naming it. A sample longer than
``data.max_frames`` is cropped, or with ``data.long_samples="window"`` decoded in windows
whose texts are joined (:func:`split_long_items`). Evaluation and inference both decode through it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import torch

from signt5.data.dataset import DataConfig, prepare_sample, window_slices
from signt5.data.item import PoseItem, pose_item
from signt5.data.sample import PoseSample
from signt5.errors import LayoutError, SignT5Error

from .generate import generate_texts
from .rate import is_normalising, letter_count, rate_factor, stretch_item

logger = logging.getLogger(__name__)


class Predictor:
    """A loaded model with its tokenizer and preprocessing; ``predict_samples`` decodes in batches."""

    def __init__(self, model: Any, tokenizer: Any, model_dir: Path):
        self.model = model
        self.tokenizer = tokenizer
        self.model_dir = model_dir
        self.data_config = DataConfig.from_dict(model.config.data)
        self.layout = model.config.pose_encoder_config.keypoint_layout
        self.target = model.config.target
        # signing-rate normalisation (rate.py): on when the checkpoint knows its training rate; 0 turns it off
        self.rate_band = float(getattr(model.config, "signing_rate_band", 0.0) or 0.0)

    @classmethod
    def load(cls, model_dir: str | Path, device: str | torch.device | None = None) -> "Predictor":
        """Load from a run folder (its ``checkpoint-best``) or a checkpoint folder."""
        from signt5.models.loading import load_run_model, resolve_model_dir  # transformers loads with the model

        folder = resolve_model_dir(model_dir)
        model, tokenizer = load_run_model(folder)
        device = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        model.to(device).eval()
        logger.info("model from %s (target: %s) on %s", folder, model.config.target, device)
        return cls(model, tokenizer, folder)

    def override_data(self, **changes: Any) -> None:
        """Change the checkpoint's ``DataConfig`` (e.g. ``max_frames``, ``long_samples``) for this predictor only.

        Lets a user window or crop long samples at inference without editing the checkpoint.
        """
        before = self.data_config
        self.data_config = replace(before, **changes)
        logger.info("data config overridden for this call: %s", ", ".join(
            f"{k}={v!r} (checkpoint: {getattr(before, k)!r})" for k, v in changes.items()))
        if self.data_config.long_samples == "window" and not self.data_config.max_frames:
            logger.warning("long_samples=window has no effect without max_frames (this model sets none): "
                           "give one, e.g. --max_frames 512")

    def prepare(self, sample: PoseSample) -> PoseItem:
        """Model input for one sample; a layout the model was not trained on is a clear error."""
        try:
            prepared = prepare_sample(sample, self.data_config)
        except LayoutError as e:
            raise sample.error(f"cannot be mapped onto the model's input layout: {e}") from None
        ours = [(c.name, c.points) for c in prepared.layout.components]
        theirs = [(c.name, c.points) for c in self.layout.components]
        if ours != theirs:
            raise sample.error(
                f"keypoint layout {sample.layout.name!r} gives {prepared.num_points} points "
                f"({', '.join(n for n, _ in ours)}) but the model was trained on {self.layout.num_points} "
                f"({', '.join(n for n, _ in theirs)}); convert the poses to the training layout")
        return pose_item(sample.sample_id, prepared.coords, prepared.mask, "",
                         sample.labels.get("sign_language", ""), str(sample.source))

    def predict_items(self, items: Sequence[PoseItem], num_beams: int = 1, batch_size: int = 8,
                      max_new_tokens: int = 64, decoding: str | None = None,
                      ctc_weight: float | None = None) -> tuple[list[str], float]:
        """Texts of prepared items, in order, and samples per second; long items may be decoded in windows."""
        known = self.model.config.sign_languages
        unknown = sum(1 for item in items if not item["sign_language"])
        if known and unknown:
            # A corpus where every sample has a language never trains the "no sign language" embedding.
            logger.warning("%d sample(s) have no sign language (.pose files carry none), and this model was trained "
                           "with sign languages (%s): without one it may translate poorly; give it "
                           "(--sign_language)", unknown, ", ".join(known))
        start = time.perf_counter()
        windows, owners = split_long_items(items, self.data_config)
        windows, ctc_texts = self.normalise_rates(windows, batch_size)
        if ctc_texts is not None and (decoding or self.model.config.decoding) == "ctc":
            texts = list(ctc_texts)  # the first pass's texts stand for the windows it did not resample
            redo = [i for i, text in enumerate(ctc_texts) if text is None]
            if redo:
                again, _ = generate_texts(self.model, self.tokenizer, [windows[i] for i in redo], batch_size,
                                          decoding="ctc")
                for i, text in zip(redo, again):
                    texts[i] = text
        else:
            texts, _ = generate_texts(self.model, self.tokenizer, windows, batch_size, num_beams, max_new_tokens,
                                      decoding=decoding, ctc_weight=ctc_weight)
        speed = len(items) / max(time.perf_counter() - start, 1e-9)
        if len(windows) == len(items):
            return texts, speed
        parts: list[list[str]] = [[] for _ in items]
        for owner, text in zip(owners, texts):
            if text.strip():
                parts[owner].append(text.strip())
        return [" ".join(p) for p in parts], speed

    def normalise_rates(self, items: Sequence[PoseItem],
                        batch_size: int = 8) -> tuple[list[PoseItem], list[str | None] | None]:
        """Items whose letters per second (a greedy CTC pass) are off the training data's by more than
        ``rate_band``, resampled in time to that rate, the others unchanged (rate.py); and the first pass's text
        of each item left as it was (None where resampled), or None when normalisation is off."""
        config, fps = self.model.config, self.data_config.target_fps
        reference = getattr(config, "signing_rate", None)
        if not items or not is_normalising(reference, self.rate_band, fps) or config.ctc_weight <= 0:
            return list(items), None
        texts, _ = generate_texts(self.model, self.tokenizer, items, batch_size, decoding="ctc")
        factors = [rate_factor(letter_count(text, self.target), item["pose"].shape[0], fps, reference, self.rate_band)
                   for item, text in zip(items, texts)]
        changed = [f for f in factors if f != 1.0]
        if changed:
            logger.info("%d of %d sample(s) signed outside %.2f-%.2f letters/s resampled to the training rate "
                        "%.2f (frames x %.2f-%.2f)", len(changed), len(items), reference / self.rate_band,
                        reference * self.rate_band, reference, min(changed), max(changed))
        return ([stretch_item(item, f) if f != 1.0 else item for item, f in zip(items, factors)],
                [text if f == 1.0 else None for text, f in zip(texts, factors)])

    def _check_sign_language(self, code: str) -> None:
        """A code the model never saw would silently act as "unknown"; a typo should not pass for a language."""
        known = list(self.model.config.sign_languages or [])
        if not known:
            logger.warning("this model was trained without sign-language conditioning; sign language %r has no "
                           "effect", code)
        elif code not in known:
            raise SignT5Error(f"sign language {code!r} is not one this model was trained on "
                              f"(it knows: {', '.join(known)})")

    def predict_samples(self, samples: Sequence[PoseSample], sign_language: str | None = None, num_beams: int = 1,
                        batch_size: int = 8, decoding: str | None = None,
                        ctc_weight: float | None = None) -> list[str]:
        """The text of each sample, in order; ``sign_language`` replaces the samples' own."""
        items = [self.prepare(s) for s in samples]
        if sign_language:
            self._check_sign_language(sign_language)
            for item in items:
                item["sign_language"] = sign_language
        return self.predict_items(items, num_beams, batch_size, decoding=decoding, ctc_weight=ctc_weight)[0]


def split_long_items(items: Sequence[PoseItem], config: DataConfig) -> tuple[list[PoseItem], list[int]]:
    """Model inputs for ``items`` and, for each, the index of the item it came from.

    With ``config.long_samples == "window"`` an item longer than ``config.max_frames`` becomes
    consecutive, non-overlapping windows (:func:`~signt5.data.dataset.window_slices`; an overlap
    would decode its signs twice and double letters in the joined text), with one warning per item.
    Windows are cut from the prepared item, so every window carries the normalisation statistics
    of the whole sample, as ``prepare_sample`` computed them. Otherwise the items pass unchanged.
    """
    if not config.windowed:
        return list(items), list(range(len(items)))
    windows: list[PoseItem] = []
    owners: list[int] = []
    for index, item in enumerate(items):
        frames = item["pose"].shape[0]
        slices = window_slices(frames, config.max_frames) or [slice(None)]  # type: ignore[arg-type]
        if len(slices) > 1:
            where = f" ({item['source']})" if item.get("source") else ""
            logger.warning("sample %s%s: %d frames split into %d windows of at most %d (data.long_samples=window); "
                           "their texts are joined", item["id"], where, frames, len(slices), config.max_frames)
        for window in slices:
            windows.append(pose_item(item["id"], item["pose"][window], item["mask"][window], item["label"],
                                     item["sign_language"], item.get("source", "")))
            owners.append(index)
    return windows, owners
