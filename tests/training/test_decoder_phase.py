"""Stage 2 in two phases (--decoder_steps): the encoder and CTC head first, then the decoder on cached outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from signt5.cli import main
from signt5.data.augment import AugmentConfig
from signt5.data.cache import PreparedDataset, prepare_all, training_data_config
from signt5.data.dataset import DataConfig, pad_batch
from signt5.data.manifest import read_manifest
from signt5.data.sampler import BucketBatchSampler
from signt5.models.labels import model_inputs
from signt5.models.loading import load_run_model
from signt5.training.config import TrainConfig
from signt5.training.decoder_phase import ENCODER_PREFIXES, cache_encoder_outputs, freeze_for_phase

from ..conftest import tiny_train_args


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    out = {}
    for f in folder.glob("*.safetensors"):
        out.update(load_file(str(f)))
    return out


def _log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]


def test_phases_freeze_complementary_halves(tiny_model):
    model, _ = load_run_model(tiny_model / "checkpoint-best")
    names = {phase: set() for phase in ("encoder", "decoder")}
    for phase in names:
        freeze_for_phase(model, phase)
        names[phase] = {n for n, p in model.named_parameters() if p.requires_grad}
    everything = {n for n, _ in model.named_parameters()}
    assert names["encoder"] and names["decoder"]
    assert names["encoder"] | names["decoder"] == everything and not names["encoder"] & names["decoder"]
    assert all(n.startswith(ENCODER_PREFIXES) for n in names["encoder"])
    assert any(n.startswith("decoder.") for n in names["decoder"])
    with pytest.raises(ValueError, match="phase"):
        freeze_for_phase(model, "both")


def test_ctc_only_is_the_ctc_loss_and_leaves_the_decoder_out(tiny_model, tiny_corpus):
    model, tokenizer = load_run_model(tiny_model / "checkpoint-best")
    model.eval()
    manifest = tiny_corpus / "manifest.csv"
    samples = prepare_all(read_manifest(manifest, "train")[:3], training_data_config(DataConfig.from_dict(
        model.config.data)))
    inputs = model_inputs(pad_batch(samples.items("gloss")), model.config, tokenizer, "cpu", 64)
    loss = model(**inputs, ctc_only=True).loss
    encoded = model.encoder(inputs["pose"], inputs["point_mask"], inputs["frame_mask"], inputs["sign_language_ids"])
    log_probs = model.ctc_head(encoded.last_hidden_state).log_softmax(-1)
    expected = model.ctc_loss(log_probs, encoded.attention_mask, inputs["labels"], inputs["sign_language_ids"])
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert all(p.grad is None for n, p in model.named_parameters() if n.startswith("decoder."))
    assert model.encoder.projection.weight.grad is not None


def test_cached_outputs_are_the_encoders_over_augmented_passes(tiny_model, tiny_corpus):
    model, tokenizer = load_run_model(tiny_model / "checkpoint-best")
    config = TrainConfig(decoder_passes=2, batch_size=4, decoder_steps=1)
    samples = prepare_all(read_manifest(tiny_corpus / "manifest.csv", "train"),
                          training_data_config(DataConfig.from_dict(model.config.data)))
    dataset = PreparedDataset(samples, "gloss", AugmentConfig(), seed=0)
    sampler = BucketBatchSampler(samples.lengths(), 4, shuffle=True, seed=0)
    model.train()
    batches = cache_encoder_outputs(model, tokenizer, dataset, sampler, config, torch.device("cpu"), first_epoch=3)
    assert model.training  # left in the mode it was in
    assert len(batches) == 2 * len(sampler)
    assert sorted(i for b in batches for i in b.ids) == sorted(2 * [e.id for e in samples.entries])
    # the first batch again, by hand: epoch 3's augmentation, the encoder in eval mode
    dataset.set_epoch(3)
    sampler.set_epoch(3, dataset.epoch_lengths())
    keys = dataset.with_speeds(list(sampler))[0]
    inputs = model_inputs(pad_batch([dataset[k] for k in keys]), model.config, tokenizer, "cpu", 64)
    model.eval()
    with torch.no_grad():
        encoded = model.encoder(inputs["pose"], inputs["point_mask"], inputs["frame_mask"],
                                inputs["sign_language_ids"])
        memory = model.encoder.project(batches[0].features.float(), batches[0].mask)
    first = batches[0]
    assert first.features.dtype == torch.float16 and torch.equal(first.labels, inputs["labels"])
    torch.testing.assert_close(memory.last_hidden_state, encoded.last_hidden_state, rtol=2e-3, atol=2e-3)
    assert torch.equal(first.mask, encoded.attention_mask)


def test_cached_batches_in_parts_equal_the_whole(tiny_model, tiny_corpus, monkeypatch):
    """Over the frame budget the encoder runs a batch in parts, padded back together: the same samples, features,
    masks and labels as the whole batch at once."""
    model, tokenizer = load_run_model(tiny_model / "checkpoint-best")
    samples = prepare_all(read_manifest(tiny_corpus / "manifest.csv", "train"),
                          training_data_config(DataConfig.from_dict(model.config.data)))
    import signt5.training.decoder_phase as decoder_phase

    part_counts = []
    real_split = decoder_phase.split_batch
    monkeypatch.setattr(decoder_phase, "split_batch", lambda *a: part_counts.append(len(real_split(*a))) or real_split(*a))
    cached = {}
    for budget in (0, 40):
        config = TrainConfig(decoder_passes=1, batch_size=8, decoder_steps=1, max_batch_frames=budget)
        dataset = PreparedDataset(samples, "gloss", AugmentConfig(), seed=0)
        sampler = BucketBatchSampler(samples.lengths(), 8, shuffle=True, seed=0)
        cached[budget] = cache_encoder_outputs(model, tokenizer, dataset, sampler, config, torch.device("cpu"), 0)
    whole, parts = cached[0], cached[40]
    assert len(whole) == len(parts) and max(part_counts) > 1  # some batch did run in parts
    for a, b in zip(whole, parts):
        assert sorted(a.ids) == sorted(b.ids) and b.mask.dtype == torch.bool
        for i, sample in enumerate(a.ids):
            j = b.ids.index(sample)
            frames, tokens = int(a.mask[i].sum()), int(a.labels[i].ne(-100).sum())
            assert int(b.mask[j].sum()) == frames and int(b.labels[j].ne(-100).sum()) == tokens
            torch.testing.assert_close(b.features[j, :frames].float(), a.features[i, :frames].float(),
                                       rtol=2e-3, atol=2e-3)
            assert torch.equal(b.labels[j, :tokens], a.labels[i, :tokens])
            assert b.sign_language_ids[j] == a.sign_language_ids[i]


def test_two_phase_run(tiny_corpus, tiny_pose_config, tmp_path):
    """The epochs move the encoder and CTC head and not the decoder, and evaluate CTC alone; the decoder phase moves
    the decoder alone, on the best checkpoint's encoder, and picks the decoding from every one on dev."""
    out = tmp_path / "run"
    args = tiny_train_args(tiny_corpus, tiny_pose_config, out, "--max_steps", "4", "--max_eval_samples", "3",
                           "--decoder_steps", "5", "--decoder_passes", "1", "--lr", "1e-2", "--decoder_splice", "0.5",
                           "--label_smoothing", "0.1", "--aligned_attention_slope", "2", "--decoder_splice_pieces", "3")
    assert main(["train", *args, "--stop_after_steps", "1"]) == 0
    first = _weights(out / "checkpoint-last")
    assert main(["train", *args, "--stop_after_steps", "1", "--resume"]) == 0
    second = _weights(out / "checkpoint-last")
    encoder = [k for k in first if k.startswith(ENCODER_PREFIXES)]
    decoder = [k for k in first if k.startswith("decoder.")]
    assert any(not torch.equal(first[k], second[k]) for k in encoder)
    assert all(torch.equal(first[k], second[k]) for k in decoder)
    assert all("cer_attention" not in r and "cer_ctc" in r for r in _log(out))  # the decoder has not trained
    assert not any(r.get("phase") == "decoder" for r in _log(out))

    assert main(["train", *args, "--resume"]) == 0
    final, best = _weights(out / "checkpoint-last"), _weights(out / "checkpoint-best")
    assert any(not torch.equal(second[k], final[k]) for k in decoder)
    assert all(torch.equal(best[k], final[k]) for k in final)  # the decoder phase's model is the run's best
    record = _log(out)[-1]
    assert record["phase"] == "decoder" and record["step"] == 4 + 5
    assert {"cer_attention", "cer_ctc", "cer_joint"} <= set(record)
    saved = json.loads((out / "checkpoint-best" / "config.json").read_text())
    chosen = saved["decoding"]
    assert saved["label_smoothing"] == 0.1  # the model's own loss, carried by its checkpoint
    assert saved["aligned_attention_slope"] == 2.0  # so is its cross-attention bias
    train_config = json.loads((out / "train_config.json").read_text())
    assert train_config["decoder_splice"] == 0.5 and train_config["decoder_splice_pieces"] == 3
    assert chosen in ("attention", "ctc", "joint") and record["cer"] == record[f"cer_{chosen}"]

    records = _log(out)
    assert main(["train", *args, "--resume"]) == 0  # finished: nothing more to do
    assert _log(out) == records
    assert all(torch.equal(final[k], v) for k, v in _weights(out / "checkpoint-last").items())


def test_decoder_steps_need_a_ctc_head_in_stage_two():
    with pytest.raises(ValueError, match="decoder_steps"):
        TrainConfig(decoder_steps=10, ctc_weight=0.0)
    with pytest.raises(ValueError, match="decoder_steps"):
        TrainConfig(stage="pretrain", decoder_steps=10)
    with pytest.raises(ValueError, match="decoder_passes"):
        TrainConfig(decoder_steps=10, decoder_passes=0)


def test_load_weights_copies_a_runs_encoder_and_names_a_missing_one(tiny_model, tmp_path):
    """The decoder phase takes the best checkpoint's encoder and CTC head from its safetensors alone."""
    import shutil

    from safetensors.torch import save_file

    from signt5.errors import SignT5Error
    from signt5.models.loading import load_weights

    model, _ = load_run_model(tiny_model / "checkpoint-best")
    saved = _weights(tiny_model / "checkpoint-best")
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            parameter.add_(1.0)
    load_weights(model, tiny_model / "checkpoint-best", ENCODER_PREFIXES, "pose encoder and CTC head")
    state = model.state_dict()
    assert all(torch.equal(state[k], saved[k]) for k in saved if k.startswith(ENCODER_PREFIXES))
    decoder = [k for k in saved if k.startswith("decoder.")]
    assert decoder and not any(torch.equal(state[k], saved[k]) for k in decoder)  # outside the prefixes: untouched

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model / "checkpoint-best", broken)
    for f in broken.glob("*.safetensors"):
        f.unlink()
    dropped = "ctc_head.weight"
    save_file({k: v.contiguous() for k, v in saved.items() if k != dropped}, str(broken / "model.safetensors"))
    with pytest.raises(SignT5Error, match=dropped):
        load_weights(model, broken, ENCODER_PREFIXES, "pose encoder and CTC head")


def test_cached_alignment_and_trimmed_frames_give_the_forwards_loss(tiny_model, tiny_corpus):
    """A cached batch holds no all-padding frames and the labels' CTC alignment, computed once: the decoder's loss
    from it equals the loss of a forward that aligns afresh on the untrimmed frames."""
    model, tokenizer = load_run_model(tiny_model / "checkpoint-best")
    assert model.config.positions == "ctc" and model.ctc_head is not None
    samples = prepare_all(read_manifest(tiny_corpus / "manifest.csv", "train"),
                          training_data_config(DataConfig.from_dict(model.config.data)))
    config = TrainConfig(decoder_passes=1, batch_size=4, decoder_steps=1)
    dataset = PreparedDataset(samples, "gloss", AugmentConfig(), seed=0)
    sampler = BucketBatchSampler(samples.lengths(), 4, shuffle=True, seed=0)
    batches = cache_encoder_outputs(model, tokenizer, dataset, sampler, config, torch.device("cpu"), 0,
                                    frame_multiple=32)
    freeze_for_phase(model, "decoder")
    model.train()
    for batch in batches:
        assert batch.mask[:, -1].any() and batch.alignment is not None
        padded_features = torch.nn.functional.pad(batch.features, (0, 0, 0, 16))  # as the encoder padded them
        padded_mask = torch.nn.functional.pad(batch.mask, (0, 16), value=False)
        with torch.no_grad():
            encoded = model.encoder.project(padded_features.float(), padded_mask)
            torch.manual_seed(1)  # the random count offsets of positions ctc
            fresh = model(encoder_outputs=encoded, labels=batch.labels,
                          sign_language_ids=batch.sign_language_ids).loss
            torch.manual_seed(1)
            cached = batch.forward(model)
        torch.testing.assert_close(cached, fresh)


def test_a_frozen_ctc_head_on_a_frozen_memory_adds_no_loss(tiny_model, tiny_corpus):
    """In the decoder phase the CTC loss is a constant: training leaves it out; with the head trainable it counts."""
    model, tokenizer = load_run_model(tiny_model / "checkpoint-best")
    samples = prepare_all(read_manifest(tiny_corpus / "manifest.csv", "train")[:3],
                          training_data_config(DataConfig.from_dict(model.config.data)))
    inputs = model_inputs(pad_batch(samples.items("gloss")), model.config, tokenizer, "cpu", 64)
    with torch.no_grad():
        encoded = model.encoder(inputs["pose"], inputs["point_mask"], inputs["frame_mask"], inputs["sign_language_ids"])
        ctc = model(encoder_outputs=encoded, labels=inputs["labels"], ctc_only=True,
                    sign_language_ids=inputs["sign_language_ids"]).loss
    model.train()
    losses = {}
    for phase in ("decoder", "both"):
        if phase == "decoder":
            freeze_for_phase(model, "decoder")
        else:
            model.requires_grad_(True)
        torch.manual_seed(1)
        losses[phase] = model(encoder_outputs=encoded, labels=inputs["labels"],
                              sign_language_ids=inputs["sign_language_ids"]).loss
    assert ctc > 0
    torch.testing.assert_close(losses["both"] - losses["decoder"], model.config.ctc_weight * ctc)
