"""The fingerspelling corpus: disjoint splits, labels matching the letters used, determinism, real variation."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from signt5.data.dataset import DataConfig, PoseDataset, pad_batch
from signt5.data.fingerspelling import CorpusConfig, build_corpus
from signt5.data.lexicon import fold_text
from signt5.data.manifest import read_manifest
from signt5.data.readers import read_pickle, read_pose_file

LANGUAGES = ["ase", "gss"]


def _build(tmp_path_factory, seed):
    out = tmp_path_factory.mktemp(f"corpus{seed}")
    config = CorpusConfig(output_dir=str(out), sign_languages=LANGUAGES, train_words=8, dev_words=3, test_words=3,
                          test_shifted_words=3, seed=seed)
    return out, build_corpus(config)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return _build(tmp_path_factory, seed=0)


def test_sizes_and_manifest(corpus):
    out, entries = corpus
    assert len(entries) == len(LANGUAGES) * (8 + 3 + 3 + 3)
    assert read_manifest(out / "manifest.csv") == entries
    info = json.loads((out / "corpus.json").read_text())
    assert info["counts"]["ase"] == {"train": 8, "dev": 3, "test": 3, "test_shifted": 3}


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
