"""CTC prefix scores against brute force: every alignment of a tiny vocabulary enumerated and collapsed."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from signt5.decoding.ctc import LOG_ZERO, CTCPrefixScorer

CLASSES = 3  # blank 0 + labels 1, 2
PREFIXES = [[], [1], [2], [1, 1], [1, 2], [2, 1], [1, 2, 1], [2, 2, 1]]


def collapse(path: tuple[int, ...]) -> list[int]:
    out, previous = [], None
    for c in path:
        if c != previous and c != 0:
            out.append(c)
        previous = c
    return out


def brute_force(log_probs: torch.Tensor, length: int, prefix: list[int]) -> tuple[float, float]:
    """(log sum over alignments whose collapse starts with prefix, log sum over those equal to it)."""
    probs = log_probs[:length].double().exp()
    starts = exact = 0.0
    for path in itertools.product(range(CLASSES), repeat=length):
        p = math.prod(probs[t, c].item() for t, c in enumerate(path))
        labels = collapse(path)
        if labels[:len(prefix)] == prefix:
            starts += p
            if labels == prefix:
                exact += p
    return (math.log(starts) if starts else -math.inf), (math.log(exact) if exact else -math.inf)


def scores_of(scorer: CTCPrefixScorer, batch_index: int, prefix: list[int]) -> tuple[float, float]:
    state = scorer.state_of(batch_index, prefix)
    return state.score.item(), scorer.full_score(state).item()


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Two elements of 6 frames; the second is padded after 4 (its padded frames hold junk)."""
    generator = torch.Generator().manual_seed(0)
    log_probs = torch.randn(2, 6, CLASSES, generator=generator).mul(1.5).log_softmax(-1)
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    return log_probs, mask


@pytest.mark.parametrize("prefix", PREFIXES, ids=str)
@pytest.mark.parametrize("element,length", [(0, 6), (1, 4)])
def test_prefix_and_end_scores_equal_brute_force(batch, prefix, element, length):
    log_probs, mask = batch
    scorer = CTCPrefixScorer(log_probs, mask)
    want_prefix, want_end = brute_force(log_probs[element], length, prefix)
    got_prefix, got_end = scores_of(scorer, element, prefix)
    for got, want in ((got_prefix, want_prefix), (got_end, want_end)):
        if want == -math.inf:
            assert got < LOG_ZERO / 2
        else:
            assert got == pytest.approx(want, abs=1e-4)


def test_empty_prefix_has_score_zero_and_end_score_all_blank(batch):
    log_probs, mask = batch
    scorer = CTCPrefixScorer(log_probs, mask)
    score, end = scores_of(scorer, 1, [])
    assert score == 0.0
    assert end == pytest.approx(log_probs[1, :4, 0].sum().item(), abs=1e-5)


def test_padding_is_ignored_whatever_the_padded_frames_hold(batch):
    log_probs, mask = batch
    changed = log_probs.clone()
    changed[1, 4:] = torch.tensor([-9.0, -0.01, -5.0]).log_softmax(-1)
    for prefix in ([1, 2], [1, 1], [2]):
        assert scores_of(CTCPrefixScorer(changed, mask), 1, prefix) == pytest.approx(
            scores_of(CTCPrefixScorer(log_probs, mask), 1, prefix), abs=1e-5)
    # ... and the mask matters: unmasked, the junk frames change the score
    unmasked = CTCPrefixScorer(changed, torch.ones_like(mask))
    assert scores_of(unmasked, 1, [1, 2]) != pytest.approx(scores_of(CTCPrefixScorer(changed, mask), 1, [1, 2]))


def test_batched_extension_matches_one_at_a_time(batch):
    """Many (hypothesis, label) requests in one call give what single extensions give, repeats included."""
    log_probs, mask = batch
    scorer = CTCPrefixScorer(log_probs, mask)
    parents = [scorer.state_of(0, [1]), scorer.state_of(1, [1]), scorer.state_of(0, [2, 1])]
    from signt5.decoding.ctc import CTCState

    state = CTCState.cat(parents)
    parent = torch.tensor([0, 0, 1, 2, 2])
    element = torch.tensor([0, 0, 1, 0, 0])
    labels = torch.tensor([1, 2, 1, 1, 2])
    extended = scorer.extend(state, parent, element, labels)
    expected = [[1, 1], [1, 2], [1, 1], [2, 1, 1], [2, 1, 2]]
    for m, prefix in enumerate(expected):
        want_prefix, want_end = scores_of(scorer, int(element[m]), prefix)
        assert extended.score[m].item() == pytest.approx(want_prefix, abs=1e-5)
        assert scorer.full_score(extended)[m].item() == pytest.approx(want_end, abs=1e-5)
