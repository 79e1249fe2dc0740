"""Signing-rate normalisation: the training rate a run records, the factor that brings a sample to it, and the
predictor resampling only the samples signed outside the band."""

from __future__ import annotations

import numpy as np
import pytest

from signt5.data.item import pose_item
from signt5.data.manifest import read_manifest
from signt5.data.readers import read_samples
from signt5.decoding.predictor import Predictor
from signt5.decoding.rate import MAX_FACTOR, letter_count, median_signing_rate, rate_factor, stretch_item


def test_letters_of_a_gloss_and_of_a_text():
    assert letter_count("S C H U L Z", "gloss") == 6 and letter_count("SCH U L Z", "gloss") == 4
    assert letter_count("Bad Vöslau", "text") == 9


@pytest.mark.parametrize("letters, frames", [(5, 250), (12, 40), (3, 30)])
def test_the_factor_brings_the_rate_to_the_reference_outside_the_band_only(letters, frames):
    fps, reference, band = 25.0, 2.5, 1.5
    rate = letters * fps / frames  # 0.5, 7.5 and 2.5 letters/s
    factor = rate_factor(letters, frames, fps, reference, band)
    if reference / band <= rate <= reference * band:
        assert factor == 1.0
    else:
        assert letters * fps / (frames * factor) == pytest.approx(reference)
    assert rate_factor(letters, frames, fps, reference, band=0.0) == 1.0  # off
    assert rate_factor(0, frames, fps, reference, band) == 1.0  # nothing read: nothing to measure


def test_the_factor_is_bounded():
    assert rate_factor(1, 10_000, 25.0, 2.5, 1.5) == pytest.approx(1 / MAX_FACTOR)
    assert rate_factor(500, 10, 25.0, 2.5, 1.5) == pytest.approx(MAX_FACTOR)


def test_stretching_keeps_the_sample_and_its_missing_points():
    rng = np.random.default_rng(0)
    coords, mask = rng.normal(size=(20, 5, 2)).astype(np.float32), np.ones((20, 5), bool)
    mask[8:12, 2] = False  # a point lost for 4 frames
    item = pose_item("s1", coords, mask, "A B", "ase", "x.pose")
    slow = stretch_item(item, 0.5)
    assert slow["pose"].shape == (10, 5, 2)
    assert (slow["id"], slow["label"], slow["sign_language"]) == ("s1", "A B", "ase")
    fast = stretch_item(item, 3.0)
    assert fast["pose"].shape[0] == 60
    lost = np.linspace(0, 19, 60)[~fast["mask"][:, 2]]
    assert lost.min() > 7 and lost.max() < 12  # still missing around frames 8-11, nowhere else
    assert np.array_equal(fast["pose"][0], coords[0]) and np.array_equal(fast["pose"][-1], coords[-1])


def test_a_run_records_its_training_rate(tiny_model, tiny_corpus):
    predictor = Predictor.load(tiny_model)
    fps = predictor.data_config.target_fps
    entries = read_manifest(tiny_corpus / "manifest.csv", split="train")
    samples = read_samples(tiny_corpus / "data.pkl")
    rates = []
    for entry in entries:
        frames = predictor.prepare(samples[entry.key]).get("pose").shape[0]
        rates.append(len(entry.gloss.split()) / (frames / fps))
    assert predictor.model.config.signing_rate == pytest.approx(float(np.median(rates)))
    assert median_signing_rate(["", "A B"], [10, 0], fps, "gloss") is None


def test_the_predictor_resamples_only_samples_outside_the_band(speaking_model, tiny_corpus):
    predictor = Predictor.load(speaking_model)
    items = [predictor.prepare(s) for s in read_samples(tiny_corpus / "data.pkl").values()]
    predictor.rate_band = 0.0
    unchanged, first_pass = predictor.normalise_rates(items)
    assert first_pass is None and all(a is b for a, b in zip(unchanged, items))  # off: untouched
    texts, _ = predictor.predict_items(items, decoding="ctc")
    fps = predictor.data_config.target_fps
    rates = [letter_count(t, "gloss") * fps / item["pose"].shape[0] for t, item in zip(texts, items)]
    assert min(rates) > 0
    # a reference between the samples' rates: those within 1.5x of it stay, the others are brought to it
    reference, band = float(np.median(rates)), 1.5
    predictor.model.config.signing_rate, predictor.rate_band = reference, band
    out, first_pass = predictor.normalise_rates(items)
    assert 0 < first_pass.count(None) < len(items)
    for item, rate, new, text, ctc in zip(items, rates, out, first_pass, texts):
        frames = item["pose"].shape[0]
        if reference / band <= rate <= reference * band:
            assert new is item and text == ctc
        else:
            assert text is None
            factor = float(np.clip(rate / reference, 1 / MAX_FACTOR, MAX_FACTOR))
            assert new["pose"].shape[0] == max(4, round(frames * factor))
    # CTC decoding keeps the first pass's texts and re-decodes the resampled samples alone: the same texts as
    # decoding the normalised items from scratch
    normalised = predictor.predict_items(items, decoding="ctc")[0]
    predictor.rate_band = 0.0
    assert normalised == predictor.predict_items(out, decoding="ctc")[0] != texts
    predictor.rate_band = band
    predictor.model.config.signing_rate = None  # a checkpoint from before: nothing to normalise to
    unchanged, first_pass = predictor.normalise_rates(items)
    assert first_pass is None and all(a is b for a, b in zip(unchanged, items))


@pytest.mark.parametrize("value, ok", [("0", True), ("2", True), ("1.5", True), ("1", False), ("0.5", False),
                                       ("-2", False)])
def test_the_band_flag_is_off_or_above_one(value, ok):
    from signt5.cli import build_parser

    parser = build_parser()
    if ok:
        assert parser.parse_args(["evaluate", "--rate_band", value]).rate_band == float(value)
    else:
        with pytest.raises(SystemExit):
            parser.parse_args(["evaluate", "--rate_band", value])
