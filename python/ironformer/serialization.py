"""ironformer.save / ironformer.load: state dicts in the safetensors format."""
from __future__ import annotations

import json

import numpy as np

__all__ = ["save", "load"]

_ORDER_KEY = "ironformer.key_order"


def save(state_dict, path, metadata: dict | None = None) -> None:
    """Write {name: numpy array or Tensor} to ``path`` in safetensors format.

    Arrays are written as contiguous, unshared copies (tied weights are stored once per name,
    which safetensors requires).  The key order is kept in the file's metadata so ``load``
    returns the names in the order of ``state_dict``.  ``metadata``: extra str -> str entries.
    """
    from safetensors.numpy import save_file

    from .autograd import Tensor
    out = {}
    for k, v in state_dict.items():
        if not isinstance(k, str):
            raise TypeError(f"save: keys must be str, got {type(k).__name__}")
        if isinstance(v, Tensor):
            v = v.data
        if not isinstance(v, np.ndarray):
            raise TypeError(f"save: value of {k!r} must be a numpy array or Tensor, got {type(v).__name__}")
        out[k] = np.array(v, copy=True, order="C")
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    meta[_ORDER_KEY] = json.dumps(list(out))
    save_file(out, str(path), metadata=meta)


def load(path) -> dict:
    """Read a safetensors file into {name: numpy array}, in the order it was saved."""
    from safetensors import safe_open
    with safe_open(str(path), framework="np") as f:
        meta = f.metadata() or {}
        keys = list(f.keys())
        if _ORDER_KEY in meta:
            order = json.loads(meta[_ORDER_KEY])
            if sorted(order) == sorted(keys):
                keys = order
        return {k: f.get_tensor(k) for k in keys}
