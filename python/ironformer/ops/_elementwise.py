"""ironformer.ops: elementwise kernels (csrc/kernels/elementwise.cpp), the small ops autograd
composes with.

* ``binary(op, a, b, *, out=None)``: ``op`` in add, sub, mul, div with numpy broadcasting.
* ``unary(op, x, *, exponent=None, out=None)``: ``op`` in neg, exp, log, sqrt, pow, copy.
* ``mul_scalar(x, s)``, ``add_scalar(x, s)``, ``affine(x, alpha, beta)``: scalar maps.
* ``copy_(dst, src)``: ``dst[...] = src`` (broadcast, any strides) through the kernel.
* ``reduce_sum(x, axes=None, keepdim=False)``: deterministic blocked float32 sum over axes.
* ``sum_to_shape(x, shape)``: sum a broadcast gradient back to an input's shape.

Operands may have any numpy strides (views, transposes, broadcast views with stride 0);
``out`` may be the very same array as an input (in place) but must not partly overlap one.
Python floats/ints are accepted as scalar operands of ``binary``.
"""
from __future__ import annotations

import numpy as np

from .. import _C

__all__ = ["binary", "unary", "affine", "mul_scalar", "add_scalar", "copy_", "reduce_sum", "sum_to_shape"]

_BINARY = ("add", "sub", "mul", "div")


def _operand(x):
    if isinstance(x, (int, float, np.floating, np.integer)) and not isinstance(x, bool):
        return np.array(x, dtype=np.float32)
    return x


def binary(op: str, a, b, *, out: np.ndarray | None = None) -> np.ndarray:
    """``out = a <op> b`` for ``op`` in ``'add' | 'sub' | 'mul' | 'div'``, numpy broadcasting.

    ``a`` and ``b`` are float32 arrays (any rank, any strides) or Python scalars.  Returns a
    new C-contiguous array of the broadcast shape, or ``out`` (which may alias ``a`` or ``b``
    exactly, for in-place updates such as ``binary('add', g, d, out=g)``).
    """
    if op not in _BINARY:
        raise ValueError(f"binary: unknown op {op!r}; expected one of {', '.join(_BINARY)}")
    return _C.elementwise(op, _operand(a), _operand(b), out)


def unary(op: str, x: np.ndarray, *, exponent: float | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """``out = f(x)`` for ``op`` in ``'neg' | 'exp' | 'log' | 'sqrt' | 'pow' | 'copy'``.

    ``pow`` needs ``exponent`` (a Python number; 2, -1 and 0.5 take vector paths).  ``exp`` uses
    the vectorized approximation of simd.h (max relative error ~2e-7); log and general pow call
    libm per element.
    """
    if op == "neg":
        return _C.elementwise("affine", x, None, out, -1.0, 0.0)
    if op == "copy":
        return _C.elementwise("affine", x, None, out, 1.0, 0.0)
    if op == "pow":
        if exponent is None:
            raise ValueError("unary: op 'pow' needs exponent=")
        return _C.elementwise("pow", x, None, out, float(exponent), 0.0)
    if op in ("exp", "log", "sqrt"):
        return _C.elementwise(op, x, None, out)
    raise ValueError(f"unary: unknown op {op!r}; expected neg, exp, log, sqrt, pow or copy")


def affine(x: np.ndarray, alpha: float, beta: float = 0.0, *, out: np.ndarray | None = None) -> np.ndarray:
    """``out = alpha * x + beta`` (one fused multiply-add per element on AVX2/AVX-512)."""
    return _C.elementwise("affine", x, None, out, float(alpha), float(beta))


def mul_scalar(x: np.ndarray, s: float, *, out: np.ndarray | None = None) -> np.ndarray:
    """``out = x * s``."""
    return _C.elementwise("affine", x, None, out, float(s), 0.0)


def add_scalar(x: np.ndarray, s: float, *, out: np.ndarray | None = None) -> np.ndarray:
    """``out = x + s``."""
    return _C.elementwise("affine", x, None, out, 1.0, float(s))


def copy_(dst: np.ndarray, src) -> np.ndarray:
    """``dst[...] = src`` with broadcasting, any strides on both sides; returns ``dst``."""
    src = _operand(src)
    if isinstance(src, np.ndarray) and src.shape != dst.shape:
        src = np.broadcast_to(src, dst.shape)
    return _C.elementwise("affine", src, None, dst, 1.0, 0.0)


def reduce_sum(x: np.ndarray, axes=None, keepdim: bool = False) -> np.ndarray:
    """Sum of ``x`` over ``axes`` (an int, a sequence of ints, or None for all), float32.

    The summation order is fixed (blocks of rows, see elementwise.cpp), so the result is the
    same for every thread count; its error grows like (block + n/block) eps, not n eps.
    Non-contiguous inputs are copied first.  Returns a new array (0-d for a full sum).
    """
    return _C.reduce_sum(x, axes, keepdim)


def sum_to_shape(x: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum ``x`` (a broadcast result) back to ``shape`` (an operand's shape before
    broadcasting): leading extra dims and dims where ``shape`` has 1 are summed.  Returns
    ``x`` itself when the shapes already agree."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"sum_to_shape: x must be a numpy array, got {type(x).__name__}")
    shape = tuple(shape)
    if x.shape == shape:
        return x
    lead = x.ndim - len(shape)
    if lead < 0:
        raise ValueError(f"sum_to_shape: cannot sum {x.shape} to the larger rank {shape}")
    axes = list(range(lead))
    for i, s in enumerate(shape):
        if s == 1 and x.shape[lead + i] != 1:
            axes.append(lead + i)
        elif s != x.shape[lead + i]:
            raise ValueError(f"sum_to_shape: {x.shape} does not broadcast from {shape}")
    r = _C.reduce_sum(x, axes, True)
    return r.reshape(shape)
