"""Attention decoding ends where the memory's letters end: at most a margin past the CTC best path's emissions."""

from __future__ import annotations

import torch

from signt5.data.dataset import DataConfig, pad_batch, prepare_sample
from signt5.data.item import pose_item
from signt5.decoding.generate import generate_texts
from signt5.decoding.length import EMISSION_MARGIN, EmissionLengthCap, emission_counts, length_cap, tokens_per_unit
from signt5.models.labels import model_inputs
from signt5.models.text import BYTE_OFFSET, byte_tokenizer

from ..conftest import make_sample
from ..models.test_emission_positions import letter_model

A, B, SPACE = ord("A") + BYTE_OFFSET, ord("B") + BYTE_OFFSET, ord(" ") + BYTE_OFFSET


def best_path_units(best: list[int], blank: int = 0) -> int:
    """Independent count: walk the path, a unit wherever a non-blank class differs from the frame before."""
    units, previous = 0, None
    for c in best:
        if c != blank and c != previous:
            units += 1
        previous = c
    return units


def test_emission_counts_follow_the_best_path_within_the_mask():
    torch.manual_seed(0)
    log_probs = torch.randn(3, 12, 6).log_softmax(-1)
    log_probs[:, ::4, 0] += 50  # some blank frames, so repeats split
    mask = torch.ones(3, 12, dtype=torch.bool)
    mask[1, 7:] = False
    expected = [best_path_units(row.argmax(-1)[m].tolist()) for row, m in zip(log_probs, mask)]
    assert emission_counts(log_probs, mask).tolist() == expected
    assert expected[0] > 0


def only_end(cap: EmissionLengthCap, prefixes: torch.Tensor, vocab: int) -> list[bool]:
    """Per row, whether the cap left end-of-sequence alone (at its own score) and every other token at -inf;
    rows it leaves alone must come back unchanged."""
    scores = torch.randn(len(prefixes), vocab)
    capped = cap(prefixes, scores.clone())
    out = []
    for row in range(len(prefixes)):
        if torch.equal(capped[row], scores[row]):
            out.append(False)
        else:
            assert capped[row].isfinite().nonzero().flatten().tolist() == [cap.eos]
            assert capped[row, cap.eos] == scores[row, cap.eos]
            out.append(True)
    return out


def test_only_end_of_sequence_once_the_letters_pass_the_margin():
    model = letter_model()
    vocab = model.config.text_config.vocab_size
    cap = EmissionLengthCap(model, torch.tensor([2, 4]), margin=1)  # sample 0 may finish 3 letters, sample 1 five
    prefixes = torch.tensor([[0, A, SPACE, B, SPACE, A, SPACE],  # sample 0, beam 0: three finished: at the cap
                             [0, A, SPACE, B, SPACE, A, A],  # beam 1: two finished, the third not yet
                             [0, A, SPACE, B, SPACE, A, SPACE],  # sample 1, beam 0: three of five
                             [0, 0, 0, 0, 0, 0, 0]])  # beam 1: nothing written
    assert only_end(cap, prefixes, vocab) == [True, False, False, False]


def test_a_run_away_inside_one_letter_ends_at_the_letters_tokens():
    """No letter finished, but as many tokens written as the allowed letters could take (3 each here)."""
    model = letter_model()
    cap = EmissionLengthCap(model, torch.tensor([0]), margin=1)
    run_away = ord("\x10") + BYTE_OFFSET
    assert only_end(cap, torch.tensor([[0, run_away, run_away]]), model.config.text_config.vocab_size) == [False]
    assert only_end(cap, torch.tensor([[0, run_away, run_away, run_away]]), model.config.text_config.vocab_size) == [True]


def test_attention_decoding_never_writes_past_the_margin():
    """A random decoder does not end by itself: it writes one byte to the 64-token limit. With the cap no
    hypothesis has more letters than CTC's best path plus the margin, nor more tokens than those letters take."""
    torch.manual_seed(0)
    model = letter_model().eval()
    items = []
    for i, frames in enumerate((30, 44, 18, 25)):
        sample = prepare_sample(make_sample("holistic_586", frames=frames, seed=i), DataConfig())
        items.append(pose_item(str(i), sample.coords, sample.mask, "A B", "ase"))
    inputs = model_inputs(pad_batch(items), model.config, None)
    with torch.no_grad():
        encoded = model.get_encoder()(**inputs)
        uncapped = model.generate(encoder_outputs=encoded, max_new_tokens=64, do_sample=False)
        counts = emission_counts(*model.ctc_log_probs(encoded)).tolist()
        assert length_cap(model, encoded).limits.tolist() == [c + EMISSION_MARGIN for c in counts]
    assert uncapped.shape[1] == 65 and (uncapped[:, 1:] != model.config.text_config.eos_token_id).all()
    texts, _ = generate_texts(model, byte_tokenizer(), items, batch_size=4, decoding="attention")
    width = tokens_per_unit(model.config)  # "ase:Ж": 2 bytes and a space
    assert width == 3
    for text, count in zip(texts, counts):
        assert len(text.split()) <= count + EMISSION_MARGIN
        assert 0 < len(text.encode()) <= (count + EMISSION_MARGIN) * width


def test_no_cap_where_the_decoder_does_not_count_emissions():
    model = letter_model(positions="both_ends").eval()
    sample = prepare_sample(make_sample("holistic_586", frames=20), DataConfig())
    inputs = model_inputs(pad_batch([pose_item("0", sample.coords, sample.mask, "A", "ase")]), model.config, None)
    with torch.no_grad():
        assert length_cap(model, model.get_encoder()(**inputs)) is None
