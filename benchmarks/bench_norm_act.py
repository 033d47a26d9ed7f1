"""LayerNorm, GELU (erf and tanh), softmax, log-softmax: ironformer vs PyTorch eager, fwd+bwd.

    python benchmarks/bench_norm_act.py [--threads 1 2] [--repeats 11] [--quick]

Shapes of a GPT-2 small training step: B*T = 2048 rows, C = 768 (GELU also at the MLP width
3072).  PyTorch runs eager autograd on float32 tensors (y = op(x); y.backward(g)); ironformer
runs its forward kernel then its backward kernel (parameter grads accumulated into persistent
buffers, as in training).  Both run interleaved (round-robin, after warm-up) at the same
thread count; the median of the repeats is reported with the speed ratio (torch time /
ironformer time, > 1 means ironformer is faster), plus forward-only and backward-only ratios.
Inputs of both libraries are 64-byte aligned arrays (separate copies), as each library's own
allocator gives them inside a training step; numpy's default placement (16 bytes past a line)
splits every vector load across two lines and slowed ironformer's layernorm backward by up to
50% on an AVX-512 Zen 5 (PyTorch's layernorm and softmax within noise, 3% either way).
Both loops hold the same buffers: PyTorch's output dies with its graph after each backward, so
ironformer's forward drops its previous output before making the next one (keeping it alive
meant one 6 MB buffer more in play than PyTorch, which pushed the set past this machine's L3 and
cost ironformer's softmax fwd+bwd ~50%: 632 vs 416 us on a Zen 5, 1 thread).
The machine is shared and noisy: trust ratios from one run, not absolute figures.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

import ironformer as irf
from ironformer import ops

from _common import aligned_copy, cpu_model, settle

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    torch = None

ROWS, C, HIDDEN = 2048, 768, 3072


def make_case(name, rng):
    """-> (label, {impl: {phase: callable}}) with phases fwd, bwd, fwdbwd."""
    width = HIDDEN if name.endswith("3072") else C
    x = aligned_copy(rng.standard_normal((ROWS, width), dtype=np.float32))
    g = aligned_copy(rng.standard_normal((ROWS, width), dtype=np.float32))
    w = (1 + 0.1 * rng.standard_normal(width)).astype(np.float32)
    b = (0.1 * rng.standard_normal(width)).astype(np.float32)
    irf_f, irf_b, t_op = None, None, None
    if name == "layernorm":
        dw, db = np.zeros(width, np.float32), np.zeros(width, np.float32)
        st = {}

        def irf_f():
            st.clear()   # free the previous output first, as PyTorch's loop does (see docstring)
            st["r"] = ops.layernorm_forward(x, w, b)

        def irf_b():
            _, mean, rstd = st["r"]
            ops.layernorm_backward(g, x, mean, rstd, w, dweight=dw, dbias=db)
        if torch is not None:
            tw = torch.from_numpy(w.copy()).requires_grad_()
            tb = torch.from_numpy(b.copy()).requires_grad_()

            def t_op(t):
                return F.layer_norm(t, (width,), tw, tb, 1e-5)
    elif name.startswith("gelu"):
        approx = "tanh" if "tanh" in name else "none"
        st = {}

        def irf_f():
            st.clear()
            st["y"] = ops.gelu_forward(x, approximate=approx)

        def irf_b():
            ops.gelu_backward(g, x, approximate=approx)
        if torch is not None:
            def t_op(t):
                return F.gelu(t, approximate=approx)
    elif name in ("softmax", "log_softmax"):
        fwd = ops.softmax_forward if name == "softmax" else ops.log_softmax_forward
        bwd = ops.softmax_backward if name == "softmax" else ops.log_softmax_backward
        st = {}

        def irf_f():
            st.clear()
            st["y"] = fwd(x)

        def irf_b():
            bwd(g, st["y"])
        if torch is not None:
            def t_op(t):
                return torch.softmax(t, -1) if name == "softmax" else torch.log_softmax(t, -1)
    impls = {"ironformer": {"fwd": irf_f, "bwd": irf_b, "fwdbwd": lambda: (irf_f(), irf_b())}}
    if torch is not None:
        tx = torch.from_numpy(aligned_copy(x)).requires_grad_()
        tg = torch.from_numpy(aligned_copy(g))
        ts = {}

        def t_f():
            with torch.no_grad():
                t_op(tx)

        def t_fb():
            tx.grad = None
            t_op(tx).backward(tg)

        def t_prep():
            ts["y"] = t_op(tx)

        def t_b():   # backward alone: re-run forward outside the timed region is not possible
            tx.grad = None   # in one call, so this is fwd(with graph) + bwd minus t_f, see below
            ts["y"].backward(tg, retain_graph=True)
        t_prep()
        impls["torch"] = {"fwd": t_f, "bwd": t_b, "fwdbwd": t_fb}
    return f"{name} ({ROWS}x{width})", impls


def timeit(f, inner):
    t0 = time.perf_counter()
    for _ in range(inner):
        f()
    return (time.perf_counter() - t0) / inner


def run_case(impls, repeats):
    # inner calls so that one sample takes ~10 ms
    t1 = max(timeit(impls["ironformer"]["fwdbwd"], 1), 1e-6)
    inner = max(1, int(0.01 / t1))
    res = {impl: {ph: [] for ph in ("fwd", "bwd", "fwdbwd")} for impl in impls}
    for _ in range(2):
        for impl in impls.values():
            for f in impl.values():
                f()
    for _ in range(repeats):
        for ph in ("fwdbwd", "fwd", "bwd"):
            for name, impl in impls.items():
                settle(impl[ph], irf.get_num_threads())
                res[name][ph].append(timeit(impl[ph], inner))
    med = {name: {ph: statistics.median(v) for ph, v in d.items()} for name, d in res.items()}
    best = {name: {ph: min(v) for ph, v in d.items()} for name, d in res.items()}
    return med, best


CASES = ["layernorm", "gelu_tanh", "gelu_erf", "gelu_tanh_3072", "gelu_erf_3072", "softmax", "log_softmax"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--quick", action="store_true", help="fewer repeats, for a smoke run")
    p.add_argument("--ops", nargs="+", choices=CASES, default=CASES, help="which ops (default: all)")
    args = p.parse_args(argv)
    repeats = 3 if args.quick else args.repeats
    rng = np.random.default_rng(0)
    print(f"machine: {cpu_model()} | ironformer {irf.__version__} isa={irf.isa()} | numpy {np.__version__}"
          f" | torch {torch.__version__ if torch else 'not installed'} | python {sys.version.split()[0]}")
    shortfalls = []
    cases = [make_case(n, rng) for n in args.ops]
    for nt in args.threads:
        irf.set_num_threads(nt)
        if torch is not None:
            torch.set_num_threads(nt)
        print(f"\n== {nt} thread(s), isa {irf.isa()}; times in microseconds (median of {repeats});"
              f" ratio = torch time / ironformer time")
        print(f"{'op':26s} | {'irf fwd+bwd':>11s} {'torch fwd+bwd':>13s} {'ratio':>6s} {'(best)':>7s} | "
              f"{'fwd ratio':>9s} {'bwd ratio*':>10s}")
        for label, impls in cases:
            r, b = run_case(impls, repeats)
            ti = r["ironformer"]
            if torch is None:
                print(f"{label:26s} | {ti['fwdbwd'] * 1e6:11.0f}")
                continue
            tt = r["torch"]
            ratio = tt["fwdbwd"] / ti["fwdbwd"]
            best = b["torch"]["fwdbwd"] / b["ironformer"]["fwdbwd"]
            print(f"{label:26s} | {ti['fwdbwd'] * 1e6:11.0f} {tt['fwdbwd'] * 1e6:13.0f} {ratio:5.2f}x {best:6.2f}x | "
                  f"{tt['fwd'] / ti['fwd']:8.2f}x {tt['bwd'] / ti['bwd']:9.2f}x")
            if ratio < 2.0:
                shortfalls.append(f"{nt}T {label}: {ratio:.2f}x")
    print("\nratio: of the medians; (best): of the fastest samples (less sensitive to a loaded machine)")
    print("* torch bwd = backward through a retained graph (autograd engine overhead included)")
    print("target: fwd+bwd >= 2x PyTorch eager")
    print("shortfalls: " + ("; ".join(shortfalls) if shortfalls else "none"))


if __name__ == "__main__":
    main()
