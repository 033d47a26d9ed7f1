"""Model families: GPT (decoder, GPT-2 checkpoints) and BERT (encoder, BERT / sentence-transformers checkpoints)."""
from .gpt import *  # noqa: F401,F403
from .bert import *  # noqa: F401,F403
from . import bert as _bert, gpt as _gpt

__all__ = _gpt.__all__ + _bert.__all__
