"""Bound what the C heap keeps of freed tensors, so a long CPU run's memory does not creep up.

glibc serves a large allocation from its heap once a same-sized block has been freed (its mmap threshold rises
to the largest freed block, up to 32 MiB), and a heap keeps what it grew to. Batches of varying lengths then
leave the heap fragmented and growing: the demo's RSS went 0.9 GB after 1 step, 1.7 GB after 60, 5.7 GB after
2,380. A fixed threshold sends every allocation at least that large to its own mapping, returned when freed; the
price is a fresh, zeroed mapping for every large activation of every step (on the demo, 43.5 -> 26.8 samples/s
at 1 MiB, and the same at 4 or 8 MiB), so it is opt-in (``TrainConfig.malloc_mmap_threshold_kib``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

logger = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def limit_heap_retention(threshold_bytes: int) -> bool:
    """Allocations of ``threshold_bytes`` or more get their own mapping (glibc only); whether it was set."""
    mallopt = _glibc_function("mallopt") if threshold_bytes > 0 else None
    if mallopt is None:
        return False
    done = mallopt(M_MMAP_THRESHOLD, int(threshold_bytes)) == 1
    logger.debug("malloc mmap threshold %d bytes: %s", threshold_bytes, "set" if done else "refused")
    return done


def release_free_heap() -> bool:
    """Hand the C heap's free pages back to the OS (glibc's ``malloc_trim``); whether any were released.

    Thousands of freed tensors (the decoder phase's cache) leave free blocks between live ones that glibc keeps
    in its heap; the trim returns their pages, so the next allocations (decoding) do not stack on top of them.
    """
    malloc_trim = _glibc_function("malloc_trim")
    return malloc_trim is not None and malloc_trim(0) == 1


def _glibc_function(name: str):
    """glibc's function ``name`` through ctypes, or None off Linux or under another C library (musl, ...)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), name)
    except (OSError, AttributeError):
        return None


ONEDNN_CACHE_VARIABLE = "ONEDNN_PRIMITIVE_CACHE_CAPACITY"


def limit_primitive_cache(capacity: int) -> bool:
    """Keep at most ``capacity`` oneDNN kernels (CPU GELU and friends); whether the limit was set here.

    oneDNN caches a compiled kernel per tensor shape, 1,024 by default, and every new batch length adds some: on
    the demo's stage 2 this was ~350 MiB of RSS after 150 steps. oneDNN reads the variable once, when it builds its
    first kernel, so it is set only if the user has not set it; a process that already ran oneDNN keeps its cache.
    """
    if capacity <= 0 or ONEDNN_CACHE_VARIABLE in os.environ:
        return False
    os.environ[ONEDNN_CACHE_VARIABLE] = str(int(capacity))
    return True
