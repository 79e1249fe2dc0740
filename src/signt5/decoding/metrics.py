"""Translation metrics: BLEU-1..4, chrF, ROUGE-L, WER, CER and exact match, overall and per sign language.

Every score is a percentage (0..100), like sacrebleu's. Conventions, chosen so scores are comparable:

* BLEU-n and chrF are sacrebleu corpus scores with its defaults (tokenizer 13a, exponential smoothing, one
  reference); the signatures are kept with the report so papers can be matched. BLEU-n uses
  ``max_ngram_order=n``; for letter-spaced glosses ("H E L L O") the tokens are letters. As in sacrebleu,
  BLEU-n is 0 for a set with no n-grams of order n (e.g. only 3-letter words for BLEU-4).
* ROUGE-L is the mean sentence-level F1 of ``rouge-score``, but with a lowercasing whitespace tokenizer:
  its default tokenizer keeps only ``[a-z0-9]`` and would turn Greek, Cyrillic or Arabic into no tokens.
* WER and CER are corpus rates: total Levenshtein edits over total reference length. WER counts
  whitespace-separated words. CER counts Unicode code points with all whitespace removed, so the gloss
  "H E L L O" and the text "HELLO" are scored alike and separating spaces do not dilute the rate (word
  boundaries are WER's job). Rates can exceed 100 when hypotheses are much longer than references.
* Exact match compares hypothesis and reference after collapsing whitespace (case-sensitive).
* An empty reference is kept: its hypothesis's words/characters count as insertions, and it adds nothing
  to the denominator. When a whole set has empty references the rate is 0 if every hypothesis is empty
  too, else 100 (there is nothing to divide by).
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Sequence
from dataclasses import asdict, dataclass, field

from ..errors import SignT5Error

logger = logging.getLogger(__name__)

METRIC_NAMES = ("bleu1", "bleu2", "bleu3", "bleu4", "chrf", "rougeL", "wer", "cer", "exact_match")
LOWER_IS_BETTER = frozenset({"wer", "cer"})


class MetricsError(SignT5Error, ValueError):
    """References, hypotheses and groups that cannot be scored together."""


@dataclass
class MetricReport:
    """Scores over the whole set and per group (sign language), with sacrebleu's signatures."""

    overall: dict[str, float]
    per_group: dict[str, dict[str, float]] = field(default_factory=dict)
    signatures: dict[str, str] = field(default_factory=dict)
    count: int = 0
    group_counts: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Plain JSON-serialisable form."""
        return asdict(self)

    def to_text(self) -> str:
        """A table: one row for all samples, one per group; then the signatures."""
        columns = [name for name in METRIC_NAMES if name in self.overall]
        header = f"{'group':12s} {'n':>6s} " + " ".join(f"{c:>11s}" for c in columns)
        rows = [("all", self.count, self.overall)]
        rows += [(g, self.group_counts.get(g, 0), self.per_group[g]) for g in sorted(self.per_group)]
        lines = [header, "-" * len(header)]
        for name, n, scores in rows:
            lines.append(f"{name[:12]:12s} {n:6d} " + " ".join(f"{scores[c]:11.2f}" for c in columns))
        lines.append("all scores in percent; wer/cer lower is better")
        lines += [f"{name} signature: {sig}" for name, sig in sorted(self.signatures.items())]
        return "\n".join(lines)


def normalize_whitespace(text: str) -> str:
    """Collapse runs of whitespace to one space and strip the ends."""
    return " ".join(text.split())


def character_edits(reference: str, hypothesis: str) -> int:
    """The edits CER counts: between the two strings' characters, whitespace left out (a gloss "M A R K" and the
    word "MARK" spell the same letters)."""
    return edit_distance("".join(reference.split()), "".join(hypothesis.split()))


def edit_distance(reference: Sequence[Hashable], hypothesis: Sequence[Hashable]) -> int:
    """Levenshtein distance (unit-cost substitutions, insertions, deletions) between two sequences."""
    if len(reference) < len(hypothesis):
        reference, hypothesis = hypothesis, reference
    if not hypothesis:
        return len(reference)
    previous = list(range(len(hypothesis) + 1))
    for i, ref_item in enumerate(reference, start=1):
        current = [i]
        for j, hyp_item in enumerate(hypothesis, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref_item != hyp_item)))
        previous = current
    return previous[-1]


def _rate(pairs: Sequence[tuple[Sequence, Sequence]]) -> float:
    edits = sum(edit_distance(ref, hyp) for ref, hyp in pairs)
    length = sum(len(ref) for ref, _ in pairs)
    if length == 0:
        return 0.0 if edits == 0 else 100.0
    return 100.0 * edits / length


def word_error_rate(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus WER in percent: word edits over reference words."""
    return _rate([(r.split(), h.split()) for r, h in zip(references, hypotheses)])


def character_error_rate(references: Sequence[str], hypotheses: Sequence[str], ignore_whitespace: bool = True) -> float:
    """Corpus CER in percent over code points; whitespace is removed (default) or collapsed to single spaces."""
    def chars(text: str) -> str:
        return "".join(text.split()) if ignore_whitespace else normalize_whitespace(text)

    return _rate([(chars(r), chars(h)) for r, h in zip(references, hypotheses)])


def exact_match(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Percentage of hypotheses equal to their reference after whitespace normalisation."""
    if not references:
        return 0.0
    hits = sum(normalize_whitespace(r) == normalize_whitespace(h) for r, h in zip(references, hypotheses))
    return 100.0 * hits / len(references)


class WhitespaceTokenizer:
    """Lowercasing whitespace tokenizer for ``rouge-score`` that keeps every script."""

    def tokenize(self, text: str) -> list[str]:
        return text.lower().split()


def rouge_l(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Mean sentence-level ROUGE-L F1 in percent."""
    from rouge_score.rouge_scorer import RougeScorer

    if not references:
        return 0.0
    scorer = RougeScorer(["rougeL"], tokenizer=WhitespaceTokenizer())
    total = sum(scorer.score(r, h)["rougeL"].fmeasure for r, h in zip(references, hypotheses))
    return 100.0 * total / len(references)


def _sacrebleu_scores(references: Sequence[str], hypotheses: Sequence[str]) -> tuple[dict[str, float], dict[str, str]]:
    """BLEU-1..4 from one pass of BLEU-4 statistics (same as ``BLEU(max_ngram_order=n)``) and chrF."""
    from sacrebleu.metrics import BLEU, CHRF

    refs, hyps = [list(references)], list(hypotheses)
    bleu = BLEU(max_ngram_order=4)
    stats = bleu.corpus_score(hyps, refs)
    scores = {
        f"bleu{n}": float(BLEU.compute_bleu(stats.counts, stats.totals, stats.sys_len, stats.ref_len,
                                            smooth_method=bleu.smooth_method, max_ngram_order=n).score)
        for n in range(1, 5)
    }
    chrf = CHRF()
    scores["chrf"] = float(chrf.corpus_score(hyps, refs).score)
    return scores, {"bleu": str(bleu.get_signature()), "chrf": str(chrf.get_signature())}


@dataclass
class _SentenceStats:
    """Per-sentence counts, computed once and summed for the whole set and for each group."""

    word_edits: list[int]
    words: list[int]
    char_edits: list[int]
    chars: list[int]
    exact: list[bool]
    rouge: list[float]

    @classmethod
    def of(cls, references: Sequence[str], hypotheses: Sequence[str]) -> _SentenceStats:
        from rouge_score.rouge_scorer import RougeScorer

        scorer = RougeScorer(["rougeL"], tokenizer=WhitespaceTokenizer())
        stats = cls([], [], [], [], [], [])
        for ref, hyp in zip(references, hypotheses):
            ref_words, hyp_words = ref.split(), hyp.split()
            stats.word_edits.append(edit_distance(ref_words, hyp_words))
            stats.words.append(len(ref_words))
            stats.char_edits.append(character_edits(ref, hyp))
            stats.chars.append(len("".join(ref_words)))
            stats.exact.append(ref_words == hyp_words)
            stats.rouge.append(scorer.score(ref, hyp)["rougeL"].fmeasure)
        return stats

    def scores(self, idx: Sequence[int]) -> dict[str, float]:
        def rate(edits: list[int], lengths: list[int]) -> float:
            total_edits, total_length = sum(edits[i] for i in idx), sum(lengths[i] for i in idx)
            if total_length == 0:
                return 0.0 if total_edits == 0 else 100.0
            return 100.0 * total_edits / total_length

        return {
            "rougeL": 100.0 * sum(self.rouge[i] for i in idx) / len(idx),
            "wer": rate(self.word_edits, self.words),
            "cer": rate(self.char_edits, self.chars),
            "exact_match": 100.0 * sum(self.exact[i] for i in idx) / len(idx),
        }


def _score(references: list[str], hypotheses: list[str], stats: _SentenceStats,
           idx: Sequence[int]) -> tuple[dict[str, float], dict[str, str]]:
    scores, signatures = _sacrebleu_scores([references[i] for i in idx], [hypotheses[i] for i in idx])
    scores.update(stats.scores(idx))
    return {name: scores[name] for name in METRIC_NAMES}, signatures


def compute_metrics(references: Sequence[str], hypotheses: Sequence[str],
                    groups: Sequence[str] | None = None) -> MetricReport:
    """Score hypotheses against one reference each, overall and per group (e.g. sign language code)."""
    references, hypotheses = list(references), list(hypotheses)
    if len(references) != len(hypotheses):
        raise MetricsError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    if not references:
        raise MetricsError("nothing to score: no references and no hypotheses")
    if groups is not None and len(groups) != len(references):
        raise MetricsError(f"{len(groups)} group labels for {len(references)} samples")
    for name, texts in (("reference", references), ("hypothesis", hypotheses)):
        bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
        if bad is not None:
            raise MetricsError(f"{name} {bad} is {type(texts[bad]).__name__}, not str")

    stats = _SentenceStats.of(references, hypotheses)
    overall, signatures = _score(references, hypotheses, stats, range(len(references)))
    report = MetricReport(overall=overall, signatures=signatures, count=len(references))
    if groups is not None:
        members: dict[str, list[int]] = {}
        for i, group in enumerate(groups):
            members.setdefault(str(group), []).append(i)
        for group in sorted(members):
            report.per_group[group], _ = _score(references, hypotheses, stats, members[group])
            report.group_counts[group] = len(members[group])
    empty = sum(not r.strip() for r in references)
    if empty:
        logger.warning("%d of %d references are empty; their hypotheses count as insertions", empty, len(references))
    logger.debug("scored %d samples in %d groups", len(references), len(report.per_group))
    return report
