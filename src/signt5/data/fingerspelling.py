"""The default data set: fingerspelled words and names in 19 sign languages, built from real letter recordings.

Each word is spelled with the MediaPipe Holistic letter clips of the ``spoken-to-signed``
lexicon, with the variation real recordings have: signing speed, transitions between
letters, frame rate, camera resolution and framing, small rotations, landmark jitter,
points leaving the frame and stretches where a hand is not detected. ``test_shifted``
draws that variation from outside the training ranges, to measure robustness. The stress
splits each change one thing users' recordings differ in: ``test_slow`` (about 1 letter/s),
``test_fast`` (about 6 letters/s, short transitions), ``test_flicker`` (hands lost for 1-3
frames at a time, as MediaPipe does) and ``test_left_handed`` (the signer mirrored).
A share of each split is multi-word names (first + last name, multi-word place names):
the words are spelled one after another with a held pause between them, as a signer does.
"""

from __future__ import annotations

import json
import logging
import pickle
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .gaps import flicker_dropouts
from .layout import KeypointLayout, layout_by_name
from .lexicon import FingerspellingLexicon, LetterClip
from .manifest import ManifestEntry, write_manifest
from .mirror import mirror_coords
from .normalize import resample_fps, resample_frames
from .readers import read_pose_file, write_pose_file
from .sample import PoseSample
from .words import spellable_names, spellable_words

logger = logging.getLogger(__name__)

BASE_SPLITS = ("train", "dev", "test", "test_shifted")
STRESS_SPLITS = ("test_slow", "test_fast", "test_flicker", "test_left_handed")
SPLITS = BASE_SPLITS + STRESS_SPLITS


@dataclass
class Variation:
    """Ranges that recording conditions are drawn from (uniform unless said otherwise)."""

    letters_per_second: tuple[float, float] = (2.0, 3.5)
    transition_frames: tuple[int, int] = (1, 4)
    fps: tuple[float, ...] = (25.0, 29.97, 30.0)
    resolutions: tuple[tuple[int, int], ...] = ((500, 500), (640, 480), (1280, 720), (1920, 1080))
    shoulder_width: tuple[float, float] = (0.2, 0.32)  # fraction of min(width, height)
    centre_x: tuple[float, float] = (0.4, 0.6)
    centre_y: tuple[float, float] = (0.35, 0.5)
    rotation_degrees: float = 6.0  # uniform in +/- this
    jitter: float = 0.008  # landmark noise, std as a fraction of shoulder width
    hand_dropout: float = 0.08  # chance per letter that a hand goes undetected for part of it
    word_pause_seconds: tuple[float, float] = (0.3, 0.8)  # hand held still between the words of a name
    flicker: float = 0.0  # chance per hand per frame that it is lost for 1-3 frames (MediaPipe flicker)
    left_handed: bool = False  # mirror the (right-handed) signer of the letter clips into a left-handed one


SHIFTED = Variation(
    letters_per_second=(1.4, 1.8),
    transition_frames=(4, 7),
    fps=(24.0, 50.0),
    resolutions=((854, 480), (1080, 1920), (3840, 2160)),
    shoulder_width=(0.12, 0.18),
    centre_x=(0.25, 0.35),
    centre_y=(0.25, 0.35),
    rotation_degrees=12.0,
    jitter=0.016,
    hand_dropout=0.2,
    word_pause_seconds=(0.9, 1.5),
)
SLOW = Variation(letters_per_second=(0.8, 1.2))
FAST = Variation(letters_per_second=(5.5, 7.0), transition_frames=(0, 2))
FLICKER = Variation(flicker=0.05)
LEFT_HANDED = Variation(left_handed=True)


@dataclass
class CorpusConfig:
    """What to build; the defaults make a corpus the CPU demo trains on in minutes."""

    output_dir: str = "data/fingerspelling"
    sign_languages: list[str] | None = None  # None: all in the lexicon
    train_words: int = 100  # samples (words or names) per sign language
    dev_words: int = 10
    test_words: int = 10
    test_shifted_words: int = 10
    test_slow_words: int = 10  # stress splits: 0 leaves the split out
    test_fast_words: int = 10
    test_flicker_words: int = 10
    test_left_handed_words: int = 10
    seed: int = 0
    multi_word_share: float = 0.25  # of each split's samples: multi-word names rather than single words
    layout: str = "holistic_reduced_178"  # stored layout: the lexicon's holistic_586 or pose-format's reduction
    formats: list[str] = field(default_factory=lambda: ["pose", "pkl"])
    variation: Variation = field(default_factory=Variation)
    shifted_variation: Variation = field(default_factory=lambda: SHIFTED)
    slow_variation: Variation = field(default_factory=lambda: SLOW)
    fast_variation: Variation = field(default_factory=lambda: FAST)
    flicker_variation: Variation = field(default_factory=lambda: FLICKER)
    left_handed_variation: Variation = field(default_factory=lambda: LEFT_HANDED)

    def __post_init__(self) -> None:
        if not 0.0 <= self.multi_word_share <= 1.0:
            raise ValueError(f"multi_word_share must lie in [0, 1], got {self.multi_word_share}")

    def split_sizes(self) -> dict[str, int]:
        """Samples per sign language of each split built: every base split, the stress splits not set to 0."""
        sizes = {split: getattr(self, f"{split}_words") for split in SPLITS}
        return {split: size for split, size in sizes.items() if split in BASE_SPLITS or size > 0}

    def split_variation(self, split: str) -> Variation:
        """The recording conditions a split is drawn from."""
        named = {"test_shifted": self.shifted_variation, "test_slow": self.slow_variation,
                 "test_fast": self.fast_variation, "test_flicker": self.flicker_variation,
                 "test_left_handed": self.left_handed_variation}
        return named.get(split, self.variation)

    def multi_word_count(self, split_size: int) -> int:
        """How many of a split's samples are multi-word names (rounded half up, so small splits get some)."""
        return int(split_size * self.multi_word_share + 0.5)


# A sample to spell: its text as written and the letter clips of each of its words.
Spelling = tuple[str, list[list[LetterClip]]]


class ClipBank:
    """Letter clips read once, resampled to 25 fps and reduced to the stored layout."""

    def __init__(self, lexicon: FingerspellingLexicon, layout: KeypointLayout):
        self.lexicon = lexicon
        self.layout = layout
        self._clips: dict[Path, PoseSample] = {}

    def get(self, clip: LetterClip) -> PoseSample:
        if clip.path not in self._clips:
            sample = resample_fps(read_pose_file(clip.path), 25.0)
            if not sample.layout.same_points(self.layout):
                _, indices = sample.layout.select({c.name: list(c.points) for c in self.layout.components})
                sample = sample.replace(coords=sample.coords[:, indices], mask=sample.mask[:, indices],
                                        layout=self.layout)
            self._clips[clip.path] = sample
        return self._clips[clip.path]


def spell_sequence(words: Sequence[Sequence[PoseSample]], rng: np.random.Generator, v: Variation, fps: float
                   ) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]], list[tuple[int, int]]]:
    """Concatenate the words' letter clips at a drawn speed with interpolated transitions.

    Between two words the hand holds the last letter for a drawn pause (``v.word_pause_seconds``), then moves
    to the next word's first letter like between letters. Returns coords, mask, letter spans and pause spans.
    """
    parts_c, parts_m, spans, pauses, start = [], [], [], [], 0
    for wi, clips in enumerate(words):
        for i, clip in enumerate(clips):
            frames = max(2, int(round(fps / rng.uniform(*v.letters_per_second))))
            positions = np.linspace(0, clip.num_frames - 1, frames)
            c, m = resample_frames(clip.coords, clip.mask, positions)
            if wi > 0 and i == 0:
                hold = max(1, int(round(fps * rng.uniform(*v.word_pause_seconds))))
                parts_c.append(np.repeat(parts_c[-1][-1:], hold, axis=0))
                parts_m.append(np.repeat(parts_m[-1][-1:], hold, axis=0))
                pauses.append((start, start + hold))
                start += hold
            if parts_c:
                k = int(rng.integers(v.transition_frames[0], v.transition_frames[1] + 1))
                prev_c, prev_m = parts_c[-1][-1], parts_m[-1][-1]
                w = (np.arange(1, k + 1) / (k + 1)).astype(np.float32)[:, None, None]
                trans_m = np.repeat((prev_m & m[0])[None], k, axis=0)
                trans_c = np.where(trans_m[..., None], prev_c[None] * (1 - w) + c[0][None] * w, 0.0)
                parts_c.append(trans_c.astype(np.float32))
                parts_m.append(trans_m)
                start += k
            parts_c.append(c)
            parts_m.append(m)
            spans.append((start, start + frames))
            start += frames
    return np.concatenate(parts_c), np.concatenate(parts_m), spans, pauses


def record(coords: np.ndarray, mask: np.ndarray, spans: list[tuple[int, int]], layout: KeypointLayout,
           rng: np.random.Generator, v: Variation) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Place the signer in a drawn camera frame: rotate, scale, shift, jitter, lose hands and off-screen points."""
    left, right = layout.shoulders()
    both = mask[:, left] & mask[:, right]
    centre = ((coords[both, left] + coords[both, right]) / 2).mean(axis=0)
    width_src = float(np.linalg.norm(coords[both, left, :2] - coords[both, right, :2], axis=-1).mean())
    res_w, res_h = v.resolutions[int(rng.integers(len(v.resolutions)))]
    width_dst = rng.uniform(*v.shoulder_width) * min(res_w, res_h)
    scale = width_dst / width_src
    theta = np.deg2rad(rng.uniform(-v.rotation_degrees, v.rotation_degrees))
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]], dtype=np.float32)
    out = coords - centre
    out[..., :2] = out[..., :2] @ rot.T
    out *= scale
    out[..., 0] += rng.uniform(*v.centre_x) * res_w
    out[..., 1] += rng.uniform(*v.centre_y) * res_h
    if out.shape[-1] == 3:
        out[..., 2] += width_dst  # keep depth positive, in pixel units like x
    out += rng.normal(0.0, v.jitter * width_dst, size=out.shape).astype(np.float32)
    mask = mask.copy()
    for hand in layout.hand_slices():
        for s, e in spans:
            if rng.random() < v.hand_dropout:
                a = int(rng.integers(s, e))
                b = int(rng.integers(a + 1, e + 1))
                mask[a:b, hand] = False
    if v.flicker > 0:
        for hand in layout.hand_slices():
            mask[flicker_dropouts(len(mask), v.flicker, rng), hand] = False
    inside = (out[..., 0] >= 0) & (out[..., 0] < res_w) & (out[..., 1] >= 0) & (out[..., 1] < res_h)
    mask &= inside
    return np.where(mask[..., None], out, 0.0).astype(np.float32), mask, (res_w, res_h)


def build_corpus(config: CorpusConfig, lexicon: FingerspellingLexicon | None = None) -> list[ManifestEntry]:
    """Build the corpus under ``config.output_dir``: ``.pose`` files, ``manifest.csv``, ``data.pkl``, ``corpus.json``.

    ``corpus.json`` gives per split the measured signing speed (min, mean, max over samples): ``letter``, letters
    per second while a letter is shown, and ``signing``, transitions between letters counted (pauses between the
    words of a name not).
    """
    lexicon = lexicon or FingerspellingLexicon.load()
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    layout = layout_by_name(config.layout)
    bank = ClipBank(lexicon, layout)
    languages = config.sign_languages or lexicon.sign_languages()
    sizes = config.split_sizes()
    entries: list[ManifestEntry] = []
    pkl: dict[str, dict] = {}
    counts: dict[str, dict[str, int]] = {}
    multi_word: dict[str, dict[str, int]] = {}
    timings: dict[str, list[tuple[float, float]]] = {split: [] for split in sizes}
    for li, language in enumerate(languages):
        rng = np.random.default_rng([config.seed, li])
        assigned = _choose_spellings(lexicon, language, sizes, config, rng, li)
        counts[language] = {split: len(chosen) for split, chosen in assigned.items()}
        multi_word[language] = {split: sum(len(groups) > 1 for _, groups in chosen)
                                for split, chosen in assigned.items()}
        for split, chosen in assigned.items():
            # the base splits share the language's stream as they always did; each stress split draws from its
            # own, so the stress splits change no base split's samples
            split_rng = rng if split in BASE_SPLITS else np.random.default_rng([config.seed, li, SPLITS.index(split)])
            split_rng.shuffle(chosen)
            variation = config.split_variation(split)
            for wi, (text, groups) in enumerate(chosen):
                sample_id = f"{language}-{split}-{wi:05d}"
                fps = float(variation.fps[int(split_rng.integers(len(variation.fps)))])
                clips = [[bank.get(c) for c in word] for word in groups]
                coords, mask, spans, pauses = spell_sequence(clips, split_rng, variation, fps)
                if variation.left_handed:
                    coords, mask = mirror_coords(coords, mask, layout)
                coords, mask, resolution = record(coords, mask, spans, layout, split_rng, variation)
                timings[split].append(_letters_per_second(spans, pauses, len(coords), fps))
                gloss = " ".join(c.gloss for word in groups for c in word)
                sample = PoseSample(coords, mask, fps, layout, resolution, "pixels", sample_id)
                entry = ManifestEntry(sample_id, out / "poses" / split / f"{sample_id}.pose", text, gloss, language,
                                      split, sample_id)
                if "pose" in config.formats:
                    entry.path.parent.mkdir(parents=True, exist_ok=True)
                    write_pose_file(sample, entry.path)
                if "pkl" in config.formats:
                    pkl[sample_id] = {"keypoints": coords, "confidence": mask.astype(np.float32), "fps": fps,
                                      "resolution": list(resolution), "layout": layout.name, "text": text,
                                      "gloss": gloss, "sign_language": language, "split": split}
                entries.append(entry)
        logger.info("%s: %s (multi-word %s)", language, counts[language], multi_word[language])
    write_manifest(entries, out / "manifest.csv")
    if "pkl" in config.formats:
        _write_atomic(out / "data.pkl", pickle.dumps(pkl, protocol=pickle.HIGHEST_PROTOCOL))
        pkl_entries = [ManifestEntry(e.id, out / "data.pkl", e.text, e.gloss, e.sign_language, e.split, e.id)
                       for e in entries]
        write_manifest(pkl_entries, out / "manifest_pkl.csv")
    totals = {split: sum(c[split] for c in multi_word.values()) for split in sizes}
    info = {"config": asdict(config), "counts": counts, "multi_word": {"total": totals, **multi_word},
            "letters_per_second": {split: _rate_summary(rates) for split, rates in timings.items()},
            "lexicon": str(lexicon.root)}
    _write_atomic(out / "corpus.json", json.dumps(info, indent=2, ensure_ascii=False).encode())
    return entries


def _assign_splits(words: list[tuple[str, list[LetterClip]]], names: list[Spelling], sizes: dict[str, int],
                   wanted: dict[str, int], language: str, owner: dict[tuple[str, ...], str] | None = None
                   ) -> dict[str, list[Spelling]]:
    """Fill each split with names and single words such that no word and no letter sequence is in two splits.

    A word claimed by a split (alone or inside a name) is off limits to the others, so a test name never
    contains a word seen in training; a split short of names is topped up with single words. ``owner``
    (letter sequence -> split) carries the claims of splits assigned earlier, and is updated.
    """
    owner = {} if owner is None else owner
    word_iter: Iterator[Spelling] = ((word, [clips]) for word, clips in words)
    name_iter = iter(names)
    assigned: dict[str, list[Spelling]] = {}
    for split, size in sizes.items():
        chosen: list[Spelling] = []
        for pool, quota in ((name_iter, wanted[split]), (word_iter, size)):
            while len(chosen) < quota:
                spelling = next(pool, None)
                if spelling is None:
                    break
                groups = spelling[1]
                keys = [tuple(c.gloss for c in word) for word in groups]
                keys.append(tuple(c.gloss for word in groups for c in word))
                if owner.get(keys[-1]) is None and all(owner.get(k, split) == split for k in keys):
                    owner.update((k, split) for k in keys)
                    chosen.append(spelling)
        names_taken = sum(len(groups) > 1 for _, groups in chosen)
        if names_taken < wanted[split]:
            logger.info("%s %s: %d multi-word names for %d wanted", language, split, names_taken, wanted[split])
        assigned[split] = chosen
    return assigned


def _choose_spellings(lexicon: FingerspellingLexicon, language: str, sizes: dict[str, int], config: CorpusConfig,
                      rng: np.random.Generator, language_index: int) -> dict[str, list[Spelling]]:
    """Each split's spellings for one sign language, no word or letter sequence in two splits.

    The base splits are drawn exactly as before the stress splits existed (same pool, same ``rng`` draws), so
    their samples stay the same for a seed; the stress splits then draw from a larger pool with their own stream.
    """
    base = {split: size for split, size in sizes.items() if split in BASE_SPLITS}
    stress = {split: size for split, size in sizes.items() if split not in BASE_SPLITS}
    owner: dict[tuple[str, ...], str] = {}
    assigned = _draw_spellings(lexicon, language, base, base, config, rng, owner)
    if stress:
        stress_rng = np.random.default_rng([config.seed, language_index, len(SPLITS)])
        assigned.update(_draw_spellings(lexicon, language, stress, sizes, config, stress_rng, owner))
    return assigned


def _draw_spellings(lexicon: FingerspellingLexicon, language: str, sizes: dict[str, int], pool_sizes: dict[str, int],
                    config: CorpusConfig, rng: np.random.Generator, owner: dict[tuple[str, ...], str]
                    ) -> dict[str, list[Spelling]]:
    """Assign ``sizes``' splits from a shuffled pool of words and names big enough for all of ``pool_sizes``."""
    needed = sum(pool_sizes.values())
    words = _unique_spellings(spellable_words(lexicon, language, needed * 3, seed=config.seed))
    rng.shuffle(words)
    if len(words) < needed:
        logger.warning("%s: only %d distinct spellable words for %d requested", language, len(words), needed)
    wanted = {split: config.multi_word_count(size) for split, size in sizes.items()}
    names_needed = sum(config.multi_word_count(size) for size in pool_sizes.values())
    names = spellable_names(lexicon, language, 4 * names_needed, seed=config.seed)
    return _assign_splits(words, names, sizes, wanted, language, owner)


def _letters_per_second(spans: list[tuple[int, int]], pauses: list[tuple[int, int]], frames: int, fps: float
                        ) -> tuple[float, float]:
    """A sample's speed: letters per second while a letter is shown, and over the signing (pauses not counted)."""
    letter_frames = sum(end - start for start, end in spans)
    signing_frames = frames - sum(end - start for start, end in pauses)
    return len(spans) * fps / letter_frames, len(spans) * fps / signing_frames


def _rate_summary(rates: list[tuple[float, float]]) -> dict[str, list[float]]:
    """Min, mean and max of each kind of letters-per-second over a split's samples."""
    if not rates:
        return {}
    table = np.asarray(rates)  # (N, 2)
    return {kind: [round(float(f(table[:, i])), 2) for f in (np.min, np.mean, np.max)]
            for i, kind in enumerate(("letter", "signing"))}


def _unique_spellings(words: list[tuple[str, list[LetterClip]]]) -> list[tuple[str, list[LetterClip]]]:
    """Keep one word per letter sequence, so splits are disjoint in what the model must output."""
    seen, unique = set(), []
    for word, clips in words:
        key = tuple(c.gloss for c in clips)
        if key not in seen:
            seen.add(key)
            unique.append((word, clips))
    return unique


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
