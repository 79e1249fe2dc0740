"""The byte vocabulary with one token per letter of several bytes: ids, tokenisation, and the CTC classes they spell."""

from __future__ import annotations

import pytest
import torch

from signt5.data.manifest import read_manifest
from signt5.models.labels import ctc_units_for
from signt5.models.text import (BYTE_VOCAB_SIZE, add_letter_tokens, byte_tokenizer, load_tokenizer,
                                multi_byte_letters, token_bytes, tokenize_targets)
from signt5.training.config import TrainConfig
from signt5.training.recipes import build_model


def test_letter_tokens_follow_the_bytes_and_round_trip(tmp_path):
    letters = multi_byte_letters(["deu:SCH", "deu:A", "deu:Ä", "ukl:Ї", "ukl:A", "arb:ال", "deu:SCH", "ces:Š"])
    assert letters == sorted(["SCH", "Ї", "ال", "Š"])  # single bytes need no token; Latin-1's Ä is ByT5's byte 0xC4
    tokenizer = byte_tokenizer()
    add_letter_tokens(tokenizer, letters)
    assert len(tokenizer) == BYTE_VOCAB_SIZE + len(letters)
    ids = tokenizer("M Š SCH Ї Ä")["input_ids"]
    assert len(ids) == 11 and ids[2] == BYTE_VOCAB_SIZE + letters.index("Š")  # 4 letters, Ä's 2 bytes, 4 spaces, eos
    assert b"".join(token_bytes(t, letters) for t in ids) == "M Š SCH Ї Ä".encode()
    assert tokenizer.decode(ids, skip_special_tokens=True) == "M Š SCH Ї Ä"
    tokenizer.save_pretrained(tmp_path)
    assert load_tokenizer(tmp_path)("SCH")["input_ids"][0] == BYTE_VOCAB_SIZE + letters.index("SCH")
    assert token_bytes(0, letters) == b"" and token_bytes(ord("A") + 3) == b"A"


@pytest.fixture()
def gloss_models(tiny_corpus, tiny_pose_config):
    entries = read_manifest(tiny_corpus / "manifest.csv", split="train")
    units = ctc_units_for(entries, "gloss")
    models = {}
    for letter_tokens in (True, False):
        config = TrainConfig(manifest=str(tiny_corpus / "manifest.csv"), pose_config=str(tiny_pose_config),
                             text_config="tiny", umt5_dir="/nonexistent", letter_tokens=letter_tokens)
        models[letter_tokens] = build_model(config, ["ase", "ukl"], units)
    return units, entries, models


def test_a_gloss_model_reads_each_letter_as_one_token(gloss_models):
    """The Ukrainian words of the tiny corpus have Cyrillic letters (2 bytes each): one token each, spelling the
    same CTC classes as their bytes did."""
    units, entries, models = gloss_models
    model, tokenizer = models[True]
    letters = model.config.letter_tokens
    assert letters == multi_byte_letters(units) and letters
    assert model.config.text_config.vocab_size == len(tokenizer) == BYTE_VOCAB_SIZE + len(letters)
    assert models[False][0].config.letter_tokens is None
    assert models[False][0].config.text_config.vocab_size == BYTE_VOCAB_SIZE
    glosses = [e.gloss for e in entries if e.sign_language == "ukl"][:3]
    language = torch.tensor([2] * len(glosses))  # ukl: 1-based among ["ase", "ukl"]
    ids = tokenize_targets(tokenizer, glosses)
    for row, gloss in zip(ids.tolist(), glosses):
        spoken = [t for t in row if t not in (-100, 1, ord(" ") + 3)]
        assert len(spoken) == len(gloss.split())  # one token a letter
    byte_model, byte_tokens = models[False]
    with_letters = [classes for classes, _ in model.label_units(ids, language)]
    with_bytes = [classes for classes, _ in byte_model.label_units(tokenize_targets(byte_tokens, glosses), language)]
    assert with_letters == with_bytes and all(with_letters)
