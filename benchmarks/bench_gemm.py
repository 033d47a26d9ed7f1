"""SGEMM: ironformer vs numpy (OpenBLAS) vs PyTorch (MKL), side by side in one process.

    python benchmarks/bench_gemm.py [--threads 1 2] [--repeats 15] [--quick] [--keep-openblas-env]

For each thread count and shape, the three libraries run interleaved (round-robin, after
warm-up; at 2+ threads each sample starts after a pause that lets the previous library's
spinning workers go idle, see _common.settle) and the median time of each is reported as GFLOP/s, with the ratio to PyTorch and to
numpy and the fraction of the fp32 peak measured on this CPU by an FMA loop (same ISA, same
threads).  "(rounds)" gives the quartiles of numpy's time / ironformer's taken round by round,
so a ratio near 1 can be read as a gap or as this run's noise.  The machine is shared and
noisy: trust ratios from one run, not absolute figures.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time

from _common import cpu_model, numpy_threads, optional_torch, rerun_without_openblas_env, settle

# The comparison is with numpy at its best: re-run without OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE
# (see _common), unless asked to keep them.
if __name__ == "__main__" and "--keep-openblas-env" not in sys.argv:
    rerun_without_openblas_env()

import numpy as np  # noqa: E402  (after the re-run above)

import ironformer as irf  # noqa: E402
from ironformer import _C  # noqa: E402

torch = optional_torch()

# (label, M, N, K, trans_a, trans_b): the matmuls of a GPT training step (B*T = 2048 tokens,
# C = 768), forward (x @ W), input gradient (dY @ W^T) and weight gradient (X^T @ dY),
# then square shapes and the matrix-vector product of generation.
SHAPES = [
    ("fwd qkv/proj   x@W", 2048, 768, 768, False, False),
    ("fwd mlp-up     x@W", 2048, 3072, 768, False, False),
    ("fwd mlp-down   x@W", 2048, 768, 3072, False, False),
    ("dX proj     dY@W^T", 2048, 768, 768, False, True),
    ("dX mlp-up   dY@W^T", 2048, 768, 3072, False, True),
    ("dX mlp-down dY@W^T", 2048, 3072, 768, False, True),
    ("dW proj     X^T@dY", 768, 768, 2048, True, False),
    ("dW mlp-up   X^T@dY", 768, 3072, 2048, True, False),
    ("dW mlp-down X^T@dY", 3072, 768, 2048, True, False),
    ("square 64^3", 64, 64, 64, False, False),
    ("square 512^3", 512, 512, 512, False, False),
    ("square 1024^3", 1024, 1024, 1024, False, False),
    ("gemv 1x768 @ 768x3072", 1, 3072, 768, False, False),
]
TRAINING = {s[0] for s in SHAPES[:9]}


def operands(m, n, k, ta, tb, rng):
    a = rng.standard_normal((k, m) if ta else (m, k), dtype=np.float32)
    b = rng.standard_normal((n, k) if tb else (k, n), dtype=np.float32)
    return a, b


def bench_shape(m, n, k, ta, tb, threads, repeats, rng):
    a, b = operands(m, n, k, ta, tb, rng)
    out = np.empty((m, n), np.float32)
    fns = {}
    fns["ironformer"] = lambda: irf.ops.matmul(a, b, trans_a=ta, trans_b=tb, out=out)
    an = a.T if ta else a
    bn = b.T if tb else b
    outn = np.empty((m, n), np.float32)
    fns["numpy"] = lambda: np.matmul(an, bn, out=outn)
    if torch is not None:
        at, bt = torch.from_numpy(a), torch.from_numpy(b)
        at = at.t() if ta else at
        bt = bt.t() if tb else bt
        outt = torch.empty((m, n))
        fns["torch"] = lambda: torch.mm(at, bt, out=outt)
    flops = 2.0 * m * n * k
    # enough inner calls that one sample is >= ~20 ms
    inner = max(1, int(0.02 / max(flops / 50e9 / threads, 1e-7)))
    times = {name: [] for name in fns}
    for _ in range(2):
        for f in fns.values():
            f()
    for _ in range(repeats):
        for name, f in fns.items():
            settle(f, threads)
            t0 = time.perf_counter()
            for _ in range(inner):
                f()
            times[name].append((time.perf_counter() - t0) / inner)
    ref = a.T.astype(np.float64) if ta else a.astype(np.float64)
    ref = ref @ (b.T.astype(np.float64) if tb else b.astype(np.float64))
    err = float(np.abs(out - ref).max() / (np.abs(ref).max() + 1e-30))
    # numpy's time / ours in each round: the two samples are ~0.1 s apart, so a change in the
    # machine's load between rounds moves both; the quartiles of these per-round ratios say
    # whether a ratio of medians a little below 1 is a real gap or the noise of this run.
    paired = [tn / ti for tn, ti in zip(times["numpy"], times["ironformer"])]
    q = statistics.quantiles(paired, n=4) if len(paired) > 1 else [paired[0]] * 3
    return {name: flops / statistics.median(ts) / 1e9 for name, ts in times.items()}, err, (q[0], q[2])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeats", type=int, default=11)
    p.add_argument("--quick", action="store_true", help="fewer repeats, for a smoke run")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    p.add_argument("--keep-openblas-env", action="store_true",
                   help="keep OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE as set (default: rerun without them)")
    args = p.parse_args(argv)
    repeats = 3 if args.quick else args.repeats
    rng = np.random.default_rng(0)
    print(f"machine: {cpu_model()} | ironformer {irf.__version__} isa={irf.isa()} | numpy {np.__version__}"
          f" | torch {torch.__version__ if torch else 'not installed'} | python {sys.version.split()[0]}")
    if importlib.util.find_spec("threadpoolctl") is None:
        print("note: threadpoolctl not installed; numpy uses its default thread count")
    if os.environ.get("IRF_BENCH_UNSET"):
        print(f"note: unset {os.environ['IRF_BENCH_UNSET']} so that numpy's OpenBLAS uses its own"
              " kernels for this CPU (--keep-openblas-env keeps them)")
    if os.environ.get("OPENBLAS_CORETYPE"):
        print(f"note: OPENBLAS_CORETYPE={os.environ['OPENBLAS_CORETYPE']} is set (may slow numpy)")
    shortfalls = []
    for nt in args.threads:
        irf.set_num_threads(nt)
        if torch is not None:
            torch.set_num_threads(nt)
        peak = _C.peak_gflops(nt, 0.3)
        print(f"\n== {nt} thread(s); fp32 peak measured by an FMA loop before this table: {peak:.0f} GFLOP/s ({irf.isa()})")
        hdr = (f"{'shape':24s} {'M':>5s} {'N':>5s} {'K':>5s} | {'irf':>6s} {'numpy':>6s} {'torch':>6s} GFLOP/s | "
               f"{'vs torch':>8s} {'vs numpy':>8s} {'(rounds)':>11s} {'irf %peak':>9s} | max rel err")
        if args.markdown:
            print("| shape | M | N | K | ironformer | numpy | torch | vs torch | vs numpy | (rounds) | % peak |")
            print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        else:
            print(hdr)
        with numpy_threads(nt):
            for label, m, n, k, ta, tb in SHAPES:
                g, err, (q25, q75) = bench_shape(m, n, k, ta, tb, nt, repeats, rng)
                t = g.get("torch", float("nan"))
                r_t = g["ironformer"] / t if torch is not None else float("nan")
                r_n = g["ironformer"] / g["numpy"]
                frac = g["ironformer"] / peak
                if args.markdown:
                    print(f"| {label} | {m} | {n} | {k} | {g['ironformer']:.1f} | {g['numpy']:.1f} | {t:.1f} | "
                          f"{r_t:.2f}x | {r_n:.2f}x | {q25:.2f}-{q75:.2f} | {100 * frac:.0f}% |")
                else:
                    print(f"{label:24s} {m:5d} {n:5d} {k:5d} | {g['ironformer']:6.1f} {g['numpy']:6.1f} {t:6.1f}         | "
                          f"{r_t:7.2f}x {r_n:7.2f}x {q25:5.2f}-{q75:4.2f} {100 * frac:8.0f}% | {err:.1e}")
                if label in TRAINING and torch is not None and r_t < 0.9:
                    shortfalls.append(f"{nt}T {label}: {r_t:.2f}x torch")
                if r_n < 1.0:
                    shortfalls.append(f"{nt}T {label}: {r_n:.2f}x numpy (rounds {q25:.2f}-{q75:.2f})")
        peak_after = _C.peak_gflops(nt, 0.3)
        print(f"   (peak re-measured after the table: {peak_after:.0f} GFLOP/s; a big change means the machine's load changed)")
    print("\n(rounds): quartiles over the rounds of numpy's time / ironformer's in the same round")
    print("targets: >= 0.9x torch on training shapes, >= 1.0x numpy everywhere")
    print("shortfalls: " + ("; ".join(shortfalls) if shortfalls else "none"))


if __name__ == "__main__":
    main()
