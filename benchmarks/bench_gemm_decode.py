"""Decoding-like SGEMM: a few rows through 12 GPT-2 layers' weights, ironformer vs numpy vs PyTorch.

    python benchmarks/bench_gemm_decode.py [--threads 1 2] [--rows 1 2 4 8 12] [--repeats 7]

Generation multiplies a few token rows (1 for one sequence, more for a batch of sequences or
speculative / prefill chunks) by every weight of the model in turn.  Here M rows go through the
row-major weights of 12 GPT-2 small layers, x @ W with W of 768x2304 (qkv), 768x768 (proj),
768x3072 (mlp up), 3072x768 (mlp down): 48 matrices, 85M floats (340 MB), 10x the L3, so every product
reads its B from memory as in a real decode step.  Such products are bound by memory bandwidth,
so the figure is GB/s of weights read (and GFLOP/s); the three libraries run interleaved, each
sample a full pass over the 48 weights, median over --repeats rounds.  The machine is shared and
noisy: trust ratios from one run, not absolute figures.
"""
from __future__ import annotations

import argparse
import os
import sys

from _common import cpu_model, interleaved_medians, numpy_threads, optional_torch, rerun_without_openblas_env

if __name__ == "__main__" and "--keep-openblas-env" not in sys.argv:
    rerun_without_openblas_env()

import numpy as np  # noqa: E402  (after the re-run above)

import ironformer as irf  # noqa: E402

torch = optional_torch()

# (K, N) of one GPT-2 small layer's row-major weights, in the order a forward pass uses them.
LAYER = [(768, 2304), (768, 768), (768, 3072), (3072, 768)]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--rows", type=int, nargs="+", default=[1, 2, 4, 8, 12])
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--keep-openblas-env", action="store_true",
                   help="keep OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE as set (default: rerun without them)")
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    weights = [rng.standard_normal(kn, dtype=np.float32) for _ in range(args.layers) for kn in LAYER]
    nfloats = sum(w.size for w in weights)
    gbytes = nfloats * 4 / 1e9
    print(f"machine: {cpu_model()} | ironformer {irf.__version__} isa={irf.isa()} | numpy {np.__version__}"
          f" | torch {torch.__version__ if torch else 'not installed'}")
    if os.environ.get("IRF_BENCH_UNSET"):
        print(f"note: unset {os.environ['IRF_BENCH_UNSET']} so that numpy's OpenBLAS uses its own kernels")
    print(f"{len(weights)} row-major weights of {args.layers} GPT-2 small layers, {gbytes * 1e3:.0f} MB")
    tw = [torch.from_numpy(w) for w in weights] if torch is not None else None
    for nt in args.threads:
        irf.set_num_threads(nt)
        if torch is not None:
            torch.set_num_threads(nt)
        print(f"\n== {nt} thread(s)")
        print(f"{'rows':>4s} | {'irf':>6s} {'numpy':>6s} {'torch':>6s} GB/s | {'irf GFLOP/s':>11s} | "
              f"{'vs numpy':>8s} {'vs torch':>8s} | max rel err")
        with numpy_threads(nt):
            for m in args.rows:
                xs = {k: rng.standard_normal((m, k), dtype=np.float32) for k, _ in LAYER}
                outs = [np.empty((m, w.shape[1]), np.float32) for w in weights]

                def run_irf():
                    for w, o in zip(weights, outs):
                        irf.ops.matmul(xs[w.shape[0]], w, out=o)

                def run_np():
                    for w, o in zip(weights, outs):
                        np.matmul(xs[w.shape[0]], w, out=o)

                fns = {"irf": run_irf, "numpy": run_np}
                if torch is not None:
                    txs = {k: torch.from_numpy(v) for k, v in xs.items()}
                    touts = [torch.empty((m, w.shape[1])) for w in weights]

                    def run_torch():
                        for w, o in zip(tw, touts):
                            torch.matmul(txs[w.shape[0]], w, out=o)

                    fns["torch"] = run_torch
                run_irf()
                err = 0.0
                for w, o in zip(weights[:4], outs[:4]):
                    ref = xs[w.shape[0]].astype(np.float64) @ w.astype(np.float64)
                    err = max(err, float(np.abs(o - ref).max() / np.abs(ref).max()))
                med = interleaved_medians(fns, nt, args.repeats)
                bw = {n: gbytes / t for n, t in med.items()}
                gflops = 2 * m * nfloats / med["irf"] / 1e9
                r_t = med["torch"] / med["irf"] if torch is not None else float("nan")
                print(f"{m:4d} | {bw['irf']:6.1f} {bw['numpy']:6.1f} {bw.get('torch', float('nan')):6.1f}      | "
                      f"{gflops:11.1f} | {med['numpy'] / med['irf']:7.2f}x {r_t:7.2f}x | {err:.1e}", flush=True)


if __name__ == "__main__":
    main()
