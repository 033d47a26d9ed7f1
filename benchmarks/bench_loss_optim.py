"""loss_optim kernels vs PyTorch eager, side by side in one process.

    python benchmarks/bench_loss_optim.py [--threads 1 2] [--repeats 9] [--quick]

Cases (the shapes of a GPT-2 small training step, B*T = 2048 tokens):
  * cross-entropy forward + backward on (2048, 50257) and (2048, 768) logits vs
    F.cross_entropy + autograd backward (target >= 2x);
  * AdamW over 10.65M parameters (one flat buffer) vs torch.optim.AdamW(fused=True) (target >= 1x);
  * embedding forward + backward for (12*64 ids, V 65, C 128) and (8*256 ids, V 50257, C 768)
    vs F.embedding + autograd; both sides accumulate into an existing weight gradient.
Each step allocates its outputs as a training step does (ironformer's cross_entropy_backward
reuses the freed dlogits block of the previous step; torch allocates afresh, as its CPU
allocator does).  Each case runs ironformer and torch interleaved (round-robin, after warm-up) at the same thread
count and reports the median time and the ratio (torch time / ironformer time: > 1 means
ironformer is faster).  The machine is shared and noisy: trust ratios from one run.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

import ironformer as irf
from ironformer import ops

from _common import cpu_model, interleaved_medians

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # pragma: no cover
    sys.exit("this benchmark needs PyTorch (the baseline): pip install torch")


def case_cross_entropy(n, v, rng):
    x = (rng.standard_normal((n, v), dtype=np.float32) * 2.0)
    t = rng.integers(0, v, n)
    t[::17] = -100

    def irf_step():
        loss, lse = ops.cross_entropy_forward(x, t)
        return ops.cross_entropy_backward(x, t, lse)

    xt = torch.from_numpy(x).requires_grad_(True)
    tt = torch.from_numpy(t)

    def torch_step():
        xt.grad = None
        F.cross_entropy(xt, tt, ignore_index=-100).backward()
        return xt.grad

    d = irf_step()
    g = torch_step().numpy()
    err = float(np.abs(d - g).max() / np.abs(g).max())
    return {"ironformer": irf_step, "torch": torch_step}, err


def case_adamw(n, rng):
    p0 = rng.standard_normal(n, dtype=np.float32)
    g = rng.standard_normal(n, dtype=np.float32)
    p, m, v = p0.copy(), np.zeros(n, np.float32), np.zeros(n, np.float32)
    state = {"step": 0, "tstep": 0}

    def irf_step():
        state["step"] += 1
        ops.adamw_step(p, g, m, v, step=state["step"], lr=1e-4, weight_decay=0.1)

    pt = torch.nn.Parameter(torch.from_numpy(p0.copy()))
    pt.grad = torch.from_numpy(g.copy())
    opt = torch.optim.AdamW([pt], lr=1e-4, weight_decay=0.1, fused=True)

    def torch_step():
        opt.step()

    irf_step()
    torch_step()
    err = float(np.abs(p - pt.detach().numpy()).max())
    return {"ironformer": irf_step, "torch": torch_step}, err


def case_embedding(n_ids, vocab, c, rng):
    w = rng.standard_normal((vocab, c), dtype=np.float32)
    ids = rng.integers(0, vocab, n_ids)
    dout = rng.standard_normal((n_ids, c), dtype=np.float32)
    dw = np.zeros_like(w)

    def irf_step():
        ops.embedding_forward(ids, w)
        ops.embedding_backward(dout, ids, dw)

    wt = torch.nn.Parameter(torch.from_numpy(w.copy()))
    wt.grad = torch.zeros_like(wt)
    it, dt = torch.from_numpy(ids), torch.from_numpy(dout)

    def torch_step():
        F.embedding(it, wt).backward(dt)

    # correctness of one step from zero
    dw[...] = 0
    irf_step()
    wt.grad.zero_()
    torch_step()
    err = float(np.abs(dw - wt.grad.numpy()).max())
    return {"ironformer": irf_step, "torch": torch_step}, err


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--quick", action="store_true", help="fewer repeats, for a smoke run")
    args = p.parse_args(argv)
    repeats = 3 if args.quick else args.repeats
    rng = np.random.default_rng(0)
    print(f"machine: {cpu_model()} | ironformer {irf.__version__} isa={irf.isa()} | torch {torch.__version__}"
          f" | python {sys.version.split()[0]}")
    cases = [
        ("cross-entropy fwd+bwd (2048, 50257)", lambda: case_cross_entropy(2048, 50257, rng), 2.0),
        ("cross-entropy fwd+bwd (2048, 768)", lambda: case_cross_entropy(2048, 768, rng), 2.0),
        ("AdamW step, 10.65M params (fused torch)", lambda: case_adamw(10_650_000, rng), 1.0),
        ("embedding fwd+bwd 768 ids V65 C128", lambda: case_embedding(12 * 64, 65, 128, rng), None),
        ("embedding fwd+bwd 2048 ids V50257 C768", lambda: case_embedding(8 * 256, 50257, 768, rng), None),
    ]
    shortfalls = []
    for nt in args.threads:
        irf.set_num_threads(nt)
        torch.set_num_threads(nt)
        print(f"\n== {nt} thread(s), isa {irf.isa()}")
        print(f"{'case':42s} | {'ironformer':>11s} {'torch':>11s} | {'speedup':>7s} {'target':>6s} | max err")
        for label, make, target in cases:
            fns, err = make()
            t = interleaved_medians(fns, irf.get_num_threads(), repeats)
            r = t["torch"] / t["ironformer"]
            tgt = f">={target:.0f}x" if target else "-"
            print(f"{label:42s} | {t['ironformer'] * 1e3:8.3f} ms {t['torch'] * 1e3:8.3f} ms | {r:6.2f}x {tgt:>6s} | {err:.1e}")
            if target and r < target:
                shortfalls.append(f"{nt}T {label}: {r:.2f}x (target {target:.0f}x)")
            del fns
    print("\nspeedup = torch time / ironformer time (same process, same threads, interleaved medians)")
    print("shortfalls: " + ("; ".join(shortfalls) if shortfalls else "none"))


if __name__ == "__main__":
    main()
