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
import sys

logger = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def limit_heap_retention(threshold_bytes: int) -> bool:
    """Allocations of ``threshold_bytes`` or more get their own mapping (glibc only); whether it was set."""
    if threshold_bytes <= 0 or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl, ...): nothing to set
        return False
    done = mallopt(M_MMAP_THRESHOLD, int(threshold_bytes)) == 1
    logger.debug("malloc mmap threshold %d bytes: %s", threshold_bytes, "set" if done else "refused")
    return done
