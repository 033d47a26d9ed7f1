"""Shared fixtures: every kernel test runs under each ISA this CPU supports."""
from __future__ import annotations

import numpy as np
import pytest

import ironformer as irf
from ironformer import _C

ALL_ISAS = ["generic", "avx2", "avx512"]
SUPPORTED_ISAS = [i for i in ALL_ISAS if _C.isa_supported(i)]


@pytest.fixture(params=ALL_ISAS)
def isa(request):
    """Select one ISA's kernel table for the test, restoring the previous one afterwards."""
    name = request.param
    if not _C.isa_supported(name):
        pytest.skip(f"ISA {name} not supported by this CPU/OS")
    prev = irf.isa()
    _C.select_isa(name)
    yield name
    _C.select_isa(prev)


@pytest.fixture
def threads():
    """Restore the thread count a test changes."""
    prev = irf.get_num_threads()
    yield irf.set_num_threads
    irf.set_num_threads(prev)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
