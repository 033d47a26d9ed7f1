"""loss_optim kernels: cross-entropy, embedding, AdamW / SGD, sum_squares / scale_, dropout.

References: PyTorch float64 (F.cross_entropy, F.embedding with autograd) through the OpInfo
runner, torch.optim.AdamW / SGD in float32 for the optimizer steps, float64 numpy for the sums.
Every test that takes the ``isa`` fixture runs under each ISA this CPU supports.
"""
from __future__ import annotations

import numpy as np
import pytest

from ironformer import _C
from ironformer import ops
from opinfo import OpInfo, Sample, check_errors, check_forward_backward

torch = pytest.importorskip("torch", reason="PyTorch (the reference) is not installed")
F = torch.nn.functional


# ---------------------------------------------------------------------------------------------
# cross-entropy

def _ce_targets(rng, n, v, n_ignored, ignore_index=-100):
    t = rng.integers(0, v, n).astype(np.int64)
    if n_ignored:
        t[rng.choice(n, size=min(n_ignored, n), replace=False)] = ignore_index
    return t


def _ce_samples(rng):
    out = []
    for n, v in [(1, 2), (7, 2), (77, 2), (1, 311), (7, 311), (77, 311), (1, 50257), (3, 50257),
                 (5, 17), (9, 8), (4, 1)]:
        logits = (rng.standard_normal((n, v)) * 3.0).astype(np.float32)
        n_ign = n // 4 if n > 1 else 0
        out.append(Sample({"logits": logits, "targets": _ce_targets(rng, n, v, n_ign)}, {"ignore_index": -100},
                          name=f"N{n}_V{v}"))
    # another ignore_index, and int32 targets
    logits = rng.standard_normal((13, 33)).astype(np.float32)
    t = _ce_targets(rng, 13, 33, 4, ignore_index=5).astype(np.int32)
    out.append(Sample({"logits": logits, "targets": t}, {"ignore_index": 5}, name="ignore5_int32"))
    # large logits: exp(x) overflows float32 without the max shift (kept near 100 so the
    # float32 rounding of the saved lse, half an ulp of ~115 = 4e-6, stays inside bwd_tol)
    logits = (rng.standard_normal((6, 1000)) * 5.0 + 100.0).astype(np.float32)
    out.append(Sample({"logits": logits, "targets": _ce_targets(rng, 6, 1000, 1)}, {"ignore_index": -100},
                      name="large"))
    return out


def _ce_forward(s):
    loss, lse = ops.cross_entropy_forward(s.inputs["logits"], s.inputs["targets"], **s.kwargs)
    return (np.array(loss, np.float32), lse), lse


def _ce_backward(s, lse, douts):
    d = ops.cross_entropy_backward(s.inputs["logits"], s.inputs["targets"], lse, dloss=float(douts[0]), **s.kwargs)
    return {"logits": d}


def _ce_reference(t, s):
    x, tg = t["logits"], t["targets"].long()
    loss = F.cross_entropy(x, tg, ignore_index=s.kwargs["ignore_index"])
    return loss, torch.logsumexp(x, dim=1).detach()


def _ce_errors():
    x = np.zeros((3, 5), np.float32)
    return [
        (lambda: ops.cross_entropy_forward(x, np.array([0, 5, 1])), IndexError,
         r"cross_entropy_forward: target 5 \(row 1\) is out of range for V=5"),
        (lambda: ops.cross_entropy_forward(x, np.array([0, -1, 1])), IndexError, r"target -1 .*V=5"),
        (lambda: ops.cross_entropy_backward(x, np.array([7, 0, 1]), np.zeros(3, np.float32)), IndexError,
         r"cross_entropy_backward: target 7 .*V=5"),
        (lambda: ops.cross_entropy_forward(x, np.array([0, 1, -100]), ignore_index=3), IndexError,
         r"target -100 .*ignore_index=3"),
        (lambda: ops.cross_entropy_forward(x.astype(np.float64), np.zeros(3, np.int64)), TypeError,
         "cross_entropy_forward: logits must be float32, got float64"),
        (lambda: ops.cross_entropy_forward(x, np.zeros(3, np.float32)), TypeError,
         "targets must have an integer dtype, got float32"),
        (lambda: ops.cross_entropy_forward(x, np.zeros(4, np.int64)), ValueError,
         r"targets must have shape \(3,\) to match logits \(3, 5\), got \(4,\)"),
        (lambda: ops.cross_entropy_forward(np.zeros(5, np.float32), np.zeros(5, np.int64)), ValueError,
         r"logits must be 2-D \(N, V\), got shape \(5,\)"),
        (lambda: ops.cross_entropy_backward(x, np.zeros(3, np.int64), np.zeros(4, np.float32)), ValueError,
         r"lse must have shape \(3,\), got \(4,\)"),
        (lambda: ops.cross_entropy_backward(x, np.zeros(3, np.int64), np.zeros(3)), TypeError,
         "lse must be float32, got float64"),
    ]


CROSS_ENTROPY = OpInfo(
    name="cross_entropy", samples=_ce_samples, forward=_ce_forward, backward=_ce_backward,
    reference=_ce_reference, grad_inputs=("logits",),
    fwd_tol=(2e-6, 1e-6),    # loss and lse: float32 logsumexp, ~1e-7 relative rounding
    bwd_tol=(1e-5, 1e-6),    # dlogits: vexp 2e-7 relative + float32 rounding
    error_inputs=_ce_errors)


# ---------------------------------------------------------------------------------------------
# embedding

def _emb_samples(rng):
    out = []
    for ids_shape, v, c in [((1,), 311, 1), ((5,), 311, 7), ((77,), 311, 64), ((3, 17), 311, 33),
                            ((12, 64), 65, 128), ((2, 3, 5), 7, 768), ((0,), 5, 4)]:
        ids = rng.integers(0, v, ids_shape)
        if ids.size > 3:
            ids.flat[1] = ids.flat[0] = ids.flat[-1]      # repeated ids
        out.append(Sample({"weight": rng.standard_normal((v, c)).astype(np.float32), "ids": ids},
                          name=f"ids{ids_shape}_V{v}_C{c}"))
    return out


def _emb_forward(s):
    return (ops.embedding_forward(s.inputs["ids"], s.inputs["weight"]),), None


def _emb_backward(s, state, douts):
    dw = np.zeros_like(s.inputs["weight"])
    r = ops.embedding_backward(douts[0], s.inputs["ids"], dw)
    assert r is dw
    return {"weight": dw}


def _emb_reference(t, s):
    return (F.embedding(t["ids"].long(), t["weight"]),)


def _emb_errors():
    w = np.zeros((10, 4), np.float32)
    return [
        (lambda: ops.embedding_forward(np.array([1, 10]), w), IndexError,
         r"embedding_forward: id 10 is out of range for a vocabulary of size 10"),
        (lambda: ops.embedding_forward(np.array([[-1]]), w), IndexError, r"id -1 is out of range .* size 10"),
        (lambda: ops.embedding_backward(np.zeros((2, 4), np.float32), np.array([3, 12]), w.copy()), IndexError,
         r"embedding_backward: id 12 is out of range for a vocabulary of size 10"),
        (lambda: ops.embedding_forward(np.array([1.0]), w), TypeError, "ids must have an integer dtype, got float64"),
        (lambda: ops.embedding_forward(np.array([1]), w.astype(np.float64)), TypeError,
         "weight must be float32, got float64"),
        (lambda: ops.embedding_forward(np.array([1]), np.zeros(4, np.float32)), ValueError,
         r"weight must be 2-D \(V, C\), got shape \(4,\)"),
        (lambda: ops.embedding_backward(np.zeros((3, 4), np.float32), np.array([1, 2]), w.copy()), ValueError,
         r"dout must have shape \(2, 4\) \(ids.shape \+ \(C,\)\), got \(3, 4\)"),
        (lambda: ops.embedding_backward(np.zeros((2, 4), np.float32), np.array([1, 2]), np.zeros((4, 10), np.float32).T),
         ValueError, "dweight must be C-contiguous"),
        (lambda: ops.embedding_backward(np.zeros((2, 4), np.float32), np.array([1, 2]), np.zeros((10, 4))),
         TypeError, "dweight must be float32, got float64"),
    ]


EMBEDDING = OpInfo(
    name="embedding", samples=_emb_samples, forward=_emb_forward, backward=_emb_backward,
    reference=_emb_reference, grad_inputs=("weight",),
    fwd_tol=(0.0, 0.0),      # a copy: exact
    bwd_tol=(1e-6, 1e-6),    # float32 sums of a few repeated rows
    error_inputs=_emb_errors)

OPS = [CROSS_ENTROPY, EMBEDDING]


@pytest.mark.parametrize("op", OPS, ids=repr)
def test_forward_backward(op, isa, rng):
    check_forward_backward(op, rng)


@pytest.mark.parametrize("op", OPS, ids=repr)
def test_errors(op):
    check_errors(op)


def test_cross_entropy_all_ignored_is_nan_with_zero_grads(isa, rng):
    x = rng.standard_normal((4, 9)).astype(np.float32)
    t = np.full(4, -100)
    loss, lse = ops.cross_entropy_forward(x, t)
    want = F.cross_entropy(torch.tensor(x, dtype=torch.float64), torch.tensor(t), ignore_index=-100)
    assert np.isnan(loss) and torch.isnan(want)
    np.testing.assert_allclose(lse, torch.logsumexp(torch.tensor(x, dtype=torch.float64), 1).numpy(), rtol=1e-6)
    d = ops.cross_entropy_backward(x, t, lse)
    assert d.shape == x.shape and np.all(d == 0)
    # empty batch: NaN too, empty results
    loss0, lse0 = ops.cross_entropy_forward(np.zeros((0, 5), np.float32), np.zeros(0, np.int64))
    assert np.isnan(loss0) and lse0.shape == (0,)


def test_cross_entropy_loss_is_double_mean(isa, rng):
    # loss is a Python float computed in double from float32 per-row terms: check to 1e-6 relative
    x = (rng.standard_normal((77, 311)) * 2).astype(np.float32)
    t = _ce_targets(rng, 77, 311, 10)
    loss, _ = ops.cross_entropy_forward(x, t)
    assert isinstance(loss, float)
    want = F.cross_entropy(torch.tensor(x, dtype=torch.float64), torch.tensor(t)).item()
    assert abs(loss - want) <= 1e-6 * abs(want)


def test_cross_entropy_extreme_rows(isa):
    # -inf logits (masked classes) are fine; a NaN logit gives NaN like PyTorch
    x = np.array([[0.0, -np.inf, 1.0], [np.nan, 0.0, 0.0]], np.float32)
    loss, lse = ops.cross_entropy_forward(x[:1], np.array([0]))
    want = F.cross_entropy(torch.tensor(x[:1], dtype=torch.float64), torch.tensor([0])).item()
    assert abs(loss - want) < 1e-6
    d = ops.cross_entropy_backward(x[:1], np.array([0]), lse)
    assert d[0, 1] == 0 and np.isfinite(d).all()
    loss, lse = ops.cross_entropy_forward(x, np.array([0, 1]))
    assert np.isnan(loss) and np.isnan(lse[1])


# (84, 50257) is above the streaming-store threshold of the backward (4M logits)
@pytest.mark.parametrize("n,v", [(5, 50257), (64, 768), (3, 7), (84, 50257)])
def test_cross_entropy_reference_twin(isa, rng, n, v):
    x = (rng.standard_normal((n, v)) * 4).astype(np.float32)
    t = _ce_targets(rng, n, v, 1)
    loss, lse = _C.cross_entropy_forward(x, t, -100, False)
    loss_r, lse_r = _C.cross_entropy_forward(x, t, -100, True)
    assert abs(loss - loss_r) <= 1e-6 * abs(loss_r)
    np.testing.assert_allclose(lse, lse_r, rtol=1e-6, atol=0)
    d = _C.cross_entropy_backward(x, t, lse, 0.7, -100, False)
    d_r = _C.cross_entropy_backward(x, t, lse, 0.7, -100, True)
    # target entries (p - 1) * scale are formed as p * scale - scale: atol ~ 1e-6 * scale
    np.testing.assert_allclose(d, d_r, rtol=2e-6, atol=1e-6 * 0.7 / n)


def test_embedding_accumulates_into_prefilled(isa, rng):
    v, c = 311, 40
    ids = rng.integers(0, v, (4, 50)).astype(np.int32)
    ids[0, :10] = 7                                        # many repeats of one id
    dout = rng.standard_normal((4, 50, c)).astype(np.float32)
    dw0 = rng.standard_normal((v, c)).astype(np.float32)
    dw = dw0.copy()
    ops.embedding_backward(dout, ids, dw)
    want = dw0.astype(np.float64)
    np.add.at(want, ids.ravel(), dout.reshape(-1, c).astype(np.float64))
    np.testing.assert_allclose(dw, want, rtol=1e-6, atol=1e-5)
    ref = dw0.copy()
    _C.embedding_backward(dout, ids, ref, True)           # scalar twin: same order of additions
    assert np.array_equal(dw, ref)
    assert np.array_equal(ops.embedding_forward(ids, dw0), _C.embedding_forward(ids, dw0, True))


# ---------------------------------------------------------------------------------------------
# thread-count invariance (bitwise)

def test_threads_bitwise_identical(rng, threads):
    x = (rng.standard_normal((37, 5003)) * 3).astype(np.float32)
    t = _ce_targets(rng, 37, 5003, 5)
    ids = rng.integers(0, 50, 3000)
    dout = rng.standard_normal((3000, 200)).astype(np.float32)
    big = rng.standard_normal(300_001).astype(np.float32)
    g = rng.standard_normal(300_001).astype(np.float32)

    def run():
        loss, lse = ops.cross_entropy_forward(x, t)
        d = ops.cross_entropy_backward(x, t, lse, dloss=0.5)
        dw = np.zeros((50, 200), np.float32)
        ops.embedding_backward(dout, ids, dw)
        p, m, v = big.copy(), np.zeros_like(big), np.zeros_like(big)
        for step in (1, 2):
            ops.adamw_step(p, g, m, v, step=step, lr=1e-3)
        ss = ops.sum_squares([big, g])
        dr = ops.dropout_forward(big, 0.1, 42, offset=3)
        return loss, lse, d, dw, p, ss, dr

    threads(1)
    base = run()
    for n in (2, 3):
        threads(n)
        for a, b in zip(run(), base):
            assert np.array_equal(a, b), f"{n} threads differ from 1"


# ---------------------------------------------------------------------------------------------
# optimizers

def _torch_params(arrays):
    return [torch.nn.Parameter(torch.tensor(a.copy())) for a in arrays]


@pytest.mark.parametrize("wd,amsgrad_free_hp", [(0.01, (0.9, 0.999, 1e-8)), (0.0, (0.8, 0.99, 1e-6)),
                                                 (0.1, (0.95, 0.9999, 1e-8))])
def test_adamw_matches_torch(isa, rng, wd, amsgrad_free_hp):
    b1, b2, eps = amsgrad_free_hp
    lr = 3e-3
    shapes = [(1,), (7,), (33, 17), (1000,), (4097,)]
    params = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    tp = _torch_params(params)
    opt = torch.optim.AdamW(tp, lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd)
    mine = [(p.copy(), np.zeros_like(p), np.zeros_like(p)) for p in params]
    for step in range(1, 21):
        grads = [(rng.standard_normal(s) * (0.1 + step % 3)).astype(np.float32) for s in shapes]
        for p_t, g in zip(tp, grads):
            p_t.grad = torch.tensor(g)
        opt.step()
        for (p, m, v), g in zip(mine, grads):
            ops.adamw_step(p, g, m, v, step=step, lr=lr, beta1=b1, beta2=b2, eps=eps, weight_decay=wd)
    # parameters are O(1): absolute 1e-6 after 20 float32 steps (both sides round in float32)
    for (p, m, v), p_t in zip(mine, tp):
        st = opt.state[p_t]
        np.testing.assert_allclose(p, p_t.detach().numpy(), rtol=0, atol=1e-6)
        np.testing.assert_allclose(m, st["exp_avg"].numpy(), rtol=1e-6, atol=1e-6)   # m = O(grad) = O(1)
        np.testing.assert_allclose(v, st["exp_avg_sq"].numpy(), rtol=1e-6, atol=1e-9)


def test_adamw_matches_torch_fused(isa, rng):
    p0 = rng.standard_normal(10007).astype(np.float32)
    tp = _torch_params([p0])
    opt = torch.optim.AdamW(tp, lr=1e-2, weight_decay=0.05, fused=True)
    p, m, v = p0.copy(), np.zeros_like(p0), np.zeros_like(p0)
    for step in range(1, 21):
        g = rng.standard_normal(10007).astype(np.float32)
        tp[0].grad = torch.tensor(g)
        opt.step()
        ops.adamw_step(p, g, m, v, step=step, lr=1e-2, weight_decay=0.05)
    np.testing.assert_allclose(p, tp[0].detach().numpy(), rtol=0, atol=1e-6)


def test_adamw_reference_twin(isa, rng):
    n = 1237
    p, g = rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
    m, v = (rng.standard_normal(n) * 0.1).astype(np.float32), (rng.random(n) * 0.1).astype(np.float32)
    a = [x.copy() for x in (p, m, v)]
    b = [x.copy() for x in (p, m, v)]
    _C.adamw_step(a[0], g, a[1], a[2], 5, 1e-3, 0.9, 0.999, 1e-8, 0.01, False)
    _C.adamw_step(b[0], g, b[1], b[2], 5, 1e-3, 0.9, 0.999, 1e-8, 0.01, True)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("momentum,dampening,wd,nesterov", [
    (0.0, 0.0, 0.0, False), (0.0, 0.0, 1e-2, False), (0.9, 0.0, 0.0, False), (0.9, 0.1, 1e-3, False),
    (0.9, 0.0, 1e-2, True), (0.5, 0.0, 0.0, True)])
def test_sgd_matches_torch(isa, rng, momentum, dampening, wd, nesterov):
    lr = 0.05
    shapes = [(1,), (9,), (31, 5), (2049,)]
    params = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    tp = _torch_params(params)
    opt = torch.optim.SGD(tp, lr=lr, momentum=momentum, dampening=dampening, weight_decay=wd, nesterov=nesterov)
    mine = [(p.copy(), np.zeros_like(p) if momentum else None) for p in params]
    for step in range(20):
        grads = [rng.standard_normal(s).astype(np.float32) for s in shapes]
        for p_t, g in zip(tp, grads):
            p_t.grad = torch.tensor(g)
        opt.step()
        for (p, buf), g in zip(mine, grads):
            ops.sgd_step(p, g, buf, lr=lr, momentum=momentum, dampening=dampening, weight_decay=wd,
                         nesterov=nesterov, first_step=step == 0)
    # parameters are O(1): absolute 1e-6 after 20 steps
    for (p, buf), p_t in zip(mine, tp):
        np.testing.assert_allclose(p, p_t.detach().numpy(), rtol=0, atol=1e-6)
        if momentum:
            np.testing.assert_allclose(buf, opt.state[p_t]["momentum_buffer"].numpy(), rtol=0, atol=1e-6)


def test_sgd_reference_twin(isa, rng):
    n = 999
    p, g, b = (rng.standard_normal(n).astype(np.float32) for _ in range(3))
    a1, a2 = (p.copy(), b.copy()), (p.copy(), b.copy())
    _C.sgd_step(a1[0], g, a1[1], 0.1, 0.9, 0.0, 0.01, True, False, False)
    _C.sgd_step(a2[0], g, a2[1], 0.1, 0.9, 0.0, 0.01, True, False, True)
    for x, y in zip(a1, a2):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("sizes", [[1], [7, 4096, 4097], [100_003, 3, 50_000], [0, 5]])
def test_sum_squares_and_scale(isa, rng, sizes):
    arrays = [(rng.standard_normal(n) * 10).astype(np.float32) for n in sizes]
    arrays.append(rng.standard_normal((13, 17)).astype(np.float32)[:, ::2])   # non-contiguous is fine
    want = sum(float(np.sum(a.astype(np.float64) ** 2)) for a in arrays)
    got = ops.sum_squares(arrays)
    assert abs(got - want) <= 1e-7 * want       # float32 squares summed 4 per lane, then float64
    assert abs(_C.sum_squares(arrays, True) - want) <= 1e-12 * want
    assert ops.sum_squares(tuple(arrays)) == got
    assert ops.sum_squares(a for a in arrays) == got
    # one array is one array (its whole sum, in one kernel call), of any rank
    two_d = arrays[-1]
    assert ops.sum_squares(two_d) == ops.sum_squares([two_d])
    assert abs(ops.sum_squares(two_d) - float(np.sum(two_d.astype(np.float64) ** 2))) <= 1e-7 * want
    assert ops.sum_squares(arrays[0]) == ops.sum_squares([arrays[0]])
    x = arrays[0].copy()
    r = ops.scale_(x, 0.37)
    assert r is x
    np.testing.assert_array_equal(x, arrays[0] * np.float32(0.37))


def test_optim_errors():
    p = np.zeros(10, np.float32)
    z = lambda: np.zeros(10, np.float32)  # noqa: E731
    with pytest.raises(ValueError, match=r"adamw_step: grad must have the shape of param \(10,\), got \(9,\)"):
        ops.adamw_step(p, np.zeros(9, np.float32), z(), z(), step=1, lr=1e-3)
    with pytest.raises(ValueError, match=r"exp_avg_sq must have the shape of param"):
        ops.adamw_step(p, z(), z(), np.zeros((2, 5), np.float32), step=1, lr=1e-3)
    with pytest.raises(TypeError, match="adamw_step: exp_avg must be float32, got float64"):
        ops.adamw_step(p, z(), np.zeros(10), z(), step=1, lr=1e-3)
    with pytest.raises(ValueError, match="adamw_step: param must be C-contiguous"):
        ops.adamw_step(np.zeros(20, np.float32)[::2], z(), z(), z(), step=1, lr=1e-3)
    with pytest.raises(ValueError, match="step must be >= 1"):
        ops.adamw_step(p, z(), z(), z(), step=0, lr=1e-3)
    with pytest.raises(ValueError, match="distinct arrays"):
        ops.adamw_step(p, z(), p, z(), step=1, lr=1e-3)
    with pytest.raises(ValueError, match="beta2 must be in"):
        ops.adamw_step(p, z(), z(), z(), step=1, lr=1e-3, beta2=1.0)
    with pytest.raises(ValueError, match="momentum_buf is required when momentum != 0"):
        ops.sgd_step(p, z(), None, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="nesterov momentum requires momentum > 0 and dampening == 0"):
        ops.sgd_step(p, z(), z(), lr=0.1, momentum=0.9, dampening=0.1, nesterov=True)
    with pytest.raises(ValueError, match=r"sgd_step: momentum_buf must have the shape of param"):
        ops.sgd_step(p, z(), np.zeros(3, np.float32), lr=0.1, momentum=0.9)
    with pytest.raises(TypeError, match=r"sum_squares: arrays must be a float32 numpy array or an iterable of them, got int"):
        ops.sum_squares(3)
    with pytest.raises(TypeError, match=r"sum_squares: arrays\[1\] must be float32, got float64"):
        ops.sum_squares([z(), np.zeros(3)])
    with pytest.raises(TypeError, match=r"sum_squares: arrays\[0\] must be a numpy.ndarray"):
        ops.sum_squares([[1.0, 2.0]])
    ro = z()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="scale_: array must be writable"):
        ops.scale_(ro, 2.0)
    with pytest.raises(TypeError, match="scale_: array must be float32, got float64"):
        ops.scale_(np.zeros(3), 2.0)


# ---------------------------------------------------------------------------------------------
# dropout

@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_statistics_and_backward(isa, rng, p):
    n = 200_003
    x = rng.standard_normal(n).astype(np.float32) + 3.0          # never 0, so zeros mark drops
    y = ops.dropout_forward(x, p, 1234)
    kept = y != 0
    frac = kept.mean()
    sigma = np.sqrt(p * (1 - p) / n)
    assert abs(frac - (1 - p)) < 5 * sigma, f"kept {frac}, expected {1 - p} +- {5 * sigma}"
    np.testing.assert_array_equal(y[kept], x[kept] * np.float32(1.0 / (1.0 - p)))
    dout = rng.standard_normal(n).astype(np.float32) + 3.0
    dx = ops.dropout_backward(dout, p, 1234)
    assert np.array_equal(dx != 0, kept)                        # backward mask == forward mask
    np.testing.assert_array_equal(dx[kept], dout[kept] * np.float32(1.0 / (1.0 - p)))
    # scalar twin
    assert np.array_equal(_C.dropout_forward(x, p, 1234, 0, True), y)
    # neighbouring windows of the counter agree: offset shifts the stream
    y_off = ops.dropout_forward(x[100:], p, 1234, offset=100)
    assert np.array_equal(y_off != 0, kept[100:])


def test_dropout_seeds_offsets_shapes(isa, rng):
    x = np.ones((64, 129), np.float32)
    a = ops.dropout_forward(x, 0.5, 1)
    assert a.shape == x.shape and a.dtype == np.float32
    assert np.array_equal(a, ops.dropout_forward(x, 0.5, 1))
    b = ops.dropout_forward(x, 0.5, 2)
    c = ops.dropout_forward(x, 0.5, 1, offset=x.size)
    for other in (b, c):
        agree = ((a != 0) == (other != 0)).mean()
        assert 0.45 < agree < 0.55                                # independent masks agree ~half the time
    # huge seeds / offsets across the 2^32 boundary of the counter
    d = ops.dropout_forward(x, 0.5, -1, offset=2**32 - 100)
    assert 0.45 < (d != 0).mean() < 0.55
    assert np.array_equal(d, _C.dropout_forward(x, 0.5, 2**64 - 1, 2**32 - 100, True))
    # non-contiguous input is copied
    xs = rng.standard_normal((40, 30)).astype(np.float32)[:, ::3]
    assert np.array_equal(ops.dropout_forward(xs, 0.3, 9), ops.dropout_forward(np.ascontiguousarray(xs), 0.3, 9))


def test_dropout_edges_and_errors(isa, rng):
    x = rng.standard_normal((5, 7)).astype(np.float32)
    assert np.array_equal(ops.dropout_forward(x, 0.0, 3), x)
    assert np.array_equal(ops.dropout_backward(x, 0.0, 3), x)
    assert np.array_equal(ops.dropout_forward(x, 1.0, 3), np.zeros_like(x))
    assert np.array_equal(ops.dropout_backward(x, 1.0, 3), np.zeros_like(x))
    assert ops.dropout_forward(np.zeros((0, 3), np.float32), 0.5, 1).shape == (0, 3)
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="dropout_forward: p must be in \\[0, 1\\]"):
            ops.dropout_forward(x, bad, 1)
    with pytest.raises(ValueError, match="dropout_backward: p must be in"):
        ops.dropout_backward(x, 2.0, 1)
    with pytest.raises(TypeError, match="dropout_forward: x must be float32, got float64"):
        ops.dropout_forward(x.astype(np.float64), 0.5, 1)


def test_cross_entropy_backward_cached_buffers_never_alias_live_arrays(rng):
    # dlogits >= 16 MB come from a small cache of freed blocks: a block may only be reused once
    # no array or view refers to it
    x = rng.standard_normal((90, 50257)).astype(np.float32)
    t = rng.integers(0, 50257, 90)
    _, lse = ops.cross_entropy_forward(x, t)
    d1 = ops.cross_entropy_backward(x, t, lse, dloss=1.0)
    keep = d1.copy()
    d2 = ops.cross_entropy_backward(x, t, lse, dloss=2.0)
    assert not np.shares_memory(d1, d2)
    np.testing.assert_allclose(d2, 2 * keep, rtol=1e-6, atol=0)
    view = d1[::2]
    del d1
    d3 = ops.cross_entropy_backward(x, t, lse, dloss=3.0)
    assert not np.shares_memory(view, d3)
    assert np.array_equal(view, keep[::2])
    del d2
    d4 = ops.cross_entropy_backward(x, t, lse, dloss=4.0)            # may reuse d2's block
    assert not np.shares_memory(d4, d3) and not np.shares_memory(d4, view)
    np.testing.assert_allclose(d4, 4 * keep, rtol=1e-6, atol=0)
    np.testing.assert_allclose(d3, 3 * keep, rtol=1e-6, atol=0)
    assert d4.flags.writeable and d4.flags.c_contiguous
