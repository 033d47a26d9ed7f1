import os
import subprocess
import sys

import pytest

import ironformer as irf
from ironformer import _C


def test_public_surface():
    assert isinstance(irf.__version__, str) and irf.__version__.count(".") == 2
    assert irf.isa() in ("generic", "avx2", "avx512")
    assert irf.isa() == _C.best_isa()  # default: the best the CPU and OS support
    assert irf.get_num_threads() >= 1
    text = irf.show_config()
    assert irf.__version__ in text and irf.isa() in text


def test_set_num_threads(threads):
    threads(1)
    assert irf.get_num_threads() == 1
    threads(3)
    assert irf.get_num_threads() == 3
    with pytest.raises(ValueError, match="n must be >= 1"):
        irf.set_num_threads(0)
    with pytest.raises(TypeError, match="must be an int"):
        irf.set_num_threads(1.5)


def _run(code, **env):
    e = dict(os.environ, **env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=e)


def test_isa_env_override():
    r = _run("import ironformer; print(ironformer.isa())", IRONFORMER_ISA="generic")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "generic"


def test_isa_env_unknown_raises():
    r = _run("import ironformer", IRONFORMER_ISA="sse9")
    assert r.returncode != 0
    assert "IRONFORMER_ISA='sse9' is not a known ISA" in r.stderr


@pytest.mark.skipif(_C.isa_supported("avx512"), reason="this CPU supports every ISA")
def test_isa_env_unsupported_raises():
    r = _run("import ironformer", IRONFORMER_ISA="avx512")
    assert r.returncode != 0
    assert "not supported by this CPU/OS" in r.stderr


def test_omp_num_threads_default():
    r = _run("import ironformer; print(ironformer.get_num_threads())", OMP_NUM_THREADS="1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "1"


def test_ironformer_does_not_import_torch():
    r = _run("import sys, ironformer; print('torch' in sys.modules)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


def test_peak_gflops_is_positive():
    g = _C.peak_gflops(1, 0.02)
    assert 0.1 < g < 1e5
