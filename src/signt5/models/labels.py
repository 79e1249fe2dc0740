"""Labels as SignT5 reads them: a batch turned into forward() arguments, and label tokens as CTC units.

The CTC head learns one class per letter of a sign language ("language:letter", gloss target) or per token; the
decoder's positions and guided attention need, per label token, the unit it spells. These walks are apart from the
model's layers and losses (``modeling.py``, which mixes :class:`LabelUnits` in), and decoding and training import
the functions here without the model.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from .configuration import SignT5Config
from .text import BYTE_OFFSET, IGNORE_INDEX, is_byte_vocabulary, token_bytes, tokenize_targets


class LabelUnits:
    """SignT5ForConditionalGeneration's walks over label and decoder token rows, by its ``config`` (a
    :class:`SignT5Config`): which tokens end a CTC unit, and which unit each token spells."""

    def decoder_unit_counts(self, decoder_input_ids: torch.Tensor) -> torch.Tensor:
        """(B, L): how many CTC units (letters; tokens of a token-level CTC) each decoder input prefix has
        finished, so the next token reads the memory at the same count (``positions`` ctc)."""
        separators = torch.tensor(self.separator_ids(), device=decoder_input_ids.device)
        separator = torch.isin(decoder_input_ids, separators)
        if not self.config.ctc_units:
            return (~separator).long().cumsum(1)
        ends = separator.clone()  # a letter is finished by the separator after it
        ends[:, 0] = False
        ends[:, 1:] &= ~separator[:, :-1]
        return ends.long().cumsum(1)

    def separator_ids(self) -> list[int]:
        """Tokens that spell no CTC unit and end a letter: padding (also the decoder's start), end-of-sequence
        and, with the byte vocabulary, the space."""
        text = self.config.text_config
        space = [ord(" ") + BYTE_OFFSET] if is_byte_vocabulary(text, self.config.letter_tokens) else []
        return [text.pad_token_id, text.eos_token_id, *space]

    def token_units(self, labels: torch.Tensor, sign_language_ids: torch.Tensor | None = None
                    ) -> list[list[int | None]]:
        """Per label token, the CTC target unit it spells (k >= 0, an index into :meth:`ctc_targets`' row),
        ``-(k + 1)`` for a token between units k - 1 and k (a space; end-of-sequence after the last unit), None
        for padding."""
        return [units for _, units in self.label_units(labels, sign_language_ids)]

    def ctc_targets(self, labels: torch.Tensor, sign_language_ids: torch.Tensor | None = None) -> list[list[int]]:
        """Each label row as CTC classes: "language:letter" units when ``ctc_units`` is set, else token ids.

        One class per letter of a sign language (not per UTF-8 byte: a Cyrillic or Arabic letter is
        two) measured 3.5 % vs 6.1 % dev CER in the CTC probe (BENCHMARKS.md).
        """
        return [classes for classes, _ in self.label_units(labels, sign_language_ids)]

    def label_units(self, labels: torch.Tensor, sign_language_ids: torch.Tensor | None = None
                    ) -> list[tuple[list[int], list[int | None]]]:
        """One walk over each label row: its CTC classes (no eos, padding or, with the byte vocabulary, spaces;
        letters outside ``ctc_units`` dropped) and, per token, the unit it spells (see :meth:`token_units`)."""
        text = self.config.text_config
        separators = {IGNORE_INDEX, *self.separator_ids()}
        table = {unit: i + 1 for i, unit in enumerate(self.config.ctc_units or [])}
        codes = ([None] * len(labels) if sign_language_ids is None or not self.config.sign_languages else
                 [self.config.sign_languages[i - 1] if i > 0 else None for i in sign_language_ids.tolist()])
        rows = []
        for row, code in zip(labels.tolist(), codes):
            classes: list[int] = []
            units: list[int | None] = []
            word: list[int] = []  # with letter units: the bytes of the letter being read
            for token in row + [None]:
                separator = token is None or token in separators
                if not separator:
                    if table:
                        word.append(token)
                    else:
                        units.append(len(classes))
                        classes.append(token)
                    continue
                if word:
                    spelling = b"".join(token_bytes(t, self.config.letter_tokens) for t in word)
                    letters = spelling.decode("utf-8", "replace")
                    spelled = [table[u] for u in (f"{code}:{letter}" for letter in letters.split()) if u in table]
                    one_letter = len(spelled) == 1 and len(letters.split()) == 1
                    units += [len(classes) if one_letter else -(len(classes) + 1)] * len(word)
                    classes += spelled
                    word = []
                if token is not None:
                    units.append(None if token in (IGNORE_INDEX, text.pad_token_id) else -(len(classes) + 1))
            rows.append((classes, units))
        return rows


def ctc_units_text(units: Sequence[str], ids: Sequence[int]) -> str:
    """CTC classes ("language:letter") back to a gloss: the letters, space-separated."""
    return " ".join(units[i - 1].split(":", 1)[1] for i in ids if 0 < i <= len(units))


def ctc_units_for(entries: Sequence[Any], target: str) -> list[str] | None:
    """The letter classes of a gloss-target corpus ("language:letter", sorted); None for a text target."""
    if target != "gloss":
        return None
    return sorted({f"{e.sign_language}:{letter}" for e in entries for letter in e.label(target).split()})


def model_inputs(batch: Mapping[str, Any], config: SignT5Config, tokenizer: Any = None,
                 device: torch.device | str | None = None, max_target_length: int | None = None) -> dict[str, Any]:
    """Turn a ``pad_batch`` batch into forward() keyword arguments (labels tokenised when a tokenizer is given)."""
    inputs: dict[str, Any] = {k: batch[k].to(device) for k in ("pose", "point_mask", "frame_mask")}
    if config.sign_languages:
        ids = config.sign_language_ids(batch.get("sign_languages") or [None] * len(batch["pose"]))
        inputs["sign_language_ids"] = torch.tensor(ids, dtype=torch.long, device=device)
    if tokenizer is not None and batch.get("labels") is not None:
        inputs["labels"] = tokenize_targets(tokenizer, batch["labels"], max_target_length).to(device)
    return inputs
