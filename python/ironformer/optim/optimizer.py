"""SGD and AdamW.

Each param group keeps its parameters, gradients and optimizer state in flat float32 buffers:
at construction every parameter's ``.data`` is moved into a slice of the group's flat
parameter buffer (the Parameter then holds a view), and at each ``step()`` gradients that do
not already live in the flat gradient buffer are copied there (and the Parameter's ``.grad``
becomes the view, so later backward passes accumulate in place).  One fused kernel call then
updates the whole group.  Parameters whose ``.grad`` is None are skipped, as in PyTorch (the
group then falls back to one call per parameter on the flat slices).
"""
from __future__ import annotations

import numpy as np

from .. import ops

__all__ = ["Optimizer", "SGD", "AdamW"]


class _Group:
    """Flat buffers of one param group."""

    def __init__(self, params):
        self.params = params
        self.sizes = [p.data.size for p in params]
        self.offsets = np.cumsum([0] + self.sizes).tolist()
        n = self.offsets[-1]
        self.flat = np.empty(n, np.float32)
        self.grad = np.zeros(n, np.float32)
        for p, o, s in zip(params, self.offsets, self.sizes):
            view = self.flat[o:o + s].reshape(p.data.shape)
            ops.copy_(view, p.data)
            p.data = view

    def slot(self, buf, i):
        o, s = self.offsets[i], self.sizes[i]
        return buf[o:o + s]

    def gather_grads(self):
        """Copy gradients into the flat buffer; returns the indices of params with a grad."""
        have = []
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            have.append(i)
            g = p.grad
            if not (isinstance(g, np.ndarray) and g.base is self.grad and g.shape == p.shape
                    and np.shares_memory(g, self.slot(self.grad, i))):
                view = self.slot(self.grad, i).reshape(p.shape)
                ops.copy_(view, g)
                p.grad = view
        return have


class Optimizer:
    def __init__(self, params, defaults: dict):
        params = list(params)
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(params[0], dict):
            params = [{"params": params}]
        self.defaults = dict(defaults)
        self.param_groups = []
        self._groups = []
        seen = set()
        for g in params:
            g = dict(g)
            ps = list(g["params"])
            for p in ps:
                if id(p) in seen:
                    raise ValueError("some parameters appear in more than one parameter group")
                seen.add(id(p))
            for k, v in self.defaults.items():
                g.setdefault(k, v)
            g["params"] = ps
            self.param_groups.append(g)
            self._groups.append(_Group(ps))
        self._init_state()

    def _init_state(self):
        pass

    def zero_grad(self, set_to_none: bool = True):
        """Drop gradients (``set_to_none``, the default) or zero them in place."""
        for g, fg in zip(self.param_groups, self._groups):
            if set_to_none:
                for p in g["params"]:
                    p.grad = None
            else:
                ops.mul_scalar(fg.grad, 0.0, out=fg.grad)
                for i, p in enumerate(g["params"]):
                    p.grad = fg.slot(fg.grad, i).reshape(p.shape)

    # state_dict in PyTorch's layout: params numbered across groups in order
    def _state_arrays(self):
        return ()

    def state_dict(self) -> dict:
        state, groups, idx = {}, [], 0
        for g, fg in zip(self.param_groups, self._groups):
            ids = []
            for i in range(len(fg.params)):
                st = self._param_state(fg, i)
                if st is not None:
                    state[idx] = st
                ids.append(idx)
                idx += 1
            gd = {k: v for k, v in g.items() if k != "params"}
            gd["params"] = ids
            groups.append(gd)
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, sd: dict) -> None:
        groups = sd["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError(f"loaded state dict has {len(groups)} parameter groups, optimizer has "
                             f"{len(self.param_groups)}")
        for gs, g in zip(groups, self.param_groups):
            if len(gs["params"]) != len(g["params"]):
                raise ValueError("loaded state dict contains a parameter group that doesn't match the size of "
                                 "optimizer's group")
        for gs, g, fg in zip(groups, self.param_groups, self._groups):
            for k, v in gs.items():
                if k != "params":
                    g[k] = v
            for i, pid in enumerate(gs["params"]):
                st = sd["state"].get(pid, sd["state"].get(str(pid)))
                self._load_param_state(fg, i, st)


class SGD(Optimizer):
    """SGD with momentum, dampening, weight decay, Nesterov (PyTorch semantics)."""

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False):
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                                      nesterov=nesterov))

    def _init_state(self):
        for fg in self._groups:
            fg.mom = np.zeros_like(fg.flat)
            fg.has_mom = [False] * len(fg.params)

    def step(self):
        for g, fg in zip(self.param_groups, self._groups):
            have = fg.gather_grads()
            if not have:
                continue
            kw = dict(lr=g["lr"], momentum=g["momentum"], dampening=g["dampening"], weight_decay=g["weight_decay"],
                      nesterov=g["nesterov"])
            firsts = {fg.has_mom[i] for i in have}
            if len(have) == len(fg.params) and len(firsts) == 1:
                ops.sgd_step(fg.flat, fg.grad, fg.mom, first_step=not firsts.pop(), **kw)
            else:
                for i in have:
                    ops.sgd_step(fg.slot(fg.flat, i), fg.slot(fg.grad, i), fg.slot(fg.mom, i),
                                 first_step=not fg.has_mom[i], **kw)
            if g["momentum"] != 0.0:
                for i in have:
                    fg.has_mom[i] = True

    def _param_state(self, fg, i):
        if not fg.has_mom[i]:
            return None
        return {"momentum_buffer": fg.slot(fg.mom, i).reshape(fg.params[i].shape).copy()}

    def _load_param_state(self, fg, i, st):
        if not st or st.get("momentum_buffer") is None:
            fg.has_mom[i] = False
            return
        ops.copy_(fg.slot(fg.mom, i), np.ascontiguousarray(st["momentum_buffer"], np.float32).reshape(-1))
        fg.has_mom[i] = True


class AdamW(Optimizer):
    """AdamW (decoupled weight decay, PyTorch semantics) with the fused C++ step."""

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.01):
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"Invalid beta parameters: {betas}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    def _init_state(self):
        for fg in self._groups:
            fg.m = np.zeros_like(fg.flat)
            fg.v = np.zeros_like(fg.flat)
            fg.steps = [0] * len(fg.params)

    def step(self):
        for g, fg in zip(self.param_groups, self._groups):
            have = fg.gather_grads()
            if not have:
                continue
            b1, b2 = g["betas"]
            kw = dict(lr=g["lr"], beta1=b1, beta2=b2, eps=g["eps"], weight_decay=g["weight_decay"])
            for i in have:
                fg.steps[i] += 1
            steps = {fg.steps[i] for i in have}
            if len(have) == len(fg.params) and len(steps) == 1:
                ops.adamw_step(fg.flat, fg.grad, fg.m, fg.v, step=steps.pop(), **kw)
            else:
                for i in have:
                    ops.adamw_step(fg.slot(fg.flat, i), fg.slot(fg.grad, i), fg.slot(fg.m, i), fg.slot(fg.v, i),
                                   step=fg.steps[i], **kw)

    def _param_state(self, fg, i):
        if fg.steps[i] == 0:
            return None
        shape = fg.params[i].shape
        return {"step": float(fg.steps[i]), "exp_avg": fg.slot(fg.m, i).reshape(shape).copy(),
                "exp_avg_sq": fg.slot(fg.v, i).reshape(shape).copy()}

    def _load_param_state(self, fg, i, st):
        if not st:
            fg.steps[i] = 0
            ops.copy_(fg.slot(fg.m, i), 0.0)
            ops.copy_(fg.slot(fg.v, i), 0.0)
            return
        fg.steps[i] = int(st["step"])
        ops.copy_(fg.slot(fg.m, i), np.ascontiguousarray(st["exp_avg"], np.float32).reshape(-1))
        ops.copy_(fg.slot(fg.v, i), np.ascontiguousarray(st["exp_avg_sq"], np.float32).reshape(-1))
