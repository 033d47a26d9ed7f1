"""A full GPT training step (forward, loss, backward, AdamW step): ironformer vs PyTorch eager.

    python benchmarks/bench_train.py [--threads 1 2] [--repeats 15] [--profile]

The nanoGPT CPU configuration (Shakespeare-char): 4 layers, 4 heads, 128 wide, context 64,
batch 12, vocabulary 65, GPT-2 block (pre-LN, causal attention, GELU-tanh MLP 4x), tied
embeddings, no dropout.  The same model is built from ironformer.nn modules and from torch.nn
with identical weights; for each thread count the two steps run interleaved after warm-up and
the medians are compared.  ``--profile`` then prints where ironformer's step time goes: time
per kernel call site (ops.* wrappers timed) and the Python orchestration left over, and the
top cProfile entries.  The machine is shared: trust ratios from one run, not absolute times.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import sys
import time
from collections import OrderedDict, defaultdict

import numpy as np

import ironformer as irf
from ironformer import nn
from ironformer.nn import functional as F

from _common import cpu_model, settle

try:
    import torch
except ImportError:  # torch is an optional baseline
    torch = None


CFG = dict(n_layer=4, n_head=4, n_embd=128, block_size=64, batch=12, vocab=65)


# ---------------------------------------------------------------------------------------
# the model, in ironformer

class Block(nn.Module):
    def __init__(self, C, nh):
        super().__init__()
        self.ln_1 = nn.LayerNorm(C)
        self.attn = nn.MultiheadSelfAttention(C, nh, causal=True)
        self.ln_2 = nn.LayerNorm(C)
        self.mlp = nn.Sequential(OrderedDict(c_fc=nn.Linear(C, 4 * C), gelu=nn.GELU("tanh"),
                                             c_proj=nn.Linear(4 * C, C)))

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, V, T, C, nh, L):
        super().__init__()
        self.wte = nn.Embedding(V, C)
        self.wpe = nn.Embedding(T, C)
        self.h = nn.ModuleList([Block(C, nh) for _ in range(L)])
        self.ln_f = nn.LayerNorm(C)
        self.lm_head = nn.Linear(C, V, bias=False)
        self.lm_head.weight = self.wte.weight   # tied

    def forward(self, idx, targets):
        B, T = idx.shape
        x = self.wte(idx) + self.wpe(np.arange(T))
        for b in self.h:
            x = b(x)
        return F.cross_entropy(self.lm_head(self.ln_f(x)), targets)


# ---------------------------------------------------------------------------------------
# the same model in PyTorch

def torch_gpt(V, T, C, nh, L):
    tnn, TF = torch.nn, torch.nn.functional

    class TAttn(tnn.Module):
        def __init__(self):
            super().__init__()
            self.c_attn = tnn.Linear(C, 3 * C)
            self.c_proj = tnn.Linear(C, C)

        def forward(self, x):
            B, T_, _ = x.shape
            q, k, v = self.c_attn(x).split(C, dim=2)
            q, k, v = (t.view(B, T_, nh, C // nh).transpose(1, 2) for t in (q, k, v))
            y = TF.scaled_dot_product_attention(q, k, v, is_causal=True)
            return self.c_proj(y.transpose(1, 2).contiguous().view(B, T_, C))

    class TBlock(tnn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1 = tnn.LayerNorm(C)
            self.attn = TAttn()
            self.ln_2 = tnn.LayerNorm(C)
            self.mlp = tnn.Sequential(OrderedDict(c_fc=tnn.Linear(C, 4 * C), gelu=tnn.GELU("tanh"),
                                                  c_proj=tnn.Linear(4 * C, C)))

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))

    class TGPT(tnn.Module):
        def __init__(self):
            super().__init__()
            self.wte = tnn.Embedding(V, C)
            self.wpe = tnn.Embedding(T, C)
            self.h = tnn.ModuleList([TBlock() for _ in range(L)])
            self.ln_f = tnn.LayerNorm(C)
            self.lm_head = tnn.Linear(C, V, bias=False)
            self.lm_head.weight = self.wte.weight

        def forward(self, idx, targets):
            B, T_ = idx.shape
            x = self.wte(idx) + self.wpe(torch.arange(T_))
            for b in self.h:
                x = b(x)
            logits = self.lm_head(self.ln_f(x))
            return TF.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))

    return TGPT()


# ---------------------------------------------------------------------------------------


def build(seed=0):
    c = CFG
    irf.manual_seed(seed)
    m = GPT(c["vocab"], c["block_size"], c["n_embd"], c["n_head"], c["n_layer"])
    for name, p in m.named_parameters():   # GPT-2 init: N(0, 0.02), LN ones/zeros, biases 0
        if name.endswith(".weight") and p.ndim == 2:
            p.data[...] = irf.autograd.default_generator().standard_normal(p.shape) * 0.02
        elif "ln" in name and name.endswith("weight"):
            p.data[...] = 1.0
        else:
            p.data[...] = 0.0
    tm = None
    if torch is not None:
        tm = torch_gpt(c["vocab"], c["block_size"], c["n_embd"], c["n_head"], c["n_layer"])
        tm.load_state_dict({k: torch.tensor(v) for k, v in m.state_dict().items()})
    return m, tm


def make_steps(m, tm, idx, targets):
    opt = irf.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=0.1)

    def irf_step():
        opt.zero_grad()
        loss = m(idx, targets)
        loss.backward()
        opt.step()
        return loss.item()

    t_step = None
    if tm is not None:
        topt = torch.optim.AdamW(tm.parameters(), lr=1e-3, weight_decay=0.1, fused=True)
        tidx, ttargets = torch.from_numpy(idx), torch.from_numpy(targets)

        def t_step():
            topt.zero_grad(set_to_none=True)
            loss = tm(tidx, ttargets)
            loss.backward()
            topt.step()
            return loss.item()

    return irf_step, t_step


def bench(threads, repeats, warmup=3):
    c = CFG
    rng = np.random.default_rng(0)
    idx = rng.integers(0, c["vocab"], (c["batch"], c["block_size"])).astype(np.int64)
    targets = np.roll(idx, -1, axis=1)
    m, tm = build()
    irf_step, t_step = make_steps(m, tm, idx, targets)
    # correctness guard: the first losses agree
    l_irf = irf_step()
    if t_step is not None:
        l_t = t_step()
        print(f"first-step loss: ironformer {l_irf:.5f}  torch {l_t:.5f}")
    rows = []
    for n in threads:
        irf.set_num_threads(n)
        if torch is not None:
            torch.set_num_threads(n)
        for _ in range(warmup):
            irf_step()
            if t_step:
                t_step()
        ti, tt = [], []
        for _ in range(repeats):
            settle(None, irf.get_num_threads())
            t0 = time.perf_counter()
            irf_step()
            ti.append(time.perf_counter() - t0)
            if t_step:
                settle(None, irf.get_num_threads())
                t0 = time.perf_counter()
                t_step()
                tt.append(time.perf_counter() - t0)
        mi = statistics.median(ti)
        mt = statistics.median(tt) if tt else float("nan")
        rows.append((n, mi, mt))
        tok = c["batch"] * c["block_size"]
        print(f"threads={n}: ironformer {mi * 1e3:8.2f} ms/step ({tok / mi:8.0f} tok/s)   "
              f"torch {mt * 1e3:8.2f} ms/step   speed ratio ironformer/torch = {mt / mi:5.2f}x", flush=True)
    return m, irf_step, rows


def profile(irf_step, threads):
    """Per-kernel time (ops.* wrappers timed in place) and the remaining Python time."""
    from ironformer import ops
    irf.set_num_threads(threads)
    totals = defaultdict(float)
    counts = defaultdict(int)
    originals = {}
    mods = [ops]
    import ironformer.autograd as ag
    import ironformer.nn.functional as fmod
    import ironformer.optim.optimizer as omod
    import ironformer.nn.utils as umod
    mods += [ag, fmod, omod, umod]
    for name in ops.__all__:
        fn = getattr(ops, name)

        def wrap(fn=fn, name=name):
            def timed(*a, **k):
                t0 = time.perf_counter()
                r = fn(*a, **k)
                totals[name] += time.perf_counter() - t0
                counts[name] += 1
                return r
            return timed
        originals[name] = fn
        setattr(ops, name, wrap())
    steps = 10
    try:
        for _ in range(2):
            irf_step()
        totals.clear()
        counts.clear()
        t0 = time.perf_counter()
        for _ in range(steps):
            irf_step()
        wall = (time.perf_counter() - t0) / steps
    finally:
        for name, fn in originals.items():
            setattr(ops, name, fn)
    print(f"\nper-op time at {threads} thread(s), ms per step (wall {wall * 1e3:.2f} ms):")
    kern = 0.0
    for name, t in sorted(totals.items(), key=lambda kv: -kv[1]):
        kern += t / steps
        print(f"  {name:28s} {t / steps * 1e3:8.3f} ms  {counts[name] // steps:4d} calls  {t / steps / wall:6.1%}")
    print(f"  {'(kernel calls, total)':28s} {kern * 1e3:8.3f} ms")
    print(f"  {'(python orchestration)':28s} {(wall - kern) * 1e3:8.3f} ms  {(wall - kern) / wall:6.1%}")
    pr = cProfile.Profile()
    pr.enable()
    for _ in range(5):
        irf_step()
    pr.disable()
    s = io.StringIO()
    pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(15)
    print("\ncProfile, 5 steps, top entries by own time:")
    print("\n".join(s.getvalue().splitlines()[:40]))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    print(f"machine: {cpu_model()}  ISA: {irf.isa()}  python {sys.version.split()[0]}  "
          f"torch {torch.__version__ if torch else 'missing'}")
    print(f"config: {CFG}  (tied embeddings, AdamW; torch AdamW fused=True)")
    m, irf_step, rows = bench(args.threads, args.repeats)
    if args.profile:
        profile(irf_step, args.threads[-1])


if __name__ == "__main__":
    main()
