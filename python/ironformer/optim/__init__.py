"""ironformer.optim: SGD and AdamW over flat parameter buffers (one fused C++ step per group),
and learning-rate schedules (ironformer.optim.lr_schedule)."""
from . import lr_schedule
from .optimizer import SGD, AdamW, Optimizer

__all__ = ["Optimizer", "SGD", "AdamW", "lr_schedule"]
