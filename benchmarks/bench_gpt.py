"""GPT end to end: ironformer vs PyTorch eager, side by side in one process (same threads).

  python benchmarks/bench_gpt.py                 # train-step speed (presets), generation, memory
  python benchmarks/bench_gpt.py --quick         # fewer repeats, smaller generation
  python benchmarks/bench_gpt.py --only train|gen|mem
  python benchmarks/bench_gpt.py --quality 2000  # train both frameworks on the default preset, compare val loss

Train step = forward + backward + AdamW (torch: fused AdamW), same weights and batch, interleaved
repeats, median after warm-up. Generation: greedy, batch 1, KV cache in both (torch: a
preallocated cache loop, benchmarks/reference_gpt_torch.py). Memory: VmHWM of a subprocess
per framework running a few training steps. The machine is shared: compare ratios, not times.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "python"))

import ironformer as irf  # noqa: E402
from ironformer.models import GPT, GPTConfig  # noqa: E402
from ironformer.train import TrainConfig, _make_optimizer  # noqa: E402
from _common import cpu_model, settle  # noqa: E402

PRESETS = {
    "default (0.8M)": (GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128), 12),
    "10.7M": (GPTConfig(vocab_size=65, block_size=256, n_layer=6, n_head=6, n_embd=384), 8),
}
GEN = {
    "10.7M": GPTConfig(vocab_size=65, block_size=256, n_layer=6, n_head=6, n_embd=384),
    "gpt2-small shape (124M)": GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768),
}


def bench_train(threads_list, reps, warmup=2):
    import torch
    import reference_gpt_torch as ref

    print("\n## training step (fwd + bwd + AdamW), median ms; ratio = torch time / ironformer time")
    for name, (mcfg, B) in PRESETS.items():
        m = GPT(mcfg, seed=0)
        opt = _make_optimizer(m, TrainConfig())
        tm = ref.from_ironformer(m)
        topt = ref.make_optimizer(tm)
        rng = np.random.default_rng(0)
        x = rng.integers(0, mcfg.vocab_size, (B, mcfg.block_size))
        y = rng.integers(0, mcfg.vocab_size, (B, mcfg.block_size))
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        flops = (6 * m.num_parameters() + 12 * mcfg.n_layer * mcfg.n_embd * mcfg.block_size) * B * mcfg.block_size

        def irf_step():
            _, loss = m(x, y)
            loss.backward()
            opt.step()
            opt.zero_grad()

        def torch_step():
            _, loss = tm(tx, ty)
            loss.backward()
            topt.step()
            topt.zero_grad(set_to_none=True)

        for th in threads_list:
            irf.set_num_threads(th)
            torch.set_num_threads(th)
            ti, tt = [], []
            for i in range(warmup + reps):
                settle(None, th)
                t0 = time.perf_counter(); irf_step(); t1 = time.perf_counter()
                settle(None, th)
                t1b = time.perf_counter(); torch_step(); t2 = time.perf_counter()
                if i >= warmup:
                    ti.append(t1 - t0); tt.append(t2 - t1b)
            a, b = float(np.median(ti)), float(np.median(tt))
            peak = irf._C.peak_gflops(th) * 1e9
            print(f"{name:>16} B={B} T={mcfg.block_size} threads={th}: ironformer {1e3 * a:8.1f} ms  "
                  f"torch {1e3 * b:8.1f} ms  ratio {b / a:5.2f}x  "
                  f"({flops / a / 1e9:.1f} GFLOP/s, {100 * flops / a / peak:.0f}% of measured peak)", flush=True)


def bench_gen(threads_list, n_new, prompt_len=16):
    import torch
    import reference_gpt_torch as ref

    print(f"\n## generation, batch 1, greedy, KV cache: prompt {prompt_len}, {n_new} new tokens; tokens/s")
    for name, mcfg in GEN.items():
        m = GPT(mcfg, seed=0)
        m.eval()
        tm = ref.from_ironformer(m).eval()
        prompt = np.random.default_rng(0).integers(0, mcfg.vocab_size, (1, prompt_len))
        for th in threads_list:
            irf.set_num_threads(th)
            torch.set_num_threads(th)
            m.generate(prompt, 4, temperature=0)
            ref.generate_kv(tm, torch.from_numpy(prompt), 4)
            ri, rt = [], []
            for _ in range(2):
                settle(None, th)
                t0 = time.perf_counter(); a = m.generate(prompt, n_new, temperature=0); t1 = time.perf_counter()
                settle(None, th)
                t1b = time.perf_counter(); b = ref.generate_kv(tm, torch.from_numpy(prompt), n_new).numpy(); t2 = time.perf_counter()
                ri.append(t1 - t0); rt.append(t2 - t1b)
            si, st = n_new / min(ri), n_new / min(rt)
            same = np.array_equal(a, b)
            print(f"{name:>24} threads={th}: ironformer {si:8.1f} tok/s  torch {st:8.1f} tok/s  "
                  f"ratio {si / st:5.2f}x  (same tokens: {same})", flush=True)


_MEM_CHILD = r"""
import sys, time, numpy as np
sys.path[:0] = [{here!r}, {py!r}]
fw, steps, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
from ironformer.models import GPTConfig, GPT
cfg = GPTConfig(vocab_size=65, block_size=256, n_layer=6, n_head=6, n_embd=384); B = 8
rng = np.random.default_rng(0)
x = rng.integers(0, 65, (B, 256)); y = rng.integers(0, 65, (B, 256))
def hwm():
    for l in open('/proc/self/status'):
        if l.startswith('VmHWM'): return int(l.split()[1]) / 1024
if fw == 'ironformer':
    import ironformer as irf
    from ironformer.train import TrainConfig, _make_optimizer
    irf.set_num_threads(threads)
    m = GPT(cfg, seed=0); opt = _make_optimizer(m, TrainConfig()); base = hwm()
    for _ in range(steps):
        _, loss = m(x, y); loss.backward(); opt.step(); opt.zero_grad()
else:
    import torch, reference_gpt_torch as ref
    torch.set_num_threads(threads)
    m = ref.from_ironformer(GPT(cfg, seed=0)); opt = ref.make_optimizer(m); base = hwm()
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(steps):
        _, loss = m(tx, ty); loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
print(base, hwm())
"""


def bench_mem(threads):
    print("\n## peak memory (VmHWM, MiB) of a process training the 10.7M model (B=8, T=256), 3 steps")
    code = _MEM_CHILD.format(here=str(HERE), py=str(HERE.parent / "python"))
    res = {}
    for fw in ("ironformer", "torch"):
        out = subprocess.run([sys.executable, "-c", code, fw, "3", str(threads)], capture_output=True, text=True)
        if out.returncode:
            print(f"{fw}: failed: {out.stderr.strip().splitlines()[-1:]}")
            continue
        base, peak = map(float, out.stdout.split())
        res[fw] = (base, peak)
        print(f"{fw:>12}: after model+optimizer setup {base:7.0f} MiB, peak after training steps {peak:7.0f} MiB "
              f"(training adds {peak - base:6.0f} MiB)")
    if len(res) == 2:
        print(f"  peak ratio ironformer/torch: {res['ironformer'][1] / res['torch'][1]:.2f}, "
              f"training-step increment ratio: {(res['ironformer'][1] - res['ironformer'][0]) / max(1.0, res['torch'][1] - res['torch'][0]):.2f}")


def quality(iters, threads):
    import reference_gpt_torch as ref
    from ironformer.train import train

    print(f"\n## quality: default preset, {iters} iterations, both frameworks, same data/batches/schedule/init")
    base = dict(max_iters=iters, threads=threads, progress=False, plot=False,
                eval_interval=max(1, min(250, iters)))
    t0 = time.perf_counter()
    r = train(TrainConfig(out_dir="out_bench_irf", **base))
    ti = time.perf_counter() - t0
    t0 = time.perf_counter()
    tr = ref.train_reference(TrainConfig(out_dir="out_bench_torch", **base))
    tt = time.perf_counter() - t0
    print(f"ironformer: train {r.train_loss:.4f} val {r.val_loss:.4f} ({ti:.0f} s)")
    print(f"torch     : train {tr['train']:.4f} val {tr['val']:.4f} ({tt:.0f} s)")
    print(f"val loss difference: {r.val_loss - tr['val']:+.4f} (target |diff| <= 0.03)")
    print(json.dumps({"irf_val": r.val_loss, "torch_val": tr["val"], "irf_s": ti, "torch_s": tt}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", choices=["train", "gen", "mem"], default=None)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--quality", type=int, default=0, metavar="ITERS")
    a = ap.parse_args()
    print(f"machine: {cpu_model()}; ironformer {irf.__version__} ISA {irf.isa()}; "
          f"os.cpu_count()={os.cpu_count()}; threads {a.threads}")
    if a.quality:
        quality(a.quality, max(a.threads))
        return
    reps = 3 if a.quick else 7
    if a.only in (None, "train"):
        bench_train(a.threads, reps)
    if a.only in (None, "gen"):
        bench_gen(a.threads, 16 if a.quick else 48)
    if a.only in (None, "mem"):
        bench_mem(max(a.threads))


if __name__ == "__main__":
    main()
