"""The fingerspelling corpus: disjoint splits, labels matching the letters used, determinism, real variation.

The stress splits sign slower, faster, with flickering hands and left-handed, and leave the other splits as they were.
"""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from signt5.data.dataset import DataConfig, PoseDataset, pad_batch
from signt5.data.fingerspelling import BASE_SPLITS, STRESS_SPLITS, CorpusConfig, build_corpus
from signt5.data.lexicon import fold_text
from signt5.data.manifest import read_manifest
from signt5.data.readers import read_pickle, read_pose_file

from ..conftest import build_recording_spellings

LANGUAGES = ["ase", "gss"]
STRESS_SIZES = {f"{split}_words": 3 for split in STRESS_SPLITS}


def _build(tmp_path_factory, seed):
    out = tmp_path_factory.mktemp(f"corpus{seed}")
    config = CorpusConfig(output_dir=str(out), sign_languages=LANGUAGES, train_words=8, dev_words=3, test_words=3,
                          test_shifted_words=3, seed=seed, **STRESS_SIZES)
    return out, build_corpus(config)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return _build(tmp_path_factory, seed=0)


def test_sizes_and_manifest(corpus):
    out, entries = corpus
    assert len(entries) == len(LANGUAGES) * (8 + 3 + 3 + 3 + 4 * 3)
    assert read_manifest(out / "manifest.csv") == entries
    info = json.loads((out / "corpus.json").read_text())
    assert info["counts"]["ase"] == {"train": 8, "dev": 3, "test": 3, "test_shifted": 3, "test_slow": 3,
                                     "test_fast": 3, "test_flicker": 3, "test_left_handed": 3}


def test_splits_are_disjoint_in_words_and_spellings(corpus):
    _, entries = corpus
    for language in LANGUAGES:
        by_split = {}
        for e in entries:
            if e.sign_language == language:
                by_split.setdefault(e.split, set()).add(e.gloss)
        splits = list(by_split.values())
        for i in range(len(splits)):
            for j in range(i + 1, len(splits)):
                assert not splits[i] & splits[j]


def test_labels_match_the_letters_used(corpus, lexicon):
    _, entries = corpus
    for e in entries:
        letters = {c.gloss for c in lexicon.letters(e.sign_language)}
        assert set(e.gloss.split(" ")) <= letters
        spelled = [c for word in e.text.split(" ") for c in lexicon.spell(word, e.sign_language)]
        assert " ".join(c.gloss for c in spelled) == e.gloss
    greek = [e for e in entries if e.sign_language == "gss"]
    assert all(any("\u0370" <= ch <= "\u03ff" for ch in e.text) for e in greek)


def test_sample_length_follows_the_spelling(corpus):
    _, entries = corpus
    for e in entries[:10]:
        sample = read_pose_file(e.path)
        letters = len(e.gloss.split(" "))
        pauses = e.text.count(" ")  # at most 1.5 s each, between the words of a name
        # each letter lasts fps / letters_per_second frames: 1.4 .. 3.5 letters per second overall
        assert sample.fps / 3.5 * letters * 0.8 <= sample.num_frames <= (sample.fps / 1.4 * letters + 7 * letters
                                                                        + sample.fps * 1.5 * pauses)


def test_pose_files_and_pickle_agree(corpus):
    out, entries = corpus
    pkl = read_pickle(out / "data.pkl")
    for e in entries[:6]:
        from_pose = read_pose_file(e.path)
        from_pkl = pkl[e.id]
        np.testing.assert_allclose(from_pose.coords, from_pkl.coords, atol=1e-5)
        np.testing.assert_array_equal(from_pose.mask, from_pkl.mask)
        assert from_pose.resolution == from_pkl.resolution and from_pose.fps == pytest.approx(from_pkl.fps)
        assert from_pkl.labels["gloss"] == e.gloss and from_pkl.layout.name == "holistic_reduced_178"


def test_deterministic_for_a_seed(corpus, tmp_path_factory):
    out, entries = corpus
    out2, entries2 = _build(tmp_path_factory, seed=0)
    assert [(e.id, e.text, e.gloss) for e in entries] == [(e.id, e.text, e.gloss) for e in entries2]
    np.testing.assert_array_equal(read_pose_file(entries[0].path).coords, read_pose_file(entries2[0].path).coords)
    _, other = _build(tmp_path_factory, seed=1)
    assert [e.text for e in other] != [e.text for e in entries]


def test_shifted_split_lies_outside_training_conditions(corpus):
    _, entries = corpus
    samples = {e.id: read_pose_file(e.path) for e in entries}
    train = [samples[e.id] for e in entries if e.split == "train"]
    shifted = [samples[e.id] for e in entries if e.split == "test_shifted"]
    assert {s.resolution for s in shifted}.isdisjoint({s.resolution for s in train})
    assert {s.fps for s in shifted}.isdisjoint({s.fps for s in train})


def test_hands_go_missing_sometimes_and_are_masked(corpus):
    _, entries = corpus
    ase = [read_pose_file(e.path) for e in entries if e.sign_language == "ase" and e.split == "train"]
    right = ase[0].layout.component_slice("RIGHT_HAND_LANDMARKS")
    lost = [~s.mask[:, right].any(axis=1) for s in ase]
    assert 0 < np.mean(np.concatenate(lost)) < 0.5
    for s in ase:
        assert (s.coords[~s.mask] == 0).all()


def test_dataset_batches(corpus):
    out, _ = corpus
    entries = read_manifest(out / "manifest_pkl.csv", split="dev")
    ds = PoseDataset(entries, DataConfig(), target="text")
    batch = pad_batch([ds[i] for i in range(len(ds))])
    assert batch["pose"].shape[0] == len(entries) and batch["pose"].shape[2:] == (84, 2)
    lengths = batch["frame_mask"].sum(1)
    assert int(lengths.max()) == batch["pose"].shape[1] and int(lengths.min()) > 0
    assert not batch["point_mask"][~batch["frame_mask"]].any()
    assert batch["labels"] == [e.text for e in entries]


STRESS_LANGUAGES = ["ase", "ukl"]


def _stress_config(out, **sizes) -> CorpusConfig:
    base = dict(train_words=3, dev_words=1, test_words=2, test_shifted_words=1)
    stress = {f"{split}_words": 8 for split in STRESS_SPLITS}
    return CorpusConfig(output_dir=str(out), sign_languages=STRESS_LANGUAGES, seed=3, formats=["pkl"],
                        **{**base, **stress, **sizes})


@pytest.fixture(scope="module")
def stress_corpus(tmp_path_factory):
    """A corpus with larger stress splits, and per sample the letter spans ``spell_sequence`` gave it."""
    out = tmp_path_factory.mktemp("stress")
    entries, calls = build_recording_spellings(_stress_config(out))
    return out, entries, calls, read_pickle(out / "data.pkl")


def _signing_rate(sample, letters: int) -> float:
    """Letters per second over a single word's sample, transitions between letters included."""
    return letters * sample.fps / sample.num_frames


def test_slow_and_fast_splits_sign_at_their_speed(stress_corpus):
    out, entries, calls, samples = stress_corpus
    letter_rates: dict[str, list[float]] = {}
    signing_rates: dict[str, list[float]] = {}
    for e, call in zip(entries, calls):
        low, high = call["variation"].letters_per_second
        lengths = np.array([end - start for start, end in call["spans"]])
        assert (round(call["fps"] / high) <= lengths).all() and (lengths <= round(call["fps"] / low)).all()
        letter_rates.setdefault(e.split, []).extend(call["fps"] / lengths)
        if " " not in e.text:
            signing_rates.setdefault(e.split, []).append(_signing_rate(samples[e.id], len(e.gloss.split(" "))))
    assert 0.8 <= np.mean(letter_rates["test_slow"]) <= 1.2 and max(signing_rates["test_slow"]) < 1.25
    assert 5.5 <= np.mean(letter_rates["test_fast"]) <= 7.0 and min(signing_rates["test_fast"]) > 4.5
    assert 2.0 <= np.mean(letter_rates["test"]) <= 3.5 and 1.5 < min(signing_rates["test"]) < 3.5
    rates = json.loads((out / "corpus.json").read_text())["letters_per_second"]
    assert 0.8 <= rates["test_slow"]["letter"][1] <= 1.2 and 5.5 <= rates["test_fast"]["letter"][1] <= 7.0
    assert rates["test_fast"]["signing"][1] < rates["test_fast"]["letter"][1]  # transitions take time


def _short_losses_per_frame(sample, hand: slice) -> float:
    """Runs of 1-3 frames without the hand, per frame of the sample."""
    lost = ~sample.mask[:, hand].any(axis=1)
    edges = np.diff(np.concatenate([[0], lost.astype(int), [0]]))
    lengths = np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)
    return float(((lengths >= 1) & (lengths <= 3)).sum() / len(lost))


def test_flicker_split_loses_hands_for_a_few_frames_often(stress_corpus):
    _, entries, _, samples = stress_corpus
    right = samples[entries[0].id].layout.component_slice("RIGHT_HAND_LANDMARKS")
    rate = {split: np.mean([_short_losses_per_frame(samples[e.id], right) for e in entries if e.split == split])
            for split in ("test_flicker", "test_slow", "test_fast", "test")}
    assert rate["test_flicker"] > 0.03  # about one short loss every 30 frames or more
    assert rate["test_flicker"] > 3 * max(rate["test_slow"], rate["test_fast"], rate["test"])


def test_left_handed_split_signs_with_the_left_hand(stress_corpus):
    _, entries, _, samples = stress_corpus
    layout = samples[entries[0].id].layout
    hands = {side: layout.component_slice(f"{side.upper()}_HAND_LANDMARKS") for side in ("left", "right")}
    wrists = {side: layout.index("POSE_LANDMARKS", f"{side.upper()}_WRIST") for side in ("left", "right")}

    def path(sample, point: int) -> float:
        seen = sample.coords[sample.mask[:, point], point]
        return float(np.linalg.norm(np.diff(seen, axis=0), axis=-1).sum())

    for split, signing, resting in (("test_left_handed", "left", "right"), ("test", "right", "left")):
        for e in (e for e in entries if e.split == split):
            sample = samples[e.id]
            assert sample.mask[:, hands[signing]].any(axis=1).mean() > 0.5
            assert not sample.mask[:, hands[resting]].any()
            assert path(sample, wrists[signing]) > 1.3 * path(sample, wrists[resting])  # jitter moves both


def test_stress_splits_leave_the_other_splits_as_they_were(stress_corpus, tmp_path):
    out, entries, _, samples = stress_corpus
    without = build_corpus(_stress_config(tmp_path, **{f"{split}_words": 0 for split in STRESS_SPLITS}))
    assert {e.split for e in without} == set(BASE_SPLITS)
    assert set(json.loads((tmp_path / "corpus.json").read_text())["counts"]["ase"]) == set(BASE_SPLITS)
    base = [e for e in entries if e.split in BASE_SPLITS]
    assert [(e.id, e.text) for e in base] == [(e.id, e.text) for e in without]
    alone = read_pickle(tmp_path / "data.pkl")
    for e in base:
        np.testing.assert_array_equal(samples[e.id].coords, alone[e.id].coords)
        np.testing.assert_array_equal(samples[e.id].mask, alone[e.id].mask)
        assert samples[e.id].fps == alone[e.id].fps and samples[e.id].resolution == alone[e.id].resolution
    glosses = {split: {e.gloss for e in entries if e.split == split and e.sign_language == "ase"}
               for split in STRESS_SPLITS}
    assert all(len(g) == 8 for g in glosses.values())
    assert not set().union(*glosses.values()) & {e.gloss for e in base if e.sign_language == "ase"}
