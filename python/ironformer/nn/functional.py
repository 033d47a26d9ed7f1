"""ironformer.nn.functional: the fused layers as autograd Functions over the C++ kernels.

Each Function saves exactly what its backward kernel needs (layernorm: mean and rstd;
attention: out and logsumexp; cross-entropy: logsumexp; dropout: its seed).
"""
from __future__ import annotations

import numpy as np

from .. import ops
from ..autograd import Function, Tensor, _contiguous, _lift, _next_seed, _reshape

__all__ = ["linear", "gelu", "relu", "sigmoid", "tanh", "softmax", "log_softmax", "layer_norm", "embedding",
           "dropout", "cross_entropy", "scaled_dot_product_attention"]


class _Linear(Function):
    """out (..., out) = x (..., in) @ weight (out, in)^T + bias: one GEMM with trans_b and the bias fused."""

    def forward(self, x, weight, bias=None):
        self.x_shape = x.shape
        x2 = _reshape(x, (-1, x.shape[-1]))
        self.save(x2, weight)
        self.has_bias = bias is not None
        out = ops.matmul(x2, weight, trans_b=True, bias=bias)
        return out.reshape(x.shape[:-1] + (weight.shape[0],))

    def backward(self, g):
        x2, w = self.saved
        g2 = _reshape(g, (-1, w.shape[0]))
        dx = ops.matmul(g2, w).reshape(self.x_shape) if self.needs_input_grad[0] else None   # dX = G W
        dw = ops.matmul(g2, x2, trans_a=True) if self.needs_input_grad[1] else None         # dW = G^T X
        if not self.has_bias:
            return dx, dw
        db = ops.reduce_sum(g2, 0) if self.needs_input_grad[2] else None                    # db = sum_rows G
        return dx, dw, db


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x @ weight.T + bias`` with ``weight`` of shape (out_features, in_features)."""
    if bias is None:
        return _Linear.apply(x, weight)
    return _Linear.apply(x, weight, bias)


class _Gelu(Function):
    def forward(self, x, approximate):
        self.approximate = approximate
        self.save(x)
        return ops.gelu_forward(x, approximate=approximate)

    def backward(self, g):
        return ops.gelu_backward(g, self.saved[0], approximate=self.approximate)


def gelu(x: Tensor, approximate: str = "none") -> Tensor:
    """GELU, exact (erf) or ``approximate='tanh'`` (GPT-2)."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return _Gelu.apply(x, approximate=approximate)


class _Relu(Function):
    def forward(self, x):
        self.save(x)
        return ops.relu_forward(x)

    def backward(self, g):
        return ops.relu_backward(g, self.saved[0])


def relu(x: Tensor) -> Tensor:
    return _Relu.apply(x)


class _OutAct(Function):
    """Activations whose backward needs only the output: sigmoid, tanh, softmax, log_softmax."""

    def forward(self, x, name):
        self.name = name
        out = getattr(ops, name + "_forward")(x)
        self.save(out)
        return out

    def backward(self, g):
        return getattr(ops, self.name + "_backward")(g, self.saved[0])


def sigmoid(x: Tensor) -> Tensor:
    return _OutAct.apply(x, name="sigmoid")


def tanh(x: Tensor) -> Tensor:
    return _OutAct.apply(x, name="tanh")


def _last_dim(x, dim, fn):
    if dim not in (-1, x.ndim - 1):
        raise ValueError(f"{fn}: only dim=-1 (the last dimension) is supported, got dim={dim} for shape {x.shape}")


def softmax(x: Tensor, dim: int = -1) -> Tensor:
    _last_dim(x, dim, "softmax")
    return _OutAct.apply(x, name="softmax")


def log_softmax(x: Tensor, dim: int = -1) -> Tensor:
    _last_dim(x, dim, "log_softmax")
    return _OutAct.apply(x, name="log_softmax")


class _LayerNorm(Function):
    def forward(self, x, weight, bias, eps):
        out, mean, rstd = ops.layernorm_forward(x, weight, bias, eps)
        self.save(x, mean, rstd, weight)
        return out

    def backward(self, g):
        x, mean, rstd, weight = self.saved
        dx, dw, db = ops.layernorm_backward(g, x, mean, rstd, weight)
        return (dx if self.needs_input_grad[0] else None, dw if self.needs_input_grad[1] else None,
                db if self.needs_input_grad[2] else None)


def layer_norm(x: Tensor, normalized_shape, weight: Tensor | None = None, bias: Tensor | None = None,
               eps: float = 1e-5) -> Tensor:
    """LayerNorm over the last dimension (``normalized_shape`` must be (C,))."""
    ns = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    C = x.shape[-1]
    if ns != (C,):
        raise ValueError(f"layer_norm: normalized_shape must be ({C},) (the last dimension of {x.shape}), got {ns}")
    if weight is None:
        weight = Tensor(np.ones(C, np.float32))
    if bias is None:
        bias = Tensor(np.zeros(C, np.float32))
    return _LayerNorm.apply(x, weight, bias, eps=float(eps))


def _ids(ids) -> np.ndarray:
    if isinstance(ids, Tensor):
        ids = ids.data
    ids = np.asarray(ids)
    if ids.dtype.kind == "f":
        ids = ids.astype(np.int64)
    return ids


class _Embedding(Function):
    def forward(self, weight, ids):
        self.ids, self.wshape = ids, weight.shape
        return ops.embedding_forward(ids, weight)

    def backward(self, g):
        dw = np.zeros(self.wshape, np.float32)
        return ops.embedding_backward(g, self.ids, dw)


def embedding(ids, weight: Tensor) -> Tensor:
    """Rows of ``weight`` (V, C) picked by integer ``ids`` (any shape) -> ids.shape + (C,)."""
    return _Embedding.apply(weight, ids=_ids(ids))


class _Dropout(Function):
    def forward(self, x, p, seed):
        self.p, self.seed = p, seed
        return ops.dropout_forward(x, p, seed)

    def backward(self, g):
        return ops.dropout_backward(g, self.p, self.seed)


def dropout(x: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """Zero elements with probability p and scale the rest by 1/(1-p) (identity when not
    training or p == 0).  The mask comes from a seed drawn from the global generator
    (ironformer.manual_seed) and is recomputed in backward, never stored."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return x
    return _Dropout.apply(x, p=float(p), seed=_next_seed())


class _CrossEntropy(Function):
    def forward(self, logits, targets, ignore_index):
        loss, lse = ops.cross_entropy_forward(logits, targets, ignore_index=ignore_index)
        self.save(logits, lse)
        self.targets, self.ignore_index = targets, ignore_index
        return np.array(loss, dtype=np.float32)

    def backward(self, g):
        logits, lse = self.saved
        return ops.cross_entropy_backward(logits, self.targets, lse, dloss=float(g), ignore_index=self.ignore_index)


def cross_entropy(logits: Tensor, targets, ignore_index: int = -100) -> Tensor:
    """Mean negative log-likelihood over targets != ignore_index.  ``logits`` (N, V) or
    (B, T, V) (flattened to (B*T, V)); ``targets`` integer ids of shape (N,) or (B, T)."""
    targets = _ids(targets)
    logits = _lift(logits)
    if logits.ndim == 3:
        logits = logits.reshape(-1, logits.shape[-1])
        targets = targets.reshape(-1)
    if logits.ndim != 2:
        raise ValueError(f"cross_entropy: logits must be (N, V) or (B, T, V), got {logits.shape}")
    if targets.shape != (logits.shape[0],):
        raise ValueError(f"cross_entropy: targets have shape {targets.shape}, expected ({logits.shape[0]},)")
    return _CrossEntropy.apply(logits, targets=targets, ignore_index=int(ignore_index))


class _Attention(Function):
    def forward(self, q, k, v, causal, key_mask, scale):
        out, lse = ops.attention_forward(q, k, v, causal=causal, key_mask=key_mask, scale=scale)
        self.save(q, k, v, out, lse)
        self.causal, self.key_mask, self.scale = causal, key_mask, scale
        return out

    def backward(self, g):
        q, k, v, out, lse = self.saved
        return ops.attention_backward(g, q, k, v, out, lse, causal=self.causal, key_mask=self.key_mask,
                                      scale=self.scale)


def scaled_dot_product_attention(q: Tensor, k: Tensor, v: Tensor, is_causal: bool = False, attention_mask=None,
                                 scale: float | None = None) -> Tensor:
    """softmax(q k^T * scale + mask) v for q (B, NH, Tq, HS), k/v (B, NH, Tk, HS).

    ``is_causal``: query i attends keys j <= i + (Tk - Tq) (bottom-right aligned, so a single
    new query with a KV cache sees every cached key).  ``attention_mask``: (B, Tk) with 1/True
    for real tokens and 0/False for padding keys (Hugging Face convention).  ``scale``
    defaults to 1/sqrt(HS).
    """
    km = None
    if attention_mask is not None:
        km = attention_mask.data if isinstance(attention_mask, Tensor) else np.asarray(attention_mask)
    return _Attention.apply(q, k, v, causal=bool(is_causal), key_mask=km, scale=scale)


# keep the helper importable for modules that build views
contiguous = _contiguous
