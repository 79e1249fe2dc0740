"""CTC-aligned guided attention: the forced alignment against brute force, and the frames each token reads."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from signt5.models.alignment import aligned_attention_loss, aligned_frames, ctc_viterbi
from signt5.models.configuration import build_config
from signt5.models.encoder import PoseEncoderOutput
from signt5.models.modeling import SignT5ForConditionalGeneration
from signt5.models.pose_encoder import PoseEncoderConfig
from signt5.models.text import BYTE_OFFSET, byte_tokenizer, tokenize_targets, umt5_config


def collapse(path: tuple[int, ...]) -> list[int]:
    out, previous = [], None
    for c in path:
        if c != 0 and c != previous:
            out.append(c)
        previous = c
    return out


def best_alignment(log_probs: torch.Tensor, length: int, target: list[int]) -> tuple[float, tuple[int, ...]] | None:
    """Every frame labelling of ``length`` frames that collapses to ``target``; the most probable one."""
    best = None
    for path in itertools.product(range(log_probs.shape[-1]), repeat=length):
        if collapse(path) == target:
            score = sum(log_probs[t, c].item() for t, c in enumerate(path))
            if best is None or score > best[0]:
                best = (score, path)
    return best


def units_of(path: tuple[int, ...]) -> list[int]:
    """Frame labels -> the index of the target unit each frame spells (-1 blank)."""
    out, index, previous = [], -1, 0
    for c in path:
        if c != 0 and c != previous:
            index += 1
        out.append(index if c != 0 else -1)
        previous = c
    return out


@pytest.mark.parametrize("seed", range(4))
def test_viterbi_finds_the_most_probable_alignment(seed):
    """Batched, padded samples, repeated letters (which need a blank between them) and an impossible target."""
    torch.manual_seed(seed)
    log_probs = torch.randn(4, 6, 3).log_softmax(-1)
    lengths = [6, 5, 4, 2]
    targets = [[1, 2, 1], [2, 2], [1], [1, 1, 1]]  # the last cannot fit in 2 frames
    paths = ctc_viterbi(log_probs, lengths, targets)
    for b in range(3):
        score, path = best_alignment(log_probs[b], lengths[b], targets[b])
        got = paths[b]
        assert len(got) == lengths[b]
        labels = [0 if u < 0 else targets[b][u] for u in got]
        assert collapse(tuple(labels)) == targets[b]
        assert sum(log_probs[b, t, c].item() for t, c in enumerate(labels)) == pytest.approx(score, abs=1e-5)
        assert got == units_of(tuple(labels))
    assert paths[3] is None


def test_aligned_frames_for_letters_spaces_and_the_end():
    """Units read their own frames; a gap token the frames between its neighbours, or their facing edges."""
    path = [-1, 0, 0, 1, -1, -1, 2, -1]  # unit 0 at 1-2, unit 1 at 3 (touching), unit 2 at 6
    units = [0, -2, 1, -3, 2, -4, None]  # A _ B _ C eos pad
    frames = aligned_frames(path, units, width=10)
    assert frames[0].nonzero().flatten().tolist() == [1, 2]
    assert frames[1].nonzero().flatten().tolist() == [2, 3]  # no blank between: the two edges
    assert frames[2].nonzero().flatten().tolist() == [3]
    assert frames[3].nonzero().flatten().tolist() == [4, 5]
    assert frames[4].nonzero().flatten().tolist() == [6]
    assert frames[5].nonzero().flatten().tolist() == [7]  # end of sequence: the trailing frames
    assert not frames[6].any() and not frames[:, 8:].any()


def test_aligned_attention_loss_is_minus_log_mass():
    torch.manual_seed(0)
    attention = torch.softmax(torch.randn(2, 3, 4, 5), -1)
    frames = torch.zeros(2, 4, 5, dtype=torch.bool)
    frames[0, :, 1] = True
    frames[1, :2, 3:] = True  # tokens 2, 3 of sample 1 have no frames: left out
    token_mask = torch.ones(2, 4, dtype=torch.bool)
    token_mask[0, 3] = False
    terms = [-math.log(attention[0, :, i, 1].mean().item()) for i in range(3)]
    terms += [-math.log(attention[1, :, i, 3:].sum(-1).mean().item()) for i in range(2)]
    got = aligned_attention_loss([attention], frames, token_mask)
    assert got.item() == pytest.approx(sum(terms) / len(terms), rel=1e-5)
    perfect = frames.float().unsqueeze(1) / frames.sum(-1, keepdim=True).clamp_min(1).unsqueeze(1)
    assert aligned_attention_loss([perfect], frames, token_mask).item() == pytest.approx(0.0, abs=1e-5)


def letter_model(**kwargs) -> SignT5ForConditionalGeneration:
    torch.manual_seed(0)
    units = ["ase:A", "ase:B", "ase:C", "ase:D"]
    config = build_config(PoseEncoderConfig(), umt5_config("tiny"), sign_languages=["ase"], target="gloss",
                          ctc_units=units, ctc_weight=0.5, **kwargs)
    return SignT5ForConditionalGeneration(config)


def test_token_units_follow_the_ctc_targets():
    """Letter units: a letter's bytes share its unit; spaces and eos sit between units; unknown letters too."""
    model = letter_model()
    labels = tokenize_targets(byte_tokenizer(), ["A B A", "D X C"])
    ids = torch.tensor([1, 1])
    assert model.ctc_targets(labels, ids) == [[1, 2, 1], [4, 3]]
    units = model.token_units(labels, ids)
    assert units[0] == [0, -2, 1, -3, 2, -4] + [None] * (len(units[0]) - 6)
    assert units[1][:6] == [0, -2, -2, -2, 1, -3]  # X is no unit: read between D and C
    byte_model = SignT5ForConditionalGeneration(build_config(PoseEncoderConfig(), umt5_config("tiny"), ctc_weight=0.5))
    text = tokenize_targets(byte_tokenizer(), ["Ab c"])
    assert byte_model.ctc_targets(text) == [[ord(c) + BYTE_OFFSET for c in "Abc"]]
    assert byte_model.token_units(text)[0] == [0, 1, -3, 2, -4]


def test_ctc_guided_attention_is_added_in_training():
    """guided_attention ctc: loss = hybrid loss + weight x -log(mass on the CTC-aligned frames)."""
    model = letter_model(guided_attention_weight=0.5, guided_attention="ctc")
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    torch.manual_seed(1)
    hidden = torch.randn(2, 12, 32)
    memory = PoseEncoderOutput(last_hidden_state=hidden, attention_mask=torch.ones(2, 12).bool())
    labels = tokenize_targets(byte_tokenizer(), ["A B A", "D C"])
    ids = torch.tensor([1, 1])
    model.eval()
    model.set_attn_implementation("eager")
    plain = model(encoder_outputs=memory, labels=labels, sign_language_ids=ids, output_attentions=True)
    log_probs = model.ctc_head(hidden).float().log_softmax(-1)
    paths = ctc_viterbi(log_probs, [12, 12], model.ctc_targets(labels, ids))
    frames = torch.stack([aligned_frames(p, u, 12) for p, u in zip(paths, model.token_units(labels, ids))])
    prior = aligned_attention_loss(plain.cross_attentions, frames, labels.ne(-100))
    model.train()
    trained = model(encoder_outputs=memory, labels=labels, sign_language_ids=ids)
    assert prior.item() > 0.1
    assert trained.loss.item() == pytest.approx(plain.loss.item() + 0.5 * prior.item(), rel=1e-5)


def test_decoder_gradient_to_encoder_scales_what_the_encoder_learns_from_the_decoder():
    """0: the pose encoder learns from CTC alone (its gradient equals the CTC term's), with the same loss value."""
    torch.manual_seed(2)
    pose = torch.randn(2, 16, letter_model().config.pose_encoder_config.keypoint_layout.num_points, 2)
    labels = tokenize_targets(byte_tokenizer(), ["A B", "C"])
    ids = torch.tensor([1, 1])
    grads, losses = {}, {}
    for scale in (1.0, 0.0):
        model = letter_model(guided_attention_weight=0.5, guided_attention="ctc", decoder_gradient_to_encoder=scale)
        model.train()
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        out = model(pose=pose, labels=labels, sign_language_ids=ids)
        out.loss.backward()
        losses[scale] = out.loss.item()
        grads[scale] = torch.cat([p.grad.flatten() for p in model.encoder.parameters() if p.grad is not None])
    model = letter_model()
    model.train()
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    encoded = model.encoder(pose, sign_language_ids=ids)
    log_probs = model.ctc_head(encoded.last_hidden_state).float().log_softmax(-1)
    (model.config.ctc_weight * model.ctc_loss(log_probs, encoded.attention_mask, labels, ids)).backward()
    ctc_only = torch.cat([p.grad.flatten() for p in model.encoder.parameters() if p.grad is not None])
    assert losses[0.0] == pytest.approx(losses[1.0], rel=1e-6)
    torch.testing.assert_close(grads[0.0], ctc_only)
    assert not torch.allclose(grads[1.0], ctc_only)


def test_ctc_prior_moves_cross_attention_onto_the_aligned_frames():
    """Training on a fixed memory (one random vector per letter, 3 frames each, a blank frame between letters)
    puts most of the attention mass on each token's CTC-aligned frames; without the prior it stays spread."""
    torch.manual_seed(3)
    letters = ["A B C D", "D C B A", "B A D C", "C D A B"]
    vectors = {c: torch.randn(32) for c in "ABCD"}
    rows = []
    for text in letters:
        frames = [torch.zeros(32)]
        for c in text.split():
            frames += [vectors[c]] * 3 + [torch.zeros(32)]
        rows.append(torch.stack(frames))
    memory = PoseEncoderOutput(last_hidden_state=torch.stack(rows), attention_mask=torch.ones(4, rows[0].shape[0]).bool())
    labels = tokenize_targets(byte_tokenizer(), letters)
    ids = torch.ones(4, dtype=torch.long)
    masses = {}
    for weight in (0.0, 1.0):
        model = letter_model(guided_attention_weight=weight, guided_attention="ctc")
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
        model.train()
        for _ in range(60):
            loss = model(encoder_outputs=memory, labels=labels, sign_language_ids=ids).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        model.set_attn_implementation("eager")
        with torch.no_grad():
            out = model(encoder_outputs=memory, labels=labels, sign_language_ids=ids, output_attentions=True)
            log_probs = model.ctc_head(memory.last_hidden_state).float().log_softmax(-1)
        paths = ctc_viterbi(log_probs, [memory.last_hidden_state.shape[1]] * 4, model.ctc_targets(labels, ids))
        assert all(p is not None for p in paths)
        frames = torch.stack([aligned_frames(p, u, memory.last_hidden_state.shape[1])
                              for p, u in zip(paths, model.token_units(labels, ids))])
        masses[weight] = math.exp(-aligned_attention_loss(out.cross_attentions, frames, labels.ne(-100)).item())
    assert masses[1.0] > 0.6 and masses[1.0] > 2 * masses[0.0]


def test_bad_prior_settings_are_refused():
    from signt5.training.config import TrainConfig

    with pytest.raises(ValueError, match="guided_attention"):
        TrainConfig(guided_attention="nearby")
    with pytest.raises(ValueError, match="decoder_gradient_to_encoder"):
        TrainConfig(decoder_gradient_to_encoder=1.5)
    with pytest.raises(ValueError, match="guided_attention"):
        letter_model(guided_attention="nearby")
