"""Shared tiny fixtures: real lexicon clips, fake poses with real headers, a tiny corpus."""

from __future__ import annotations

import numpy as np
import pytest

from signt5.data.layout import KeypointLayout, layout_by_name
from signt5.data.lexicon import FingerspellingLexicon
from signt5.data.readers import read_pose_file
from signt5.data.sample import PoseSample


@pytest.fixture(scope="session")
def lexicon() -> FingerspellingLexicon:
    return FingerspellingLexicon.load()


@pytest.fixture(scope="session")
def real_clip_path(lexicon):
    """A real MediaPipe Holistic recording (ASL letter A), 586 points, 500x500 pixels."""
    return lexicon.letters("ase")[0].path


@pytest.fixture()
def real_clip(real_clip_path) -> PoseSample:
    return read_pose_file(real_clip_path)


def make_sample(layout: KeypointLayout | str, frames: int = 12, seed: int = 0, fps: float = 25.0) -> PoseSample:
    """Random points inside a 640x480 frame, all present, in a known layout."""
    layout = layout_by_name(layout) if isinstance(layout, str) else layout
    rng = np.random.default_rng(seed)
    coords = rng.uniform(50, 400, size=(frames, layout.num_points, 2)).astype(np.float32)
    mask = np.ones((frames, layout.num_points), dtype=bool)
    return PoseSample(coords, mask, fps, layout, (640, 480), "pixels", f"fake-{seed}", "memory")


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """A real fingerspelling corpus in miniature: 2 sign languages, 6/2/2/2 words, no stress splits, .pose + .pkl."""
    from signt5.data.fingerspelling import STRESS_SPLITS, CorpusConfig, build_corpus

    out = tmp_path_factory.mktemp("tiny_corpus")
    build_corpus(CorpusConfig(output_dir=str(out), sign_languages=["ase", "ukl"], train_words=6, dev_words=2,
                              test_words=2, test_shifted_words=2, seed=0,
                              **{f"{split}_words": 0 for split in STRESS_SPLITS}))
    return out


@pytest.fixture(scope="session")
def tiny_pose_config(tmp_path_factory):
    """A pose encoder small enough to train for a few steps in a test."""
    from signt5.models.pose_encoder import PoseEncoderConfig

    path = tmp_path_factory.mktemp("configs") / "pose_tiny.json"
    PoseEncoderConfig(gcn_channels=8, gcn_layers=1, d_model=32, n_layers=1, n_heads=2, dropout=0.1).to_json(path)
    return path


def tiny_train_args(corpus, pose_config, output_dir, *extra: str) -> list[str]:
    """CLI flags for a few-step run on the tiny corpus with tiny models."""
    return ["--manifest", str(corpus / "manifest.csv"), "--output_dir", str(output_dir), "--pose_config",
            str(pose_config), "--text_config", "tiny", "--umt5_dir", str(output_dir / "no-umt5"), "--batch_size",
            "4", "--num_workers", "0", "--epochs", "2", *extra]


@pytest.fixture(scope="session")
def tiny_model(tiny_corpus, tiny_pose_config, tmp_path_factory):
    """A run folder (checkpoint-best + checkpoint-last) of a tiny model trained for 2 steps.

    Trained once per session through the real ``train`` command, so evaluate and infer tests load exactly
    what a user's run saves; its output is near-random, so tests check plumbing and consistency, not quality.
    """
    from signt5.cli import main

    out = tmp_path_factory.mktemp("tiny_model") / "run"
    assert main(["train", *tiny_train_args(tiny_corpus, tiny_pose_config, out, "--max_steps", "2")]) == 0
    return out


@pytest.fixture(scope="session")
def speaking_model(tiny_model, tiny_corpus, tmp_path_factory):
    """The tiny model with a CTC head that spells letters from the pose, and CTC as its decoding.

    The 2-step model decodes most samples to "", so two code paths that both gave "" would look alike. Here the
    CTC head is redrawn at random over the encoder's output centred and scaled on the tiny corpus (with and
    without sign languages), so each sample gets a non-empty text of its own, which changes with any frame the
    encoder reads. Its decoder is the tiny model's: attention decoding still gives "" (decoding is tested on
    its own in tests/decoding and tests/models).
    """
    import torch

    from signt5.data.dataset import pad_batch
    from signt5.data.readers import read_samples
    from signt5.decoding.predictor import Predictor
    from signt5.models.labels import model_inputs
    from signt5.models.loading import load_run_model

    model, tokenizer = load_run_model(tiny_model)
    items = [Predictor(model, tokenizer, tiny_model).prepare(s) for s in read_samples(tiny_corpus / "data.pkl").values()]
    frames = []
    with torch.no_grad():
        for language in ["", *model.config.sign_languages]:
            batch = pad_batch([{**item, "sign_language": language} for item in items])
            out = model.get_encoder()(**model_inputs(batch, model.config))
            frames.append(out.last_hidden_state[out.attention_mask.bool()])
        frames = torch.cat(frames)
        mean, std = frames.mean(0), frames.std(0) + 1e-6
        generator = torch.Generator().manual_seed(0)
        weight = torch.randn(model.ctc_head.weight.shape, generator=generator) * 3 / std
        model.ctc_head.weight.copy_(weight)
        model.ctc_head.bias.copy_(-weight @ mean)
        model.ctc_head.bias[0] -= 1e4  # no blank: a letter on every frame, repeats merged
    model.config.decoding = "ctc"
    out = tmp_path_factory.mktemp("speaking_model") / "run"
    model.save_pretrained(out / "checkpoint-best")
    tokenizer.save_pretrained(out / "checkpoint-best")
    return out


def build_recording_spellings(config) -> tuple[list, list[dict]]:
    """Build a corpus, and per sample what ``spell_sequence`` gave it (the builder calls it once per sample)."""
    from signt5.data import fingerspelling

    calls = []
    spell_sequence = fingerspelling.spell_sequence

    def spy(words, rng, v, fps):
        result = spell_sequence(words, rng, v, fps)
        calls.append({"words": [len(w) for w in words], "fps": fps, "spans": result[2], "pauses": result[3],
                      "frames": len(result[0]), "variation": v})
        return result

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fingerspelling, "spell_sequence", spy)
        entries = fingerspelling.build_corpus(config)
    assert len(calls) == len(entries)
    return entries, calls

