"""Joint CTC/attention decoding (ESPnet's) as a ``transformers`` logits processor, for greedy and beam search.

A hypothesis scores (1 - w) * log P_attention + w * log P_ctc-prefix: at each step the processor
takes the decoder's top-k tokens (the pre-beam), adds w * (psi(h + c) - psi(h)) to (1 - w) times
their log-probabilities, the end-of-sequence token w * (full(h) - psi(h)), and gives every other
token -inf. The decoder's tokens are not always CTC classes; a ``CTCLabels`` says how they map.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from transformers import LogitsProcessor

from signt5.models.text import BYTE_VOCAB_SIZE, token_bytes

from .ctc import LOG_ZERO, CTCPrefixScorer, CTCState

logger = logging.getLogger(__name__)

NONE, EXTEND, END, INVALID = "none", "extend", "end", "invalid"
WHITESPACE_BYTES = frozenset(b" \t\n\r\x0b\x0c")


@dataclass(frozen=True)
class Action:
    """What a candidate token does on the CTC side: nothing; extend h by one of ``labels`` (their prefix
    scores summed); end h (after extending it by ``labels[0]``, if given); or make the hypothesis impossible."""

    kind: str
    labels: tuple[int, ...] = ()


# The decoder's best tokens that CTC rescores each step. A young decoder often ranks the right letter
# below 8th: on an epoch-24 model, dev CER of joint decoding (weight 0.7) was 11.8 % with 8 and 1.6 % with 32.
PRE_BEAM = 32


class CTCLabels:
    """Decoder tokens as CTC classes, one label per token (minus tokens CTC was trained without)."""

    def __init__(self, eos_token_id: int, skip: Sequence[int] = ()):
        self.eos = eos_token_id
        self.skip = frozenset(skip)

    def parse(self, prefix: Sequence[int], element: int) -> tuple[tuple[int, ...], Any]:
        """The CTC labels of a token prefix and what is pending (here nothing)."""
        return tuple(t for t in prefix if t not in self.skip and t != self.eos), None

    def pending_labels(self, pending: Any, element: int) -> tuple[int, ...]:
        """Labels whose summed prefix scores are the hypothesis' own score; () means psi(labels)."""
        return ()

    def action(self, token: int, pending: Any, element: int) -> Action:
        if token == self.eos:
            return Action(END)
        return Action(NONE) if token in self.skip else Action(EXTEND, (token,))

    def scored(self, element: int) -> bool:
        return True


class LetterUnitLabels(CTCLabels):
    """Bytes of a spaced gloss ("S C H A") against letter classes ("ase:SCH").

    A hypothesis whose last letter is unfinished ("...SC") scores the CTC prefix probability summed
    over the sample's letters that start with it (SCH, SCHT...), so every byte is judged, not only the
    whitespace (or end of sequence) that completes a letter; a letter no unit of the sample's sign
    language starts with, and a whitespace with no letter before it, make the hypothesis impossible.
    """

    def __init__(self, eos_token_id: int, byte_offset: int, units: Sequence[str], sign_languages: Sequence[str],
                 element_language_ids: Sequence[int], letter_tokens: Sequence[str] | None = None):
        super().__init__(eos_token_id)
        self.offset = byte_offset
        self.letter_tokens = list(letter_tokens or [])  # tokens after the bytes that spell a whole letter
        codes = [sign_languages[i - 1] if 0 < i <= len(sign_languages) else None for i in element_language_ids]
        self.tables: list[dict[bytes, int] | None] = []
        self.starts: list[dict[bytes, tuple[int, ...]]] = []  # letter prefix -> labels of letters with it
        for code in codes:
            table = {u.split(":", 1)[1].encode(): i + 1 for i, u in enumerate(units)
                     if code and u.split(":", 1)[0] == code}
            starts: dict[bytes, list[int]] = {}
            for letter, label in table.items():
                for end in range(1, len(letter) + 1):
                    starts.setdefault(letter[:end], []).append(label)
            self.tables.append(table if code else None)
            self.starts.append({k: tuple(v) for k, v in starts.items()})
        unknown = sum(t is None for t in self.tables)
        if unknown:
            logger.warning("%d sample(s) without a known sign language: their letter classes are unknown, so they "
                           "are decoded by attention alone", unknown)

    def parse(self, prefix: Sequence[int], element: int) -> tuple[tuple[int, ...], Any]:
        """Completed letters as labels (unknown ones dropped, as ctc_targets drops them) and the pending bytes."""
        labels, letter = [], bytearray()
        table = self.tables[element] or {}
        for token in prefix:
            if token == self.eos or token < self.offset:
                continue
            if self._is_whitespace(token):
                if letter and (label := table.get(bytes(letter))) is not None:
                    labels.append(label)
                letter = bytearray()
            else:
                letter += token_bytes(token, self.letter_tokens)
        return tuple(labels), bytes(letter)

    def _is_whitespace(self, token: int) -> bool:
        return self.offset <= token < BYTE_VOCAB_SIZE and token - self.offset in WHITESPACE_BYTES

    def pending_labels(self, pending: bytes, element: int) -> tuple[int, ...]:
        return self.starts[element].get(pending, ()) if pending else ()

    def action(self, token: int, pending: bytes, element: int) -> Action:
        if token < self.offset and token != self.eos:
            return Action(NONE)  # pad, unk: the tokenizer drops them
        if token == self.eos or self._is_whitespace(token):
            if not pending:
                return Action(END) if token == self.eos else Action(INVALID)
            label = (self.tables[element] or {}).get(pending)
            if label is None:
                return Action(INVALID)
            return Action(END if token == self.eos else EXTEND, (label,))
        spelled = token_bytes(token, self.letter_tokens)
        labels = self.starts[element].get(pending + spelled, ()) if spelled else ()
        return Action(EXTEND, labels) if labels else Action(INVALID)

    def scored(self, element: int) -> bool:
        return self.tables[element] is not None


def ctc_labels_for(config: Any, sign_language_ids: torch.Tensor | None, batch_size: int) -> CTCLabels:
    """How this model's decoder tokens map to its CTC classes (mirrors ``ctc_targets`` in models/labels.py)."""
    from signt5.models.text import BYTE_OFFSET, is_byte_vocabulary

    text = config.text_config
    if getattr(config, "ctc_units", None):
        ids = sign_language_ids.tolist() if sign_language_ids is not None else [0] * batch_size
        return LetterUnitLabels(text.eos_token_id, BYTE_OFFSET, config.ctc_units, config.sign_languages, ids,
                                getattr(config, "letter_tokens", None))
    skip = [text.pad_token_id]
    if is_byte_vocabulary(text, getattr(config, "letter_tokens", None)):
        skip.append(ord(" ") + BYTE_OFFSET)  # CTC is trained without spaces on the byte vocabulary
    return CTCLabels(text.eos_token_id, skip)


class JointCTCLogitsProcessor(LogitsProcessor):
    """Adds CTC prefix scores to the decoder's log-probabilities; use one per ``generate()`` call.

    State lives per (batch element, CTC label sequence), so it survives beam reordering, and
    hypotheses that spell the same labels share it.
    """

    def __init__(self, scorer: CTCPrefixScorer, labels: CTCLabels, ctc_weight: float, pre_beam: int = PRE_BEAM):
        if not 0.0 <= ctc_weight <= 1.0:
            raise ValueError(f"ctc_weight must lie in [0, 1], got {ctc_weight}")
        self.scorer = scorer
        self.labels = labels
        self.weight = ctc_weight
        self.pre_beam = pre_beam
        self.prompt_length: int | None = None
        self.cache_state: CTCState | None = None
        self.cache_index: dict[tuple[int, tuple[int, ...]], int] = {}

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """input_ids (N, L) = running hypotheses (batch-major, beams adjacent), scores (N, V)."""
        if self.prompt_length is None:
            self.prompt_length = input_ids.shape[1]
        log_probs = scores.float().log_softmax(-1)  # (N, V); greedy passes raw logits
        rows, vocab = log_probs.shape
        per_element = rows // self.scorer.batch_size
        top = log_probs.topk(min(vocab, max(self.pre_beam, 2 * per_element)), -1).indices  # (N, K)
        # end of sequence is always a candidate: CTC's full-sequence score can stop a decoder that would not
        # stop by itself (a duplicate of a top-k eos scatters the same value twice)
        top = torch.cat([top, top.new_full((rows, 1), self.labels.eos)], 1)  # (N, K + 1)
        prefixes = input_ids[:, self.prompt_length:].tolist()
        elements = [n // per_element for n in range(rows)]
        active = [self.labels.scored(b) and self.labels.eos not in p for b, p in zip(elements, prefixes)]
        parsed = [self.labels.parse(p, b) if a else ((), None) for p, b, a in zip(prefixes, elements, active)]
        state = self._states([(b, labels) for b, (labels, _) in zip(elements, parsed)])  # N hypotheses

        actions = [[self.labels.action(c, pending, b) for c in row] if a else None
                   for row, (_, pending), b, a in zip(top.tolist(), parsed, elements, active)]
        current = [self.labels.pending_labels(pending, b) if a else ()
                   for (_, pending), b, a in zip(parsed, elements, active)]
        requests: dict[tuple[int, int], int] = {}  # (row, label) -> extension index
        for n, row in enumerate(actions):
            for label in [c for action in row or () for c in action.labels] + list(current[n]):
                requests.setdefault((n, label), len(requests))
        device = log_probs.device
        keys = list(requests)
        extended = self.scorer.extend(
            state, torch.tensor([n for n, _ in keys], dtype=torch.long, device=device),
            torch.tensor([elements[n] for n, _ in keys], dtype=torch.long, device=device),
            torch.tensor([c for _, c in keys], dtype=torch.long, device=device))
        full_row = self.scorer.full_score(state).tolist()
        full_ext = self.scorer.full_score(extended).tolist()
        ext_score = extended.score.tolist()
        row_score = state.score.tolist()

        def summed(n: int, labels: tuple[int, ...]) -> float:
            return _logsumexp([ext_score[requests[(n, c)]] for c in labels])

        delta = torch.zeros(top.shape, dtype=torch.float32)  # (N, K) on the CPU, filled in Python
        for n, row in enumerate(actions):
            own = summed(n, current[n]) if current[n] else row_score[n]
            for k, action in enumerate(row or ()):
                if action.kind == INVALID:
                    delta[n, k] = LOG_ZERO
                elif action.kind == EXTEND:
                    delta[n, k] = summed(n, action.labels) - own
                elif action.kind == END:
                    end = full_ext[requests[(n, action.labels[0])]] if action.labels else full_row[n]
                    delta[n, k] = end - own
        weight = torch.tensor([self.weight if a else 0.0 for a in active], device=device).unsqueeze(1)  # (N, 1)
        chosen = (1 - weight) * log_probs.gather(1, top) + weight * delta.to(device)  # (N, K)
        out = torch.full_like(log_probs, float("-inf")).scatter_(1, top, chosen)
        inactive = ~torch.tensor(active, device=device)
        out[inactive] = log_probs[inactive]
        self._remember(state, [(b, labels) for b, (labels, _) in zip(elements, parsed)], extended,
                       [(elements[n], parsed[n][0] + (c,)) for n, c in keys])
        return out

    def _states(self, keys: list[tuple[int, tuple[int, ...]]]) -> CTCState:
        """The state of each (batch element, labels): cached from the previous step, else built."""
        if self.cache_state is None:
            elements = torch.tensor([b for b, _ in keys], dtype=torch.long, device=self.scorer.x.device)
            self.cache_state = self.scorer.initial_state(elements)
            self.cache_index = {(b, ()): n for n, (b, _) in enumerate(keys)}
        missing = [key for key in dict.fromkeys(keys) if key not in self.cache_index]
        if missing:
            built = [self.scorer.state_of(b, list(labels)) for b, labels in missing]
            start = len(self.cache_state.score)
            self.cache_state = CTCState.cat([self.cache_state] + built)
            self.cache_index.update({key: start + i for i, key in enumerate(missing)})
        index = torch.tensor([self.cache_index[key] for key in keys], dtype=torch.long, device=self.scorer.x.device)
        return self.cache_state.select(index)

    def _remember(self, state: CTCState, keys: list, extended: CTCState, extended_keys: list) -> None:
        """Keep only what the next step can ask for: this step's hypotheses and their extensions."""
        self.cache_state = CTCState.cat([state, extended])
        self.cache_index = {}
        for i, key in enumerate(keys + extended_keys):
            self.cache_index.setdefault(key, i)


def _logsumexp(values: list[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def joint_processor(model: Any, encoder_outputs: Any, sign_language_ids: torch.Tensor | None, ctc_weight: float,
                    pre_beam: int = PRE_BEAM) -> JointCTCLogitsProcessor:
    """The processor for one batch: CTC log-probs from the model's head over ``encoder_outputs``."""
    log_probs, frame_mask = model.ctc_log_probs(encoder_outputs)  # (B, T', C), (B, T')
    from signt5.models.modeling import CTC_BLANK

    scorer = CTCPrefixScorer(log_probs, frame_mask, blank=CTC_BLANK)
    labels = ctc_labels_for(model.config, sign_language_ids, log_probs.shape[0])
    return JointCTCLogitsProcessor(scorer, labels, ctc_weight, pre_beam)
