"""Learning-rate schedules.

``cosine_with_warmup(step, max_lr=..., warmup_steps=..., max_steps=..., min_lr=0.0)`` is the
nanoGPT ``get_lr``: linear warm-up from 0 over ``warmup_steps``, cosine decay to ``min_lr`` at
``max_steps``, ``min_lr`` after.  ``CosineWithWarmup`` applies it to an optimizer's groups.
"""
from __future__ import annotations

import math

__all__ = ["cosine_with_warmup", "get_lr", "CosineWithWarmup"]


def cosine_with_warmup(step: int, *, max_lr: float, warmup_steps: int, max_steps: int, min_lr: float = 0.0) -> float:
    if step < warmup_steps:
        return max_lr * (step + 1) / (warmup_steps + 1)
    if step >= max_steps:
        return min_lr
    ratio = (step - warmup_steps) / max(1, max_steps - warmup_steps)
    coeff = 0.5 * (1.0 + math.cos(math.pi * ratio))
    return min_lr + coeff * (max_lr - min_lr)


get_lr = cosine_with_warmup


class CosineWithWarmup:
    """Sets ``lr`` of every param group from cosine_with_warmup at each ``step()``
    (scaled by the group's initial lr relative to the first group's)."""

    def __init__(self, optimizer, *, warmup_steps: int, max_steps: int, min_lr: float = 0.0):
        self.optimizer = optimizer
        self.base = [g["lr"] for g in optimizer.param_groups]
        self.warmup_steps, self.max_steps, self.min_lr = warmup_steps, max_steps, min_lr
        self.last_step = 0
        self._apply()

    def _apply(self):
        for g, base in zip(self.optimizer.param_groups, self.base):
            g["lr"] = cosine_with_warmup(self.last_step, max_lr=base, warmup_steps=self.warmup_steps,
                                         max_steps=self.max_steps, min_lr=self.min_lr * base / self.base[0])

    def step(self):
        self.last_step += 1
        self._apply()

    def get_last_lr(self):
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self):
        return {"last_step": self.last_step}

    def load_state_dict(self, sd):
        self.last_step = int(sd["last_step"])
        self._apply()
