"""The heap's retention bound: set through glibc's mallopt, freed large tensors go back to the system."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from signt5.training.memory import limit_heap_retention

# glibc's pattern behind a creeping RSS: once a 10 MB block is freed, blocks up to 10 MB come from the heap;
# small allocations made after them pin the heap's top, so freeing the big ones returns nothing to the system
RETAINED = """
import sys
import numpy as np
from signt5.training.memory import limit_heap_retention
limit_heap_retention(int(sys.argv[1]))
first = np.ones(10_000_000 // 8); del first
blocks, pins = [], []
for _ in range(40):  # a batch's big activation, then something small that outlives it
    blocks.append(np.ones(5_000_000 // 8))
    pins.append(np.ones(200_000 // 8))
del blocks
pages = int(open("/proc/self/statm").read().split()[1])
print(pages * 4096 // 2**20)
"""


def _resident_mib(threshold: int) -> int:
    out = subprocess.run([sys.executable, "-c", RETAINED, str(threshold)], capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_a_fixed_threshold_returns_freed_tensors_to_the_system():
    assert limit_heap_retention(1 << 20) is True
    assert limit_heap_retention(0) is False  # 0 leaves glibc's default alone
    kept, returned = _resident_mib(0), _resident_mib(1 << 20)
    assert kept - returned > 150  # the 200 MB of freed blocks stay resident without the bound


def test_the_onednn_kernel_cache_is_capped_unless_the_user_set_it(monkeypatch):
    from signt5.training.memory import ONEDNN_CACHE_VARIABLE, limit_primitive_cache

    monkeypatch.delenv(ONEDNN_CACHE_VARIABLE, raising=False)
    assert limit_primitive_cache(4) and os.environ[ONEDNN_CACHE_VARIABLE] == "4"
    monkeypatch.setenv(ONEDNN_CACHE_VARIABLE, "100")
    assert not limit_primitive_cache(4) and os.environ[ONEDNN_CACHE_VARIABLE] == "100"
    monkeypatch.delenv(ONEDNN_CACHE_VARIABLE)
    assert not limit_primitive_cache(0) and ONEDNN_CACHE_VARIABLE not in os.environ
