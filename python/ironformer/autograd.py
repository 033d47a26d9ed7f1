"""A small reverse-mode autograd over float32 numpy arrays (micrograd / classic tinygrad style).

``Tensor`` wraps a numpy float32 array.  Each differentiable operation is a ``Function``
subclass with ``forward`` and ``backward`` side by side; ``Function.apply`` runs forward on
the arrays, and when gradients are wanted records the node (the Function instance, which is
also the saved context) on the output.  ``Tensor.backward`` walks the nodes in reverse
topological order, calling each ``backward`` once with the summed gradients of its outputs;
saved arrays are dropped as soon as a node has run (unless ``retain_graph=True``), and a node
that was already freed raises a RuntimeError on a second backward.

All arithmetic on tensor elements happens in the C++ kernels (``ironformer.ops``); Python only
reshapes, transposes, slices (numpy views) and allocates.
"""
from __future__ import annotations

import contextlib
import sys
import threading

import numpy as np

from . import ops

__all__ = ["Tensor", "Function", "tensor", "no_grad", "enable_grad", "is_grad_enabled", "manual_seed", "cat"]


# ----------------------------------------------------------------------------------------
# global state: grad mode and the generator behind init and dropout seeds

_state = threading.local()


def is_grad_enabled() -> bool:
    return getattr(_state, "grad_enabled", True)


@contextlib.contextmanager
def _set_grad_enabled(mode: bool):
    prev = is_grad_enabled()
    _state.grad_enabled = mode
    try:
        yield
    finally:
        _state.grad_enabled = prev


class no_grad(contextlib.ContextDecorator):
    """Context manager / decorator: operations inside record no graph (like torch.no_grad)."""

    def __enter__(self):
        self._prev = is_grad_enabled()
        _state.grad_enabled = False
        return self

    def __exit__(self, *exc):
        _state.grad_enabled = self._prev
        return False


class enable_grad(no_grad):
    def __enter__(self):
        self._prev = is_grad_enabled()
        _state.grad_enabled = True
        return self


_generator = np.random.default_rng()


def manual_seed(seed: int) -> np.random.Generator:
    """Seed the global generator used by parameter init and dropout seeds."""
    global _generator
    _generator = np.random.default_rng(int(seed))
    return _generator


def default_generator() -> np.random.Generator:
    return _generator


def _next_seed() -> int:
    return int(_generator.integers(0, 2**62))


# ----------------------------------------------------------------------------------------
# array helpers (views and copies only)

def _as_f32(data) -> np.ndarray:
    if isinstance(data, np.ndarray) and data.dtype == np.float32:
        return data
    return np.array(data, dtype=np.float32)


def _contiguous(a: np.ndarray) -> np.ndarray:
    """a itself when C-contiguous, else a contiguous copy made by the copy kernel."""
    if a.flags.c_contiguous:
        return a
    return ops.unary("copy", a)


def _reshape(a: np.ndarray, shape) -> np.ndarray:
    """A view of a with `shape` when numpy can make one, else a kernel copy reshaped."""
    v = a.view()
    try:
        v.shape = shape
        return v
    except AttributeError:
        return _contiguous(a).reshape(shape)


# ----------------------------------------------------------------------------------------

class Tensor:
    """A float32 numpy array with an optional gradient and the node that produced it."""

    __slots__ = ("data", "grad", "requires_grad", "_node", "_index", "__weakref__")
    __array_ufunc__ = None      # numpy arrays/scalars on the left defer to our reflected operators

    def __init__(self, data, requires_grad: bool = False):
        self.data = _as_f32(data)
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._node = None    # Function that produced this tensor (None for leaves)
        self._index = 0      # which output of _node

    # -- basic properties ---------------------------------------------------------------
    @property
    def shape(self) -> tuple:
        return self.data.shape

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def is_leaf(self) -> bool:
        return self._node is None

    def size(self, dim: int | None = None):
        return self.data.shape if dim is None else self.data.shape[dim]

    def numel(self) -> int:
        return int(self.data.size)

    def __len__(self) -> int:
        return len(self.data)

    def numpy(self) -> np.ndarray:
        return self.data

    def item(self) -> float:
        if self.data.size != 1:
            raise ValueError(f"item(): only one-element tensors can be converted, got shape {self.shape}")
        return float(self.data.reshape(()))

    def detach(self) -> "Tensor":
        return Tensor(self.data)

    def zero_grad(self) -> None:
        self.grad = None

    def requires_grad_(self, mode: bool = True) -> "Tensor":
        self.requires_grad = bool(mode)
        return self

    def __repr__(self) -> str:
        g = ", requires_grad=True" if self.requires_grad else ""
        return f"tensor({np.array2string(self.data, precision=4, separator=', ')}{g})"

    # -- backward -----------------------------------------------------------------------
    def backward(self, grad=None, retain_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) * grad into every leaf's ``.grad``.

        ``grad`` defaults to 1 for a one-element tensor and is required otherwise.
        """
        if not self.requires_grad:
            raise RuntimeError("element 0 of tensors does not require grad and does not have a grad_fn")
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(f"grad can be implicitly created only for scalar outputs; got shape {self.shape}")
            grad = np.ones(self.shape, np.float32)
        else:
            grad = _as_f32(grad.data if isinstance(grad, Tensor) else grad)
            if grad.shape != self.shape:
                raise RuntimeError(f"backward: grad has shape {grad.shape}, expected {self.shape}")
        _run_backward(self, grad, retain_graph)

    # -- operators ----------------------------------------------------------------------
    def __add__(self, other):
        return _binary("add", self, other)

    def __radd__(self, other):
        return _binary("add", other, self)

    def __sub__(self, other):
        return _binary("sub", self, other)

    def __rsub__(self, other):
        return _binary("sub", other, self)

    def __mul__(self, other):
        return _binary("mul", self, other)

    def __rmul__(self, other):
        return _binary("mul", other, self)

    def __truediv__(self, other):
        return _binary("div", self, other)

    def __rtruediv__(self, other):
        return _binary("div", other, self)

    def __neg__(self):
        return Affine.apply(self, alpha=-1.0, beta=0.0)

    def __pow__(self, exponent):
        if isinstance(exponent, Tensor) or not isinstance(exponent, (int, float)):
            raise TypeError("** supports a Python number exponent only")
        return Pow.apply(self, exponent=float(exponent))

    def __matmul__(self, other):
        return MatMul.apply(self, _lift(other))

    def __rmatmul__(self, other):
        return MatMul.apply(_lift(other), self)

    def __getitem__(self, key):
        return Index.apply(self, key=key)

    # -- methods ------------------------------------------------------------------------
    def exp(self):
        return Unary.apply(self, op="exp")

    def log(self):
        return Unary.apply(self, op="log")

    def sqrt(self):
        return Unary.apply(self, op="sqrt")

    def sum(self, dim=None, keepdim: bool = False):
        return Sum.apply(self, dim=dim, keepdim=keepdim)

    def mean(self, dim=None, keepdim: bool = False):
        return Sum.apply(self, dim=dim, keepdim=keepdim, mean=True)

    def reshape(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return Reshape.apply(self, shape=shape)

    def view(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return Reshape.apply(self, shape=shape, strict=True)

    def flatten(self, start_dim: int = 0, end_dim: int = -1):
        nd = self.ndim
        s, e = start_dim % nd, end_dim % nd
        shape = self.shape[:s] + (-1,) + self.shape[e + 1:]
        return self.reshape(shape)

    def transpose(self, dim0: int, dim1: int):
        perm = list(range(self.ndim))
        perm[dim0], perm[dim1] = perm[dim1], perm[dim0]
        return Permute.apply(self, perm=tuple(perm))

    @property
    def T(self):
        return Permute.apply(self, perm=tuple(reversed(range(self.ndim))))

    def permute(self, *dims):
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = tuple(dims[0])
        return Permute.apply(self, perm=tuple(d % self.ndim for d in dims))

    def contiguous(self):
        return Contiguous.apply(self)

    def split(self, split_size, dim: int = 0):
        """Split into chunks of ``split_size`` along ``dim`` (or sizes given as a list)."""
        n = self.shape[dim]
        if isinstance(split_size, int):
            sizes = [min(split_size, n - i) for i in range(0, n, split_size)]
        else:
            sizes = list(split_size)
            if sum(sizes) != n:
                raise ValueError(f"split: sizes {sizes} do not add up to {n} (dim {dim} of {self.shape})")
        return Split.apply(self, sizes=tuple(sizes), dim=dim % self.ndim)

    def chunk(self, chunks: int, dim: int = 0):
        n = self.shape[dim]
        return self.split(-(-n // chunks), dim)

    def unsqueeze(self, dim: int):
        d = dim % (self.ndim + 1)
        return self.reshape(self.shape[:d] + (1,) + self.shape[d:])

    def squeeze(self, dim: int):
        d = dim % self.ndim
        if self.shape[d] != 1:
            return self
        return self.reshape(self.shape[:d] + self.shape[d + 1:])

    # activations as methods (torch style)
    def relu(self):
        from .nn import functional as F
        return F.relu(self)

    def sigmoid(self):
        from .nn import functional as F
        return F.sigmoid(self)

    def tanh(self):
        from .nn import functional as F
        return F.tanh(self)

    def softmax(self, dim: int = -1):
        from .nn import functional as F
        return F.softmax(self, dim)

    def log_softmax(self, dim: int = -1):
        from .nn import functional as F
        return F.log_softmax(self, dim)


def tensor(data, requires_grad: bool = False) -> Tensor:
    """A new Tensor holding a float32 copy of ``data`` (like torch.tensor)."""
    if isinstance(data, Tensor):
        data = data.data
    return Tensor(np.array(data, dtype=np.float32), requires_grad=requires_grad)


def _lift(x) -> Tensor:
    if isinstance(x, Tensor):
        return x
    return Tensor(_as_f32(x))


# ----------------------------------------------------------------------------------------

_FREED_MSG = ("Trying to backward through the graph a second time (or directly access saved tensors after "
              "they have already been freed). Saved intermediate values of the graph are freed when you call "
              ".backward(). Specify retain_graph=True if you need to backward through the graph a second time.")


class Function:
    """One differentiable operation: ``forward`` on numpy arrays, ``backward`` right under it.

    Subclasses implement ``forward(self, *arrays, **params)`` returning an array (or a tuple of
    arrays for several outputs) and ``backward(self, *grad_outputs)`` returning one gradient
    (or None) per Tensor input.  ``self`` is the saved context: keep what backward needs on it
    via ``self.save(...)`` (``self.saved``) or plain attributes; ``self.needs_input_grad``
    tells which inputs want a gradient.  Grad outputs of unused outputs arrive as None.
    """

    def save(self, *arrays):
        self.saved = arrays

    def grad_dest(self, i: int):
        """Where input i's gradient may be written directly, or None.

        Returns (array, accumulate) when input i is a leaf with a gradient slot (a Parameter
        managed by an optimizer, which keeps gradients in one flat buffer): the backward may
        write its gradient into ``array`` (adding to it when ``accumulate``) and return that
        very array, saving the copy into the flat buffer.  Optional: returning a fresh array is
        always correct."""
        d = getattr(self, "_dests", None)
        return None if d is None else d.get(i)

    @classmethod
    def apply(cls, *args, **params):
        node = cls()
        inputs = tuple(a if isinstance(a, Tensor) else _lift(a) for a in args)
        needs = tuple(t.requires_grad for t in inputs)
        track = is_grad_enabled() and any(needs)
        node.needs_input_grad = needs
        node.saved = ()
        node.freed = False
        out = node.forward(*[t.data for t in inputs], **params)
        multi = isinstance(out, tuple)
        outs = out if multi else (out,)
        results = []
        for i, o in enumerate(outs):
            t = Tensor(o, requires_grad=track)
            if track:
                t._node = node
                t._index = i
            results.append(t)
        if track:
            node.inputs = inputs
            node.n_outputs = len(outs)
        else:
            node.inputs = ()
            node.saved = ()
        return tuple(results) if multi else results[0]

    def forward(self, *arrays, **params):  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, *grads):  # pragma: no cover - abstract
        raise NotImplementedError

    def _free(self):
        n = self.n_outputs
        self.__dict__.clear()   # saved arrays, inputs and any other context
        self.inputs, self.saved, self.n_outputs, self.freed = (), (), n, True


def _topo_order(root: Function) -> list:
    """Nodes reachable from root, each after every node that consumes its outputs."""
    order, visited = [], set()
    stack = [(root, False)]
    while stack:
        node, done = stack.pop()
        if done:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        for t in node.inputs:
            if t._node is not None and id(t._node) not in visited:
                stack.append((t._node, False))
    order.reverse()
    return order


def _accumulate(old, g):
    return g if old is None else ops.binary("add", old, g)


def _run_backward(root: Tensor, grad: np.ndarray, retain_graph: bool) -> None:
    if root._node is None:   # a leaf: its gradient is grad itself
        _accumulate_leaf(root, grad, {id(grad)})
        return
    order = _topo_order(root._node)
    pending = {id(root._node): [None] * root._node.n_outputs}
    pending[id(root._node)][root._index] = grad
    # id(leaf) -> [leaf, summed grad, direct]; direct: the sum lives in the leaf's gradient
    # slot (see Function.grad_dest) and already includes the leaf's previous .grad.
    leaf_grads = {}
    for node in order:
        gouts = pending.pop(id(node), None)
        if gouts is None or all(g is None for g in gouts):
            continue
        if node.freed:
            raise RuntimeError(_FREED_MSG)
        inputs = node.inputs
        dests = None
        for i, t in enumerate(inputs):
            slot = getattr(t, "_grad_slot", None) if t._node is None and t.requires_grad else None
            if slot is None:
                continue
            cur = leaf_grads.get(id(t))
            if cur is None:
                d = (slot, False) if t.grad is None else (slot, True) if t.grad is slot else None
            else:
                d = (slot, True) if cur[2] else None
            if d is not None:
                if dests is None:
                    dests = {}
                dests[i] = d
        node._dests = dests
        gins = node.backward(*gouts)
        if not isinstance(gins, tuple):
            gins = (gins,)
        if not retain_graph:
            node._free()
        else:
            node._dests = None
        for i, (t, g) in enumerate(zip(inputs, gins)):
            if g is None or not t.requires_grad:
                continue
            if g.shape != t.shape:   # defensive: a backward must return the input's shape
                raise RuntimeError(f"{type(node).__name__}.backward returned a gradient of shape {g.shape} "
                                   f"for an input of shape {t.shape}")
            if t._node is None:
                cur = leaf_grads.get(id(t))
                if dests is not None and i in dests and g is dests[i][0]:
                    leaf_grads[id(t)] = [t, g, True]            # written (accumulated) in place
                elif cur is None:
                    leaf_grads[id(t)] = [t, g, False]
                elif cur[2]:
                    ops.binary("add", cur[1], g, out=cur[1])     # into the slot, stays direct
                else:
                    cur[1] = ops.binary("add", cur[1], g)
            else:
                slot = pending.setdefault(id(t._node), [None] * t._node.n_outputs)
                slot[t._index] = _accumulate(slot[t._index], g)
    seen = {id(grad)}
    for t, g, direct in leaf_grads.values():
        if direct:
            t.grad = g
        else:
            _accumulate_leaf(t, g, seen)


def _owns_memory(g: np.ndarray) -> bool:
    """True when no other array can see g's memory: g owns its data, or g is the only view of
    a buffer nothing else references (the kernels return 64-byte aligned views of a private,
    slightly larger buffer)."""
    if g.flags.owndata:
        return True
    base = g.base
    return isinstance(base, np.ndarray) and base.base is None and sys.getrefcount(base) <= 3   # g.base, base, the argument


def _accumulate_leaf(t: Tensor, g: np.ndarray, seen: set) -> None:
    if t.grad is None:
        # Own the gradient: a view, a broadcast or an array handed to another leaf is copied.
        if id(g) in seen or not _owns_memory(g) or not g.flags.writeable or not g.flags.c_contiguous:
            g = ops.unary("copy", g)
        seen.add(id(g))
        t.grad = g
    else:
        ops.binary("add", t.grad, g, out=t.grad)


# ----------------------------------------------------------------------------------------
# elementwise arithmetic

def _binary(op, a, b):
    """Tensor (op) Tensor | number; numbers take the scalar (affine) kernels."""
    a_num = not isinstance(a, (Tensor, np.ndarray))
    b_num = not isinstance(b, (Tensor, np.ndarray))
    if b_num and not a_num:
        s = float(b)
        if op == "add":
            return Affine.apply(a, alpha=1.0, beta=s)
        if op == "sub":
            return Affine.apply(a, alpha=1.0, beta=-s)
        if op == "mul":
            return Affine.apply(a, alpha=s, beta=0.0)
        return Affine.apply(a, alpha=1.0 / s, beta=0.0)
    if a_num and not b_num:
        s = float(a)
        if op == "add":
            return Affine.apply(b, alpha=1.0, beta=s)
        if op == "sub":
            return Affine.apply(b, alpha=-1.0, beta=s)
        if op == "mul":
            return Affine.apply(b, alpha=s, beta=0.0)
        return RDivScalar.apply(b, s=s)
    return Binary.apply(_lift(a), _lift(b), op=op)


class Binary(Function):
    """out = a (add|sub|mul|div) b with broadcasting; gradients summed back to each shape."""

    def forward(self, a, b, op):
        self.op = op
        out = ops.binary(op, a, b)
        self.a_shape, self.b_shape = a.shape, b.shape
        if op == "mul":
            self.save(a if self.needs_input_grad[1] else None, b if self.needs_input_grad[0] else None)
        elif op == "div":
            self.save(b, out if self.needs_input_grad[1] else None)
        return out

    def backward(self, g):
        op, na, nb = self.op, self.needs_input_grad[0], self.needs_input_grad[1]
        da = db = None
        if op == "add":
            da, db = (g if na else None), (g if nb else None)
        elif op == "sub":
            da = g if na else None
            db = ops.unary("neg", g) if nb else None
        elif op == "mul":
            a, b = self.saved
            da = ops.binary("mul", g, b) if na else None       # d(a*b)/da = b
            db = ops.binary("mul", g, a) if nb else None       # d(a*b)/db = a
        else:
            b, out = self.saved
            q = ops.binary("div", g, b)                        # d(a/b)/da = 1/b
            da = q if na else None
            if nb:                                             # d(a/b)/db = -a/b^2 = -(1/b)(a/b)
                db = ops.binary("mul", q, out)
                ops.affine(db, -1.0, 0.0, out=db)
        if da is not None:
            da = _sum_to(da, self.a_shape)
        if db is not None:
            db = _sum_to(db, self.b_shape)
        return da, db


def _sum_to(g: np.ndarray, shape) -> np.ndarray:
    if g.shape == tuple(shape):
        return g
    if g.ndim >= len(shape) and all(s == 1 or s == gs for s, gs in zip(shape, g.shape[g.ndim - len(shape):])):
        return ops.sum_to_shape(g, shape)
    # g smaller than the input (an operand broadcast against a scalar-like other): expand
    return ops.unary("copy", np.broadcast_to(g, shape))


class Affine(Function):
    """out = alpha * x + beta (scalar add / sub / mul / div, negation)."""

    def forward(self, x, alpha, beta):
        self.alpha = alpha
        return ops.affine(x, alpha, beta)

    def backward(self, g):
        return ops.mul_scalar(g, self.alpha)


class RDivScalar(Function):
    """out = s / x."""

    def forward(self, x, s):
        out = ops.binary("div", s, x)
        self.save(x, out)
        return out

    def backward(self, g):
        x, out = self.saved                                    # d(s/x)/dx = -s/x^2 = -out/x
        d = ops.binary("mul", g, ops.binary("div", out, x))
        return ops.affine(d, -1.0, 0.0, out=d)


class Pow(Function):
    """out = x ** p (p a Python number)."""

    def forward(self, x, exponent):
        self.p = exponent
        self.save(x)
        return ops.unary("pow", x, exponent=exponent)

    def backward(self, g):
        (x,) = self.saved                                      # d(x^p)/dx = p x^(p-1)
        p = self.p
        if p == 1.0:
            return g
        d = ops.binary("mul", g, x if p == 2.0 else ops.unary("pow", x, exponent=p - 1.0))
        return ops.mul_scalar(d, p, out=d)


class Unary(Function):
    """out = exp(x) | log(x) | sqrt(x)."""

    def forward(self, x, op):
        self.op = op
        out = ops.unary(op, x)
        self.save(x if op == "log" else out)
        return out

    def backward(self, g):
        (s,) = self.saved
        if self.op == "exp":
            return ops.binary("mul", g, s)                     # d exp(x) = exp(x) = out
        if self.op == "log":
            return ops.binary("div", g, s)                     # d log(x) = 1/x
        d = ops.binary("div", g, s)                            # d sqrt(x) = 1 / (2 sqrt(x))
        return ops.mul_scalar(d, 0.5, out=d)


class MatMul(Function):
    """out = a @ b: (..., M, K) @ (K, N), or batched (..., M, K) @ (..., K, N) with equal
    leading dims (a 2-D operand is shared across the batch)."""

    def forward(self, a, b):
        if a.ndim < 2 or b.ndim < 2:
            raise ValueError(f"matmul: operands must be at least 2-D, got {a.shape} and {b.shape}")
        if a.shape[-1] != b.shape[-2]:
            raise ValueError(f"matmul: shapes {a.shape} and {b.shape} are not aligned")
        self.save(a, b)
        if b.ndim == 2:
            a2 = _reshape(a, (-1, a.shape[-1]))
            return ops.matmul(a2, b).reshape(a.shape[:-1] + (b.shape[1],))
        if a.ndim == 2:
            b3 = _reshape(b, (-1,) + b.shape[-2:])
            return ops.matmul(a, b3).reshape(b.shape[:-2] + (a.shape[0], b.shape[-1]))
        if a.shape[:-2] != b.shape[:-2]:
            raise ValueError(f"matmul: batch dimensions differ: {a.shape} and {b.shape}")
        a3 = _reshape(a, (-1,) + a.shape[-2:])
        b3 = _reshape(b, (-1,) + b.shape[-2:])
        return ops.matmul(a3, b3).reshape(a.shape[:-1] + (b.shape[-1],))

    def backward(self, g):
        a, b = self.saved
        na, nb = self.needs_input_grad
        da = db = None
        if b.ndim == 2:
            a2 = _reshape(a, (-1, a.shape[-1]))
            g2 = _reshape(g, (-1, b.shape[1]))
            if na:
                da = ops.matmul(g2, b, trans_b=True).reshape(a.shape)      # dA = G B^T
            if nb:
                db = ops.matmul(a2, g2, trans_a=True)                       # dB = A^T G
            return da, db
        g3 = _reshape(g, (-1,) + g.shape[-2:])
        b3 = _reshape(b, (-1,) + b.shape[-2:])
        if a.ndim == 2:
            if na:
                da = ops.reduce_sum(ops.matmul(g3, b3, trans_b=True), 0)
            if nb:
                db = ops.matmul(a, g3, trans_a=True).reshape(b.shape)
            return da, db
        a3 = _reshape(a, (-1,) + a.shape[-2:])
        if na:
            da = ops.matmul(g3, b3, trans_b=True).reshape(a.shape)
        if nb:
            db = ops.matmul(a3, g3, trans_a=True).reshape(b.shape)
        return da, db


# ----------------------------------------------------------------------------------------
# reductions and shape ops

class Sum(Function):
    """out = x.sum(dim, keepdim) (or .mean)."""

    def forward(self, x, dim, keepdim, mean=False):
        self.in_shape = x.shape
        axes = None if dim is None else ((dim,) if isinstance(dim, int) else tuple(dim))
        nd = x.ndim
        self.axes = tuple(range(nd)) if axes is None else tuple(a % nd for a in axes) if nd else ()
        out = ops.reduce_sum(x, axes, keepdim)
        self.scale = 1.0
        if mean:
            n = 1
            for a in self.axes:
                n *= x.shape[a]
            self.scale = 1.0 / n if n else float("nan")
            ops.mul_scalar(out, self.scale, out=out)
        return out

    def backward(self, g):
        kshape = tuple(1 if i in self.axes else s for i, s in enumerate(self.in_shape))
        gb = np.broadcast_to(g.reshape(kshape), self.in_shape)
        return ops.mul_scalar(gb, self.scale)                  # d sum = 1 (mean: 1/n) everywhere


class Reshape(Function):
    def forward(self, x, shape, strict=False):
        self.in_shape = x.shape
        if strict:
            v = x.view()
            try:
                v.shape = shape
            except AttributeError:
                raise RuntimeError(f"view size is not compatible with input tensor's size and stride "
                                   f"(shape {x.shape} -> {shape}); use .reshape(...) instead") from None
            return v
        return _reshape(x, shape)

    def backward(self, g):
        return _reshape(g, self.in_shape)


class Contiguous(Function):
    def forward(self, x):
        return _contiguous(x)

    def backward(self, g):
        return g


class Permute(Function):
    def forward(self, x, perm):
        self.perm = perm
        return x.transpose(perm)

    def backward(self, g):
        return g.transpose(np.argsort(self.perm))


def _basic_key(key):
    keys = key if isinstance(key, tuple) else (key,)
    for k in keys:
        if not (k is None or k is Ellipsis or isinstance(k, (slice, int, np.integer))) or isinstance(k, bool):
            raise TypeError(f"Tensor indexing supports ints, slices, None and ... only, got {type(k).__name__}")
    if not any(k is Ellipsis for k in keys):
        keys = keys + (Ellipsis,)   # so an all-int key gives a 0-d view, not a scalar
    return keys


class Index(Function):
    """out = x[key] (basic indexing: a numpy view)."""

    def forward(self, x, key):
        self.key = _basic_key(key)
        self.in_shape = x.shape
        return x[self.key]

    def backward(self, g):
        dx = np.zeros(self.in_shape, np.float32)
        ops.copy_(dx[self.key], g)
        return dx


class Split(Function):
    """Views of consecutive chunks of x along dim."""

    def forward(self, x, sizes, dim):
        self.in_shape, self.sizes, self.dim = x.shape, sizes, dim
        outs, start = [], 0
        idx = [slice(None)] * x.ndim
        for s in sizes:
            idx[dim] = slice(start, start + s)
            outs.append(x[tuple(idx)])
            start += s
        return tuple(outs)

    def backward(self, *gs):
        dx = np.empty(self.in_shape, np.float32)
        idx = [slice(None)] * len(self.in_shape)
        start = 0
        for s, g in zip(self.sizes, gs):
            idx[self.dim] = slice(start, start + s)
            if g is None:
                ops.copy_(dx[tuple(idx)], 0.0)
            else:
                ops.copy_(dx[tuple(idx)], g)
            start += s
        return dx


class Cat(Function):
    def forward(self, *xs, dim):
        self.dim = dim
        self.sizes = [x.shape[dim] for x in xs]
        shape = list(xs[0].shape)
        shape[dim] = sum(self.sizes)
        out = np.empty(shape, np.float32)
        idx = [slice(None)] * out.ndim
        start = 0
        for x, s in zip(xs, self.sizes):
            idx[dim] = slice(start, start + s)
            ops.copy_(out[tuple(idx)], x)
            start += s
        return out

    def backward(self, g):
        res, start = [], 0
        idx = [slice(None)] * g.ndim
        for s, need in zip(self.sizes, self.needs_input_grad):
            idx[self.dim] = slice(start, start + s)
            res.append(g[tuple(idx)] if need else None)
            start += s
        return tuple(res)


def cat(tensors, dim: int = 0) -> Tensor:
    """Concatenate tensors along dim (like torch.cat)."""
    tensors = [_lift(t) for t in tensors]
    return Cat.apply(*tensors, dim=dim % tensors[0].ndim)
