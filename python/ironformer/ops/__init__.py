"""Thin checked wrappers over the C++ kernels (one function per kernel).

Every op validates its arguments (in the binding, so a direct ``_C`` call is just as safe),
allocates its outputs, releases the GIL and calls the kernel of the ISA chosen at import.

Dtype rule for every op: floating inputs must already be float32; anything else raises
``TypeError`` naming the argument (convert explicitly with ``x.astype(np.float32)``), so no
silent copy or precision change happens behind the caller's back.  Integer ids/targets are
accepted as any integer dtype.  Shape errors raise ``ValueError`` naming the op, the argument
and the shapes involved.  Parameter gradients (``dweight``, ``dbias``) accumulate into the
array passed in; input gradients are returned as new arrays.
"""
from ._gemm import *  # noqa: F401,F403
from ._attention import *  # noqa: F401,F403
from ._norm_act import *  # noqa: F401,F403
from ._loss_optim import *  # noqa: F401,F403
from ._elementwise import *  # noqa: F401,F403
from . import _attention, _elementwise, _gemm, _loss_optim, _norm_act

__all__ = _gemm.__all__ + _attention.__all__ + _norm_act.__all__ + _loss_optim.__all__ + _elementwise.__all__
