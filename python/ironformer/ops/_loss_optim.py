"""ironformer.ops: cross-entropy, embedding, optimizer steps, gradient-norm helpers, dropout.

Kernels: csrc/kernels/{cross_entropy,embedding,optim,dropout}.cpp; scalar twins in
csrc/reference/loss_optim_ref.cpp.  Float arrays must be float32 (``TypeError`` otherwise);
ids / targets may be any integer dtype (converted to int64).  Every result is independent of the
thread count (bitwise).
"""
from __future__ import annotations

import numpy as np

from .. import _C

__all__ = [
    "cross_entropy_forward", "cross_entropy_backward",
    "embedding_forward", "embedding_backward",
    "adamw_step", "sgd_step", "sum_squares", "scale_",
    "dropout_forward", "dropout_backward",
]

_U64 = (1 << 64) - 1


def cross_entropy_forward(logits: np.ndarray, targets: np.ndarray, *,
                          ignore_index: int = -100) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of ``logits`` (N, V) float32 against ``targets`` (N,) integers.

    Returns ``(loss, lse)``: ``loss`` (Python float, the mean over rows whose target is not
    ``ignore_index``, summed in float64) and ``lse`` (N,) float32, the per-row logsumexp that
    :func:`cross_entropy_backward` needs.  When every row is ignored (or N == 0) the loss is
    NaN, as in ``torch.nn.functional.cross_entropy``.  A target that is neither
    ``ignore_index`` nor in ``[0, V)`` raises ``IndexError`` naming it and V.
    """
    return _C.cross_entropy_forward(logits, np.asarray(targets), int(ignore_index))


def cross_entropy_backward(logits: np.ndarray, targets: np.ndarray, lse: np.ndarray, *,
                           dloss: float = 1.0, ignore_index: int = -100) -> np.ndarray:
    """dlogits (N, V) = (softmax(logits) - onehot(targets)) * dloss / count.

    Computed directly from ``logits`` and the saved ``lse`` in one pass; rows whose target is
    ``ignore_index`` get zero gradients (all of them when every row is ignored).  Large
    results (>= 16 MB) reuse the memory of a freed earlier result of the same size when there
    is one (a training loop asks for the same dlogits every step); a block is reused only once
    no array or view refers to it.
    """
    return _C.cross_entropy_backward(logits, np.asarray(targets), lse, float(dloss), int(ignore_index))


def embedding_forward(ids: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``weight[ids]``: ids of any integer dtype and shape, weight (V, C) float32 ->
    float32 of shape ``ids.shape + (C,)``.  An id outside ``[0, V)`` (negative ids too) raises
    ``IndexError`` naming it and V."""
    return _C.embedding_forward(np.asarray(ids), weight)


def embedding_backward(dout: np.ndarray, ids: np.ndarray, dweight: np.ndarray) -> np.ndarray:
    """``dweight[ids] += dout``, accumulating in place (repeated ids add up) and returning
    ``dweight`` (V, C), which must be a C-contiguous writable float32 array.  Deterministic:
    every row receives its additions in id order whatever the thread count."""
    return _C.embedding_backward(dout, np.asarray(ids), dweight)


def adamw_step(param: np.ndarray, grad: np.ndarray, exp_avg: np.ndarray, exp_avg_sq: np.ndarray, *,
               step: int, lr: float, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
               weight_decay: float = 0.01) -> None:
    """One ``torch.optim.AdamW`` step, in place on ``param``, ``exp_avg`` and ``exp_avg_sq``.

    All four arrays: same shape, C-contiguous float32 (``ValueError`` for shape / layout,
    ``TypeError`` for dtype).  ``step`` is the 1-based step count after incrementing.  Same
    semantics as PyTorch: ``param *= 1 - lr*wd``; ``m = lerp(m, g, 1-beta1)``;
    ``v = beta2 v + (1-beta2) g^2``; ``param -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps)``.
    """
    _C.adamw_step(param, grad, exp_avg, exp_avg_sq, int(step), float(lr), float(beta1), float(beta2),
                  float(eps), float(weight_decay))


def sgd_step(param: np.ndarray, grad: np.ndarray, momentum_buf: np.ndarray | None, *, lr: float,
             momentum: float = 0.0, dampening: float = 0.0, weight_decay: float = 0.0,
             nesterov: bool = False, first_step: bool = False) -> None:
    """One ``torch.optim.SGD`` step, in place on ``param`` (and ``momentum_buf``).

    ``g = grad + weight_decay * param``; with momentum the buffer becomes ``g`` on the
    ``first_step`` and ``momentum * buf + (1 - dampening) * g`` afterwards, and the update
    direction is ``g + momentum * buf`` (nesterov) or ``buf``; ``param -= lr * direction``.
    ``momentum_buf`` may be None when ``momentum == 0``.
    """
    _C.sgd_step(param, grad, momentum_buf, float(lr), float(momentum), float(dampening), float(weight_decay),
                bool(nesterov), bool(first_step))


def sum_squares(arrays) -> float:
    """Sum of the squares of every element of a float32 array or an iterable of them,
    accumulated in float64 in a fixed order (deterministic); ``sqrt`` of it is the global
    gradient L2 norm.  A single array counts as one (as ``clip_grad_norm_`` takes a tensor),
    not as the rows along its first axis."""
    if isinstance(arrays, np.ndarray):
        arrays = [arrays]
    elif not isinstance(arrays, (list, tuple)):
        try:
            arrays = list(arrays)
        except TypeError:
            raise TypeError("sum_squares: arrays must be a float32 numpy array or an iterable of them, "
                            f"got {type(arrays).__name__}") from None
    return _C.sum_squares(arrays)


def scale_(array: np.ndarray, factor: float) -> np.ndarray:
    """``array *= factor`` in place (C-contiguous float32; for gradient clipping); returns it."""
    _C.scale_(array, float(factor))
    return array


def dropout_forward(x: np.ndarray, p: float, seed: int, *, offset: int = 0) -> np.ndarray:
    """Dropout: each element is zeroed with probability ``p``, the kept ones scaled by 1/(1-p).

    The mask is a counter-based hash of ``(seed, offset + flat index)`` (``p`` quantised to
    2^-24), so it is independent of the thread count and :func:`dropout_backward` regenerates
    it without storing it.  ``p == 0`` copies, ``p == 1`` gives zeros; ``p`` outside [0, 1]
    raises ``ValueError``.  Seeds/offsets are taken modulo 2^64.
    """
    return _C.dropout_forward(x, float(p), int(seed) & _U64, int(offset) & _U64)


def dropout_backward(dout: np.ndarray, p: float, seed: int, *, offset: int = 0) -> np.ndarray:
    """dx = dout * mask / (1 - p) with the forward's mask regenerated from ``(seed, offset)``."""
    return _C.dropout_backward(dout, float(p), int(seed) & _U64, int(offset) & _U64)
