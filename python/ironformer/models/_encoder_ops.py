"""The handful of array operations the BERT encoder needs, forward and backward side by side.

Each function calls the C++ kernel in :mod:`ironformer.ops` (matmul, attention, layernorm,
gelu, embedding, cross-entropy, add, sum_rows, tanh, adamw_step, sum_squares).  Each also
has a short numpy twin written to the same contract: it is the readable statement of what
the encoder computes, it keeps the module working in a build that lacks a kernel, and
``IRONFORMER_ENCODER_NUMPY=1`` forces it so tests/test_bert.py can run the transformers
parity checks through both paths.  ``kernel_report()`` says which path each op takes.

Shapes: N rows (B*T tokens), C channels, B batch, NH heads, T tokens, HS head size.
All arrays are float32; parameter gradients accumulate (+=) into the arrays passed in.
"""
from __future__ import annotations

import math
import os

import numpy as np

from .. import ops

__all__ = [
    "linear", "linear_backward", "layernorm_forward", "layernorm_backward",
    "gelu_forward", "gelu_backward", "attention_forward", "attention_backward",
    "embedding_forward", "embedding_backward", "cross_entropy_forward",
    "cross_entropy_backward", "add_", "tanh_forward", "tanh_backward", "adamw_step",
    "clip_grad_norm_", "kernel_report",
]

_F32 = np.float32


def _kernel(name: str):
    """The ops kernel called ``name``, or None when absent (or numpy forced)."""
    if os.environ.get("IRONFORMER_ENCODER_NUMPY", "") == "1":
        return None
    return getattr(ops, name, None)


def kernel_report() -> dict:
    """{op: 'kernel' | 'numpy'} for the ops this module uses."""
    names = ["layernorm_forward", "layernorm_backward", "gelu_forward", "gelu_backward",
             "attention_forward", "attention_backward", "embedding_forward",
             "embedding_backward", "cross_entropy_forward", "cross_entropy_backward",
             "sum_rows", "add", "tanh_forward", "adamw_step", "sum_squares"]
    return {n: ("kernel" if _kernel(n) is not None else "numpy") for n in names}


# ---- linear: y (N, out) = x (N, in) @ w (out, in)^T + b ------------------------------------
def linear(x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    return ops.matmul(x, w, trans_b=True, bias=b)


def linear_backward(dy, x, w, dw, db, need_dx: bool = True):
    """dw += dy^T x; db += sum over rows of dy; returns dx = dy w (differentiates y = x w^T + b)."""
    if dw is not None:
        ops.matmul(dy, x, trans_a=True, out=dw, accumulate=True)
    if db is not None:
        k = _kernel("sum_rows")
        if k is not None:
            k(dy, out=db, accumulate=True)
        else:
            db += dy.sum(axis=0, dtype=_F32)
    return ops.matmul(dy, w) if need_dx else None


# ---- layernorm over the last dim: x (N, C) -> out (N, C), mean (N,), rstd (N,) ------------
def layernorm_forward(x, weight, bias, eps: float):
    k = _kernel("layernorm_forward")
    if k is not None:
        return k(x, weight, bias, eps)
    mean = x.mean(axis=-1, dtype=_F32)
    xc = x - mean[:, None]
    var = np.einsum("ij,ij->i", xc, xc) / _F32(x.shape[-1])
    rstd = (1.0 / np.sqrt(var + _F32(eps))).astype(_F32)
    xc *= rstd[:, None]                                   # xhat
    out = xc * weight
    out += bias
    return out, mean, rstd


def layernorm_backward(dout, x, mean, rstd, weight, dweight, dbias):
    """Returns dx; dweight += sum(dout * xhat), dbias += sum(dout)."""
    k = _kernel("layernorm_backward")
    if k is not None:
        return k(dout, x, mean, rstd, weight, dweight=dweight, dbias=dbias)[0]
    xhat = (x - mean[:, None]) * rstd[:, None]            # forward: xhat = (x - mean) * rstd
    dweight += np.einsum("ij,ij->j", dout, xhat)          # forward: out = xhat * w + b
    dbias += dout.sum(axis=0, dtype=_F32)
    g = dout * weight                                     # d xhat
    c = x.shape[-1]
    mg = g.sum(axis=-1, dtype=_F32) / _F32(c)
    mgx = np.einsum("ij,ij->i", g, xhat) / _F32(c)
    g -= mg[:, None]
    g -= xhat * mgx[:, None]
    g *= rstd[:, None]
    return g


# ---- exact (erf) GELU: y = x * Phi(x) ------------------------------------------------------
def _erf_np(x):
    """Abramowitz & Stegun 7.1.26, |error| <= 1.5e-7 (numpy twin only; the kernel has its own erf)."""
    s = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t
               + 0.254829592) * t * np.exp(-a * a)
    return (s * y).astype(_F32)


def _phi_cdf(x):
    e = _erf_np(x * _F32(1.0 / math.sqrt(2.0)))
    e = e.astype(_F32, copy=False)
    e += _F32(1.0)
    e *= _F32(0.5)
    return e


_C0 = math.sqrt(2.0 / math.pi)


def gelu_forward(x, approximate: str = "none"):
    """GELU: exact x * Phi(x) ('none') or the tanh approximation ('tanh', HF 'gelu_new')."""
    k = _kernel("gelu_forward")
    if k is not None:
        return k(x, approximate=approximate)
    if approximate == "tanh":
        return (0.5 * x * (1.0 + np.tanh(_C0 * (x + 0.044715 * x ** 3)))).astype(_F32)
    return x * _phi_cdf(x)


def gelu_backward(dout, x, approximate: str = "none"):
    """Returns dx for y = x * Phi(x): dy/dx = Phi(x) + x * phi(x) (or the tanh form's)."""
    k = _kernel("gelu_backward")
    if k is not None:
        return k(dout, x, approximate=approximate)
    if approximate == "tanh":
        th = np.tanh(_C0 * (x + 0.044715 * x ** 3))
        d = 0.5 * (1 + th) + 0.5 * x * (1 - th * th) * _C0 * (1 + 3 * 0.044715 * x * x)
        return (dout * d).astype(_F32)
    pdf = np.exp(_F32(-0.5) * x * x) * _F32(1.0 / math.sqrt(2.0 * math.pi))
    return dout * (_phi_cdf(x) + x * pdf)


# ---- attention: q, k, v (B, NH, T, HS), key_mask (B, T) 1 = real token ----------------------
def _scores(q, k, key_mask, scale):
    b, nh, tq, hs = q.shape
    tk = k.shape[2]
    s = ops.matmul(np.ascontiguousarray(q).reshape(b * nh, tq, hs),
                   np.ascontiguousarray(k).reshape(b * nh, tk, hs), trans_b=True)
    s = s.reshape(b, nh, tq, tk)
    s *= _F32(scale)
    if key_mask is not None:
        s += np.where(key_mask.astype(bool), _F32(0.0), _F32(-1e30))[:, None, None, :]
    return s


def attention_forward(q, k, v, key_mask=None, scale=None):
    """(out (B, NH, T, HS), lse (B, NH, T)): softmax(q k^T * scale + mask) v."""
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    kern = _kernel("attention_forward")
    if kern is not None:
        return kern(q, k, v, causal=False, key_mask=key_mask, scale=scale)
    b, nh, t, hs = q.shape
    s = _scores(q, k, key_mask, scale)
    m = s.max(axis=-1, keepdims=True)
    s -= m
    np.exp(s, out=s)
    den = s.sum(axis=-1, keepdims=True, dtype=_F32)
    s /= den
    lse = (m + np.log(den))[..., 0]
    out = ops.matmul(s.reshape(b * nh, t, t), np.ascontiguousarray(v).reshape(b * nh, t, hs))
    return out.reshape(b, nh, t, hs), lse.astype(_F32)


def attention_backward(dout, q, k, v, out, lse, key_mask=None, scale=None):
    """(dq, dk, dv) for attention_forward, recomputing P = exp(s - lse)."""
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    kern = _kernel("attention_backward")
    if kern is not None:
        return kern(dout, q, k, v, out, lse, causal=False, key_mask=key_mask, scale=scale)
    b, nh, t, hs = q.shape
    p = _scores(q, k, key_mask, scale)
    p -= lse[..., None]
    np.exp(p, out=p)                                      # forward: P = softmax(s)
    p3 = p.reshape(b * nh, t, t)
    do3 = np.ascontiguousarray(dout).reshape(b * nh, t, hs)
    v3 = np.ascontiguousarray(v).reshape(b * nh, t, hs)
    dv = ops.matmul(p3, do3, trans_a=True)                # forward: out = P v
    dp = ops.matmul(do3, v3, trans_b=True).reshape(b, nh, t, t)
    delta = np.einsum("bhtd,bhtd->bht", dout, out)[..., None]
    dp -= delta
    dp *= p                                               # forward: P = softmax(s)
    dp *= _F32(scale)                                     # forward: s = q k^T * scale
    ds3 = dp.reshape(b * nh, t, t)
    dq = ops.matmul(ds3, np.ascontiguousarray(k).reshape(b * nh, t, hs))
    dk = ops.matmul(ds3, np.ascontiguousarray(q).reshape(b * nh, t, hs), trans_a=True)
    shp = (b, nh, t, hs)
    return dq.reshape(shp), dk.reshape(shp), dv.reshape(shp)


# ---- embedding: ids (N,) -> rows of weight (V, C) ------------------------------------------
def embedding_forward(ids, weight):
    k = _kernel("embedding_forward")
    if k is not None:
        return k(ids, weight)
    return weight[ids]


def embedding_backward(dout, ids, dweight):
    """dweight[ids[i]] += dout[i]."""
    k = _kernel("embedding_backward")
    if k is not None:
        k(dout, ids, dweight)
        return
    np.add.at(dweight, ids, dout)


# ---- cross-entropy: logits (N, V), targets (N,) -> mean loss ---------------------------------
def cross_entropy_forward(logits, targets):
    """(mean loss, lse (N,))."""
    k = _kernel("cross_entropy_forward")
    if k is not None:
        return k(logits, targets)
    m = logits.max(axis=-1)
    lse = (m + np.log(np.exp(logits - m[:, None]).sum(axis=-1))).astype(_F32)
    n = logits.shape[0]
    return float(np.mean(lse - logits[np.arange(n), targets])), lse


def cross_entropy_backward(logits, targets, lse):
    """d(mean loss)/d logits = (softmax - onehot) / N."""
    k = _kernel("cross_entropy_backward")
    if k is not None:
        return k(logits, targets, lse)
    n = logits.shape[0]
    d = np.exp(logits - lse[:, None])
    d[np.arange(n), targets] -= 1.0
    d /= _F32(n)
    return d.astype(_F32)


# ---- small elementwise helpers ----------------------------------------------------------------
def add_(a, b):
    """a += b in place (a residual connection); returns a."""
    k = _kernel("add")
    if k is not None:
        return k(a, b, out=a)
    a += b
    return a


def tanh_forward(x):
    k = _kernel("tanh_forward")
    return k(x) if k is not None else np.tanh(x)


def tanh_backward(dout, out):
    k = _kernel("tanh_backward")
    return k(dout, out) if k is not None else dout * (1.0 - out * out)


def adamw_step(param, grad, m, v, *, step, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01):
    """One torch.optim.AdamW step in place on param, m, v."""
    k = _kernel("adamw_step")
    if k is not None:
        k(param, grad, m, v, step=step, lr=lr, beta1=beta1, beta2=beta2, eps=eps,
          weight_decay=weight_decay)
        return
    bc1, bc2 = 1 - beta1 ** step, 1 - beta2 ** step
    param *= (1 - lr * weight_decay)
    m *= beta1
    m += (1 - beta1) * grad
    v *= beta2
    v += (1 - beta2) * (grad * grad)
    den = np.sqrt(v)
    den *= 1.0 / math.sqrt(bc2)
    den += eps
    param -= (lr / bc1) * m / den


def clip_grad_norm_(grads, max_norm):
    """Scale the arrays in place so their global L2 norm is at most max_norm; returns the norm."""
    k = _kernel("sum_squares")
    total = math.sqrt(k(grads) if k is not None else sum(float(np.vdot(g, g)) for g in grads))
    if max_norm and total > max_norm:
        f = max_norm / (total + 1e-6)
        sk = _kernel("scale_")
        for g in grads:
            if sk is not None:
                sk(g, f)
            else:
                g *= f
    return total
