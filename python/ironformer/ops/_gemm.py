"""ironformer.ops.matmul: float32 matrix multiply (see csrc/kernels/gemm.cpp)."""
from __future__ import annotations


from .. import _C

__all__ = ["matmul"]


def matmul(a: np.ndarray, b: np.ndarray, *, trans_a: bool = False, trans_b: bool = False,
           out: np.ndarray | None = None, accumulate: bool = False,
           bias: np.ndarray | None = None) -> np.ndarray:
    """C = op(a) @ op(b) (+ C when ``accumulate``) (+ ``bias``), float32.

    ``op`` is the identity or, with ``trans_a`` / ``trans_b``, the transpose of the last two
    dimensions; transposes are absorbed by the kernel's packing, never copied.  ``a`` and ``b``
    are 2-D, or 3-D for a batch of independent products (a 2-D operand, or a batch of 1, is
    shared by the whole batch).  Any numpy strides are accepted.  ``out`` (optional) must be
    float32, writable, of the result's shape, contiguous in its last dimension and must not
    share memory with ``a`` or ``b``; with ``accumulate`` the product is added to it.
    ``bias`` (length N) is added to every row.  Zero-sized dimensions give empty or zero
    (K == 0) results.
    """
    return _C.matmul(a, b, trans_a, trans_b, out, accumulate, bias)
