"""Spliced words for the decoder phase: frames, labels and alignment cut at one letter boundary and joined."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from signt5.data.augment import AugmentConfig
from signt5.data.cache import PreparedDataset, prepare_all, training_data_config
from signt5.data.dataset import DataConfig
from signt5.data.manifest import read_manifest
from signt5.data.sampler import BucketBatchSampler
from signt5.models.loading import load_run_model
from signt5.training.config import TrainConfig
from signt5.training.decoder_phase import CachedBatch, cache_encoder_outputs, train_decoder
from signt5.training.distributed import Distributed
from signt5.training.splice import SpliceRow, Splicer, splice, splice_rows, stack_rows

EOS, SPACE = 1, 35  # the byte vocabulary's end-of-sequence and " " (32 + 3)


def _word(letters: str, path: list[int], name: str) -> SpliceRow:
    """A gloss row "A B C": letter tokens, spaces between, end-of-sequence; frame f's feature is (f, name's id)."""
    labels, units = [], []
    for k, letter in enumerate(letters):
        if k:
            labels.append(SPACE)
            units.append(-(k + 1))
        labels.append(ord(letter) + 3)
        units.append(k)
    labels.append(EOS)
    units.append(-(len(letters) + 1))
    features = torch.stack([torch.arange(len(path), dtype=torch.float32), torch.full((len(path),), float(ord(name)))], 1)
    return SpliceRow(features, labels, path, units, 4, name)


def test_splice_cuts_where_a_letter_starts_and_renumbers_the_rest():
    first = _word("ABC", [-1, 0, 0, -1, 1, 1, -1, 2, -1], "a")
    second = _word("XYZ", [0, 0, -1, 1, -1, -1, 2, 2], "b")
    row = splice(first, second, keep=2, skip=1)  # A B + Y Z
    assert bytes(t - 3 for t in row.labels if t != EOS).decode() == "A B Y Z" and row.labels[-1] == EOS
    assert row.path == [-1, 0, 0, -1, 1, 1, -1, 2, -1, -1, 3, 3]  # a's frames before its first C, b's from its first Y
    assert row.units == [0, -2, 1, -3, 2, -4, 3, -5]
    assert row.features[:, 1].tolist() == [ord("a")] * 7 + [ord("b")] * 5
    assert row.features[:, 0].tolist() == [0, 1, 2, 3, 4, 5, 6, 3, 4, 5, 6, 7]
    assert row.letters == 4 and row.sample_id == "a+b"
    whole_tail = splice(first, second, keep=1, skip=0)  # A + X Y Z
    assert whole_tail.path == [-1, 0, 0, -1] + [u + 1 if u >= 0 else -1 for u in second.path]
    assert whole_tail.letters == 4
    with pytest.raises(ValueError, match="cut"):
        splice(first, second, keep=3, skip=0)  # the first word must lose at least one letter


def test_spliced_batches_carry_the_alignment_the_model_would_find(tiny_model, tiny_corpus):
    """On a tiny model's cached outputs, every spliced row's token units are the model's own walk over its new
    labels, its path covers its frames and reads its letters in order, and its loss is finite."""
    model, tokenizer = load_run_model(tiny_model / "checkpoint-best")
    samples = prepare_all(read_manifest(tiny_corpus / "manifest.csv", "train"),
                          training_data_config(DataConfig.from_dict(model.config.data)))
    config = TrainConfig(decoder_passes=1, batch_size=4, decoder_steps=1)
    dataset = PreparedDataset(samples, "gloss", AugmentConfig(), seed=0)
    sampler = BucketBatchSampler(samples.lengths(), 4, shuffle=True, seed=0)
    batches = cache_encoder_outputs(model, tokenizer, dataset, sampler, config, torch.device("cpu"), 0)
    rows = splice_rows(batches, 64)
    assert len(rows) == len(samples.entries)  # every gloss sample can be cut
    glosses = {e.id: e.label("gloss").split() for e in samples.entries}
    splicer = Splicer(rows, 64)
    batch = CachedBatch(**stack_rows(splicer.draw(6, np.random.default_rng(0))))
    assert batch.features.dtype == torch.float16
    for i, ((path, units), sample_id) in enumerate(zip(batch.alignment, batch.ids)):
        assert units == model.token_units(batch.labels[i:i + 1], batch.sign_language_ids[i:i + 1])[0]
        assert len(path) == int(batch.mask[i].sum())
        letters = [u for u in path if u >= 0]
        assert letters == sorted(letters) and sorted(set(letters)) == list(range(max(u for u in units if u is not None) + 1))
        text = tokenizer.decode([t for t in batch.labels[i].tolist() if t >= 0], skip_special_tokens=True).split()
        if "+" in sample_id:  # a's first letters, then b's last ones
            a, b = (glosses[s] for s in sample_id.split("+"))
            cut = next(k for k in range(1, len(text)) if text[:k] == a[:k] and text[k:] == b[len(b) - len(text) + k:])
            assert 1 <= cut < len(a)
    model.train()
    assert torch.isfinite(batch.forward(model))


def test_the_decoder_phase_trains_on_spliced_batches(tiny_model, tiny_corpus):
    model, tokenizer = load_run_model(tiny_model / "checkpoint-best")
    samples = prepare_all(read_manifest(tiny_corpus / "manifest.csv", "train"),
                          training_data_config(DataConfig.from_dict(model.config.data)))
    config = TrainConfig(decoder_passes=1, batch_size=4, decoder_steps=3, decoder_splice=1.0, lr=1e-3)
    dataset = PreparedDataset(samples, "gloss", AugmentConfig(), seed=0)
    sampler = BucketBatchSampler(samples.lengths(), 4, shuffle=True, seed=0)
    batches = cache_encoder_outputs(model, tokenizer, dataset, sampler, config, torch.device("cpu"), 0)
    before = {k: v.clone() for k, v in model.decoder.state_dict().items()}
    loss = train_decoder(model, batches, config, Distributed())
    assert np.isfinite(loss)
    assert any(not torch.equal(before[k], v) for k, v in model.decoder.state_dict().items())


def test_decoder_splice_is_a_share():
    with pytest.raises(ValueError, match="decoder_splice"):
        TrainConfig(decoder_splice=1.5)
    with pytest.raises(ValueError, match="decoder_splice_pieces"):
        TrainConfig(decoder_splice_pieces=1)


def test_a_word_of_three_pieces_takes_a_run_of_letters_from_the_middle_one():
    first = _word("ABC", [-1, 0, 0, -1, 1, 1, -1, 2, -1], "a")
    middle = _word("MNOP", [0, -1, 1, 1, 2, -1, 3], "b")
    last = _word("XYZ", [0, 0, -1, 1, -1, -1, 2, 2], "c")
    pieces = [(first, 0, 1), (middle, 1, 3), (last, 2, 3)]  # A + N O + Z
    row = Splicer._join(pieces)
    assert bytes(t - 3 for t in row.labels if t != EOS).decode() == "A N O Z" and row.sample_id == "a+b+c"
    assert row.path == [-1, 0, 0, -1] + [1, 1, 2, -1] + [3, 3]  # b's frames from its first N to its first P
    assert row.features[:, 1].tolist() == [ord("a")] * 4 + [ord("b")] * 4 + [ord("c")] * 2
    assert row.units == [0, -2, 1, -3, 2, -4, 3, -5]
    assert Splicer._frames(pieces) == len(row.path)


def test_spliced_words_of_many_pieces_read_their_letters_in_order():
    """Whatever the draw: every piece's letters in order, the planned frame count the spliced one, at most
    ``pieces`` source words, and a partner too short to cut ends the word early."""
    rng = np.random.default_rng(0)
    rows = [_word("ABCDEFG"[: 1 + n % 7], [k for k in range(1 + n % 7) for _ in range(1 + (n + k) % 3)] + [-1],
                  chr(65 + n % 26)) for n in range(30)]
    splicer = Splicer(rows, 64, pieces=4)
    sources = set()
    for _ in range(100):
        pieces = splicer._plan(rows[int(rng.integers(len(rows)))], rng)
        row = Splicer._join(pieces)
        assert Splicer._frames(pieces) == len(row.path) == len(row.features)
        letters = [u for u in row.path if u >= 0]
        assert letters == sorted(letters) and sorted(set(letters)) == list(range(row.letters))
        assert row.letters == sum(end - start for _, start, end in pieces)
        sources.add(len(pieces))
    assert sources == {1, 2, 3, 4}  # one-letter first words stay whole; short partners end words early


def test_a_spliced_batch_is_words_of_similar_length():
    """Drawn from a pool four times the batch and cut by length: less than half the spread of words drawn alone."""
    rng = np.random.default_rng(0)
    rows = []
    for n in range(40):
        letters = "ABCDEFGHIJ"[: 2 + n % 8]
        path = [k for k in range(len(letters)) for _ in range(1 + (n * 7 + k) % 5)]
        rows.append(_word(letters, path, chr(65 + n % 26)))
    splicer = Splicer(rows, 64)
    spreads, pool_spreads = [], []
    for _ in range(50):
        batch = splicer.draw(8, rng)
        assert len(batch) == 8
        lengths = [len(row.path) for row in batch]
        spreads.append(max(lengths) - min(lengths))
        pool_spreads.append(np.ptp([len(r.path) for r in splicer.draw(32, rng, pool=1)]))
    assert np.mean(spreads) < 0.5 * np.mean(pool_spreads)
