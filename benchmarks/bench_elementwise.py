"""elementwise family: broadcasting binary ops, unary maps and reduce_sum vs PyTorch eager.

    python benchmarks/bench_elementwise.py [--threads 1 2] [--repeats 30]

Shapes are the ones autograd meets in a small GPT step (B*T = 768 tokens, C = 128 / 512):
residual adds, broadcast adds, scaling, exp, bias-gradient sums, full sums.  Each case runs
interleaved with its torch twin (same threads), median of repeats after warm-up; printed as
time, effective memory bandwidth (bytes read + written / time) and the speed ratio
ironformer / torch.  The machine is shared: trust the ratios of one run, not the absolutes.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import ironformer as irf
from ironformer import ops

from _common import cpu_model

try:
    import torch
except ImportError:
    torch = None


def cases(rng):
    a = rng.standard_normal((12, 64, 512)).astype(np.float32)
    b = rng.standard_normal((12, 64, 512)).astype(np.float32)
    row = rng.standard_normal(512).astype(np.float32)
    pos = rng.standard_normal((64, 512)).astype(np.float32)
    g = rng.standard_normal((768, 512)).astype(np.float32)
    big = rng.standard_normal((4_000_000,)).astype(np.float32)
    ta, tb, trow, tpos, tg, tbig = (torch.from_numpy(x) for x in (a, b, row, pos, g, big)) if torch else [None] * 6
    n = a.size * 4
    return [
        ("add same shape (12,64,512)", lambda: ops.binary("add", a, b), lambda: ta + tb, 3 * n),
        ("add row bcast (12,64,512)+(512,)", lambda: ops.binary("add", a, row), lambda: ta + trow, 2 * n),
        ("add (12,64,512)+(64,512)", lambda: ops.binary("add", a, pos), lambda: ta + tpos, 2 * n),
        ("mul same shape", lambda: ops.binary("mul", a, b), lambda: ta * tb, 3 * n),
        ("div by scalar array", lambda: ops.binary("div", a, 3.0), lambda: ta / 3.0, 2 * n),
        ("mul_scalar", lambda: ops.mul_scalar(a, 0.5), lambda: ta * 0.5, 2 * n),
        ("exp", lambda: ops.unary("exp", a), lambda: ta.exp(), 2 * n),
        ("copy of a transposed view", lambda: ops.unary("copy", a.transpose(0, 2, 1)),
         lambda: ta.transpose(1, 2).contiguous(), 2 * n),
        ("reduce_sum (768,512) axis 0 (bias grad)", lambda: ops.reduce_sum(g, 0), lambda: tg.sum(0), g.size * 4),
        ("reduce_sum (768,512) axis 1", lambda: ops.reduce_sum(g, 1), lambda: tg.sum(1), g.size * 4),
        ("reduce_sum 4M all", lambda: ops.reduce_sum(big), lambda: tbig.sum(), big.size * 4),
    ]


def timeit(fn, reps):
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args()
    print(f"machine: {cpu_model()}  ISA: {irf.isa()}  torch {torch.__version__ if torch else 'missing'}")
    rng = np.random.default_rng(0)
    cs = cases(rng)
    for n in args.threads:
        irf.set_num_threads(n)
        if torch:
            torch.set_num_threads(n)
        print(f"\nthreads={n}")
        print(f"  {'case':42s} {'ironformer':>12s} {'GB/s':>7s} {'torch':>12s} {'ratio':>6s}")
        for name, f_irf, f_t, nbytes in cs:
            for _ in range(3):
                f_irf()
                if torch:
                    f_t()
            ti, tt = [], []
            for _ in range(args.repeats):
                ti.append(timeit(f_irf, 5))
                if torch:
                    tt.append(timeit(f_t, 5))
            mi = statistics.median(ti)
            mt = statistics.median(tt) if tt else float("nan")
            print(f"  {name:42s} {mi * 1e6:10.1f}us {nbytes / mi / 1e9:7.1f} {mt * 1e6:10.1f}us {mt / mi:6.2f}x",
                  flush=True)


if __name__ == "__main__":
    main()
