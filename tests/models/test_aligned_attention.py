"""Cross-attention kept on the letter being written (``aligned_attention_slope``): a bias counted in CTC units."""

from __future__ import annotations

import pytest
import torch

from signt5.models.alignment import aligned_attention_bias, eager_attention
from signt5.models.encoder import PoseEncoderOutput
from signt5.models.text import byte_tokenizer, tokenize_targets

from .test_emission_positions import letter_model


def test_the_bias_is_the_slope_times_the_units_outside_the_letters_band():
    places = torch.tensor([[-0.5, 0, 0, 0.5, 1, 1, 1.5, 2, 2.5]])
    mask = torch.ones(1, 9, dtype=torch.bool)
    mask[0, 8] = False
    counts = torch.tensor([[0, 1, 2]])  # the letter each of three tokens reads
    bias = aligned_attention_bias(places, mask, counts, 3.0, torch.float32)
    assert bias.shape == (1, 1, 3, 9)
    for j, count in enumerate(counts[0].tolist()):
        expected = [-3.0 * max(0.0, abs(p - count) - 0.5) for p in places[0, :8].tolist()]
        torch.testing.assert_close(bias[0, 0, j, :8], torch.tensor(expected))
    assert (bias[0, 0, :, 8] == torch.finfo(torch.float32).min).all()  # padding stays masked
    assert bias[0, 0, 1, 4] == 0 and bias[0, 0, 1, 3] == 0 and bias[0, 0, 1, 6] == 0  # the letter, blanks either side


def test_a_steep_slope_keeps_each_token_on_its_letters_frames():
    """Teacher-forced, with a slope no logit can outweigh, every letter token's attention (every layer, every
    head) sits on the frames whose CTC place is its own unit count, give or take the blanks beside it."""
    torch.manual_seed(0)
    model = letter_model(aligned_attention_slope=1e4)
    model.eval()
    memory = PoseEncoderOutput(last_hidden_state=torch.randn(2, 24, 32), attention_mask=torch.ones(2, 24, dtype=torch.bool))
    labels = tokenize_targets(byte_tokenizer(), ["A B C D", "D Ж A B"])
    prefix = model._shift_right(labels)
    with torch.no_grad(), eager_attention(model.decoder.config):
        out = model(encoder_outputs=memory, decoder_input_ids=prefix, output_attentions=True)
        log_probs, mask = model.ctc_log_probs(memory)
    places = model.emission_places(mask, log_probs)  # (B, S): the best path's, as at decoding
    counts = model.decoder_unit_counts(prefix)  # (B, L)
    band = ((places[:, None, :] - counts[:, :, None]).abs() <= 0.5)  # (B, L, S)
    reachable = band.any(-1)  # tokens whose count the best path emitted
    assert reachable.sum() >= 4
    for attention in out.cross_attentions:  # (B, H, L, S)
        mass = (attention * band[:, None]).sum(-1)  # (B, H, L)
        assert (mass.permute(0, 2, 1)[reachable] > 0.999).all()
    free = letter_model()
    free.load_state_dict(model.state_dict())
    free.eval()
    with torch.no_grad(), eager_attention(free.decoder.config):
        loose = free(encoder_outputs=memory, decoder_input_ids=prefix, output_attentions=True).cross_attentions
    assert ((loose[0] * band[:, None]).sum(-1).permute(0, 2, 1)[reachable] < 0.99).any()  # without it, it strays


def test_the_slope_needs_positions_counted_in_ctc_units():
    with pytest.raises(ValueError, match="aligned_attention_slope"):
        letter_model(positions="both_ends", aligned_attention_slope=4.0)
    with pytest.raises(ValueError, match="aligned_attention_slope"):
        letter_model(aligned_attention_slope=-1.0)
