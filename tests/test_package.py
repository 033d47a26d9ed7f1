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


_FAULTS = """
import resource, numpy as np, ironformer
from ironformer import ops
x = np.ones((1024, 3072), np.float32)          # 12 MiB: above glibc's default mmap threshold
def step():                                     # like a training step: activations pile up,
    acts = [x]                                  # then are all freed together
    for _ in range(6):
        acts.append(ops.gelu_forward(acts[-1]))
step()
r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    step()
print(ironformer.malloc_tuned, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning is Linux-only")
def test_malloc_tuning_stops_repeated_page_faults():
    # six 12 MiB temporaries alive together, freed, five times over: with the tuning they are
    # reused from the heap (~0 faults); without it glibc returns them to the OS on free (the heap
    # top exceeds its trim threshold) and faults them back in (~3000 faults per array)
    on = _run(_FAULTS).stdout.split()
    off = _run(_FAULTS, IRONFORMER_MALLOC_TUNING="0").stdout.split()
    if on[0] != "True":
        pytest.skip("not glibc: malloc tuning unavailable")
    assert off[0] == "False"
    assert int(on[1]) < 2000, f"{on[1]} page faults with the tuning"
    assert int(off[1]) > 5000, f"only {off[1]} page faults without the tuning (test no longer discriminates)"


_TEAM_PROBE = """
import os, numpy as np, ironformer as irf
before = os.sched_getaffinity(0)
irf.set_num_threads(2)
a = np.ones((512, 512), np.float32)
for _ in range(3):
    irf.ops.matmul(a, a)
others = [os.sched_getaffinity(int(t)) for t in os.listdir('/proc/self/task') if int(t) != os.getpid()]
kept_off = [sorted(before - m) for m in others if m < before]
print(repr((irf._C.team_affinity(), os.sched_getaffinity(0) == before, kept_off)))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or not _C.has_openmp or len(os.sched_getaffinity(0)) < 2,
                    reason="team placement needs Linux, OpenMP and 2+ CPUs")
def test_team_placement():
    # a 2-thread kernel keeps its worker off the calling thread's CPU (csrc/team.cpp): the
    # worker's mask is the caller's minus one CPU, the caller's own mask is untouched
    clean = {k: v for k, v in os.environ.items()
             if k not in ("IRONFORMER_TEAM_AFFINITY", "OMP_PROC_BIND", "OMP_PLACES", "GOMP_CPU_AFFINITY")}
    r = subprocess.run([sys.executable, "-c", _TEAM_PROBE], capture_output=True, text=True, env=clean)
    assert r.returncode == 0, r.stderr
    on, caller_same, kept_off = eval(r.stdout)
    assert on and caller_same
    assert len(kept_off) == 1 and len(kept_off[0]) == 1, kept_off
    # off when asked, and when OpenMP binding is the user's
    for env in ({"IRONFORMER_TEAM_AFFINITY": "0"}, {"OMP_PROC_BIND": "spread"}):
        r = _run(_TEAM_PROBE, **env)
        assert r.returncode == 0, r.stderr
        on, caller_same, kept_off = eval(r.stdout)
        assert not on and kept_off == [], (env, r.stdout)
