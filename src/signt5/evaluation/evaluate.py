"""Evaluate a trained model on any manifest split: metrics overall and per sign language, and result files."""

from __future__ import annotations

import csv
import fnmatch
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.manifest import check_labels, read_manifest
from ..decoding.generate import joint_ctc_weight
from ..decoding.metrics import MetricReport, compute_metrics
from ..decoding.predictor import Predictor
from ..errors import SignT5Error

logger = logging.getLogger(__name__)


@dataclass
class EvaluationResult:
    model_dir: str
    manifest: str
    split: str | None
    target: str
    num_beams: int
    decoding: str
    ids: list[str]
    references: list[str]
    hypotheses: list[str]
    sign_languages: list[str]
    report: MetricReport
    samples_per_second: float
    skipped: list[str] = field(default_factory=list)
    ctc_weight: float | None = None  # joint decoding's CTC weight

    def to_text(self) -> str:
        lines = [f"model: {self.model_dir}", f"data: {self.manifest} (split: {self.split or 'all'}), "
                 f"target: {self.target}, decoding: {self.decoding}{self._weight()}, beams: {self.num_beams}",
                 f"samples: {len(self.ids)} ({self.samples_per_second:.1f} samples/s)", "", self.report.to_text()]
        if self.skipped:
            lines += ["", f"skipped {len(self.skipped)} unreadable sample(s):"] + [f"  {s}" for s in self.skipped]
        return "\n".join(lines)

    def _weight(self) -> str:
        return f" (CTC weight {self.ctc_weight:g})" if self.ctc_weight is not None else ""

    def to_dict(self) -> dict[str, Any]:
        return {"model_dir": self.model_dir, "manifest": self.manifest, "split": self.split, "target": self.target,
                "num_beams": self.num_beams, "decoding": self.decoding, "ctc_weight": self.ctc_weight, "count": len(self.ids), "samples_per_second": self.samples_per_second,
                "metrics": self.report.to_dict(), "skipped": self.skipped}


def evaluate_model(model_dir: str | Path, manifest: str | Path, split: str | None = "test",
                   target: str | None = None, batch_size: int = 8, num_beams: int = 1,
                   max_samples: int | None = None, predictor: Predictor | None = None,
                   decoding: str | None = None, ctc_weight: float | None = None) -> EvaluationResult:
    """Decode every sample of ``split`` and score it; unreadable samples are skipped and listed."""
    from ..data.cache import prepare_all

    predictor = predictor or Predictor.load(model_dir)
    target = target or predictor.target
    if target != predictor.target:
        logger.warning("the model was trained on %r; scoring it against %r", predictor.target, target)
    entries = read_manifest(manifest, split=split)[:max_samples]
    if not entries:
        raise SignT5Error(f"{manifest}: no samples in split {split!r}")
    check_labels(entries, target, manifest)
    data = prepare_all(entries, predictor.data_config)
    items, skipped = data.items(target), list(data.skipped)
    if items and items[0]["pose"].shape[1] != predictor.layout.num_points:
        raise SignT5Error(f"{manifest}: samples have {items[0]['pose'].shape[1]} points after preprocessing, the "
                          f"model takes {predictor.layout.num_points}: a different keypoint layout")
    decoding = decoding or predictor.model.config.decoding
    if decoding == "joint" and ctc_weight is None:
        ctc_weight = joint_ctc_weight(predictor.model.config)
    hyps, speed = predictor.predict_items(items, num_beams, batch_size, decoding=decoding, ctc_weight=ctc_weight)
    refs = [item["label"] for item in items]
    languages = [item["sign_language"] or "(none)" for item in items]
    report = compute_metrics(refs, hyps, languages)
    return EvaluationResult(str(predictor.model_dir), str(manifest), split, target, num_beams, decoding,
                            [item["id"] for item in items], refs, hyps, languages, report, speed, skipped,
                            ctc_weight if decoding == "joint" else None)


def write_results(result: EvaluationResult, output_file: str | Path) -> list[Path]:
    """The readable results file, ``<stem>.json`` with every figure and ``<stem>.csv`` per sample."""
    output = Path(output_file)
    output.parent.mkdir(parents=True, exist_ok=True)
    json_path, csv_path = output.with_suffix(".json"), output.with_suffix(".csv")
    if output.suffix.lower() in (".json", ".csv"):
        raise SignT5Error(f"--output_file {output}: give a .txt name; the .json and .csv are written beside it")
    output.write_text(result.to_text() + "\n", encoding="utf-8")
    json_path.write_text(json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    with csv_path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "sign_language", "reference", "hypothesis"])
        writer.writerows(zip(result.ids, result.sign_languages, result.references, result.hypotheses))
    return [output, json_path, csv_path]


def expand_splits(manifest: str | Path, spec: str) -> list[str | None]:
    """``--split``'s value as split names: ``all`` (every row, as one), or comma-separated names and shell
    patterns (``test*``) matched against the manifest's splits, in the manifest's order."""
    if spec == "all":
        return [None]
    present = list(dict.fromkeys(e.split for e in read_manifest(manifest) if e.split))
    chosen: list[str | None] = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        matches = [s for s in present if fnmatch.fnmatchcase(s, part)] if any(c in part for c in "*?[") else [part]
        if not matches:
            raise SignT5Error(f"{manifest}: no split matches {part!r}; it has {', '.join(present) or 'none'}")
        chosen += [m for m in matches if m not in chosen]
    return chosen


def splits_table(results: list[EvaluationResult]) -> str:
    """One row per split (CER and WER lower is better), so stress splits read side by side with test."""
    header = f"{'split':<18} {'n':>5} {'cer':>7} {'wer':>7} {'bleu4':>7} {'chrf':>7} {'exact':>7} {'samples/s':>10}"
    lines = [f"decoding: {results[0].decoding}{results[0]._weight()}, beams: {results[0].num_beams}; "
             "scores in percent", header]
    for r in results:
        m = r.report.overall
        lines.append(f"{r.split or 'all':<18} {len(r.ids):>5} {m['cer']:>7.2f} {m['wer']:>7.2f} {m['bleu4']:>7.2f} "
                     f"{m['chrf']:>7.2f} {m['exact_match']:>7.2f} {r.samples_per_second:>10.1f}")
    return "\n".join(lines)


def split_output_file(output_file: str | Path, split: str | None, several: bool) -> Path:
    """Where one split's results go: ``output_file`` itself, or with several splits ``<stem>_<split>.txt``."""
    output = Path(output_file)
    return output.with_name(f"{output.stem}_{split}{output.suffix or '.txt'}") if several else output

