"""ironformer.nn modules: Module (PyTorch-style registration, state_dict) and the layers."""
from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np

from .. import autograd
from ..autograd import Tensor, cat
from . import functional as F

__all__ = ["Parameter", "Module", "Linear", "LayerNorm", "Embedding", "Dropout", "GELU", "ReLU", "Sigmoid", "Tanh",
           "Sequential", "ModuleList", "MultiheadSelfAttention"]


class Parameter(Tensor):
    """A Tensor that is a module's learnable weight (requires_grad by default)."""

    __slots__ = ()

    def __init__(self, data, requires_grad: bool = True):
        if isinstance(data, Tensor):
            data = data.data
        super().__init__(np.array(data, dtype=np.float32), requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


def _uniform(shape, bound):
    return autograd.default_generator().uniform(-bound, bound, size=shape).astype(np.float32)


class Module:
    """Base class of layers: assigning a Parameter or Module attribute registers it (in
    definition order), so ``parameters()``, ``named_parameters()`` and ``state_dict()`` find it."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        params = self.__dict__.get("_parameters")
        if params is None:
            raise AttributeError("cannot assign attributes before Module.__init__() call")
        for d in (self._parameters, self._modules):
            d.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        object.__delattr__(self, name)

    def register_parameter(self, name, param):
        setattr(self, name, param)

    def add_module(self, name, module):
        setattr(self, name, module)

    def forward(self, *args, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} has no forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # -- traversal ---------------------------------------------------------------------
    def named_modules(self, prefix: str = ""):
        seen = set()

        def walk(m, pre):
            if id(m) in seen:
                return
            seen.add(id(m))
            yield pre, m
            for n, c in m._modules.items():
                if c is not None:
                    yield from walk(c, f"{pre}.{n}" if pre else n)

        yield from walk(self, prefix)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def children(self):
        for m in self._modules.values():
            if m is not None:
                yield m

    def named_parameters(self, prefix: str = "", remove_duplicate: bool = True):
        seen = set()
        for mname, m in self.named_modules(prefix):
            for pname, p in m._parameters.items():
                if p is None or (remove_duplicate and id(p) in seen):
                    continue
                seen.add(id(p))
                yield (f"{mname}.{pname}" if mname else pname), p

    def parameters(self):
        for _, p in self.named_parameters():
            yield p

    def train(self, mode: bool = True):
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self, set_to_none: bool = True):
        for p in self.parameters():
            p.grad = None

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # -- state -------------------------------------------------------------------------
    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """Parameter name -> numpy array (the live array, like PyTorch's detached tensors);
        shared (tied) parameters appear under every name they are registered as."""
        sd = OrderedDict()
        for name, p in self.named_parameters(remove_duplicate=False):
            sd[name] = p.data
        return sd

    def load_state_dict(self, state_dict, strict: bool = True):
        """Copy arrays (numpy, Tensor, or anything np.asarray accepts) into the parameters.

        Raises RuntimeError listing missing and unexpected keys (strict) and every shape
        mismatch; nothing is modified when an error is raised.  Returns (missing, unexpected).
        """
        own = OrderedDict(self.named_parameters(remove_duplicate=False))
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        errors = []
        if strict:
            if missing:
                errors.append("Missing key(s) in state_dict: " + ", ".join(f'"{k}"' for k in missing) + ". ")
            if unexpected:
                errors.append("Unexpected key(s) in state_dict: " + ", ".join(f'"{k}"' for k in unexpected) + ". ")
        values = {}
        for k, p in own.items():
            if k not in state_dict:
                continue
            v = state_dict[k]
            v = v.data if isinstance(v, Tensor) else v
            if hasattr(v, "detach") and hasattr(v, "cpu"):   # a torch tensor
                v = v.detach().cpu().numpy()
            v = np.asarray(v)
            if v.shape != p.shape:
                errors.append(f"size mismatch for {k}: copying a param with shape {tuple(v.shape)} from checkpoint, "
                              f"the shape in current model is {tuple(p.shape)}.")
                continue
            values[k] = v
        if errors:
            raise RuntimeError(f"Error(s) in loading state_dict for {type(self).__name__}:\n\t" + "\n\t".join(errors))
        for k, v in values.items():
            own[k].data[...] = v
        return missing, unexpected

    # -- printing ------------------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        lines = [f"({n}): " + repr(m).replace("\n", "\n  ") for n, m in self._modules.items()]
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not lines:
            return head + ")"
        return head + "\n  " + "\n  ".join(lines) + "\n)"


class Linear(Module):
    """y = x @ weight.T + bias; weight (out_features, in_features), PyTorch's default init
    (kaiming-uniform with a = sqrt(5): U(-1/sqrt(in), 1/sqrt(in)) for weight and bias)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        bound = 1.0 / math.sqrt(in_features) if in_features > 0 else 0.0
        self.weight = Parameter(_uniform((out_features, in_features), bound))
        self.bias = Parameter(_uniform((out_features,), bound)) if bias else None

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class LayerNorm(Module):
    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True, bias: bool = True):
        super().__init__()
        ns = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        self.normalized_shape, self.eps = ns, eps
        self.weight = Parameter(np.ones(ns, np.float32)) if elementwise_affine else None
        self.bias = Parameter(np.zeros(ns, np.float32)) if elementwise_affine and bias else None

    def forward(self, x):
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}"


class Embedding(Module):
    """A (num_embeddings, embedding_dim) table initialised N(0, 1) like PyTorch."""

    def __init__(self, num_embeddings: int, embedding_dim: int):
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.weight = Parameter(autograd.default_generator().standard_normal(
            (num_embeddings, embedding_dim)).astype(np.float32))

    def forward(self, ids):
        return F.embedding(ids, self.weight)

    def extra_repr(self):
        return f"{self.num_embeddings}, {self.embedding_dim}"


class Dropout(Module):
    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p = p

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"


class GELU(Module):
    def __init__(self, approximate: str = "none"):
        super().__init__()
        self.approximate = approximate

    def forward(self, x):
        return F.gelu(x, self.approximate)


class ReLU(Module):
    def forward(self, x):
        return F.relu(x)


class Sigmoid(Module):
    def forward(self, x):
        return F.sigmoid(x)


class Tanh(Module):
    def forward(self, x):
        return F.tanh(x)


class Sequential(Module):
    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], (dict, OrderedDict)):
            for n, m in modules[0].items():
                setattr(self, n, m)
        else:
            for i, m in enumerate(modules):
                setattr(self, str(i), m)

    def __getitem__(self, i):
        return list(self._modules.values())[i]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x


class ModuleList(Module):
    def __init__(self, modules=()):
        super().__init__()
        for m in modules:
            self.append(m)

    def append(self, m):
        setattr(self, str(len(self._modules)), m)
        return self

    def extend(self, ms):
        for m in ms:
            self.append(m)
        return self

    def __getitem__(self, i):
        if isinstance(i, slice):
            return ModuleList(list(self._modules.values())[i])
        return list(self._modules.values())[i]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())


class MultiheadSelfAttention(Module):
    """Multi-head self-attention with a fused qkv projection (GPT-2 layout).

    ``c_attn = Linear(C, 3C)`` produces q, k, v (in that order along the last dim), heads of
    size C // num_heads; ``c_proj = Linear(C, C)`` mixes the heads.

    ``forward(x, attention_mask=None, kv_cache=None, use_cache=False)``:
      * x (B, T, C); attention_mask (B, T_total) with 1 for real tokens, 0 for padding keys
        (T_total counts cached positions too);
      * ``causal`` (constructor) masks future keys, bottom-right aligned, so with a cache the
        T new queries see every cached key and the new keys up to themselves;
      * kv_cache: None or (k, v) Tensors (B, NH, T_past, HS) from a previous call.
    Returns y (B, T, C), or (y, (k, v)) with the keys/values of all positions when
    ``use_cache`` is true or a kv_cache was given, ready to feed back for the next token.
    """

    def __init__(self, embed_dim: int, num_heads: int, bias: bool = True, dropout: float = 0.0,
                 causal: bool = True):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.embed_dim, self.num_heads, self.causal = embed_dim, num_heads, causal
        self.c_attn = Linear(embed_dim, 3 * embed_dim, bias=bias)
        self.c_proj = Linear(embed_dim, embed_dim, bias=bias)
        self.resid_dropout = Dropout(dropout)

    def forward(self, x, attention_mask=None, kv_cache=None, use_cache: bool = False):
        B, T, C = x.shape
        nh = self.num_heads
        hs = C // nh
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, nh, hs).transpose(1, 2)   # (B, nh, T, hs), strided views
        k = k.view(B, T, nh, hs).transpose(1, 2)
        v = v.view(B, T, nh, hs).transpose(1, 2)
        if kv_cache is not None:
            k = cat([kv_cache[0], k], dim=2)
            v = cat([kv_cache[1], v], dim=2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal, attention_mask=attention_mask)
        y = y.transpose(1, 2).reshape(B, T, C)
        y = self.resid_dropout(self.c_proj(y))
        if use_cache or kv_cache is not None:
            return y, (k, v)
        return y

    def extra_repr(self):
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, causal={self.causal}"
