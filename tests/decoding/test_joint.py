"""Joint CTC/attention decoding through generate(): a rigged decoder and a peaky CTC head, and the weight's ends."""

from __future__ import annotations

import pytest
import torch
from transformers.modeling_outputs import Seq2SeqLMOutput

from signt5.data.dataset import DataConfig, prepare_sample
from signt5.data.item import PoseItem, pose_item
from signt5.decoding.generate import generate_texts
from signt5.decoding.joint import END, Action, EXTEND, INVALID, NONE, LetterUnitLabels, ctc_labels_for
from signt5.models.configuration import build_config
from signt5.models.modeling import SignT5ForConditionalGeneration
from signt5.models.pose_encoder import PoseEncoderConfig
from signt5.models.text import BYTE_OFFSET, BYTE_VOCAB_SIZE, byte_tokenizer, umt5_config

from ..conftest import make_sample

LANGUAGES = ["ase", "bfi"]
UNITS = ["ase:A", "ase:B", "ase:SCH", "ase:X", "bfi:Б"]
FRAMES = (16, 24, 12)
EOS, SPACE = 1, ord(" ") + BYTE_OFFSET


def byte(c: str) -> int:
    return ord(c) + BYTE_OFFSET


def tiny_model(**config) -> SignT5ForConditionalGeneration:
    torch.manual_seed(0)
    pose = PoseEncoderConfig(d_model=32, n_layers=1, n_heads=4, gcn_channels=8, gcn_layers=1, dropout=0.0)
    return SignT5ForConditionalGeneration(build_config(pose, umt5_config("tiny"), sign_languages=LANGUAGES,
                                                       **config)).eval()


@pytest.fixture(scope="module")
def items() -> list[PoseItem]:
    """Three samples of different lengths (so the batch is padded), all in ASL."""
    out = []
    for i, frames in enumerate(FRAMES):
        sample = prepare_sample(make_sample("holistic_586", frames=frames, seed=i), DataConfig())
        out.append(pose_item(str(i), sample.coords, sample.mask, sign_language="ase"))
    return out


def rig_decoder(model, preferences: dict[int, list[int]]) -> None:
    """A bigram decoder: after token t it ranks ``preferences[t]`` (else preferences[-1]) first, in order."""
    table = torch.full((BYTE_VOCAB_SIZE, BYTE_VOCAB_SIZE), -20.0)
    for previous in range(BYTE_VOCAB_SIZE):
        for rank, token in enumerate(preferences.get(previous, preferences[-1])):
            table[previous, token] = 10.0 - rank

    def forward(decoder_input_ids=None, encoder_outputs=None, **kwargs):
        return Seq2SeqLMOutput(logits=table[decoder_input_ids])  # (B, L, V)

    model.forward = forward


def rig_ctc(model, paths: list[list[int]], classes: int) -> None:
    """A peaky CTC head: item i's frames follow paths[i] (class per frame, then blanks), probability 0.97.

    Batches are sorted by length, so a row finds its item by the rank of its length (items differ in length).
    """
    ranked = [paths[i] for i in sorted(range(len(paths)), key=lambda i: FRAMES[i])]

    def ctc_log_probs(encoder_outputs):
        mask = encoder_outputs.attention_mask  # (B, T')
        probs = torch.full((*mask.shape, classes), 0.03 / (classes - 1))
        lengths = mask.sum(1).tolist()
        for b, length in enumerate(lengths):
            path = ranked[sorted(lengths).index(length)]
            assert len(path) <= length, "the encoder gives too few frames for this path"
            for t in range(mask.shape[1]):
                probs[b, t, path[t] if t < len(path) else 0] = 0.97
        return probs.log(), mask

    model.ctc_log_probs = ctc_log_probs


def decode(model, items, decoding, beams=1, weight=None, max_new_tokens=12) -> list[str]:
    return generate_texts(model, byte_tokenizer(), items, batch_size=8, num_beams=beams,
                          max_new_tokens=max_new_tokens, decoding=decoding, ctc_weight=weight)[0]


def test_token_classes_weight_one_gives_the_ctc_best_path_where_the_decoder_fails(items):
    """Text target, byte vocabulary: the decoder always prefers X and never stops; CTC says AB, BAA (a
    repeated letter), A; joint decoding with weight 1 returns exactly CTC's best path."""
    model = tiny_model(target="text")
    a, b = byte("A"), byte("B")
    rig_decoder(model, {-1: [byte("X"), a, b, EOS]})  # a space would cost CTC nothing: weight 1 would take it
    rig_ctc(model, [[a, a, 0, b, b], [b, 0, a, 0, a, a], [a]], BYTE_VOCAB_SIZE)
    assert decode(model, items, "attention") == ["X" * 12] * 3
    assert decode(model, items, "ctc") == ["AB", "BAA", "A"]
    assert decode(model, items, "joint", weight=1.0) == ["AB", "BAA", "A"]
    assert decode(model, items, "joint", beams=4, weight=1.0) == ["AB", "BAA", "A"]


def test_letter_classes_weight_one_with_beams_gives_the_ctc_best_path(items):
    """Gloss target with letter classes: the decoder writes spaced letters but always X and never stops; a letter
    reaches CTC when its space or the end completes it (SCH is one class, three bytes)."""
    model = tiny_model(target="gloss", ctc_units=UNITS)
    letters = [byte(c) for c in "XABSCH"]
    rig_decoder(model, {**{t: [SPACE] + letters for t in letters}, -1: letters + [EOS]})
    rig_ctc(model, [[1, 0, 2], [3, 3, 1], [2]], len(UNITS) + 1)
    assert decode(model, items, "attention") == ["X X X X X X"] * 3
    assert decode(model, items, "ctc") == ["A B", "SCH A", "B"]
    assert decode(model, items, "joint", beams=4, weight=1.0) == ["A B", "SCH A", "B"]
    assert len(decode(model, items, "joint", weight=1.0)) == 3  # greedy runs (letters inside are CTC-blind)


@pytest.mark.parametrize("config", [dict(target="text"), dict(target="gloss", ctc_units=UNITS)], ids=["tokens", "units"])
@pytest.mark.parametrize("beams", [1, 4])
def test_weight_zero_is_plain_attention_decoding(items, config, beams):
    """A random bigram decoder over capitals, space and end, shifted per sample (varied output), and the model's
    own random CTC head."""
    model = tiny_model(**config)
    generator = torch.Generator().manual_seed(beams)
    table = torch.randn(BYTE_VOCAB_SIZE, BYTE_VOCAB_SIZE, generator=generator)
    table[:, [byte(c) for c in "ABCDEFGHSX "] + [EOS]] += 4.0
    by_length = torch.randn(64, BYTE_VOCAB_SIZE, generator=generator) * 2.0  # the sample's length moves the logits

    def forward(decoder_input_ids=None, encoder_outputs=None, **kwargs):
        bias = by_length[encoder_outputs.attention_mask.sum(1)]  # (B, V)
        return Seq2SeqLMOutput(logits=table[decoder_input_ids] + bias.unsqueeze(1))  # (B, L, V)

    model.forward = forward
    plain = decode(model, items, "attention", beams=beams, max_new_tokens=10)
    assert decode(model, items, "joint", beams=beams, weight=0.0, max_new_tokens=10) == plain
    assert len(set(plain)) > 1 and all(plain)  # varied, non-empty texts: the comparison has teeth
    assert decode(model, items, "joint", beams=beams, weight=0.5, max_new_tokens=10) != plain  # CTC does act


def test_joint_with_a_middle_weight_runs_greedy_and_beam(items):
    model = tiny_model(target="gloss", ctc_units=UNITS)
    for beams in (1, 4):
        texts = decode(model, items, "joint", beams=beams, weight=0.3, max_new_tokens=8)
        assert len(texts) == 3 and all(isinstance(t, str) for t in texts)


def test_letter_units_parse_and_actions():
    labels = LetterUnitLabels(EOS, BYTE_OFFSET, UNITS, LANGUAGES, [1, 2, 0])
    tokens = [byte(c) for c in "SCH A X Q "]
    assert labels.parse(tokens, 0) == ((3, 1, 4), b"")  # Q is no ASL letter: dropped, as ctc_targets drops it
    assert labels.parse([byte(c) for c in "A SC"], 0) == ((1,), b"SC")
    assert labels.action(SPACE, b"SCH", 0) == Action(EXTEND, (3,))  # the space completes SCH
    assert labels.action(EOS, b"A", 0) == Action(END, (1,)) and labels.action(EOS, b"", 0) == Action(END)
    assert labels.action(byte("S"), b"", 0) == Action(EXTEND, (3,))  # S starts only SCH in this table
    assert labels.action(byte("H"), b"SC", 0) == Action(EXTEND, (3,)) and labels.pending_labels(b"SC", 0) == (3,)
    assert labels.action(SPACE, b"", 0).kind == INVALID  # a gloss never has two spaces in a row
    assert labels.action(SPACE, b"Q", 0).kind == INVALID and labels.action(byte("Q"), b"", 0).kind == INVALID
    assert labels.action(0, b"A", 0).kind == NONE  # pad: the tokenizer drops it
    cyrillic = "Б".encode()
    assert labels.action(SPACE, cyrillic, 1) == Action(EXTEND, (5,)) and labels.action(SPACE, cyrillic, 0).kind == INVALID
    assert labels.action(cyrillic[1] + BYTE_OFFSET, cyrillic[:1], 1) == Action(EXTEND, (5,))  # 2nd byte of Б
    assert labels.scored(0) and not labels.scored(2)  # unknown sign language: attention alone


def test_token_labels_follow_ctc_targets():
    """Without letter classes the byte vocabulary's space is no CTC class (ctc_targets drops it)."""
    model = tiny_model(target="text")
    labels = ctc_labels_for(model.config, None, 1)
    row = [byte("A"), SPACE, byte("B"), EOS]
    expected = model.ctc_targets(torch.tensor([row]))[0]
    assert list(labels.parse(row, 0)[0]) == expected == [byte("A"), byte("B")]
    assert labels.action(SPACE, None, 0).kind == NONE and labels.action(byte("C"), None, 0) == Action(EXTEND, (byte("C"),))


def test_letter_tokens_map_to_the_letters_their_bytes_spell():
    """With one decoder token per letter of several bytes (SCH, Б), a hypothesis reads as the same letter classes
    as when the letter is spelled byte by byte."""
    letter_tokens = ["SCH", "Б"]
    sch, be = BYTE_VOCAB_SIZE, BYTE_VOCAB_SIZE + 1
    labels = LetterUnitLabels(EOS, BYTE_OFFSET, UNITS, LANGUAGES, [1, 2, 0], letter_tokens)
    by_bytes = LetterUnitLabels(EOS, BYTE_OFFSET, UNITS, LANGUAGES, [1, 2, 0])
    tokens = [sch, SPACE, byte("A"), SPACE, byte("X"), SPACE]
    assert labels.parse(tokens, 0) == by_bytes.parse([byte(c) for c in "SCH A X "], 0) == ((3, 1, 4), b"")
    assert labels.parse([byte("A"), SPACE, sch], 0) == ((1,), b"SCH")
    assert labels.action(sch, b"", 0) == Action(EXTEND, (3,))  # the whole letter at once
    assert labels.action(SPACE, b"SCH", 0) == Action(EXTEND, (3,))
    assert labels.action(be, b"", 1) == Action(EXTEND, (5,)) and labels.action(be, b"", 0).kind == INVALID
    assert labels.action(sch, b"A", 0).kind == INVALID  # no ASL letter starts "ASCH"
