"""Which decoding a model keeps: the lowest dev CER, unless dev cannot tell it from one that reads more evidence.

Dev is small (190 words, ~1,600 letters in the demo): decodings a letter apart swap places with the decoder's
seed, so two runs of the same recipe printed joint once and CTC once. A paired bootstrap over dev samples asks
whether a decoding is worse than the lowest-CER one beyond chance; among those that are not, the first in
``PREFERENCE`` wins: joint (the decoder rescored by CTC, ESPnet's default), then the decoder alone, then CTC.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

PREFERENCE = ("joint", "attention", "ctc")
RESAMPLES = 2000
CONFIDENCE = 0.95  # worse in this share of the resamples: worse beyond chance


def worse_beyond_chance(edits: Sequence[int], best_edits: Sequence[int], resamples: int = RESAMPLES,
                        confidence: float = CONFIDENCE, seed: int = 0) -> bool:
    """Whether ``edits`` (per-sample character edits) sum above ``best_edits`` in at least ``confidence`` of
    ``resamples`` paired bootstrap draws of the samples (one-sided; both share the references, so their CERs
    compare as their edit counts)."""
    edits, best = np.asarray(edits, dtype=np.int64), np.asarray(best_edits, dtype=np.int64)
    if len(edits) == 0:
        return False
    draws = np.random.default_rng(seed).integers(len(edits), size=(resamples, len(edits)))  # (R, n)
    return bool(np.mean(edits[draws].sum(1) > best[draws].sum(1)) >= confidence)


def choose_decoding(edits: Mapping[str, Sequence[int]], preference: Sequence[str] = PREFERENCE,
                    **bootstrap: float) -> str:
    """The decoding to keep, from each decoding's per-sample character edits on the same dev samples."""
    best = min(edits, key=lambda d: (sum(edits[d]), _rank(d, preference)))
    for decoding in sorted(edits, key=lambda d: _rank(d, preference)):
        if decoding == best or not worse_beyond_chance(edits[decoding], edits[best], **bootstrap):
            return decoding
    return best


def _rank(decoding: str, preference: Sequence[str]) -> int:
    return preference.index(decoding) if decoding in preference else len(preference)
