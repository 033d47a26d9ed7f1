"""ironformer.save / ironformer.load: state dicts in the safetensors format."""
from __future__ import annotations

import numpy as np

__all__ = ["save", "load"]


def save(state_dict, path) -> None:
    """Write {name: array or Tensor} to ``path`` (safetensors).  Arrays are written as
    contiguous float32/int copies where needed; shared (tied) arrays are written once per name."""
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
        out[k] = np.array(v, copy=True, order="C")   # contiguous and unshared (safetensors requirement)
    save_file(out, str(path))


def load(path) -> dict:
    """Read a safetensors file into {name: numpy array} (insertion order of the file)."""
    from safetensors.numpy import load_file
    return load_file(str(path))
