"""ironformer: train and run transformer language models fast on CPUs.

The arithmetic runs in C++ kernels (AVX2 / AVX-512 + OpenMP) chosen once at import for the
CPU; ``IRONFORMER_ISA=generic|avx2|avx512`` forces one.
"""
from __future__ import annotations

import os as _os

from . import _C

__version__ = _C.__version__


def _select_isa_from_env() -> None:
    wanted = _os.environ.get("IRONFORMER_ISA", "").strip().lower()
    if not wanted:
        _C.select_isa(_C.best_isa())
        return
    if wanted not in ("generic", "avx2", "avx512"):
        raise ImportError(
            f"IRONFORMER_ISA={wanted!r} is not a known ISA; expected one of generic, avx2, avx512")
    if not _C.isa_supported(wanted):
        raise ImportError(
            f"IRONFORMER_ISA={wanted!r} is not supported by this CPU/OS "
            f"(best available: {_C.best_isa()})")
    _C.select_isa(wanted)


_select_isa_from_env()

# Large temporaries (activations, gradients) are allocated and freed every step; glibc would
# unmap them and page-fault them back in each time.  ironformer keeps them in the heap (see
# _C.tune_malloc; process-wide, glibc only); IRONFORMER_MALLOC_TUNING=0 leaves malloc alone.
malloc_tuned = (_os.environ.get("IRONFORMER_MALLOC_TUNING", "1").strip() != "0") and _C.tune_malloc()


def isa() -> str:
    """The instruction set whose kernels are in use: 'generic', 'avx2' or 'avx512'."""
    return _C.isa()


def set_num_threads(n: int) -> None:
    """Set the number of threads every kernel may use (like torch.set_num_threads)."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"set_num_threads: n must be an int, got {type(n).__name__}")
    _C.set_num_threads(n)


def get_num_threads() -> int:
    """Threads the kernels use; defaults to OpenMP's (which honours OMP_NUM_THREADS)."""
    return _C.get_num_threads()


def show_config() -> str:
    """A short description of the build and the runtime choices; also printed."""
    lines = [
        f"ironformer {__version__}",
        f"  ISA in use     : {isa()} (best supported: {_C.best_isa()})",
        f"  threads        : {get_num_threads()} (OpenMP {'on' if _C.has_openmp else 'off'})",
        f"  compiler       : {_C.compiler}",
        f"  malloc tuning  : {'on (glibc heap keeps blocks <= 32 MiB)' if malloc_tuned else 'off'}",
        f"  team placement : {'on (workers kept off the calling thread CPU)' if _C.team_affinity() else 'off'}",
    ]
    text = "\n".join(lines)
    print(text)
    return text


from . import ops  # noqa: E402  (needs _C selected)

__all__ = ["__version__", "isa", "set_num_threads", "get_num_threads", "show_config", "ops"]

# autograd, layers, optimizers, checkpoints (PyTorch-style API)
from .autograd import Tensor, cat, manual_seed, no_grad, tensor  # noqa: E402
from . import nn, optim  # noqa: E402
from .serialization import load, save  # noqa: E402

__all__ += ["Tensor", "tensor", "cat", "no_grad", "manual_seed", "nn", "optim", "save", "load"]

# models, tokenizers, training, encoders
from .models.gpt import GPT, GPTConfig  # noqa: E402
from . import train  # noqa: E402  (a callable module: ironformer.train(TrainConfig(...)))
from .train import TrainConfig  # noqa: E402
from .tokenizers import BPETokenizer, CharTokenizer  # noqa: E402
from .encoders import SentenceEncoder, TextClassifier  # noqa: E402

__all__ += ["GPT", "GPTConfig", "train", "TrainConfig", "BPETokenizer", "CharTokenizer",
            "SentenceEncoder", "TextClassifier"]
