"""SignT5 models with tiny configs and random weights: loss, generate, save/load, gradients, text side."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import LogitsProcessor, LogitsProcessorList, UMT5ForConditionalGeneration

from signt5.data.dataset import DataConfig, pad_batch, prepare_sample
from signt5.data.item import pose_item
from signt5.models.configuration import SignT5Config, build_config
from signt5.models.contrastive import SignT5ForContrastivePretraining
from signt5.models.labels import model_inputs
from signt5.models.modeling import SignT5ForConditionalGeneration
from signt5.models.pose_encoder import PoseEncoderConfig
from signt5.models.text import (BYTE_VOCAB_SIZE, IGNORE_INDEX, byte_tokenizer, load_tokenizer, pretrained_umt5_dir,
                                tokenize_targets, umt5_config)

from ..conftest import make_sample

LANGUAGES = ["ase", "gsg", "bfi"]
TEXTS = ["hello", "Straße", "мир"]


def tiny_config(**kwargs) -> SignT5Config:
    pose = PoseEncoderConfig(d_model=32, n_layers=1, n_heads=4, gcn_channels=8, gcn_layers=1, dropout=0.0)
    return build_config(pose, umt5_config("tiny"), sign_languages=LANGUAGES, contrastive_dim=16, **kwargs)


@pytest.fixture(scope="module")
def batch():
    """A real pad_batch of prepared fake samples (lengths 9, 14, 6)."""
    items = []
    for i, (frames, text, language) in enumerate(zip((9, 14, 6), TEXTS, ("ase", "gsg", "xxx"))):
        sample = prepare_sample(make_sample("holistic_586", frames=frames, seed=i), DataConfig())
        items.append(pose_item(str(i), sample.coords, sample.mask, text, language))
    return pad_batch(items)


@pytest.fixture(scope="module")
def model() -> SignT5ForConditionalGeneration:
    torch.manual_seed(0)
    return SignT5ForConditionalGeneration(tiny_config()).eval()


def test_forward_gives_a_loss_near_chance(model, batch):
    inputs = model_inputs(batch, model.config, byte_tokenizer())
    assert inputs["sign_language_ids"].tolist() == [1, 2, 0]  # unknown code -> 0
    out = model(**inputs)
    assert out.logits.shape == (3, inputs["labels"].shape[1], BYTE_VOCAB_SIZE)
    decoder_loss = torch.nn.functional.cross_entropy(out.logits.view(-1, BYTE_VOCAB_SIZE),
                                                     inputs["labels"].view(-1), ignore_index=IGNORE_INDEX)
    assert abs(decoder_loss.item() - math.log(BYTE_VOCAB_SIZE)) < 1.5  # untrained decoder: chance
    assert torch.isfinite(out.loss) and out.loss > 0  # hybrid: decoder + CTC
    assert out.encoder_last_hidden_state.shape == (3, 7, 32)  # ceil(14 / 2) frames after down-sampling


def test_sample_alone_or_batched_gives_the_same_logits(model, batch):
    inputs = model_inputs(batch, model.config, byte_tokenizer())
    batched = model(**inputs).logits
    n = int(batch["frame_mask"][2].sum())  # the shortest sample, 6 frames, alone
    alone = model(pose=inputs["pose"][2:, :n], point_mask=inputs["point_mask"][2:, :n],
                  frame_mask=inputs["frame_mask"][2:, :n], sign_language_ids=inputs["sign_language_ids"][2:],
                  labels=inputs["labels"][2:]).logits
    torch.testing.assert_close(batched[2:], alone, atol=1e-5, rtol=1e-5)


def test_sign_language_conditioning(model, batch):
    inputs = model_inputs(batch, model.config, byte_tokenizer())
    ids = inputs.pop("sign_language_ids")
    unconditioned = model(**inputs).logits
    unknown = model(**inputs, sign_language_ids=torch.zeros_like(ids)).logits
    other = model(**inputs, sign_language_ids=torch.full_like(ids, 3)).logits
    torch.testing.assert_close(unconditioned, unknown)  # id 0 means "no conditioning"
    assert not torch.allclose(unconditioned, other)


def greedy_reference(model, inputs, steps: int) -> torch.Tensor:
    """Greedy decoding by hand: re-run the full decoder each step, no cache."""
    encoded = model.get_encoder()(**inputs)
    ids = torch.zeros(inputs["pose"].shape[0], 1, dtype=torch.long)
    for _ in range(steps):
        logits = model(encoder_outputs=encoded, decoder_input_ids=ids, use_cache=False).logits
        ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return ids


def test_generate_greedy_matches_manual_decoding(model, batch):
    inputs = model_inputs(batch, model.config)
    greedy = model.generate(**inputs, max_new_tokens=6, do_sample=False)
    reference = greedy_reference(model, inputs, greedy.shape[1] - 1)
    eos = model.config.text_config.eos_token_id
    for row, ref in zip(greedy.tolist(), reference.tolist()):  # rows may stop early at eos, then pad
        stop = row.index(eos) + 1 if eos in row else len(row)
        assert row[:stop] == ref[:stop]


class KeepTokens(LogitsProcessor):
    """Every token but ``keep`` impossible: a vocabulary small enough to search exhaustively."""

    def __init__(self, keep: list[int]):
        self.keep = keep

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        kept = torch.full_like(scores, -math.inf)
        kept[:, self.keep] = scores[:, self.keep]
        return kept


@torch.no_grad()
def sequence_log_probs(model, inputs: dict, row: int, sequences: list[list[int]]) -> list[float]:
    """log P(sequence | sample ``row``) of each sequence, by one full decoder pass each (no cache, no beams)."""
    n = len(sequences)
    one = {k: v[row:row + 1].expand(n, *v.shape[1:]) for k, v in inputs.items()}
    longest = max(map(len, sequences))
    targets = torch.tensor([seq + [0] * (longest - len(seq)) for seq in sequences])
    starts = torch.zeros(n, 1, dtype=torch.long)  # the decoder starts from pad (0)
    logits = model(**one, decoder_input_ids=torch.cat([starts, targets[:, :-1]], 1), use_cache=False).logits
    token = logits.log_softmax(-1).gather(-1, targets[..., None])[..., 0]
    return [float(token[i, :len(seq)].sum()) for i, seq in enumerate(sequences)]


@pytest.mark.parametrize("positions", ["both_ends", "ctc"])
def test_beam_search_finds_the_most_likely_sequence(batch, positions):
    """Over 3 letters + end-of-sequence and at most 3 tokens (40 sequences), beam search with a beam as wide
    as the search (and no length penalty) must return the sequence an exhaustive search finds most likely,
    scored as a full pass scores it; greedy, one token at a time, finds it only sometimes."""
    torch.manual_seed(0)
    model = SignT5ForConditionalGeneration(tiny_config(positions=positions)).eval()
    inputs = model_inputs(batch, model.config)
    eos = model.config.text_config.eos_token_id
    letters = byte_tokenizer()("ABC", add_special_tokens=False).input_ids
    candidates = [[eos]] + [[a, eos] for a in letters] + [[a, b, eos] for a in letters for b in letters]
    candidates += [[a, b, c] for a in letters for b in letters for c in letters]  # cut at max_new_tokens
    options = {"max_new_tokens": 3, "do_sample": False, "logits_processor": LogitsProcessorList([KeepTokens(
        letters + [eos])]), "return_dict_in_generate": True, "output_scores": True}
    beams = model.generate(**inputs, num_beams=9, length_penalty=0.0, **options)
    greedy = model.generate(**inputs, num_beams=1, **options).sequences
    beaten = 0
    for row in range(len(batch["ids"])):
        scores = sequence_log_probs(model, inputs, row, candidates)
        best = max(range(len(candidates)), key=scores.__getitem__)
        found = [t for t in beams.sequences[row, 1:].tolist() if t != 0]
        assert found == candidates[best]
        assert beams.sequences_scores[row].item() == pytest.approx(scores[best], abs=1e-4)
        greedy_row = [t for t in greedy[row, 1:].tolist() if t != 0]
        beaten += scores[candidates.index(greedy_row)] < scores[best] - 1e-6
    assert beaten >= 1  # the search matters: on some sample greedy settles for a less likely sequence


def test_save_and_load_give_identical_outputs(model, batch, tmp_path):
    inputs = model_inputs(batch, model.config, byte_tokenizer())
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    loaded = SignT5ForConditionalGeneration.from_pretrained(tmp_path).eval()
    assert loaded.config.pose_encoder == model.config.pose_encoder and loaded.config.data == model.config.data
    assert loaded.config.sign_languages == LANGUAGES
    torch.testing.assert_close(loaded(**inputs).logits, model(**inputs).logits, rtol=0, atol=0)
    torch.testing.assert_close(loaded.generate(**inputs, max_new_tokens=4, num_beams=2),
                               model.generate(**inputs, max_new_tokens=4, num_beams=2))


def trainable_without_grad(model: torch.nn.Module) -> list[str]:
    return [name for name, p in model.named_parameters()
            if p.requires_grad and (p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0)]


def test_one_backward_step_reaches_every_trainable_parameter(batch):
    torch.manual_seed(0)
    model = SignT5ForConditionalGeneration(tiny_config()).train()
    model(**model_inputs(batch, model.config, byte_tokenizer())).loss.backward()
    assert trainable_without_grad(model) == []


@pytest.mark.parametrize("frozen", [False, True])
def test_contrastive_model_trains_the_right_towers(batch, frozen, tmp_path):
    torch.manual_seed(0)
    model = SignT5ForContrastivePretraining(tiny_config(freeze_text_encoder=frozen)).train()
    assert model.text_encoder.training is not frozen
    text = byte_tokenizer()(batch["labels"], padding=True, return_tensors="pt")
    inputs = model_inputs(batch, model.config)
    out = model(**inputs, input_ids=text["input_ids"], attention_mask=text["attention_mask"])
    assert out.logits_per_pose.shape == (3, 3) and torch.isfinite(out.loss)
    out.loss.backward()
    assert trainable_without_grad(model) == []
    text_params = [p for p in model.text_encoder.parameters()]
    assert all(p.grad is None for p in text_params) if frozen else all(p.grad is not None for p in text_params)
    model.eval().save_pretrained(tmp_path)
    loaded = SignT5ForContrastivePretraining.from_pretrained(tmp_path).eval()
    again = model(**inputs, input_ids=text["input_ids"], attention_mask=text["attention_mask"])
    torch.testing.assert_close(
        loaded(**inputs, input_ids=text["input_ids"], attention_mask=text["attention_mask"]).logits_per_pose,
        again.logits_per_pose)
    stage2 = SignT5ForConditionalGeneration.from_pretrained(tmp_path)  # stage 1 -> stage 2: the pose tower carries
    torch.testing.assert_close(stage2.encoder.state_dict(), model.encoder.state_dict())


def test_byte_tokenizer_is_offline_and_covers_every_alphabet():
    tok = byte_tokenizer()
    assert len(tok) == BYTE_VOCAB_SIZE and (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    assert tok("é")["input_ids"] == [0xC3 + 3, 0xA9 + 3, 1]
    texts = TEXTS + ["手話", "שלום", "ASL fingerspelling"]
    assert tok.batch_decode(tok(texts, padding=True)["input_ids"], skip_special_tokens=True) == texts
    labels = tokenize_targets(tok, ["a", "abc"])
    assert labels.tolist() == [[100, 1, IGNORE_INDEX, IGNORE_INDEX], [100, 101, 102, 1]]


def test_local_pretrained_umt5_is_used_when_present(tmp_path, batch):
    assert pretrained_umt5_dir(tmp_path) is None
    torch.manual_seed(0)
    umt5 = UMT5ForConditionalGeneration(umt5_config("tiny", tie_word_embeddings=False))  # like umt5-small
    umt5.save_pretrained(tmp_path)
    byte_tokenizer().save_pretrained(tmp_path)
    assert pretrained_umt5_dir(tmp_path) == tmp_path
    assert load_tokenizer(tmp_path)("ab")["input_ids"] == [100, 101, 1]
    pose = PoseEncoderConfig(d_model=32, n_layers=1, n_heads=4, gcn_channels=8, gcn_layers=1, dropout=0.0)
    model = SignT5ForConditionalGeneration.from_umt5(tmp_path, pose, sign_languages=LANGUAGES).eval()
    assert not model.config.tie_word_embeddings
    torch.testing.assert_close(model.lm_head.weight, umt5.lm_head.weight)
    torch.testing.assert_close(model.decoder.state_dict(), umt5.decoder.state_dict())
    contrastive = SignT5ForContrastivePretraining.from_umt5(tmp_path, pose)
    assert contrastive.config.freeze_text_encoder
    torch.testing.assert_close(contrastive.text_encoder.encoder.state_dict(), umt5.encoder.state_dict())
    inputs = model_inputs(batch, model.config, byte_tokenizer())
    model.save_pretrained(tmp_path / "signt5")
    loaded = SignT5ForConditionalGeneration.from_pretrained(tmp_path / "signt5").eval()
    assert not loaded.config.tie_word_embeddings
    torch.testing.assert_close(loaded(**inputs).logits, model(**inputs).logits, rtol=0, atol=0)


def test_ctc_auxiliary_loss_matches_its_formula():
    """The hybrid loss is (1 - w) * cross-entropy + w * CTC over the encoder frames, spaces and eos dropped."""
    import torch.nn.functional as F

    from signt5.models.configuration import build_config
    from signt5.models.modeling import SignT5ForConditionalGeneration
    from signt5.models.pose_encoder import PoseEncoderConfig
    from signt5.models.text import byte_tokenizer, tokenize_targets, umt5_config

    torch.manual_seed(0)
    config = build_config(PoseEncoderConfig(gcn_channels=8, gcn_layers=1, d_model=32, n_layers=1, n_heads=2,
                                            dropout=0.0), umt5_config("tiny"), ctc_weight=0.4)
    model = SignT5ForConditionalGeneration(config).eval()
    k = config.pose_encoder_config.keypoint_layout.num_points
    pose, point_mask = torch.randn(2, 20, k, 2), torch.ones(2, 20, k, dtype=torch.bool)
    frame_mask = torch.ones(2, 20, dtype=torch.bool)
    frame_mask[1, 12:] = False
    labels = tokenize_targets(byte_tokenizer(), ["A B", "C"])
    out = model(pose=pose, point_mask=point_mask, frame_mask=frame_mask, labels=labels)
    enc = model.encoder(pose, point_mask, frame_mask)
    ce = F.cross_entropy(out.logits.view(-1, out.logits.shape[-1]), labels.view(-1), ignore_index=-100)
    log_probs = model.ctc_head(enc.last_hidden_state).log_softmax(-1).transpose(0, 1)
    targets = torch.tensor([ord("A") + 3, ord("B") + 3, ord("C") + 3])
    ctc = F.ctc_loss(log_probs, targets, torch.tensor([10, 6]), torch.tensor([2, 1]), blank=0,
                     zero_infinity=True)
    torch.testing.assert_close(out.loss, 0.6 * ce + 0.4 * ctc)
    config.ctc_weight = 0.0
    assert SignT5ForConditionalGeneration(config).ctc_head is None


def test_ctc_greedy_decoding_is_the_best_path_collapsed():
    """ctc_decode = argmax per valid frame, repeats merged, blanks (pad) dropped; padded frames ignored."""
    from signt5.decoding.generate import ctc_text
    from signt5.models.configuration import build_config
    from signt5.models.modeling import SignT5ForConditionalGeneration
    from signt5.models.pose_encoder import PoseEncoderConfig
    from signt5.models.text import byte_tokenizer, umt5_config

    torch.manual_seed(1)
    config = build_config(PoseEncoderConfig(gcn_channels=8, gcn_layers=1, d_model=32, n_layers=1, n_heads=2,
                                            dropout=0.0), umt5_config("tiny"), target="gloss")
    model = SignT5ForConditionalGeneration(config).eval()
    k = config.pose_encoder_config.keypoint_layout.num_points
    pose, point_mask = torch.randn(2, 16, k, 2), torch.ones(2, 16, k, dtype=torch.bool)
    frame_mask = torch.ones(2, 16, dtype=torch.bool)
    frame_mask[1, 10:] = False
    decoded = model.ctc_decode(pose, point_mask, frame_mask)
    enc = model.encoder(pose, point_mask, frame_mask)
    best = model.ctc_head(enc.last_hidden_state).argmax(-1)
    for row, mask, got in zip(best, enc.attention_mask, decoded):
        path = row[mask].tolist()
        expected = [t for i, t in enumerate(path) if t != 0 and (i == 0 or t != path[i - 1])]
        assert got == expected
    tok = byte_tokenizer()
    assert ctc_text(config, tok, [ord(c) + 3 for c in "HAT"]) == "H A T"


def test_pose_side_keeps_torch_fan_in_init_and_the_text_side_hf_init():
    """The pose tower's layers start at PyTorch's fan-in scale (U(+-1/sqrt(fan_in))), UMT5's at N(0, factor)."""
    torch.manual_seed(0)
    model = SignT5ForConditionalGeneration(tiny_config())
    first = model.encoder.pose_encoder.spatial.input  # 4 inputs per point -> bound 0.5
    bound = 1 / math.sqrt(first.in_features)
    assert first.weight.abs().max() <= bound and first.weight.std() > 0.5 * bound / math.sqrt(3)
    assert model.encoder.language_embedding.weight[0].abs().sum() == 0  # padding row (unknown language)
    assert model.encoder.language_embedding.weight[1:].std() > 0.5  # nn.Embedding's N(0, 1)
    assert model.ctc_head.weight.abs().max() <= 1 / math.sqrt(model.ctc_head.in_features)
    q = model.decoder.block[0].layer[0].SelfAttention.q.weight
    assert q.std() < 0.5 * first.weight.std()  # the decoder kept transformers' (UMT5) init


def test_loading_does_not_reinitialise_the_pose_side(model, tmp_path):
    model.save_pretrained(tmp_path)
    loaded = SignT5ForConditionalGeneration.from_pretrained(tmp_path)
    for name, weight in model.encoder.state_dict().items():
        torch.testing.assert_close(loaded.encoder.state_dict()[name], weight, rtol=0, atol=0, msg=name)


def test_ctc_letter_classes_one_per_letter_per_sign_language():
    """With ctc_units, CTC targets are "language:letter" classes (a 2-byte Cyrillic letter is one class)."""
    import torch.nn.functional as F

    from signt5.data.manifest import ManifestEntry
    from signt5.decoding.generate import ctc_text
    from signt5.models.labels import ctc_units_for, ctc_units_text
    from signt5.models.text import tokenize_targets

    entries = [ManifestEntry(id="a", path="a.pose", gloss="A B", sign_language="ase"),
               ManifestEntry(id="b", path="b.pose", gloss="Б A", sign_language="bfi"),
               ManifestEntry(id="c", path="c.pose", gloss="SCH A", sign_language="gsg")]
    units = ctc_units_for(entries, "gloss")
    assert units == ["ase:A", "ase:B", "bfi:A", "bfi:Б", "gsg:A", "gsg:SCH"]
    assert ctc_units_for(entries, "text") is None
    torch.manual_seed(0)
    model = SignT5ForConditionalGeneration(tiny_config(ctc_units=units)).eval()
    assert model.ctc_head.out_features == len(units) + 1  # + blank
    labels = tokenize_targets(byte_tokenizer(), ["A B", "Б A", "SCH A Q"])
    ids = torch.tensor(model.config.sign_language_ids(["ase", "bfi", "gsg"]))
    assert model.ctc_targets(labels, ids) == [[1, 2], [4, 3], [6, 5]]  # Q: not a class of gsg, dropped
    assert ctc_units_text(units, [4, 3]) == "Б A" and ctc_text(model.config, byte_tokenizer(), [6, 5]) == "SCH A"

    k = model.config.pose_encoder_config.keypoint_layout.num_points
    pose, mask = torch.randn(3, 16, k, 2), torch.ones(3, 16, k, dtype=torch.bool)
    frames = torch.ones(3, 16, dtype=torch.bool)
    out = model(pose=pose, point_mask=mask, frame_mask=frames, sign_language_ids=ids, labels=labels)
    enc = model.encoder(pose, mask, frames, ids)
    ce = F.cross_entropy(out.logits.view(-1, out.logits.shape[-1]), labels.view(-1), ignore_index=IGNORE_INDEX)
    log_probs = model.ctc_head(enc.last_hidden_state).log_softmax(-1).transpose(0, 1)
    ctc = F.ctc_loss(log_probs, torch.tensor([1, 2, 4, 3, 6, 5]), torch.tensor([8, 8, 8]), torch.tensor([2, 2, 2]),
                     blank=0, zero_infinity=True)
    w = model.config.ctc_weight
    torch.testing.assert_close(out.loss, (1 - w) * ce + w * ctc)


def test_label_smoothing_mixes_the_target_with_the_mean_over_the_vocabulary(batch):
    """Smoothing eps: each target token's loss is (1 - eps) * -log p(target) + eps * mean over the vocabulary of
    -log p, computed here by hand from the logits; padding still counts for nothing."""
    torch.manual_seed(0)
    model = SignT5ForConditionalGeneration(tiny_config(ctc_weight=0.0, label_smoothing=0.2)).eval()
    inputs = model_inputs(batch, model.config, byte_tokenizer())
    out = model(**inputs)
    log_p = out.logits.float().log_softmax(-1)  # (B, L, V)
    labels = inputs["labels"]
    real = labels != IGNORE_INDEX
    target = -log_p.gather(-1, labels.clamp_min(0).unsqueeze(-1)).squeeze(-1)  # (B, L)
    uniform = -log_p.mean(-1)  # (B, L)
    expected = ((0.8 * target + 0.2 * uniform) * real).sum() / real.sum()
    torch.testing.assert_close(out.loss, expected)
    with pytest.raises(ValueError, match="label_smoothing"):
        tiny_config(label_smoothing=1.0)
