"""Building a stage's model and tokenizer: from scratch, around a local pretrained UMT5, or from a run folder."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from signt5.data.errors import SignT5Error
from signt5.models.contrastive import SignT5ForContrastivePretraining
from signt5.models.modeling import SignT5ForConditionalGeneration, build_config
from signt5.models.pose_encoder import PoseEncoderConfig
from signt5.models.text import load_tokenizer, pretrained_umt5_dir, umt5_config

from .config import TrainConfig

logger = logging.getLogger(__name__)


def model_class(stage: str) -> type:
    return SignT5ForContrastivePretraining if stage == "pretrain" else SignT5ForConditionalGeneration


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


def build_model(config: TrainConfig, sign_languages: Sequence[str],
                ctc_units: Sequence[str] | None = None) -> tuple[Any, Any]:
    """A fresh model for ``config.stage``; stage 2 takes its pose encoder from a stage-1 run when given.

    ``ctc_units`` ("language:letter" classes of the training labels) replace token ids as CTC classes
    when ``config.ctc_classes`` is ``letters``, the target a gloss, the vocabulary bytes and the sign
    language known; otherwise CTC runs over the tokenizer's ids.
    """
    pose_config = PoseEncoderConfig.from_json(config.pose_config)
    languages = list(sign_languages) if config.sign_language_conditioning else []
    cls = model_class(config.stage)
    pretrained = pretrained_umt5_dir(config.umt5_dir)
    tokenizer = load_tokenizer(pretrained)
    extra = ({"ctc_weight": config.ctc_weight, "decoder_memory": config.decoder_memory,
              "guided_attention_weight": config.guided_attention_weight, "positions": config.positions,
              "guided_attention": config.guided_attention,
              "memory_spelling": config.memory_spelling and config.ctc_weight > 0 and config.decoder_memory == "frames",
              "decoder_gradient_to_encoder": config.decoder_gradient_to_encoder}
             if config.stage == "finetune" else {})
    if (config.stage == "finetune" and config.ctc_classes == "letters" and ctc_units and languages
            and pretrained is None and config.target == "gloss"):
        extra["ctc_units"] = list(ctc_units)
    if pretrained is not None:
        model = cls.from_umt5(pretrained, pose_config, config.data, languages, config.target, **extra)
        if config.stage == "pretrain":
            logger.info("stage 1: text tower = pretrained UMT5 encoder from %s, frozen", pretrained)
    else:
        text = umt5_config(config.text_config, vocab_size=len(tokenizer))
        model = cls(build_config(pose_config, text, config.data, languages, config.target, **extra))
        if config.stage == "pretrain":
            logger.info("stage 1: no pretrained UMT5 in %s, so both towers train from scratch (CLIP-style); "
                        "aligning to a frozen random text encoder would align to noise", config.umt5_dir)
    if config.stage == "finetune" and config.init_from:
        load_pose_encoder(model, config.init_from)
    return model, tokenizer


def load_pose_encoder(model: Any, source: str | Path) -> None:
    """Copy the pose tower (``encoder.*``) of a stage-1 run into ``model``; shapes must match."""
    folder = resolve_model_dir(source)
    from safetensors.torch import load_file

    weights = {}
    for file in sorted(folder.glob("*.safetensors")):
        weights.update({k[len("encoder."):]: v for k, v in load_file(str(file)).items() if k.startswith("encoder.")})
    try:
        model.encoder.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        raise SignT5Error(f"{folder}: its pose encoder does not fit this model (same --pose_config, data and sign "
                          f"languages needed): {str(e).splitlines()[0]}") from None
    logger.info("pose encoder initialised from stage 1: %s", folder)
