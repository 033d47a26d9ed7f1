"""Helpers shared by the benchmark scripts (run as `python benchmarks/<script>.py`)."""
from __future__ import annotations

import os
import platform
import sys

# numpy's OpenBLAS chooses its kernels when it loads, and OPENBLAS_CORETYPE (with the cache-size
# hint OPENBLAS_L2_SIZE) set in the environment overrides that: this project's machines set
# Haswell, which on an AVX-512 CPU holds numpy to about half its speed.
OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def rerun_without_openblas_env() -> None:
    """Re-run this script with OPENBLAS_VARS unset (call before numpy is imported), so that the
    comparison is with numpy at its best; IRF_BENCH_UNSET then says what was unset."""
    if any(v in os.environ for v in OPENBLAS_VARS):
        os.environ["IRF_BENCH_UNSET"] = " ".join(f"{v}={os.environ.pop(v)}" for v in OPENBLAS_VARS
                                                 if v in os.environ)
        os.execv(sys.executable, [sys.executable] + sys.argv)


def cpu_model() -> str:
    """The CPU's model name, as lscpu reports it."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def aligned_copy(a):
    """A C-contiguous copy of numpy array a whose data starts on a 64-byte boundary.  numpy puts
    large arrays 16 bytes past one (after malloc's header), so every 64-byte vector load of a row
    splits across two cache lines; each library's own allocator (PyTorch's, ironformer's outputs)
    aligns to 64 bytes, which is what kernels see inside a training step."""
    import numpy as np
    buf = np.empty(a.nbytes + 64, np.uint8)
    off = (-buf.ctypes.data) % 64
    out = buf[off:off + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


# Seconds to wait before timing a library that just ran after another one.  Each library keeps
# its own thread pool, and idle workers keep spinning for a while after a parallel region
# (libgomp ~1 ms, OpenBLAS yield-spins for tens of ms).  On a 2-core machine the spinning
# workers of the library that ran last take a core from the one being timed: measured here at
# 2 threads, ironformer's 2048x768x768 GEMM ran at 63 GFLOP/s right after numpy and 150-170
# alone (numpy suffers the same after ironformer).  So every timed sample of a multi-threaded
# run starts with settle(f): a pause, then one untimed call of f that wakes f's own pool.
SETTLE_SECONDS = 0.1


def settle(f, threads: int) -> None:
    """Let other libraries' spinning workers go idle, then warm f's own pool (threads > 1).
    f=None only pauses (for samples long enough that waking the pool does not matter)."""
    import time
    if threads > 1:
        time.sleep(SETTLE_SECONDS)
        if f is not None:
            f()


def interleaved_medians(fns: dict, threads: int, repeats: int, min_time: float = 0.02) -> dict:
    """Median seconds per call of each function in fns, timed round-robin after warm-up.
    Each sample repeats its function for >= ~min_time (calls per sample set per function, from
    one timed call), so a scheduling hiccup of a few ms does not swamp a sub-millisecond call;
    each sample starts with settle()."""
    import statistics
    import time
    inner = {}
    for name, f in fns.items():
        f()
        t0 = time.perf_counter()
        f()
        inner[name] = max(1, int(min_time / max(time.perf_counter() - t0, 1e-7)))
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, f in fns.items():
            settle(f, threads)
            t0 = time.perf_counter()
            for _ in range(inner[name]):
                f()
            times[name].append((time.perf_counter() - t0) / inner[name])
    return {name: statistics.median(t) for name, t in times.items()}


def optional_torch():
    """PyTorch, the optional baseline, or None when it is not installed."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def numpy_threads(n: int):
    """A context in which numpy's BLAS uses n threads (threadpoolctl); a no-op without it."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        import contextlib
        return contextlib.nullcontext()
    return threadpool_limits(n)
