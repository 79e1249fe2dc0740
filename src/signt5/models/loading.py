"""Loading what a run saved: its model and tokenizer, or a stage-1 pose encoder into a stage-2 model."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from signt5.errors import SignT5Error

from .modeling import SignT5ForConditionalGeneration
from .text import load_tokenizer

logger = logging.getLogger(__name__)


def resolve_model_dir(path: str | Path) -> Path:
    """A checkpoint folder itself, or a run folder's ``checkpoint-best`` (else ``checkpoint-last``)."""
    path = Path(path)
    for candidate in (path, path / "checkpoint-best", path / "checkpoint-last"):
        if (candidate / "config.json").is_file() and any(candidate.glob("*.safetensors")):
            return candidate
    if not path.exists():
        raise SignT5Error(f"model directory {path} does not exist")
    raise SignT5Error(f"{path} is not a signt5 model: no config.json + *.safetensors in it, "
                      f"nor in its checkpoint-best/ or checkpoint-last/")


def load_run_model(path: str | Path, cls: type = SignT5ForConditionalGeneration) -> tuple[Any, Any]:
    """Model and tokenizer saved by a run; weights that do not fit the current code are a clear error.

    transformers raises a bare RuntimeError for weights whose shapes differ and silently initialises
    missing weights at random. Both mean the checkpoint was written by other code or another config,
    so the shapes are named here and missing weights are logged.
    """
    folder = resolve_model_dir(path)
    try:
        model, info = cls.from_pretrained(str(folder), output_loading_info=True, ignore_mismatched_sizes=True)
    except (OSError, ValueError, KeyError) as e:
        raise SignT5Error(f"{folder}: could not load the model ({type(e).__name__}: {e})") from None
    mismatched = sorted(info["mismatched_keys"])
    if mismatched:
        shown = "; ".join(f"{k} {tuple(saved)} vs {tuple(now)}" for k, saved, now in mismatched[:3])
        raise SignT5Error(f"{folder}: {len(mismatched)} weight(s) do not fit this version of the model "
                          f"(checkpoint vs code: {shown}{'; ...' if len(mismatched) > 3 else ''}); it was "
                          "written by other code or another config: retrain, or use the code that wrote it")
    if info["missing_keys"]:
        logger.warning("%s: no saved weights for %s; they are randomly initialised (checkpoint written by older "
                       "code?)", folder, ", ".join(sorted(info["missing_keys"])))
    return model, load_tokenizer(folder)


def load_weights(model: Any, source: str | Path, prefixes: tuple[str, ...], what: str) -> Path:
    """Copy a saved run's weights under ``prefixes`` (e.g. ``encoder.``) into ``model``, reading its safetensors
    alone (no model is built); every one of ``model``'s weights there must be saved and fit. Returns the folder."""
    folder = resolve_model_dir(source)
    from safetensors.torch import load_file

    weights = {}
    for file in sorted(folder.glob("*.safetensors")):
        weights.update({k: v for k, v in load_file(str(file)).items() if k.startswith(prefixes)})
    wanted = {k for k in model.state_dict() if k.startswith(prefixes)}
    try:
        if wanted != weights.keys():
            differ = sorted(wanted ^ weights.keys())
            raise RuntimeError(f"weights missing or unexpected: {', '.join(differ[:3])}{', ...' if len(differ) > 3 else ''}")
        model.load_state_dict(weights, strict=False)
    except RuntimeError as e:
        raise SignT5Error(f"{folder}: its {what} does not fit this model (same --pose_config, data and sign "
                          f"languages needed): {str(e).splitlines()[0]}") from None
    return folder


def load_pose_encoder(model: Any, source: str | Path) -> None:
    """Copy the pose tower (``encoder.*``) of a stage-1 run into ``model``; shapes must match."""
    folder = load_weights(model, source, ("encoder.",), "pose encoder")
    logger.info("pose encoder initialised from stage 1: %s", folder)
