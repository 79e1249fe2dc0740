"""Data set manifests: one row per sample (CSV or JSONL), pointing at pose files relative to the manifest."""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

from ..errors import ManifestError

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("id", "path")
LABEL_COLUMNS = ("text", "gloss")
COLUMNS = ("id", "path", "key", "text", "gloss", "sign_language", "split")


@dataclass(frozen=True)
class ManifestEntry:
    """One sample: where its poses are and what it says. ``key`` selects a sample inside a multi-sample file."""

    id: str
    path: Path
    text: str = ""
    gloss: str = ""
    sign_language: str = ""
    split: str = ""
    key: str = ""

    @property
    def sample_key(self) -> str:
        return self.key or self.id

    def label(self, target: str) -> str:
        if target not in LABEL_COLUMNS:
            raise ValueError(f"target must be one of {LABEL_COLUMNS}, got {target!r}")
        return getattr(self, target)


def _rows(path: Path) -> Iterable[tuple[int, dict]]:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            for line, row in enumerate(reader, start=2):
                yield line, row
    elif suffix in (".jsonl", ".ndjson"):
        with path.open(encoding="utf-8") as f:
            for line, text in enumerate(f, start=1):
                if not text.strip():
                    continue
                try:
                    row = json.loads(text)
                except json.JSONDecodeError as e:
                    raise ManifestError(f"{path}:{line}: not valid JSON ({e.msg})") from None
                if not isinstance(row, dict):
                    raise ManifestError(f"{path}:{line}: expected a JSON object per line")
                yield line, row
    else:
        raise ManifestError(f"{path}: manifest must be .csv or .jsonl, got {suffix!r}")


def _checked_rows(path: Path) -> Iterable[tuple[int, dict]]:
    """``_rows`` with undecodable bytes and csv's own errors reported as a ManifestError naming the file."""
    try:
        yield from _rows(path)
    except UnicodeDecodeError as e:
        raise ManifestError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason}); save the manifest as UTF-8") from None
    except csv.Error as e:
        raise ManifestError(f"{path}: not a readable CSV ({e})") from None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def read_manifest(path: str | Path, split: str | None = None) -> list[ManifestEntry]:
    """Read and validate a manifest; extra columns are ignored, ``path`` is relative to the manifest's folder."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found")
    root = path.parent
    entries: list[ManifestEntry] = []
    seen: dict[str, int] = {}
    columns_checked = False
    for line, row in _checked_rows(path):
        row = {str(k).strip(): ("" if v is None else str(v).strip()) for k, v in row.items() if k is not None}
        bad = next((k for k, v in row.items() if not _encodable(v)), None)
        if bad is not None:  # JSON's "\ud800" escapes decode to lone surrogates, which no tokenizer can encode
            raise ManifestError(f"{path}:{line}: column {bad!r} holds text that is not valid Unicode (a lone "
                                "surrogate code point)")
        if not columns_checked:
            missing = [c for c in REQUIRED_COLUMNS if c not in row]
            if missing or not any(c in row for c in LABEL_COLUMNS):
                need = missing + ([] if any(c in row for c in LABEL_COLUMNS) else ["text or gloss"])
                raise ManifestError(f"{path}: missing column(s) {need}; has {sorted(row)}")
            columns_checked = True
        if not row.get("id"):  # a JSONL row may lack a key the first row had
            raise ManifestError(f"{path}:{line}: empty or missing id")
        if not row.get("path"):
            raise ManifestError(f"{path}:{line}: sample {row['id']!r} has an empty path")
        if row["id"] in seen:
            raise ManifestError(f"{path}:{line}: duplicate id {row['id']!r} (first on line {seen[row['id']]})")
        seen[row["id"]] = line
        entry = ManifestEntry(
            id=row["id"], path=(root / row["path"]), text=row.get("text", ""), gloss=row.get("gloss", ""),
            sign_language=row.get("sign_language", ""), split=row.get("split", ""), key=row.get("key", ""),
        )
        if split is None or entry.split == split:
            entries.append(entry)
    if not columns_checked:
        raise ManifestError(f"{path}: manifest has no rows")
    return entries


def check_labels(entries: Sequence[ManifestEntry], target: str, manifest: str | Path = "") -> None:
    """Raise naming the samples whose ``target`` label is empty (a model cannot learn from them)."""
    empty = [e.id for e in entries if not e.label(target).strip()]
    if empty:
        raise ManifestError(f"{manifest}: {len(empty)} sample(s) have an empty {target!r} label, e.g. {empty[:5]}")


def write_manifest(entries: Sequence[ManifestEntry], path: str | Path) -> None:
    """Write entries as CSV or JSONL (by suffix) with paths relative to the manifest's folder, atomically."""
    path = Path(path)
    root = path.parent.resolve()
    rows = []
    for e in entries:
        row = asdict(e)
        p = Path(e.path).resolve()
        row["path"] = p.relative_to(root).as_posix() if p.is_relative_to(root) else str(p)
        rows.append({c: row[c] for c in COLUMNS})
    tmp = path.with_name(path.name + ".tmp")
    if path.suffix.lower() == ".csv":
        with tmp.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
    else:
        with tmp.open("w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)
