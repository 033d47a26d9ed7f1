"""Optimizers against torch.optim (20 steps to 1e-6), state_dict resume, clipping, schedules."""
from __future__ import annotations

import numpy as np
import pytest

import ironformer as irf
from ironformer import nn

torch = pytest.importorskip("torch")

SHAPES = [(7, 5), (5,), (3, 4, 2), (1,)]


def _params(rng):
    arrs = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    ip = [nn.Parameter(a) for a in arrs]
    tp = [torch.nn.Parameter(torch.tensor(a)) for a in arrs]   # float32, like ironformer
    return ip, tp


def _grads(rng, step):
    return [rng.standard_normal(s).astype(np.float32) * (1 + 0.1 * step) for s in SHAPES]


def _run(make_irf, make_torch, rng, steps=20, skip=None):
    ip, tp = _params(rng)
    opt, topt = make_irf(ip), make_torch(tp)
    for step in range(steps):
        grads = _grads(rng, step)
        for i, (p, q, g) in enumerate(zip(ip, tp, grads)):
            if skip is not None and skip(step, i):
                p.grad, q.grad = None, None
                continue
            p.grad = g.copy()
            q.grad = torch.tensor(g)
        opt.step()
        topt.step()
    for p, q in zip(ip, tp):
        np.testing.assert_allclose(p.data, q.detach().numpy(), rtol=1e-6, atol=1e-6)
    return opt, topt, ip, tp


@pytest.mark.parametrize("kw", [dict(lr=0.1), dict(lr=0.05, momentum=0.9), dict(lr=0.05, momentum=0.9, weight_decay=0.1),
                                dict(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=0.01),
                                dict(lr=0.02, momentum=0.9, nesterov=True, weight_decay=0.05)])
def test_sgd_matches_torch(rng, kw):
    _run(lambda p: irf.optim.SGD(p, **kw), lambda p: torch.optim.SGD(p, **kw), rng)


@pytest.mark.parametrize("kw", [dict(), dict(lr=3e-3, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1),
                                dict(lr=1e-2, weight_decay=0.0)])
def test_adamw_matches_torch(rng, kw):
    _run(lambda p: irf.optim.AdamW(p, **kw), lambda p: torch.optim.AdamW(p, **kw), rng)


def test_params_without_grad_are_skipped_like_torch(rng):
    skip = lambda step, i: (i == 1 and step < 5) or (i == 2 and step % 3 == 0)  # noqa: E731
    _run(lambda p: irf.optim.AdamW(p, lr=1e-2), lambda p: torch.optim.AdamW(p, lr=1e-2), rng, skip=skip)
    _run(lambda p: irf.optim.SGD(p, lr=1e-2, momentum=0.9), lambda p: torch.optim.SGD(p, lr=1e-2, momentum=0.9),
         rng, skip=skip)


def test_param_groups(rng):
    ip, tp = _params(rng)
    opt = irf.optim.AdamW([{"params": ip[:2], "weight_decay": 0.0}, {"params": ip[2:], "lr": 1e-2}], lr=1e-3)
    topt = torch.optim.AdamW([{"params": tp[:2], "weight_decay": 0.0}, {"params": tp[2:], "lr": 1e-2}], lr=1e-3)
    for step in range(10):
        for p, q, g in zip(ip, tp, _grads(rng, step)):
            p.grad, q.grad = g, torch.tensor(g)
        opt.step()
        topt.step()
    for p, q in zip(ip, tp):
        np.testing.assert_allclose(p.data, q.detach().numpy(), rtol=1e-6, atol=1e-6)
    assert opt.param_groups[0]["weight_decay"] == 0.0 and opt.param_groups[1]["lr"] == 1e-2


@pytest.mark.parametrize("cls,kw", [(irf.optim.AdamW, dict(lr=1e-2)), (irf.optim.SGD, dict(lr=1e-2, momentum=0.9))])
def test_state_dict_resume(rng, cls, kw):
    """10 steps, save (model + optimizer), restore into fresh objects, 10 more steps ==
    20 uninterrupted steps."""
    ip, _ = _params(rng)
    ref = [nn.Parameter(p.data.copy()) for p in ip]
    opt, ropt = cls(ip, **kw), cls(ref, **kw)
    grads = [_grads(rng, s) for s in range(20)]
    for s in range(10):
        for p, q, g in zip(ip, ref, grads[s]):
            p.grad, q.grad = g.copy(), g.copy()
        opt.step()
        ropt.step()
    sd = opt.state_dict()
    assert set(sd) == {"state", "param_groups"} and sd["param_groups"][0]["params"] == [0, 1, 2, 3]
    resumed = [nn.Parameter(p.data.copy()) for p in ip]
    opt2 = cls(resumed, **kw)
    opt2.load_state_dict(sd)
    for s in range(10, 20):
        for p, q, g in zip(resumed, ref, grads[s]):
            p.grad, q.grad = g.copy(), g.copy()
        opt2.step()
        ropt.step()
    for p, q in zip(resumed, ref):
        np.testing.assert_array_equal(p.data, q.data)
    with pytest.raises(ValueError, match="parameter groups"):
        opt2.load_state_dict({"state": {}, "param_groups": []})


def test_optimizer_state_loads_from_torch_layout(rng):
    ip, tp = _params(rng)
    topt = torch.optim.AdamW(tp, lr=1e-2)
    for s in range(3):
        for q, g in zip(tp, _grads(rng, s)):
            q.grad = torch.tensor(g)
        topt.step()
    tsd = topt.state_dict()
    sd = {"state": {k: {n: (v.numpy() if hasattr(v, "numpy") else v) for n, v in st.items()}
                    for k, st in tsd["state"].items()},
          "param_groups": tsd["param_groups"]}
    for p, q in zip(ip, tp):
        p.data[...] = q.detach().numpy()
    opt = irf.optim.AdamW(ip, lr=1e-2)
    opt.load_state_dict(sd)
    g = _grads(rng, 4)
    for p, q, gg in zip(ip, tp, g):
        p.grad, q.grad = gg, torch.tensor(gg)
    opt.step()
    topt.step()
    for p, q in zip(ip, tp):
        np.testing.assert_allclose(p.data, q.detach().numpy(), rtol=1e-6, atol=1e-6)


def test_zero_grad_and_grad_accumulation_into_flat_buffer(rng):
    m = nn.Linear(4, 3)
    opt = irf.optim.SGD(m.parameters(), lr=0.1)
    x = irf.tensor(rng.standard_normal((5, 4)))
    m(x).sum().backward()
    g1 = m.weight.grad.copy()
    opt.step()   # moves grads into the flat buffer (views)
    m(x).sum().backward()   # accumulates in place into the flat buffer
    np.testing.assert_allclose(m.weight.grad, 2 * g1, rtol=1e-6)
    opt.zero_grad(set_to_none=False)
    assert np.all(m.weight.grad == 0)
    opt.zero_grad()
    assert m.weight.grad is None


def test_clip_grad_norm_matches_torch(rng):
    ip, tp = _params(rng)
    for p, q, g in zip(ip, tp, _grads(rng, 0)):
        p.grad, q.grad = g * 3, torch.tensor(g * 3)
    total = nn.utils.clip_grad_norm_(ip, 1.0)
    ttotal = torch.nn.utils.clip_grad_norm_(tp, 1.0)
    assert abs(total - float(ttotal)) < 1e-4 * float(ttotal)
    for p, q in zip(ip, tp):
        np.testing.assert_allclose(p.grad, q.grad.numpy(), rtol=1e-5, atol=1e-7)
    # below the limit: untouched
    before = ip[0].grad.copy()
    assert nn.utils.clip_grad_norm_(ip, 1e6) == pytest.approx(1.0, rel=1e-4)
    np.testing.assert_array_equal(ip[0].grad, before)


def test_cosine_with_warmup():
    f = irf.optim.lr_schedule.cosine_with_warmup
    kw = dict(max_lr=1.0, warmup_steps=10, max_steps=110, min_lr=0.1)
    assert f(0, **kw) == pytest.approx(1 / 11)
    assert f(9, **kw) == pytest.approx(10 / 11)
    assert f(10, **kw) == pytest.approx(1.0)
    assert f(60, **kw) == pytest.approx(0.55)
    assert f(110, **kw) == pytest.approx(0.1) and f(500, **kw) == 0.1
    lrs = [f(s, **kw) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    ip, _ = _params(np.random.default_rng(0))
    opt = irf.optim.AdamW(ip, lr=2.0)
    sched = irf.optim.lr_schedule.CosineWithWarmup(opt, warmup_steps=10, max_steps=110, min_lr=0.2)
    for _ in range(60):
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(1.1)
