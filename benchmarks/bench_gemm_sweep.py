"""SGEMM against numpy (OpenBLAS) over many shapes, not only a training step's: fixed skinny,
small and odd shapes in three layouts, plus random ones.

    python benchmarks/bench_gemm_sweep.py [--threads 1] [--random 60] [--seed 1] [--no-fixed]
    python benchmarks/bench_gemm_sweep.py --shapes 4096,4,4096,0,0 777,33,999,1,0   # M,N,K,ta,tb
    python benchmarks/bench_gemm_sweep.py --padded --no-fixed --random 60   # strided views

Each shape: ironformer and numpy alternate, 7 samples each (5 at 2+ threads, with a 0.25 s pause
before every sample so that neither library's spinning workers slow the other), a sample being
repeated calls for >= 30 ms; printed: ironformer's GFLOP/s, the ratio of median times (numpy /
ironformer, > 1: ironformer faster) and the spread of the per-round ratios; `<<<` marks < 0.97.
Sorted lowest ratio first at the end.  Like bench_gemm.py it unsets OPENBLAS_CORETYPE /
OPENBLAS_L2_SIZE (set on some machines, they hold numpy to older kernels).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

from _common import rerun_without_openblas_env

if __name__ == "__main__":
    rerun_without_openblas_env()

import numpy as np  # noqa: E402

import ironformer as irf  # noqa: E402

try:
    from threadpoolctl import threadpool_limits
except ImportError:   # numpy then uses its default thread count
    threadpool_limits = None

FIXED = [(8, 768, 768), (16, 768, 768), (32, 768, 3072), (64, 3072, 768), (96, 768, 768), (128, 2048, 128),
         (200, 200, 200), (256, 256, 256), (300, 300, 3000), (3000, 300, 300), (768, 64, 768), (768, 16, 768),
         (2048, 64, 64), (2048, 768, 16), (2048, 768, 64), (4, 4096, 4096), (4096, 4, 4096), (100, 100, 5000),
         (1500, 1500, 64), (2048, 2048, 2048), (333, 444, 555), (129, 129, 129), (777, 33, 999), (50, 3000, 50),
         (2, 768, 768), (12, 3072, 768),
         # N = 512 with M a multiple of 1024 (A^T's row stride): in-place A^T under split tiles
         # ran at 0.66-0.73x numpy before GEMM change (19)
         (1024, 512, 1024), (2048, 512, 768)]


def random_shapes(seed, count):
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < count:
        m, n, k = (np.exp(rng.uniform(0, np.log(4096), 3))).astype(int) + 1
        if not 1e6 <= m * n * k <= 2e9:
            continue
        out.append((int(m), int(n), int(k), int(rng.integers(2)), int(rng.integers(2))))
    return out


PAD_RULES = ("contiguous", "+1", "+16", "x512", "x1024", "x2048", "x4096")


def padded(rng, rows, cols, rule):
    """A rows x cols float32 view whose row stride follows `rule`: the contiguous width, one or
    16 floats more, or the width rounded up to a multiple of 512-4096 floats."""
    ld = cols + {"contiguous": 0, "+1": 1, "+16": 16}.get(rule, 0)
    if rule.startswith("x"):
        m = int(rule[1:])
        ld = -(-cols // m) * m
    return rng.standard_normal((rows, ld), dtype=np.float32)[:, :cols]


def timed(f, min_time=0.03):
    f()
    n, t0 = 0, time.perf_counter()
    while True:
        f()
        n += 1
        e = time.perf_counter() - t0
        if e > min_time:
            return e / n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--random", type=int, default=60, help="random shapes (0: none)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-fixed", action="store_true", help="skip the fixed shapes")
    ap.add_argument("--shapes", nargs="*", default=None, help="only these, as M,N,K,ta,tb")
    ap.add_argument("--padded", action="store_true",
                    help="A, B and C as views with row strides chosen at random (seeded) from " + ", ".join(PAD_RULES))
    args = ap.parse_args(argv)
    nt = args.threads
    irf.set_num_threads(nt)
    if threadpool_limits is not None:
        threadpool_limits(nt)
    if args.shapes:
        shapes = [tuple(int(v) for v in s.split(",")) for s in args.shapes]
    else:
        shapes = [] if args.no_fixed else [(m, n, k, ta, tb) for (m, n, k) in FIXED for ta, tb in ((0, 0), (0, 1), (1, 0))]
        shapes += random_shapes(args.seed, args.random)
    print(f"ironformer {irf.__version__} isa={irf.isa()} threads={nt} | numpy {np.__version__} | {len(shapes)} shapes",
          flush=True)
    rng = np.random.default_rng(0)
    rows = []
    rounds = 7 if nt == 1 else 5
    pad_rng = np.random.default_rng(args.seed + 1000)
    for (m, n, k, ta, tb) in shapes:
        rules = [str(pad_rng.choice(PAD_RULES)) if args.padded else "contiguous" for _ in range(3)]
        a = padded(rng, *((k, m) if ta else (m, k)), rules[0])
        b = padded(rng, *((n, k) if tb else (k, n)), rules[1])
        an, bn = (a.T if ta else a), (b.T if tb else b)
        o1, o2 = padded(rng, m, n, rules[2]), padded(rng, m, n, rules[2])
        fi = lambda: irf.ops.matmul(a, b, trans_a=bool(ta), trans_b=bool(tb), out=o1)  # noqa: E731
        fn = lambda: np.matmul(an, bn, out=o2)  # noqa: E731
        ti, tn = [], []
        for r in range(rounds):
            for which in ((0, 1) if r % 2 else (1, 0)):
                if nt > 1:
                    time.sleep(0.25)
                (ti if which == 0 else tn).append(timed(fi if which == 0 else fn))
        ratio = statistics.median(tn) / statistics.median(ti)
        per = sorted(x / y for x, y in zip(tn, ti))
        gf = 2 * m * n * k / statistics.median(ti) / 1e9
        line = (f"{nt}T {m:5d}x{n:5d}x{k:5d} {'A^T' if ta else 'A  '} {'B^T' if tb else 'B  '}: "
                + (f"ld {a.strides[0] // 4},{b.strides[0] // 4},{o1.strides[0] // 4}: " if args.padded else "")
                + f"ironformer {gf:6.1f} GFLOP/s  vs numpy {ratio:.3f} [{per[1]:.2f}-{per[-2]:.2f}]"
                f"{' <<<' if ratio < 0.97 else ''}")
        rows.append((ratio, line))
        print(line, flush=True)
    print("\nlowest ratios first:")
    for _, line in sorted(rows)[:10]:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
