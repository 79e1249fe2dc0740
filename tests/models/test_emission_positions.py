"""Positions counted in CTC emissions (``positions`` ctc): memory and decoder inputs count the same units."""

from __future__ import annotations

import pytest
import torch
from transformers import LogitsProcessor, LogitsProcessorList

from signt5.models.alignment import emission_places, emission_positions, sinusoids, unit_positions
from signt5.models.configuration import build_config
from signt5.models.encoder import PoseEncoderOutput
from signt5.models.modeling import SignT5ForConditionalGeneration
from signt5.models.pose_encoder import PoseEncoderConfig
from signt5.models.text import byte_tokenizer, tokenize_targets, umt5_config

UNITS = ["ase:A", "ase:B", "ase:C", "ase:D", "ase:Ж"]


def letter_model(**kwargs) -> SignT5ForConditionalGeneration:
    kwargs.setdefault("positions", "ctc")
    config = build_config(PoseEncoderConfig(), umt5_config("tiny"), sign_languages=["ase"], target="gloss",
                          ctc_units=UNITS, ctc_weight=0.5, **kwargs)
    return SignT5ForConditionalGeneration(config)


def test_emission_positions_count_units_not_frames():
    """Frames of the k-th emitted unit sit at k, blanks before it at k - 1/2; from the end likewise."""
    emissions = torch.tensor([[0, 3, 3, 0, 0, 5, 0, 5, 5, 0, 0, 0]])  # 3 | 5 | 5 (a blank splits the repeat)
    mask = torch.ones(1, 12, dtype=torch.bool)
    mask[0, 10:] = False  # padding
    expected = torch.tensor([-0.5, 0, 0, 0.5, 0.5, 1, 1.5, 2, 2, 2.5, 2.5, 2.5])
    places = emission_places(emissions, mask)
    torch.testing.assert_close(places[0, :10], expected[:10])
    table = emission_positions(places, mask, 16)
    torch.testing.assert_close(table[0, :, :8], sinusoids(expected, 8))
    torch.testing.assert_close(table[0, :10, 8:], sinusoids(2 - expected[:10], 8))
    assert not torch.allclose(table[0, 1], table[0, 5])  # one unit on: another position
    shifted = emission_positions(places, mask, 16, shift=torch.tensor([[7]]))
    torch.testing.assert_close(shifted[0, :, :8], sinusoids(expected + 7, 8))  # the count from the start moves
    torch.testing.assert_close(shifted[0, :10, 8:], table[0, :10, 8:])  # the count to the end does not


def test_decoder_unit_counts_match_the_units_the_labels_spell():
    """The decoder input before each letter token has finished exactly that token's unit index (an independent
    walk: ``token_units``), for letter units (multi-byte letters included) and for byte-level CTC."""
    for model, texts, ids in (
            (letter_model(), ["A B Ж A", "D C", "Ж"], torch.ones(3, dtype=torch.long)),
            (SignT5ForConditionalGeneration(build_config(PoseEncoderConfig(), umt5_config("tiny"), ctc_weight=0.5,
                                                         positions="ctc")), ["Ab cД", "x"], None)):
        labels = tokenize_targets(byte_tokenizer(), texts)
        counts = model.decoder_unit_counts(model._shift_right(labels))
        checked = 0
        for row, units in zip(counts.tolist(), model.token_units(labels, ids)):
            letters = [(j, u) for j, u in enumerate(units) if u is not None and u >= 0]
            first = {}
            for j, u in letters:
                first.setdefault(u, j)
            for u, j in first.items():  # a letter's first token reads its own unit
                assert row[j] == u
                checked += 1
        assert checked >= 4


class ForceTokens(LogitsProcessor):
    """Makes generate() write a fixed sequence, so its raw logits can be checked step by step."""

    def __init__(self, tokens: torch.Tensor):
        self.tokens = tokens

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        forced = torch.full_like(scores, float("-inf"))
        step = input_ids.shape[1] - 1
        return forced.scatter(1, self.tokens[:, step:step + 1], 0.0)


@pytest.mark.parametrize("slope", [0.0, 4.0])
def test_generate_with_a_cache_sees_the_whole_prefix_count(slope):
    """generate() (one token a step, cached) gives the logits that the full prefix gives at every step, also
    after spaces, where the step's own token alone would lose the count (and with it the aligned bias)."""
    torch.manual_seed(0)
    model = letter_model(aligned_attention_slope=slope)
    model.eval()
    hidden = torch.randn(2, 10, 32)
    memory = PoseEncoderOutput(last_hidden_state=hidden, attention_mask=torch.ones(2, 10, dtype=torch.bool))
    labels = tokenize_targets(byte_tokenizer(), ["A B C D", "D Ж A B"])[:, :7]
    out = model.generate(encoder_outputs=memory, max_new_tokens=7, do_sample=False, output_logits=True,
                         return_dict_in_generate=True, logits_processor=LogitsProcessorList([ForceTokens(labels)]))
    prefix = model._shift_right(labels)
    assert torch.equal(out.sequences[:, 1:], labels)
    with torch.no_grad():
        full = model(encoder_outputs=memory, decoder_input_ids=prefix).logits  # (B, 7, V)
    torch.testing.assert_close(torch.stack(out.logits, 1), full, rtol=1e-4, atol=1e-4)
    assert model.decoder_unit_counts(prefix)[0].tolist() == [0, 0, 1, 1, 2, 2, 3]


def test_unit_positions_put_the_count_beside_the_token_index():
    counts = torch.tensor([[0, 1, 1, 2]])
    table = unit_positions(counts, 3, 8)
    torch.testing.assert_close(table[0, :, :4], sinusoids(counts[0].float(), 4))
    torch.testing.assert_close(table[0, :, 4:], sinusoids(torch.arange(3, 7).float(), 4))


def test_unknown_positions_are_refused():
    from signt5.training.config import TrainConfig

    with pytest.raises(ValueError, match="positions"):
        TrainConfig(positions="letters")
    with pytest.raises(ValueError, match="positions"):
        letter_model(positions="letters")


def test_generate_runs_the_ctc_head_once_for_the_memory_positions():
    """The memory's positions depend on the memory alone: the first step's table serves every later step."""
    torch.manual_seed(0)
    model = letter_model()
    model.eval()
    calls = []
    model.ctc_head.register_forward_hook(lambda *_: calls.append(1))
    memory = PoseEncoderOutput(last_hidden_state=torch.randn(2, 10, 32),
                               attention_mask=torch.ones(2, 10, dtype=torch.bool))
    model.generate(encoder_outputs=memory, max_new_tokens=6, min_new_tokens=6, do_sample=False)
    assert len(calls) == 1
