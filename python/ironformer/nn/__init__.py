"""ironformer.nn: modules, functional ops and utilities (PyTorch-style)."""
from . import functional, utils
from .modules import (GELU, Dropout, Embedding, LayerNorm, Linear, Module, ModuleList,  # noqa: F401
                      MultiheadSelfAttention, Parameter, ReLU, Sequential, Sigmoid, Tanh)
from .modules import __all__ as _mods

__all__ = list(_mods) + ["functional", "utils"]
