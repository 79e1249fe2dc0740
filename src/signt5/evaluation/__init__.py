"""Evaluation: translation metrics (sacrebleu BLEU/chrF, ROUGE-L, WER, CER, exact match) per sign language."""

from .metrics import (
    LOWER_IS_BETTER,
    METRIC_NAMES,
    MetricReport,
    MetricsError,
    character_error_rate,
    compute_metrics,
    edit_distance,
    exact_match,
    rouge_l,
    word_error_rate,
)

__all__ = [
    "LOWER_IS_BETTER", "METRIC_NAMES", "MetricReport", "MetricsError", "character_error_rate", "compute_metrics",
    "edit_distance", "exact_match", "rouge_l", "word_error_rate",
]
