"""The CTC reading spelled into the decoder's memory (``memory_spelling``)."""

from __future__ import annotations

import pytest
import torch
from transformers import LogitsProcessorList

from signt5.models.configuration import build_config
from signt5.models.encoder import PoseEncoderOutput
from signt5.models.modeling import SignT5ForConditionalGeneration
from signt5.models.pose_encoder import PoseEncoderConfig
from signt5.models.spelling import MemorySpelling, unit_spelling_table
from signt5.models.text import byte_tokenizer, tokenize_targets, umt5_config

from .test_emission_positions import UNITS, ForceTokens, letter_model


def test_spelling_table_holds_each_units_tokens():
    """Row k + 1 spells unit k in the tokenizer's own ids (multi-byte letters as several), blank spells nothing."""
    table = unit_spelling_table(UNITS, len(UNITS) + 1)
    tokenizer = byte_tokenizer()
    assert table[0].tolist() == [-1, -1]
    for row, unit in zip(table[1:].tolist(), UNITS):
        ids = tokenizer(unit.split(":")[1], add_special_tokens=False).input_ids
        assert [t for t in row if t >= 0] == ids
    assert sum(t >= 0 for t in table[UNITS.index("ase:Ж") + 1].tolist()) == 2
    tokens = unit_spelling_table(None, 7)  # token-level CTC: a class is its token
    assert tokens[:, 0].tolist() == [-1, 1, 2, 3, 4, 5, 6]


def test_spelling_is_the_posterior_weighted_sum_of_unit_spellings():
    """Checked against an independent formula: Σ_c p_c Σ_j W_j e(token_cj), blank's vector for class 0."""
    torch.manual_seed(0)
    embeddings = torch.nn.Embedding(300, 8)
    spelling = MemorySpelling(UNITS, len(UNITS) + 1, 8)
    torch.nn.init.normal_(spelling.slot_weights)
    torch.nn.init.normal_(spelling.blank)
    log_probs = torch.randn(2, 5, len(UNITS) + 1).log_softmax(-1)
    expected = torch.zeros(2, 5, 8)
    for c in range(len(UNITS) + 1):
        vector = spelling.blank.clone() if c == 0 else torch.zeros(8)
        if c > 0:
            for j, byte in enumerate(UNITS[c - 1].split(":")[1].encode()):
                vector += embeddings.weight[byte + 3] @ spelling.slot_weights[j]
        expected += log_probs[..., c:c + 1].exp() * vector
    torch.testing.assert_close(spelling(log_probs, embeddings), expected)


def test_generate_with_spelling_matches_the_full_forward():
    """The spelling is computed once per memory in generate() and gives the full forward's logits."""
    torch.manual_seed(0)
    model = letter_model(memory_spelling=True)
    assert model.memory_spelling.slot_weights.abs().sum() == 0  # starts without effect
    torch.nn.init.normal_(model.memory_spelling.slot_weights, std=0.5)
    model.eval()
    calls = []
    model.ctc_head.register_forward_hook(lambda *_: calls.append(1))
    memory = PoseEncoderOutput(last_hidden_state=torch.randn(2, 10, 32),
                               attention_mask=torch.ones(2, 10, dtype=torch.bool))
    labels = tokenize_targets(byte_tokenizer(), ["A B C D", "D Ж A B"])[:, :7]
    out = model.generate(encoder_outputs=memory, max_new_tokens=7, do_sample=False, output_logits=True,
                         return_dict_in_generate=True, logits_processor=LogitsProcessorList([ForceTokens(labels)]))
    assert len(calls) == 1
    fresh = PoseEncoderOutput(last_hidden_state=memory.last_hidden_state, attention_mask=memory.attention_mask)
    with torch.no_grad():
        full = model(encoder_outputs=memory, decoder_input_ids=model._shift_right(labels)).logits
        plain = letter_model(memory_spelling=False)
        plain.load_state_dict(model.state_dict(), strict=False)
        without = plain.eval()(encoder_outputs=fresh, decoder_input_ids=model._shift_right(labels)).logits
    torch.testing.assert_close(torch.stack(out.logits, 1), full, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(full, without, atol=1e-3)  # the spelling does reach the decoder


def test_spelling_trains_and_needs_a_ctc_head():
    torch.manual_seed(0)
    model = letter_model(memory_spelling=True)
    labels = tokenize_targets(byte_tokenizer(), ["A Ж", "B"])
    out = model(pose=torch.randn(2, 12, model.config.pose_encoder_config.keypoint_layout.num_points, 2),
                frame_mask=torch.ones(2, 12, dtype=torch.bool), labels=labels,
                sign_language_ids=torch.ones(2, dtype=torch.long))
    out.loss.backward()
    assert model.memory_spelling.slot_weights.grad.abs().sum() > 0
    assert model.memory_spelling.blank.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="memory_spelling"):
        SignT5ForConditionalGeneration(build_config(PoseEncoderConfig(), umt5_config("tiny"), ctc_weight=0.0,
                                                    memory_spelling=True))
