"""A small op registry (in the spirit of PyTorch's OpInfo) that drives the kernel tests.

Each kernel family's test file builds a list of ``OpInfo`` and hands each one to
``check_forward_backward`` / ``check_errors`` under every ISA (the ``isa`` fixture).

An OpInfo says:
  * ``samples(rng)``  -> list of ``Sample``: float32 numpy inputs (odd shapes: size 1, primes,
    non-multiples of the SIMD width, empty batches where legal) plus non-tensor kwargs;
  * ``forward(sample)`` -> (outputs, state): ironformer's forward kernel(s); outputs is a
    tuple of numpy arrays, state whatever backward needs (saved mean/rstd, logsumexp, ...);
  * ``backward(sample, state, grads_out)`` -> dict {input name: gradient}: ironformer's
    backward kernel(s) for the random output gradients ``grads_out``;
  * ``reference(tensors, sample)`` -> tuple of torch float64 tensors computed with PyTorch
    autograd-able ops from ``tensors`` (float64 leaves, requires_grad on ``grad_inputs``);
  * tolerances for float32 (forward and backward, relative to the reference's scale);
  * ``error_inputs()`` -> list of (callable, exception type, message regex).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pytest


@dataclass
class Sample:
    inputs: dict[str, np.ndarray]
    kwargs: dict[str, Any] = field(default_factory=dict)
    name: str = ""


@dataclass
class OpInfo:
    name: str
    samples: Callable[[np.random.Generator], list[Sample]]
    forward: Callable[[Sample], tuple[tuple[np.ndarray, ...], Any]]
    reference: Callable[[dict, Sample], tuple]
    backward: Callable[[Sample, Any, tuple[np.ndarray, ...]], dict[str, np.ndarray]] | None = None
    grad_inputs: tuple[str, ...] = ()
    fwd_tol: tuple[float, float] = (1e-5, 1e-6)    # (rtol, atol) as multiples of the output scale
    bwd_tol: tuple[float, float] = (1e-4, 1e-5)
    error_inputs: Callable[[], list[tuple[Callable[[], Any], type, str]]] = lambda: []

    def __repr__(self):  # pytest ids
        return self.name


def _torch():
    return pytest.importorskip("torch", reason="PyTorch (the float64 reference) is not installed")


def assert_close(got: np.ndarray, want: np.ndarray, rtol: float, atol: float, what: str):
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != reference {want.shape}"
    if want.size == 0:
        return
    scale = float(np.max(np.abs(want))) or 1.0
    bad = np.abs(got - want) > (atol * scale + rtol * np.abs(want))
    nan_mismatch = np.isnan(got) != np.isnan(want)
    if bad.any() or nan_mismatch.any():
        i = np.unravel_index(np.argmax(np.abs(got - want)), got.shape)
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {got.size} elements out of tolerance "
            f"(rtol={rtol}, atol={atol}*{scale:.3g}); worst at {i}: got {got[i]!r}, want {want[i]!r}")


def check_forward_backward(op: OpInfo, rng: np.random.Generator):
    torch = _torch()
    for s in op.samples(rng):
        tag = f"{op.name}[{s.name}]"
        outs, state = op.forward(s)
        leaves = {}
        for k, v in s.inputs.items():
            if isinstance(v, np.ndarray) and v.dtype == np.float32:
                leaves[k] = torch.tensor(v.astype(np.float64), requires_grad=k in op.grad_inputs)
            else:
                leaves[k] = torch.as_tensor(v) if isinstance(v, np.ndarray) else v
        refs = op.reference(leaves, s)
        assert len(outs) == len(refs), f"{tag}: {len(outs)} outputs, reference has {len(refs)}"
        for j, (o, r) in enumerate(zip(outs, refs)):
            assert o.dtype == np.float32, f"{tag}: output {j} is {o.dtype}, not float32"
            assert_close(o, r.detach().numpy(), *op.fwd_tol, what=f"{tag} output {j}")
        if op.backward is None or not op.grad_inputs:
            continue
        douts = tuple(rng.standard_normal(o.shape).astype(np.float32) for o in outs)
        grads = op.backward(s, state, douts)
        diff = [r for r in refs if r.requires_grad]
        gouts = [torch.tensor(d.astype(np.float64)) for d, r in zip(douts, refs) if r.requires_grad]
        want = torch.autograd.grad(diff, [leaves[k] for k in op.grad_inputs], gouts, allow_unused=True)
        for k, w in zip(op.grad_inputs, want):
            assert k in grads, f"{tag}: backward returned no gradient for {k}"
            w = np.zeros(s.inputs[k].shape) if w is None else w.numpy()
            assert grads[k].dtype == np.float32, f"{tag}: d{k} is {grads[k].dtype}"
            assert_close(grads[k], w, *op.bwd_tol, what=f"{tag} d{k}")


def check_errors(op: OpInfo):
    cases = op.error_inputs()
    for fn, exc, match in cases:
        with pytest.raises(exc, match=match):
            fn()
