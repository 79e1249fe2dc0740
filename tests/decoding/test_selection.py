"""Choosing the decoding on dev: the lowest CER, unless dev cannot tell it from one preferred before it."""

from __future__ import annotations

import numpy as np

from signt5.decoding.selection import choose_decoding, worse_beyond_chance


def test_a_clear_winner_is_kept_even_when_it_is_ctc():
    rng = np.random.default_rng(0)
    ctc = rng.integers(0, 2, size=200)  # about 100 edits
    joint = ctc + (rng.random(200) < 0.3)  # about 60 more, spread over the samples
    attention = joint + 1
    assert worse_beyond_chance(joint, ctc)
    assert choose_decoding({"attention": attention, "joint": joint, "ctc": ctc}) == "ctc"


def test_a_gap_of_one_letter_is_chance_and_goes_to_the_preferred_decoding():
    ctc = [0] * 190
    joint = [0] * 189 + [1]  # one letter more, in one sample: dev cannot tell
    attention = [0] * 188 + [1] * 2
    assert not worse_beyond_chance(joint, ctc)
    assert choose_decoding({"attention": attention, "joint": joint, "ctc": ctc}) == "joint"
    assert choose_decoding({"attention": attention, "ctc": ctc}) == "attention"  # no joint: the decoder next
    assert choose_decoding({"attention": [5] * 190, "ctc": ctc}) == "ctc"


def test_the_bootstrap_agrees_with_a_binomial_sign_test():
    """One decoding one edit worse on k samples and one better on m: the bootstrap's share of draws in which it is
    worse approaches the normal approximation of the paired difference, so 'beyond chance' flips near the
    one-sided 95 % point, (k - m) / sqrt(k + m) = 1.645."""
    def worse(k: int, m: int) -> bool:
        base = [1] * 200
        other = [2] * k + [0] * m + [1] * (200 - k - m)
        return worse_beyond_chance(other, base, resamples=4000)

    assert worse(30, 15)  # z = 15 / sqrt(45) = 2.24
    assert not worse(20, 14)  # z = 6 / sqrt(34) = 1.03
