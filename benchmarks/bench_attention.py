"""Fused causal attention: ironformer vs torch.nn.functional.scaled_dot_product_attention.

    python benchmarks/bench_attention.py [--threads 1 2] [--repeats 7] [--quick] [--no-memory]

For each thread count and shape (B, NH, T, HS), forward and forward+backward of both run
interleaved (round-robin, after warm-up; each sample repeats the call for >= ~20 ms, so one
scheduling hiccup of a few ms does not swamp a sub-millisecond shape); the median times are printed with the ratio
(torch time / ironformer time: > 1 means ironformer is faster), the achieved GFLOP/s and the
fraction of the fp32 peak measured on this CPU by an FMA loop (same ISA, same threads).
Flops are counted for causal attention: forward 2 * 2*B*NH*T*T*HS / 2 (q k^T and P v over the
lower triangle), backward 2.5x the forward.  Torch's fwd+bwd includes its autograd overhead,
ironformer's is the two kernel calls.

Then the peak memory of one forward+backward at T = 2048, 4096, 8192 (B = NH = 1, HS = 64),
each in a fresh subprocess reading VmHWM, to show it grows linearly (a T x T float buffer
would be 16, 64, 256 MiB).  The machine is shared and noisy: trust ratios from one run.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import textwrap

import numpy as np

import ironformer as irf
from ironformer import _C
from ironformer.ops import attention_backward, attention_forward

from _common import cpu_model, interleaved_medians

try:
    import torch
except ImportError:  # torch is an optional baseline
    torch = None

SHAPES = [(8, 6, 256, 64), (12, 4, 64, 32), (4, 12, 1024, 64), (1, 12, 4096, 64)]
QUICK = [(8, 6, 256, 64), (12, 4, 64, 32), (4, 12, 1024, 64)]


def bench_shape(shape, repeats, rng):
    B, NH, T, HS = shape
    q, k, v, dout = (rng.standard_normal((B, NH, T, HS), dtype=np.float32) for _ in range(4))

    def irf_fwd():
        attention_forward(q, k, v, causal=True)

    def irf_fb():
        out, lse = attention_forward(q, k, v, causal=True)
        attention_backward(dout, q, k, v, out, lse, causal=True)

    fns = {"irf fwd": irf_fwd, "irf fwd+bwd": irf_fb}
    if torch is not None:
        tq, tk, tv = (torch.from_numpy(x).requires_grad_(True) for x in (q, k, v))
        td = torch.from_numpy(dout)
        sdpa = torch.nn.functional.scaled_dot_product_attention

        def torch_fwd():
            with torch.no_grad():
                sdpa(tq, tk, tv, is_causal=True)

        def torch_fb():
            sdpa(tq, tk, tv, is_causal=True).backward(td)
            tq.grad = tk.grad = tv.grad = None

        fns["torch fwd"] = torch_fwd
        fns["torch fwd+bwd"] = torch_fb
    return interleaved_medians(fns, irf.get_num_threads(), repeats)

_MEMORY_SCRIPT = textwrap.dedent("""
    import numpy as np, ironformer as irf
    from ironformer.ops import attention_forward, attention_backward
    def hwm():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    irf.set_num_threads({threads})
    T, HS = {T}, 64
    rng = np.random.default_rng(0)
    q, k, v, dout = (rng.standard_normal((1, 1, T, HS)).astype(np.float32) for _ in range(4))
    attention_forward(q[:, :, :64], k[:, :, :64], v[:, :, :64])
    before = hwm()
    out, lse = attention_forward(q, k, v, causal=True)
    dq, dk, dv = attention_backward(dout, q, k, v, out, lse, causal=True)
    print(before, hwm() - before)
""")


def memory_report(threads):
    print(f"\npeak memory of one causal forward+backward, B = NH = 1, HS = 64, {threads} threads "
          "(fresh process each; VmHWM growth during the two calls)")
    print(f"{'T':>6} {'inputs+outputs MiB':>19} {'peak growth MiB':>16} {'T*T floats MiB':>15}")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    for T in (2048, 4096, 8192):
        r = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT.format(T=T, threads=threads)],
                           capture_output=True, text=True, env=env)
        if r.returncode != 0:
            print(f"{T:>6} failed: {r.stderr.strip().splitlines()[-1:]}")
            continue
        _, grew = map(int, r.stdout.split())
        io = 9 * T * 64 * 4 / 2**20   # q, k, v, dout, out, dq, dk, dv (+ lse)
        print(f"{T:>6} {io:>19.1f} {grew / 2**20:>16.1f} {T * T * 4 / 2**20:>15.0f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="skip the T=4096 shape")
    ap.add_argument("--no-memory", action="store_true")
    args = ap.parse_args()
    print(f"machine: {cpu_model()}; ironformer ISA {irf.isa()}; torch {torch.__version__ if torch else 'absent'}")
    rng = np.random.default_rng(0)
    for nt in args.threads:
        irf.set_num_threads(nt)
        if torch is not None:
            torch.set_num_threads(nt)
        peak_before = _C.peak_gflops(nt)
        meds = [(shape, bench_shape(shape, args.repeats, rng)) for shape in (QUICK if args.quick else SHAPES)]
        # The FMA loop cannot beat the hardware, so the larger of two measurements is the
        # better estimate (a loaded machine can halve one, e.g. when the second core is busy).
        peak_after = _C.peak_gflops(nt)
        peak = max(peak_before, peak_after)
        print(f"\nthreads {nt}: measured fp32 peak {peak:.1f} GFLOP/s (before {peak_before:.1f}, after "
              f"{peak_after:.1f}); causal, median of {args.repeats}")
        print(f"{'(B, NH, T, HS)':>18} {'pass':>8} {'irf ms':>9} {'torch ms':>9} {'ratio':>6} "
              f"{'irf GF/s':>9} {'% peak':>7} {'torch GF/s':>10}")
        for shape, med in meds:
            B, NH, T, HS = shape
            fwd_flops = 2 * 2 * B * NH * T * T * HS / 2
            for tag, flops in (("fwd", fwd_flops), ("fwd+bwd", 3.5 * fwd_flops)):
                ti = med[f"irf {tag}"]
                tt = med.get(f"torch {tag}")
                gf = flops / ti / 1e9
                tt_s = f"{tt * 1e3:9.2f}" if tt else f"{'-':>9}"
                ratio = f"{tt / ti:6.2f}" if tt else f"{'-':>6}"
                tgf = f"{flops / tt / 1e9:10.1f}" if tt else f"{'-':>10}"
                print(f"{str(shape):>18} {tag:>8} {ti * 1e3:9.2f} {tt_s} {ratio} {gf:9.1f} "
                      f"{100 * gf / peak:6.1f}% {tgf}")
    if not args.no_memory and os.path.exists("/proc/self/status"):
        memory_report(max(args.threads))


if __name__ == "__main__":
    main()
