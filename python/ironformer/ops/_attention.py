"""ironformer.ops: fused multi-head scaled-dot-product attention (see csrc/kernels/attention.cpp).

Flash-attention style: the kernels tile queries and keys and never store the
(B, NH, Tq, Tk) score matrix, so memory grows linearly with the sequence length.
"""
from __future__ import annotations

import math

import numpy as np

from .. import _C

__all__ = ["attention_forward", "attention_backward"]


def _scale(scale, q) -> float:
    if scale is None:
        hs = q.shape[-1] if getattr(q, "ndim", 0) == 4 else 1
        return 1.0 / math.sqrt(max(hs, 1))
    return float(scale)


def _mask(key_mask):
    """Any bool / integer / float (B, Tk) array -> uint8 (nonzero = keep), bool passed as is."""
    if key_mask is None:
        return None
    m = np.asarray(key_mask)
    if m.dtype == np.bool_ or m.dtype == np.uint8:
        return m
    if not (np.issubdtype(m.dtype, np.integer) or np.issubdtype(m.dtype, np.floating)):
        raise TypeError(f"attention: key_mask must be a bool, integer or float array, got {m.dtype}")
    return m != 0


def attention_forward(q: np.ndarray, k: np.ndarray, v: np.ndarray, *, causal: bool = False,
                      key_mask: np.ndarray | None = None,
                      scale: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Fused ``softmax(q @ k^T * scale + mask) @ v`` per batch row and head.

    q: (B, NH, Tq, HS); k, v: (B, NH, Tk, HS), float32 (TypeError otherwise).  Tq may differ
    from Tk (KV-cache decoding: one query against a cache).  Any HS >= 1.  The B, NH and T
    dimensions may have any strides (e.g. ``qkv[:, :, 0].transpose(0, 2, 1, 3)`` from a fused
    (B, T, 3, NH, HS) projection is read in place); a head dimension that is not contiguous is
    copied.

    scale: default ``1/sqrt(HS)``.
    key_mask: optional (B, Tk), True/nonzero = real token, False/0 = padding (the Hugging Face
      ``attention_mask`` convention); bool or any integer/float dtype.
    causal: query i attends keys j <= i + (Tk - Tq), i.e. the mask is aligned to the bottom
      right (the KV-cache convention: the last query is the newest token and sees every key).
      When Tq == Tk this is exactly PyTorch's ``is_causal=True``.

    Returns ``(out, lse)``: out (B, NH, Tq, HS) float32 contiguous and lse (B, NH, Tq), the
    logsumexp of each query's scaled, masked scores (saved for ``attention_backward``).
    A query row whose every key is masked gets ``out = 0`` (never NaN) and ``lse = -inf``;
    its gradients are zero.
    """
    return _C.attention_forward(q, k, v, _mask(key_mask), bool(causal), _scale(scale, q), False)


def attention_backward(dout: np.ndarray, q: np.ndarray, k: np.ndarray, v: np.ndarray,
                       out: np.ndarray, lse: np.ndarray, *, causal: bool = False,
                       key_mask: np.ndarray | None = None,
                       scale: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients ``(dq, dk, dv)`` of :func:`attention_forward` for the output gradient ``dout``.

    ``out`` and ``lse`` are what the forward returned for the same q, k, v, causal, key_mask
    and scale.  dout and out have q's shape; lse is (B, NH, Tq).  The probabilities are
    recomputed tile by tile from lse (no T x T buffer).  Returns new contiguous float32 arrays
    of the shapes of q, k, v.  The result does not depend on the thread count.
    """
    return _C.attention_backward(dout, q, k, v, out, lse, _mask(key_mask), bool(causal),
                                 _scale(scale, q), False)
