"""ironformer.nn.utils: gradient clipping."""
from __future__ import annotations

import math

from .. import ops

__all__ = ["clip_grad_norm_"]


def clip_grad_norm_(parameters, max_norm: float, norm_type: float = 2.0) -> float:
    """Scale the gradients of ``parameters`` in place so their global L2 norm is at most
    ``max_norm``; returns the norm before clipping (a float).  Uses the fused sum-of-squares
    and in-place scale kernels."""
    if norm_type != 2.0:
        raise ValueError(f"clip_grad_norm_: only norm_type=2.0 is supported, got {norm_type}")
    if hasattr(parameters, "grad"):
        parameters = [parameters]
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return 0.0
    total = math.sqrt(ops.sum_squares(grads))
    coef = float(max_norm) / (total + 1e-6)
    if coef < 1.0:
        for g in grads:
            ops.scale_(g, coef)
    return total
