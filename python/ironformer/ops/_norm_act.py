"""ironformer.ops: LayerNorm, activations, softmax, bias/residual add and column sums.

Kernels: csrc/kernels/{layernorm,activations,softmax,bias_add}.cpp.  Every op takes float32
arrays of any leading shape (flattened to rows x C, C = the last dimension; non-contiguous
inputs are copied), returns new float32 arrays, and raises ``TypeError`` for a wrong dtype and
``ValueError`` (naming the op, the argument and both shapes) for a shape mismatch.  Results do
not depend on the thread count.
"""
from __future__ import annotations

import numpy as np

from .. import _C

__all__ = [
    "layernorm_forward", "layernorm_backward",
    "gelu_forward", "gelu_backward", "relu_forward", "relu_backward",
    "sigmoid_forward", "sigmoid_backward", "tanh_forward", "tanh_backward",
    "softmax_forward", "softmax_backward", "log_softmax_forward", "log_softmax_backward",
    "add", "add_bias", "sum_rows",
]

_GELU_ERF, _GELU_TANH, _RELU, _SIGMOID, _TANH = range(5)


def layernorm_forward(x: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None,
                      eps: float = 1e-5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """LayerNorm over the last dim: ``(x - mean) * rstd * weight + bias``.

    ``x`` (..., C); ``weight`` / ``bias`` (C,) or None (no affine).  Returns ``(out, mean,
    rstd)`` with ``mean`` and ``rstd = 1 / sqrt(var + eps)`` of shape ``x.shape[:-1]``, the
    state ``layernorm_backward`` needs.
    """
    return _C.layernorm_forward(x, weight, bias, eps)


def layernorm_backward(dout: np.ndarray, x: np.ndarray, mean: np.ndarray, rstd: np.ndarray,
                       weight: np.ndarray | None, *, dweight: np.ndarray | None = None,
                       dbias: np.ndarray | None = None):
    """Gradients of ``layernorm_forward``: returns ``(dx, dweight, dbias)``.

    With ``weight`` given, the parameter gradients are ACCUMULATED (+=) into ``dweight`` /
    ``dbias`` when those arrays are passed (float32, (C,), contiguous, writable) and returned;
    otherwise new arrays are returned.  With ``weight`` None returns ``(dx, None, None)``.
    The sums over rows are deterministic (fixed row chunks in a fixed order).
    """
    return _C.layernorm_backward(dout, x, mean, rstd, weight, dweight, dbias)


def _gelu_id(approximate: str) -> int:
    if approximate == "none":
        return _GELU_ERF
    if approximate == "tanh":
        return _GELU_TANH
    raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")


def gelu_forward(x: np.ndarray, approximate: str = "none") -> np.ndarray:
    """GELU: ``0.5 x (1 + erf(x / sqrt 2))`` (``approximate='none'``, BERT "gelu") or
    ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`` (``'tanh'``, GPT-2 "gelu_new")."""
    return _C.act_forward(x, _gelu_id(approximate))


def gelu_backward(dout: np.ndarray, x: np.ndarray, approximate: str = "none") -> np.ndarray:
    """``dout * gelu'(x)`` for the same ``approximate`` as the forward (from the input x)."""
    return _C.act_backward(dout, x, _gelu_id(approximate))


def relu_forward(x: np.ndarray) -> np.ndarray:
    """``max(x, 0)`` (NaN propagates)."""
    return _C.act_forward(x, _RELU)


def relu_backward(dout: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``dout`` where ``x > 0``, else 0 (from the input x)."""
    return _C.act_backward(dout, x, _RELU)


def sigmoid_forward(x: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-x))``."""
    return _C.act_forward(x, _SIGMOID)


def sigmoid_backward(dout: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``dout * out * (1 - out)`` from the forward output."""
    return _C.act_backward(dout, out, _SIGMOID)


def tanh_forward(x: np.ndarray) -> np.ndarray:
    """``tanh(x)``."""
    return _C.act_forward(x, _TANH)


def tanh_backward(dout: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``dout * (1 - out^2)`` from the forward output."""
    return _C.act_backward(dout, out, _TANH)


def softmax_forward(x: np.ndarray) -> np.ndarray:
    """Softmax over the last dim (max-shifted: large inputs do not overflow)."""
    return _C.softmax_forward(x, False)


def softmax_backward(dout: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out * (dout - sum(dout * out))`` over the last dim, from the forward output."""
    return _C.softmax_backward(dout, out, False)


def log_softmax_forward(x: np.ndarray) -> np.ndarray:
    """``x - logsumexp(x)`` over the last dim."""
    return _C.softmax_forward(x, True)


def log_softmax_backward(dout: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``dout - exp(out) * sum(dout)`` over the last dim, from the forward output."""
    return _C.softmax_backward(dout, out, True)


def add(a: np.ndarray, b: np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
    """``a + b`` elementwise, same shapes (a residual connection).  ``out`` may be ``a`` or
    ``b`` itself (in place) but must not partially overlap them."""
    return _C.add(a, b, out)


def add_bias(x: np.ndarray, bias: np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
    """``x (..., C) + bias (C,)`` on every row; ``out`` may be ``x`` itself (in place)."""
    return _C.add_bias(x, bias, out)


def sum_rows(x: np.ndarray, *, out: np.ndarray | None = None, accumulate: bool = False) -> np.ndarray:
    """Sums of ``x (..., C)`` over all leading dims -> (C,) (the bias gradient of a linear
    layer); with ``accumulate`` added into ``out``.  Deterministic for any thread count."""
    return _C.sum_rows(x, out, accumulate)
