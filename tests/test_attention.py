"""Fused attention (ops.attention_forward / attention_backward) against torch float64.

Tolerances: forward output and the three gradients within 2e-5 / 5e-5 of the reference's
largest magnitude (atol as a multiple of the output scale, rtol 0): float32 dot products over
HS <= 80 and sums over T <= 130 keys stay around 1e-6 of the scale (measured), so the bounds
catch any real indexing / masking / softmax error while leaving room for the ISA variants.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from ironformer import _C
from ironformer.ops import attention_backward, attention_forward

from opinfo import OpInfo, Sample, assert_close, check_errors, check_forward_backward

FWD_TOL = (0.0, 2e-5)
BWD_TOL = (0.0, 5e-5)


# ---------------------------------------------------------------------------------------
# Reference: explicit softmax(q k^T * scale + mask) v in float64, bottom-right causal mask
# built explicitly; a row with no visible key gives 0 (as the kernel documents).

def allowed_mask(torch, B, Tq, Tk, causal, key_mask):
    allowed = torch.ones(B, 1, Tq, Tk, dtype=torch.bool)
    if causal:
        i = torch.arange(Tq)[:, None]
        j = torch.arange(Tk)[None, :]
        allowed = allowed & (j <= i + (Tk - Tq))
    if key_mask is not None:
        allowed = allowed & torch.as_tensor(np.asarray(key_mask) != 0)[:, None, None, :]
    return allowed


def torch_attention(torch, q, k, v, causal=False, key_mask=None, scale=None):
    """(out, lse) in float64 with autograd."""
    B, _, Tq, HS = q.shape
    Tk = k.shape[2]
    scale = 1.0 / np.sqrt(HS) if scale is None else scale
    s = (q @ k.transpose(-1, -2)) * scale
    s = s.masked_fill(~allowed_mask(torch, B, Tq, Tk, causal, key_mask), float("-inf"))
    m = s.amax(-1, keepdim=True).detach()
    m = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    e = torch.exp(s - m)
    l = e.sum(-1, keepdim=True)
    p = e / torch.where(l == 0, torch.ones_like(l), l)
    return p @ v, (m + torch.log(l)).squeeze(-1)


# ---------------------------------------------------------------------------------------
# Samples

def qkv(rng, B, NH, Tq, Tk, HS):
    q = rng.standard_normal((B, NH, Tq, HS)).astype(np.float32)
    k = rng.standard_normal((B, NH, Tk, HS)).astype(np.float32)
    v = rng.standard_normal((B, NH, Tk, HS)).astype(np.float32)
    return q, k, v


def fused_views(rng, B, T, NH, HS):
    """q, k, v as strided views of one (B, T, 3, NH, HS) projection (no copy)."""
    qkv_ = rng.standard_normal((B, T, 3, NH, HS)).astype(np.float32)
    return tuple(qkv_[:, :, i].transpose(0, 2, 1, 3) for i in range(3))


def padding_mask(B, Tk, dtype=np.int64, dead_row=True):
    m = np.ones((B, Tk), dtype)
    m[0, max(1, Tk - Tk // 3):] = 0            # right padding in batch row 0
    if B > 1:
        m[1, : Tk // 4] = 0                    # left padding in batch row 1
    if B > 2 and dead_row:
        m[2, :] = 0                            # every key masked: that row's output is 0
    return m


SHAPES = [  # (B, NH, Tq, Tk, HS)
    (2, 3, 77, 77, 24),
    (1, 1, 1, 1, 40),
    (2, 2, 33, 33, 80),
    (1, 2, 65, 65, 64),
    (1, 2, 1, 50, 64),      # one query against a KV cache
    (2, 1, 7, 20, 40),
    (1, 1, 130, 130, 16),   # several blocks on every ISA
    (3, 2, 20, 7, 8),       # Tq > Tk: with causal, the first queries see nothing
]


def attention_samples(rng):
    out = []
    for B, NH, Tq, Tk, HS in SHAPES:
        for causal in (False, True):
            q, k, v = qkv(rng, B, NH, Tq, Tk, HS)
            out.append(Sample({"q": q, "k": k, "v": v}, {"causal": causal},
                              name=f"{B}x{NH}x{Tq}x{Tk}x{HS}{' causal' if causal else ''}"))
    # key masks (int, bool, float), an all-masked batch row, explicit scale
    for B, NH, Tq, Tk, HS, causal, dtype in [(3, 2, 29, 29, 24, False, np.int64), (3, 2, 29, 29, 24, True, np.bool_),
                                             (3, 1, 5, 41, 40, True, np.float32), (2, 2, 1, 37, 64, False, np.int32)]:
        q, k, v = qkv(rng, B, NH, Tq, Tk, HS)
        out.append(Sample({"q": q, "k": k, "v": v},
                          {"causal": causal, "key_mask": padding_mask(B, Tk, dtype), "scale": 0.37},
                          name=f"mask {dtype.__name__} {B}x{NH}x{Tq}x{Tk}x{HS}{' causal' if causal else ''}"))
    # strided views of a fused projection
    q, k, v = fused_views(rng, 2, 53, 3, 40)
    out.append(Sample({"q": q, "k": k, "v": v}, {"causal": True}, name="fused qkv views causal"))
    return out


def _fwd(s):
    out, lse = attention_forward(s.inputs["q"], s.inputs["k"], s.inputs["v"], **s.kwargs)
    return (out,), (out, lse)


def _bwd(s, state, douts):
    out, lse = state
    dq, dk, dv = attention_backward(douts[0], s.inputs["q"], s.inputs["k"], s.inputs["v"], out, lse, **s.kwargs)
    return {"q": dq, "k": dk, "v": dv}


def _ref(t, s):
    import torch
    out, _ = torch_attention(torch, t["q"], t["k"], t["v"], **s.kwargs)
    return (out,)


def _errors():
    f32 = np.float32
    q = np.ones((2, 3, 5, 8), f32)
    k = np.ones((2, 3, 7, 8), f32)
    out, lse = attention_forward(q, k, k)
    return [
        (lambda: attention_forward(q.astype(np.float64), k, k), TypeError,
         r"attention_forward: q must be float32, got float64"),
        (lambda: attention_forward(q, k.astype(np.float16), k), TypeError, r"attention_forward: k must be float32"),
        (lambda: attention_forward(q.tolist(), k, k), TypeError, r"q must be a numpy.ndarray"),
        (lambda: attention_forward(q[0], k, k), ValueError, r"q must be 4-D \(B, NH, T, HS\), got shape \(3, 5, 8\)"),
        (lambda: attention_forward(q, np.ones((2, 2, 7, 8), f32), np.ones((2, 2, 7, 8), f32)), ValueError,
         r"k must have q's batch, heads and head size.*q \(2, 3, 5, 8\), k \(2, 2, 7, 8\)"),
        (lambda: attention_forward(q, np.ones((2, 3, 7, 4), f32), np.ones((2, 3, 7, 4), f32)), ValueError,
         r"head size"),
        (lambda: attention_forward(q, k, np.ones((2, 3, 6, 8), f32)), ValueError,
         r"v must have the shape of k: k \(2, 3, 7, 8\), v \(2, 3, 6, 8\)"),
        (lambda: attention_forward(np.ones((2, 3, 5, 0), f32), np.ones((2, 3, 7, 0), f32), np.ones((2, 3, 7, 0), f32)),
         ValueError, r"head size must be >= 1"),
        (lambda: attention_forward(q, k, k, key_mask=np.ones((2, 5), bool)), ValueError,
         r"key_mask has shape \(2, 5\), expected \(B, Tk\) = \(2, 7\)"),
        (lambda: attention_forward(q, k, k, key_mask=np.array([["a"] * 7] * 2)), TypeError, r"key_mask"),
        (lambda: attention_backward(np.ones((2, 3, 5, 7), f32), q, k, k, out, lse), ValueError,
         r"attention_backward: dout has shape \(2, 3, 5, 7\), expected q's shape \(2, 3, 5, 8\)"),
        (lambda: attention_backward(out, q, k, k, out[:, :2], lse), ValueError, r"out has shape \(2, 2, 5, 8\)"),
        (lambda: attention_backward(out, q, k, k, out, lse[:, :, :4]), ValueError,
         r"lse has shape \(2, 3, 4\), expected \(B, NH, Tq\) = \(2, 3, 5\)"),
        (lambda: attention_backward(out.astype(np.float64), q, k, k, out, lse), TypeError,
         r"attention_backward: dout must be float32, got float64"),
        (lambda: attention_backward(out, q, k, k, out, lse.astype(np.float64)), TypeError, r"lse must be float32"),
    ]


ATTENTION = OpInfo("attention", attention_samples, _fwd, _ref, _bwd, grad_inputs=("q", "k", "v"),
                   fwd_tol=FWD_TOL, bwd_tol=BWD_TOL, error_inputs=_errors)


def test_forward_backward(isa, rng):
    check_forward_backward(ATTENTION, rng)


def test_errors():
    check_errors(ATTENTION)


# ---------------------------------------------------------------------------------------

def test_lse_matches_reference(isa, rng):
    torch = pytest.importorskip("torch")
    seen_dead = 0
    for B, NH, Tq, Tk, HS, causal in [(3, 2, 29, 31, 24, True), (2, 1, 70, 70, 64, False), (1, 1, 9, 4, 8, True)]:
        q, k, v = qkv(rng, B, NH, Tq, Tk, HS)
        mask = padding_mask(B, Tk)
        _, lse = attention_forward(q, k, v, causal=causal, key_mask=mask)
        t = [torch.tensor(x.astype(np.float64)) for x in (q, k, v)]
        _, want = torch_attention(torch, *t, causal=causal, key_mask=mask)
        want = want.numpy()
        dead = np.isinf(want)
        seen_dead += int(dead.sum())
        assert np.array_equal(np.isneginf(lse), dead)
        np.testing.assert_allclose(lse[~dead], want[~dead], rtol=0, atol=2e-5)
    assert seen_dead > 0


def test_causal_equals_torch_is_causal_when_square(isa, rng):
    torch = pytest.importorskip("torch")
    q, k, v = qkv(rng, 2, 3, 45, 45, 24)
    out, _ = attention_forward(q, k, v, causal=True)
    want = torch.nn.functional.scaled_dot_product_attention(
        *[torch.tensor(x.astype(np.float64)) for x in (q, k, v)], is_causal=True).numpy()
    assert_close(out, want, *FWD_TOL, what="causal vs torch is_causal")


def test_fully_masked_rows_are_exact_zeros(isa, rng):
    B, NH, Tq, Tk, HS = 3, 2, 17, 23, 40
    q, k, v = qkv(rng, B, NH, Tq, Tk, HS)
    mask = padding_mask(B, Tk)                                  # batch row 2: every key masked
    for causal in (False, True):
        out, lse = attention_forward(q, k, v, causal=causal, key_mask=mask)
        assert np.all(np.isfinite(out))
        assert np.all(out[2] == 0) and np.all(np.isneginf(lse[2]))
        assert np.all(np.isfinite(lse[:2]))
        dout = rng.standard_normal(out.shape).astype(np.float32)
        dq, dk, dv = attention_backward(dout, q, k, v, out, lse, causal=causal, key_mask=mask)
        assert np.all(dq[2] == 0) and np.all(dk[2] == 0) and np.all(dv[2] == 0)
        # masked keys of the other rows get no gradient either
        assert np.all(dk[0][:, mask[0] == 0] == 0) and np.all(dv[0][:, mask[0] == 0] == 0)
        assert np.all(np.isfinite(dq)) and np.any(dq[0] != 0)
    # Tq > Tk with causal: the first Tq - Tk queries see no key
    q, k, v = qkv(rng, 1, 2, 12, 5, 8)
    out, lse = attention_forward(q, k, v, causal=True)
    assert np.all(out[:, :, :7] == 0) and np.all(np.isneginf(lse[:, :, :7])) and np.all(out[:, :, 7:] != 0)


def test_mask_dtypes_agree(isa, rng):
    q, k, v = qkv(rng, 3, 2, 11, 19, 24)
    m = padding_mask(3, 19)
    base, _ = attention_forward(q, k, v, key_mask=m.astype(bool))
    for dt in (np.int64, np.uint8, np.int8, np.float32, np.float64):
        got, _ = attention_forward(q, k, v, key_mask=(m * 3).astype(dt))   # nonzero = keep
        assert np.array_equal(got, base), dt


def test_default_scale(isa, rng):
    q, k, v = qkv(rng, 1, 2, 9, 9, 40)
    a, _ = attention_forward(q, k, v)
    b, _ = attention_forward(q, k, v, scale=1 / np.sqrt(40))
    c, _ = attention_forward(q, k, v, scale=1.0)
    assert np.array_equal(a, b) and not np.allclose(a, c)


def test_strided_views_read_in_place(isa, rng):
    """Non-contiguous B/NH/T strides are read as they are; a strided head dim is copied."""
    q, k, v = fused_views(rng, 2, 37, 3, 24)
    assert not q.flags.c_contiguous
    out, lse = attention_forward(q, k, v, causal=True)
    qc, kc, vc = (np.ascontiguousarray(x) for x in (q, k, v))
    out_c, lse_c = attention_forward(qc, kc, vc, causal=True)
    assert np.array_equal(out, out_c) and np.array_equal(lse, lse_c)
    dout = rng.standard_normal(out.shape).astype(np.float32)
    g = attention_backward(dout, q, k, v, out, lse, causal=True)
    gc = attention_backward(dout, qc, kc, vc, out_c, lse_c, causal=True)
    for a, b in zip(g, gc):
        assert a.flags.c_contiguous and np.array_equal(a, b)
    # negative T stride and a head dim with stride 2 (copied)
    big = rng.standard_normal((2, 3, 30, 48)).astype(np.float32)
    qs = big[:, :, ::-1, ::2]
    out_s, _ = attention_forward(qs, kc, vc)
    out_sc, _ = attention_forward(np.ascontiguousarray(qs), kc, vc)
    assert np.array_equal(out_s, out_sc)


@pytest.mark.parametrize("causal", [False, True])
def test_reference_twin_matches_kernel(isa, rng, causal):
    q, k, v = qkv(rng, 3, 2, 61, 75, 40)
    mask = padding_mask(3, 75).astype(bool)
    out, lse = attention_forward(q, k, v, causal=causal, key_mask=mask, scale=0.2)
    out_r, lse_r = _C.attention_forward(q, k, v, mask, causal, 0.2, True)
    assert_close(out, out_r, 0.0, 2e-6, what="out")
    assert np.array_equal(np.isneginf(lse), np.isneginf(lse_r))
    fin = np.isfinite(lse_r)
    np.testing.assert_allclose(lse[fin], lse_r[fin], rtol=0, atol=2e-6)
    dout = rng.standard_normal(out.shape).astype(np.float32)
    got = attention_backward(dout, q, k, v, out, lse, causal=causal, key_mask=mask, scale=0.2)
    want = _C.attention_backward(dout, q, k, v, out, lse, mask, causal, 0.2, True)
    for name, a, b in zip("qkv", got, want):
        assert_close(a, b, 0.0, 5e-6, what=f"d{name}")


@pytest.mark.parametrize("B,NH,Tq,Tk,HS", [(2, 3, 77, 77, 24), (1, 1, 300, 300, 64), (1, 2, 1, 120, 40),
                                           (3, 1, 100, 130, 80)])
def test_thread_count_gives_identical_results(rng, threads, B, NH, Tq, Tk, HS):
    q, k, v = qkv(rng, B, NH, Tq, Tk, HS)
    mask = padding_mask(B, Tk)
    dout = rng.standard_normal(q.shape).astype(np.float32)
    for causal in (False, True):
        threads(1)
        out1, lse1 = attention_forward(q, k, v, causal=causal, key_mask=mask)
        g1 = attention_backward(dout, q, k, v, out1, lse1, causal=causal, key_mask=mask)
        for t in (2, 3):
            threads(t)
            out, lse = attention_forward(q, k, v, causal=causal, key_mask=mask)
            assert np.array_equal(out, out1) and np.array_equal(lse, lse1), f"{t} threads"
            g = attention_backward(dout, q, k, v, out1, lse1, causal=causal, key_mask=mask)
            for a, b in zip(g, g1):
                assert np.array_equal(a, b), f"{t} threads: gradients differ"


def test_empty_and_keyless(isa):
    f32 = np.float32
    out, lse = attention_forward(np.ones((0, 2, 3, 8), f32), np.ones((0, 2, 4, 8), f32), np.ones((0, 2, 4, 8), f32))
    assert out.shape == (0, 2, 3, 8) and lse.shape == (0, 2, 3)
    out, lse = attention_forward(np.ones((1, 2, 3, 8), f32), np.ones((1, 2, 0, 8), f32), np.ones((1, 2, 0, 8), f32))
    assert np.all(out == 0) and np.all(np.isneginf(lse))
    dq, dk, dv = attention_backward(np.ones_like(out), np.ones((1, 2, 3, 8), f32), np.ones((1, 2, 0, 8), f32),
                                    np.ones((1, 2, 0, 8), f32), out, lse)
    assert np.all(dq == 0) and dk.shape == (1, 2, 0, 8) and dv.shape == (1, 2, 0, 8)


_MEMORY_SCRIPT = textwrap.dedent("""
    import numpy as np, ironformer as irf
    from ironformer.ops import attention_forward, attention_backward

    def hwm():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024

    T, HS = {T}, 64
    rng = np.random.default_rng(0)
    q, k, v, dout = (rng.standard_normal((1, 1, T, HS)).astype(np.float32) for _ in range(4))
    attention_forward(q[:, :, :64], k[:, :, :64], v[:, :, :64])   # threads and workspaces up
    before = hwm()
    out, lse = attention_forward(q, k, v, causal=True)
    dq, dk, dv = attention_backward(dout, q, k, v, out, lse, causal=True)
    print(hwm() - before)
""")


def test_memory_is_linear_in_T():
    """T = 8192, one head: forward + backward must not allocate T^2 floats (256 MiB)."""
    if not os.path.exists("/proc/self/status"):
        pytest.skip("needs /proc/self/status (Linux)")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    r = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT.format(T=8192)], capture_output=True, text=True,
                       env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    grew = int(r.stdout.strip().splitlines()[-1])
    # outputs and grads: 5 x 2 MiB, dq partial buffers <= 7 x 2 MiB; T^2 floats would be 256 MiB
    assert grew < 64 * 2**20, f"peak RSS grew by {grew / 2**20:.1f} MiB"
