"""Fetch the pretrained model and data sets from the Hugging Face Hub, or install copies the user already has.

Where things go, and what is guaranteed:

* Files are downloaded with ``huggingface_hub.snapshot_download`` (its progress bars; silence them with
  ``HF_HUB_DISABLE_PROGRESS_BARS=1``) into a staging folder next to the target,
  ``<parent>/.<target name>.<repo>[@<revision>].partial``. Only once the staged files pass a check (a model
  needs ``config.json``, weights and a tokenizer; a data set needs a manifest or a ``data.pkl``) are they
  moved into the target with ``os.replace``. A failed or interrupted run never leaves a half-written target.
* Resuming: on failure the staging folder is kept, and the next run skips every file already complete there.
  (huggingface_hub 2.x resumes a broken connection within a run, and Xet-stored files reuse its chunk cache,
  but a plain-HTTP file interrupted between runs starts again.)
* Offline (``HF_HUB_OFFLINE=1``) or when the Hub cannot be reached, a snapshot already in the shared
  Hugging Face cache (``HF_HUB_CACHE``) is used. Otherwise a :class:`ResourceError` says what failed and how
  to supply the files by hand.
* ``local_path`` installs files already on disk: they are checked first (nothing is written when something
  is missing), then copied (symlinks followed), so the target stays valid when the source goes away.
* A model target holds exactly one model: an existing complete one is reused as it is (no network) and any
  other existing content is only replaced with ``overwrite=True``. A data set target (the seed's ``data/``)
  may hold several data sets side by side: files are merged in, and changing an existing file needs
  ``overwrite=True``.
"""

from __future__ import annotations

import filecmp
import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

from .errors import SignT5Error

logger = logging.getLogger(__name__)

DEFAULT_MODEL_REPO_ID = "google/umt5-small"
DEFAULT_MODEL_DIR = "models/umt5"
DEFAULT_DATA_DIR = "data"
TOKENIZER_FILES = ("spiece.model", "tokenizer.json")
MANIFEST_SUFFIXES = (".csv", ".jsonl")
MODEL_IGNORE_PATTERNS = ["*.h5", "*.msgpack", "*.ot", "*.onnx", "*.tflite", "tf_model*", "flax_model*",
                         "rust_model*", "onnx/*", ".gitattributes"]
DATASET_IGNORE_PATTERNS = [".gitattributes"]
_SKIPPED_DIRS = {".cache", ".git", ".huggingface"}


class ResourceError(SignT5Error):
    """A model or data set that could not be downloaded or installed; the message says how to supply it."""


def _files(root: Path) -> Iterator[Path]:
    """Regular files under ``root`` (following symlinks), relative to it, without hub metadata folders."""
    for folder, dirs, names in os.walk(root, followlinks=True):
        dirs[:] = sorted(d for d in dirs if d not in _SKIPPED_DIRS)
        for name in sorted(names):
            path = Path(folder, name)
            if path.is_file():
                yield path.relative_to(root)


def model_problems(folder: str | Path) -> list[str]:
    """What a folder lacks to be loaded as a pretrained seq2seq model; empty when it is complete."""
    folder = Path(folder)
    if not folder.is_dir():
        return [f"{folder} is not a folder"]
    names = {p.name for p in folder.iterdir() if p.is_file()}
    problems = []
    if "config.json" not in names:
        problems.append("config.json")
    weights = [n for n in names if n.endswith(".safetensors") or re.fullmatch(r"pytorch_model.*\.bin", n)]
    indexes = [n for n in names if n in ("model.safetensors.index.json", "pytorch_model.bin.index.json")]
    if not weights:
        problems.append("weights (*.safetensors or pytorch_model.bin)")
    for index in indexes:
        try:
            shards = set(json.loads((folder / index).read_text(encoding="utf-8"))["weight_map"].values())
        except (OSError, ValueError, KeyError, AttributeError) as e:
            problems.append(f"a readable {index} ({e})")
            continue
        problems += [f"weight shard {s} (listed in {index})" for s in sorted(shards - names)]
    if not names.intersection(TOKENIZER_FILES):
        problems.append("tokenizer (" + " or ".join(TOKENIZER_FILES) + ")")
    return problems


def dataset_problems(folder: str | Path) -> list[str]:
    """What a folder lacks to be used as a data set (a manifest or a ``data.pkl``); empty when usable."""
    folder = Path(folder)
    if not folder.is_dir():
        return [f"{folder} is not a folder"]
    for rel in _files(folder):
        if rel.suffix.lower() in MANIFEST_SUFFIXES or rel.name == "data.pkl":
            return []
    return ["a manifest (*.csv or *.jsonl) or a data.pkl"]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "--", text)


def staging_dir(target: str | Path, repo_id: str, revision: str | None = None) -> Path:
    """The folder a download is staged in (kept on failure so that the next run resumes)."""
    target = Path(target)
    suffix = _slug(repo_id) + (f"@{_slug(revision)}" if revision else "")
    return target.parent / f".{target.name}.{suffix}.partial"


def _by_hand(kind: str, repo_id: str, target: Path, repo_type: str, revision: str | None = None) -> str:
    flag = (" --repo-type dataset" if repo_type == "dataset" else "") + (f" --revision {revision}" if revision else "")
    return (f"To supply the {kind} by hand: on a machine with internet run "
            f"`hf download {repo_id}{flag} --local-dir {target.name}` (huggingface_hub >= 1.0; older: "
            f"`huggingface-cli download ...`), copy the folder to this machine and pass "
            f"{_local_flag(kind)} <folder>.")


def _local_flag(kind: str) -> str:
    """The CLI flag that installs a local copy of this kind of resource."""
    return "--local_model_path" if kind == "model" else "--local_path"


def _hub_error(error: BaseException, kind: str, repo_id: str, revision: str | None, target: Path,
               repo_type: str, staging: Path) -> ResourceError:
    """Turn a huggingface_hub / network exception into one clear, actionable message."""
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        IncompleteSnapshotError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"{repo_type} {repo_id}" + (f" (revision {revision})" if revision else "")
    url = f"https://huggingface.co/{'datasets/' if repo_type == 'dataset' else ''}{repo_id}"
    root = error
    while root.__cause__ is not None:
        root = root.__cause__
    cause = " ".join(f"{type(root).__name__}: {root}".split())[:300].rstrip(".")
    resume = f" Files already fetched are kept in {staging}; running again resumes." if staging.exists() else ""
    if isinstance(error, GatedRepoError):
        what = (f"{where} is gated: accept its terms at {url} and log in (`hf auth login`, or set HF_TOKEN)")
    elif isinstance(error, RepositoryNotFoundError):
        what = (f"{where} was not found on the Hub (check the id and that it is a {repo_type}; "
                f"private repos need a token: `hf auth login` or HF_TOKEN)")
    elif isinstance(error, RevisionNotFoundError):
        what = f"{where}: the revision does not exist on the Hub"
    elif isinstance(error, IncompleteSnapshotError):
        what = f"{where} is only partly downloaded and the Hub cannot be reached to finish it"
    elif isinstance(error, (LocalEntryNotFoundError, OfflineModeIsEnabled)):
        offline = "offline mode is on (HF_HUB_OFFLINE=1)" if _offline() else "the Hub could not be reached"
        what = f"{where} could not be downloaded: {offline}, and it is not in the Hugging Face cache"
    elif isinstance(error, HfHubHTTPError):
        status = getattr(getattr(error, "response", None), "status_code", "?")
        what = f"{where} could not be downloaded: the Hub answered HTTP {status}"
    elif isinstance(error, ValueError):
        what = f"{repo_id!r} is not a valid Hub repo id ({cause})"
        return ResourceError(what)
    else:
        what = f"{where} could not be downloaded ({type(error).__name__})"
    return ResourceError(f"{what}. Cause: {cause}.{resume} {_by_hand(kind, repo_id, target, repo_type, revision)}")


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _snapshot(repo_id: str, repo_type: str, staging: Path, revision: str | None, token: str | bool | None,
              ignore_patterns: list[str], endpoint: str | None, cache_dir: str | Path | None) -> None:
    """Fill ``staging`` from the Hub, or from the shared cache when the Hub cannot be reached."""
    import httpx2
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    common = dict(repo_id=repo_id, repo_type=repo_type, revision=revision, ignore_patterns=ignore_patterns,
                  cache_dir=cache_dir)
    staging.mkdir(parents=True, exist_ok=True)
    try:
        logger.info("downloading %s %s into %s", repo_type, repo_id, staging)
        snapshot_download(**common, local_dir=staging, token=token, endpoint=endpoint)
        return
    except LocalEntryNotFoundError as error:
        unreachable = error
    except httpx2.TransportError as error:
        unreachable = LocalEntryNotFoundError(f"{type(error).__name__}: {error}")
        unreachable.__cause__ = error
    try:
        cached = Path(snapshot_download(**common, local_files_only=True))
    except LocalEntryNotFoundError:
        raise unreachable
    logger.info("the Hub is unreachable (%s); using the cached snapshot %s", type(unreachable).__name__, cached)
    _copy_tree(cached, staging)


def _copy_tree(source: Path, destination: Path) -> None:
    """Copy files (content, not symlinks) from ``source`` into ``destination``, skipping hub metadata."""
    if source.is_file():
        destination.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, destination / source.name)
        return
    for rel in _files(source):
        (destination / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / rel, destination / rel)


def _place_model(staging: Path, target: Path) -> None:
    """Swap the staged folder in for the target (the old target, if any, is removed afterwards)."""
    old = target.parent / f".{target.name}.old"
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(target / ".cache", ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)


def _place_dataset(staging: Path, target: Path, overwrite: bool) -> None:
    """Move the staged files into the target: the whole folder when new, else file by file."""
    if not target.exists() or (target.is_dir() and not any(target.iterdir())):
        if target.exists():
            target.rmdir()
        os.replace(staging, target)
        shutil.rmtree(target / ".cache", ignore_errors=True)
        return
    files = list(_files(staging))
    for rel in files:
        in_the_way = [target / rel] if (target / rel).is_dir() else []
        in_the_way += [target / p for p in list(rel.parents)[:-1] if (target / p).is_file()]
        if in_the_way:
            raise ResourceError(f"{in_the_way[0]} is in the way of the data set's {rel} (a file where a folder "
                                "belongs, or the reverse); nothing was changed. Move it or choose another --data_dir.")
    changed = [rel for rel in files
               if (target / rel).exists() and not filecmp.cmp(staging / rel, target / rel, shallow=False)]
    if changed and not overwrite:
        listed = ", ".join(str(rel) for rel in changed[:5])
        listed += f" and {len(changed) - 5} more" if len(changed) > 5 else ""
        raise ResourceError(f"{target} already has different files: {listed}. Nothing was changed; "
                            "pass --overwrite to replace them.")
    for rel in files:
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / rel, target / rel)
    shutil.rmtree(staging)


def _missing(problems: list[str], kind: str, where: Path | str) -> str:
    return f"{where} is not a complete {kind}: missing {', '.join(problems)}"


def _stage_local(kind: str, source: Path, target: Path, check: Callable[[Path], list[str]]) -> Path:
    """Check ``source`` and copy it into a fresh staging folder next to ``target``."""
    if not source.exists():
        raise ResourceError(f"{_local_flag(kind)} {source} does not exist")
    if source.is_dir() and target.resolve().is_relative_to(source.resolve()):
        raise ResourceError(f"{_local_flag(kind)} {source} contains the target {target}; copy from somewhere else")
    if source.is_dir():
        problems = check(source)
    elif kind == "model":
        problems = ["a folder (got a file): config.json, weights and a tokenizer"]
    elif source.suffix.lower() in MANIFEST_SUFFIXES or source.name == "data.pkl":
        problems = []
    else:
        problems = ["a manifest (*.csv or *.jsonl) or a data.pkl"]
    if problems:
        raise ResourceError(_missing(problems, kind, source) + ". Nothing was written.")
    staging = target.parent / f".{target.name}.copy.partial"
    shutil.rmtree(staging, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        _copy_tree(source, staging)
    except OSError as e:
        shutil.rmtree(staging, ignore_errors=True)
        raise ResourceError(f"could not copy {source} next to {target}: {e}. Nothing was written.") from e
    return staging


def _stage_download(kind: str, repo_id: str, repo_type: str, target: Path, revision: str | None,
                    token: str | bool | None, check: Callable[[Path], list[str]], ignore_patterns: list[str],
                    endpoint: str | None, cache_dir: str | Path | None) -> Path:
    """Download into the staging folder and check it; the folder stays on failure so a retry resumes."""
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

    staging = staging_dir(target, repo_id, revision)
    new_parent = not target.parent.exists()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _snapshot(repo_id, repo_type, staging, revision, token, ignore_patterns, endpoint, cache_dir)
    except (HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled, httpx2.HTTPError, OSError,
            ValueError) as e:
        for folder in (staging, target.parent if new_parent else None):
            if folder is not None and folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise _hub_error(e, kind, repo_id, revision, target, repo_type, staging) from e
    problems = check(staging)
    if problems:
        raise ResourceError(f"{_missing(problems, kind, f'{repo_type} {repo_id}')}; what was fetched stays in "
                            f"{staging}. {_by_hand(kind, repo_id, target, repo_type, revision)}")
    return staging


def _install(kind: str, repo_id: str, repo_type: str, target: Path, revision: str | None,
             local_path: str | Path | None, token: str | bool | None, check: Callable[[Path], list[str]],
             place: Callable[[Path, Path], None], ignore_patterns: list[str], endpoint: str | None,
             cache_dir: str | Path | None) -> Path:
    """Stage (download or copy), check, then move into place; a local copy's staging never outlives a failure."""
    if local_path is not None:
        source = Path(local_path).expanduser()
        if source.exists() and target.exists() and source.resolve() == target.resolve():
            problems = check(target)
            if problems:
                raise ResourceError(_missing(problems, kind, target))
            return target
        staging = _stage_local(kind, source, target, check)
    else:
        staging = _stage_download(kind, repo_id, repo_type, target, revision, token, check, ignore_patterns,
                                  endpoint, cache_dir)
    try:
        place(staging, target)
    except (ResourceError, OSError) as e:
        if local_path is not None:
            shutil.rmtree(staging, ignore_errors=True)
        if isinstance(e, ResourceError):
            raise
        raise ResourceError(f"could not move {staging} into {target}: {e}") from e
    logger.info("%s ready at %s", kind, target)
    return target


def download_model(repo_id: str = DEFAULT_MODEL_REPO_ID, target: str | Path = DEFAULT_MODEL_DIR,
                   revision: str | None = None, local_path: str | Path | None = None,
                   token: str | bool | None = None, overwrite: bool = False, endpoint: str | None = None,
                   cache_dir: str | Path | None = None) -> Path:
    """Put a pretrained model (config, weights, tokenizer) in ``target``, from the Hub or ``local_path`` (wins)."""
    target = Path(target)
    if target.exists() and (not target.is_dir() or any(target.iterdir())) and not overwrite:
        problems = model_problems(target)
        if local_path is not None and Path(local_path).expanduser().resolve() != target.resolve():
            raise ResourceError(f"{target} already exists; pass --overwrite to replace it with {local_path}")
        if problems:
            raise ResourceError(f"{_missing(problems, 'model', target)}. Remove it or pass --overwrite.")
        logger.info("%s already holds a complete model; reusing it (--overwrite fetches %s again)", target, repo_id)
        return target
    return _install("model", repo_id, "model", target, revision, local_path, token, model_problems, _place_model,
                    MODEL_IGNORE_PATTERNS, endpoint, cache_dir)


def download_dataset(repo_id: str | None, target: str | Path = DEFAULT_DATA_DIR, revision: str | None = None,
                     local_path: str | Path | None = None, token: str | bool | None = None,
                     overwrite: bool = False, endpoint: str | None = None,
                     cache_dir: str | Path | None = None) -> Path:
    """Merge a data set (manifests, poses, ``data.pkl``) into ``target``, from the Hub or ``local_path``."""
    if not repo_id and local_path is None:
        raise ResourceError("no data set given: pass a Hub repo id (--dataset_repo_id USER/NAME) or --local_path")
    repo_id = repo_id or "local"
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise ResourceError(f"{target} exists and is not a folder")

    def place(staging: Path, destination: Path) -> None:
        _place_dataset(staging, destination, overwrite)

    return _install("dataset", repo_id, "dataset", target, revision, local_path, token, dataset_problems, place,
                    DATASET_IGNORE_PATTERNS, endpoint, cache_dir)
