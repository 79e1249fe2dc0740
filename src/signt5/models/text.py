"""The text side: UMT5 configs for training from scratch, the offline byte tokenizer, local pretrained UMT5."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Sequence

import torch
from transformers import AutoTokenizer, ByT5Tokenizer, PreTrainedTokenizerBase, UMT5Config

logger = logging.getLogger(__name__)

DEFAULT_UMT5_DIR = Path("models/umt5")
BYTE_OFFSET = 3  # byte vocabulary: 3 specials (pad 0, eos 1, unk 2) first, then id = byte + 3
BYTE_VOCAB_SIZE = BYTE_OFFSET + 256
IGNORE_INDEX = -100

# Presets for training without pretrained weights: byte vocabulary, small widths. The cpu preset's decoder
# has no dropout: it underfits in the demo's 18 epochs (dev attention CER 34.3 % without, 41.5 % with 0.1).
UMT5_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(d_model=32, d_kv=8, d_ff=64, num_heads=4, num_layers=1, num_decoder_layers=2,
                 relative_attention_num_buckets=8, relative_attention_max_distance=32, dropout_rate=0.0),
    "cpu": dict(d_model=256, d_kv=32, d_ff=512, num_heads=8, num_layers=2, num_decoder_layers=2,
                relative_attention_num_buckets=32, relative_attention_max_distance=128, dropout_rate=0.0),
}


def umt5_config(preset: str | Path = "cpu", vocab_size: int | None = None, **overrides: Any) -> UMT5Config:
    """A UMT5Config from a preset name (tiny, cpu) or a JSON file, for a model trained from scratch.

    ``vocab_size`` (e.g. ``len(tokenizer)``) wins over the preset's; the default is the byte vocabulary.
    """
    if str(preset) in UMT5_PRESETS:
        values = dict(UMT5_PRESETS[str(preset)])
    else:
        values = json.loads(Path(preset).read_text())
    values.setdefault("vocab_size", BYTE_VOCAB_SIZE)
    if vocab_size is not None:
        values["vocab_size"] = vocab_size
    values.update(overrides)
    values.setdefault("feed_forward_proj", "gated-gelu")
    return UMT5Config(pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, **values)


def token_bytes(token: int, letter_tokens: Sequence[str] | None = None) -> bytes:
    """The UTF-8 bytes a byte-vocabulary token spells: one byte, a whole letter (``letter_tokens``), or none."""
    if token < BYTE_OFFSET:
        return b""
    if token < BYTE_VOCAB_SIZE:
        return bytes([token - BYTE_OFFSET])
    index = token - BYTE_VOCAB_SIZE
    return letter_tokens[index].encode("utf-8") if letter_tokens and index < len(letter_tokens) else b""


def is_byte_vocabulary(text_config: UMT5Config, letter_tokens: Sequence[str] | None = None) -> bool:
    """Whether the decoder's vocabulary is bytes (plus, if any, one token per letter of several bytes)."""
    return text_config.vocab_size == BYTE_VOCAB_SIZE + len(letter_tokens or ())


def multi_byte_letters(ctc_units: Sequence[str]) -> list[str]:
    """The letters of "language:letter" units that take several bytes (SCH, Š, Ω, ال), each once, sorted.

    One character of Latin-1 (Ä, ñ) is left out and stays two bytes: ByT5 names its byte tokens by the Latin-1
    characters (byte 0xC4 is the token "Ä"), so a token "Ä" would stand for that byte, not the letter.
    """
    letters = {unit.split(":", 1)[1] for unit in ctc_units}
    return sorted(letter for letter in letters
                  if len(letter.encode("utf-8")) > 1 and (len(letter) > 1 or ord(letter) > 0xFF))


def add_letter_tokens(tokenizer: PreTrainedTokenizerBase, letters: Sequence[str]) -> None:
    """Give each letter of several bytes one token of its own, after the 259 byte tokens (ids in order).

    Spelled in bytes, the decoder wrote "SCH" or "Š" over several steps at one letter position, and wrote the
    first byte alone ("S", "S") for 44 % of such training words; CTC has one class per letter.
    """
    tokenizer.add_tokens(list(letters))
    ids = tokenizer.convert_tokens_to_ids(list(letters))
    if ids != list(range(BYTE_VOCAB_SIZE, BYTE_VOCAB_SIZE + len(letters))):
        raise ValueError(f"letter tokens did not get the ids after the byte vocabulary: {ids[:5]}...")


def byte_tokenizer() -> ByT5Tokenizer:
    """ByT5's byte tokenizer without sentinel tokens: needs no files and covers every alphabet."""
    return ByT5Tokenizer(extra_ids=0)


def pretrained_umt5_dir(path: str | Path | None = DEFAULT_UMT5_DIR) -> Path | None:
    """The local pretrained UMT5 directory when one is there (config.json and weights), else None."""
    if path is None:
        return None
    path = Path(path)
    has_weights = any(path.glob("*.safetensors")) or any(path.glob("*.bin"))
    if (path / "config.json").is_file() and has_weights:
        return path
    return None


def load_tokenizer(pretrained_dir: str | Path | None = None) -> PreTrainedTokenizerBase:
    """The pretrained UMT5 directory's own tokenizer, or the byte tokenizer when there is none."""
    if pretrained_dir is None:
        return byte_tokenizer()
    logger.info("tokenizer from %s", pretrained_dir)
    tokenizer_config = Path(pretrained_dir) / "tokenizer_config.json"
    if tokenizer_config.is_file() and json.loads(tokenizer_config.read_text()).get("tokenizer_class") == "ByT5Tokenizer":
        return ByT5Tokenizer.from_pretrained(str(pretrained_dir))  # AutoTokenizer would pick UMT5's own class
    return AutoTokenizer.from_pretrained(str(pretrained_dir), local_files_only=True)


def load_umt5(path: str | Path) -> "torch.nn.Module":
    """UMT5ForConditionalGeneration from a local directory (no hub access)."""
    from transformers import UMT5ForConditionalGeneration

    logger.info("UMT5 weights from %s", path)
    return UMT5ForConditionalGeneration.from_pretrained(str(path), local_files_only=True)


def tokenize_targets(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str],
                     max_length: int | None = None) -> torch.Tensor:
    """Target ids (B, L) ending in eos, padded with IGNORE_INDEX so padding is not scored."""
    enc = tokenizer(list(texts), padding=True, truncation=max_length is not None, max_length=max_length,
                    return_tensors="pt")
    return enc["input_ids"].masked_fill(enc["attention_mask"] == 0, IGNORE_INDEX)
