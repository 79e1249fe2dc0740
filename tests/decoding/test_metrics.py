"""Metric values against hand-computed cases: perfect output, known edit distances, BLEU-1 by hand, groups."""

from __future__ import annotations

import json
import math

import pytest

from signt5.errors import SignT5Error
from signt5.decoding.metrics import (
    METRIC_NAMES,
    MetricsError,
    character_error_rate,
    compute_metrics,
    edit_distance,
    exact_match,
    rouge_l,
    word_error_rate,
)

REFS = ["the cat sat on the mat", "H E L L O W O R L D", "καλημέρα κόσμε από την Αθήνα"]


def test_perfect_hypotheses_score_best_everywhere():
    report = compute_metrics(REFS, list(REFS))
    for name in METRIC_NAMES:
        expected = 0.0 if name in ("wer", "cer") else 100.0
        assert report.overall[name] == pytest.approx(expected), name
    assert report.count == 3


@pytest.mark.parametrize("ref, hyp, distance", [
    ("kitten", "sitting", 3), ("", "abc", 3), ("abc", "", 3), ("", "", 0), ("flaw", "lawn", 2), ("abc", "abc", 0),
])
def test_edit_distance_known_cases(ref, hyp, distance):
    assert edit_distance(ref, hyp) == distance
    assert edit_distance(hyp, ref) == distance


def test_cer_kitten_sitting_is_half():
    assert character_error_rate(["kitten"], ["sitting"]) == pytest.approx(50.0)


def test_cer_ignores_separating_spaces_in_glosses():
    assert character_error_rate(["H E L L O"], ["H E L O"]) == pytest.approx(20.0)
    assert character_error_rate(["H E L L O"], ["HELLO"]) == 0.0
    assert character_error_rate(["ab cd"], ["ab  cd"], ignore_whitespace=False) == 0.0
    assert character_error_rate(["ab cd"], ["abcd"], ignore_whitespace=False) == pytest.approx(20.0)


def test_cer_counts_code_points_of_any_script():
    assert character_error_rate(["Αθήνα"], ["Αθηνα"]) == pytest.approx(20.0)
    assert character_error_rate(["مرحبا"], ["مرحب"]) == pytest.approx(20.0)


def test_wer_one_substitution_one_deletion():
    assert word_error_rate(["a b c d"], ["a x c"]) == pytest.approx(50.0)


def test_rates_are_corpus_level_not_sentence_means():
    # 1 edit over 1 word and 0 edits over 9 words: corpus 10%, a sentence mean would say 50%.
    refs, hyps = ["a", "b c d e f g h i j"], ["z", "b c d e f g h i j"]
    assert word_error_rate(refs, hyps) == pytest.approx(10.0)


def test_empty_references_count_insertions_without_dividing_by_zero():
    assert character_error_rate(["", "ab"], ["xy", "ab"]) == pytest.approx(100.0)
    assert character_error_rate([""], [""]) == 0.0
    assert word_error_rate([""], ["a b"]) == 100.0
    report = compute_metrics(["", "ab"], ["", "ab"])
    assert report.overall["cer"] == 0.0 and report.overall["exact_match"] == 100.0


def test_bleu1_matches_hand_computation():
    # clipped unigram matches: the 2, cat 1, dog 0 -> precision 3/4; brevity penalty exp(1 - 6/4)
    report = compute_metrics(["the cat sat on the mat"], ["the the cat dog"])
    assert report.overall["bleu1"] == pytest.approx(100 * 0.75 * math.exp(1 - 6 / 4), abs=1e-6)


def test_bleu_is_zero_when_no_ngrams_of_that_order_exist():
    # sacrebleu's standard behaviour, kept for comparability: 3-letter words have no 4-grams
    report = compute_metrics(["T O M"], ["T O M"])
    assert report.overall["bleu3"] == pytest.approx(100.0)
    assert report.overall["bleu4"] == 0.0


def test_exact_match_normalises_whitespace_only():
    assert exact_match(["a b", "c d", "E"], ["a  b ", "c e", "e"]) == pytest.approx(100 / 3)


def test_per_group_scores_equal_scores_of_each_subset():
    refs = ["H E L L O", "W O R L D", "the cat sat on the mat", "a dog"]
    hyps = ["H E L O", "W O R L D", "the cat sat on a mat", "the dog"]
    groups = ["ase", "ase", "bfi", "bfi"]
    report = compute_metrics(refs, hyps, groups)
    assert sorted(report.per_group) == ["ase", "bfi"]
    assert report.group_counts == {"ase": 2, "bfi": 2}
    assert report.per_group["ase"] == compute_metrics(refs[:2], hyps[:2]).overall
    assert report.per_group["bfi"] == compute_metrics(refs[2:], hyps[2:]).overall
    assert report.per_group["ase"]["exact_match"] == pytest.approx(50.0)


def test_signatures_are_sacrebleus():
    report = compute_metrics(REFS, REFS)
    assert set(report.signatures) == {"bleu", "chrf"}
    for signature in report.signatures.values():
        assert "nrefs:1" in signature and "version:" in signature
    assert "tok:13a" in report.signatures["bleu"]


def test_rouge_l_works_for_non_latin_scripts():
    from rouge_score.rouge_scorer import RougeScorer

    greek = ("καλημέρα κόσμε από την Αθήνα", "καλημέρα κόσμε στην Αθήνα")
    arabic = ("مرحبا بالعالم الجميل", "مرحبا بالعالم")
    for ref, hyp in (greek, arabic):
        # the library default drops non-ASCII letters entirely, hence our tokenizer
        assert RougeScorer(["rougeL"]).score(ref, hyp)["rougeL"].fmeasure == 0.0
        assert rouge_l([ref], [hyp]) > 50.0
    assert rouge_l(["ΑΘΗΝΑ"], ["αθηνα"]) == pytest.approx(100.0)
    assert rouge_l(["the cat sat"], ["the cat"]) == pytest.approx(100 * 2 * (1 * 2 / 3) / (1 + 2 / 3))


def test_report_serialises_and_prints():
    report = compute_metrics(REFS, ["the cat", "H E L L O", ""], ["bfi", "ase", "gss"])
    data = json.loads(json.dumps(report.to_dict()))
    assert set(data["overall"]) == set(METRIC_NAMES)
    assert set(data["per_group"]) == {"ase", "bfi", "gss"}
    text = report.to_text()
    for token in ("all", "ase", "bfi", "gss", "bleu4", "cer", "bleu signature: nrefs:1"):
        assert token in text


@pytest.mark.parametrize("args", [
    (["a", "b"], ["a"], None),
    ([], [], None),
    (["a"], ["a"], ["ase", "bfi"]),
    (["a"], [None], None),
])
def test_bad_inputs_raise_a_user_error(args):
    with pytest.raises(MetricsError) as info:
        compute_metrics(*args)
    assert isinstance(info.value, SignT5Error)


def test_report_agrees_with_the_single_metric_functions_and_sacrebleu():
    from sacrebleu.metrics import BLEU

    refs = ["the cat sat on the mat", "H E L L O", "a dog ran", "καλημέρα κόσμε"]
    hyps = ["the cat sat on mat", "H E L O", "the dog ran off", "καλημέρα"]
    overall = compute_metrics(refs, hyps).overall
    assert overall["wer"] == pytest.approx(word_error_rate(refs, hyps))
    assert overall["cer"] == pytest.approx(character_error_rate(refs, hyps))
    assert overall["rougeL"] == pytest.approx(rouge_l(refs, hyps))
    assert overall["exact_match"] == pytest.approx(exact_match(refs, hyps))
    for n in range(1, 5):
        assert overall[f"bleu{n}"] == pytest.approx(BLEU(max_ngram_order=n).corpus_score(hyps, [refs]).score)
