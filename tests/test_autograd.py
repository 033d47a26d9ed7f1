"""Autograd engine: values and gradients of composite graphs against PyTorch float64."""
from __future__ import annotations

import numpy as np
import pytest

import ironformer as irf

torch = pytest.importorskip("torch")


def _pair(rng, shape, positive=False):
    a = np.asarray(rng.standard_normal(shape), dtype=np.float32)
    if positive:
        a = np.asarray(np.abs(a) + 0.5, dtype=np.float32)
    return irf.tensor(a, requires_grad=True), torch.tensor(a.astype(np.float64), requires_grad=True)


def close(got, want, rtol=2e-5, atol=2e-6):
    want = want.detach().numpy() if hasattr(want, "detach") else np.asarray(want)
    got = got.data if isinstance(got, irf.Tensor) else np.asarray(got)
    assert got.shape == want.shape, f"shape {got.shape} != {want.shape}"
    scale = max(float(np.max(np.abs(want))) if want.size else 1.0, 1e-30)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol * scale)


BROADCAST = [((3, 4), (3, 4)), ((3, 4), (4,)), ((5, 1, 7), (6, 1)), ((2, 3, 4, 5), (3, 1, 5)), ((1,), (2, 3)),
             ((), (4, 3)), ((7, 1), (1, 9))]


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
@pytest.mark.parametrize("sa,sb", BROADCAST)
def test_binary_broadcasting_gradients(rng, op, sa, sb):
    a, ta = _pair(rng, sa)
    b, tb = _pair(rng, sb, positive=op == "div")
    fn = {"add": lambda x, y: x + y, "sub": lambda x, y: x - y, "mul": lambda x, y: x * y,
          "div": lambda x, y: x / y}[op]
    out, tout = fn(a, b), fn(ta, tb)
    close(out, tout)
    g = rng.standard_normal(tout.shape)
    out.backward(g.astype(np.float32))
    tout.backward(torch.tensor(g))
    assert a.grad.shape == sa and b.grad.shape == sb
    close(a.grad, ta.grad)
    close(b.grad, tb.grad)


def test_scalar_operands_and_unary(rng):
    x, tx = _pair(rng, (4, 5), positive=True)
    exprs = [
        lambda v: 2.0 * v + 1.0, lambda v: 3.0 - v, lambda v: v / 4.0, lambda v: 2.0 / v, lambda v: -v,
        lambda v: v ** 2, lambda v: v ** 0.5, lambda v: v ** -1.5, lambda v: v.exp(), lambda v: v.log(),
        lambda v: v.sqrt(), lambda v: (v * v).sum(), lambda v: v.mean(), lambda v: v.sum(dim=1),
        lambda v: v.mean(dim=0, keepdim=True), lambda v: v.sum(dim=(0, 1), keepdim=True),
    ]
    for i, f in enumerate(exprs):
        x.grad = None
        tx.grad = None
        out, tout = f(x), f(tx)
        close(out, tout, rtol=1e-5)
        g = rng.standard_normal(tout.shape)
        out.backward(np.asarray(g, dtype=np.float32))
        tout.backward(torch.tensor(g))
        close(x.grad, tx.grad, rtol=1e-5)


def test_shape_ops_and_indexing(rng):
    x, tx = _pair(rng, (2, 3, 4, 5))
    w, tw = _pair(rng, (5, 6))
    cases = [
        lambda v, u: v.reshape(6, 20).transpose(0, 1) @ v.reshape(6, 20),
        lambda v, u: (v.permute(0, 2, 1, 3) @ u).sum(dim=-1),
        lambda v, u: v.view(2, 3, 20)[:, 1:, ::3],
        lambda v, u: v[1, :, 2:4] * v[0, :, 1:3],
        lambda v, u: v[0, 1, 2, 3] * 2.0,
        lambda v, u: v.split(2, dim=2)[1] + v.split([1, 3], dim=2)[1][:, :, :2],
        lambda v, u: (v @ u).transpose(1, 2).reshape(2, 4, 18),
        lambda v, u: v.transpose(2, 3) @ v,                          # batched 4-D matmul
        lambda v, u: u.T @ v.reshape(-1, 5).T,
    ]
    for f in cases:
        x.grad = w.grad = tx.grad = tw.grad = None
        out, tout = f(x, w), f(tx, tw)
        close(out, tout)
        g = rng.standard_normal(tout.shape)
        out.backward(np.asarray(g, dtype=np.float32))
        tout.backward(torch.tensor(g))
        close(x.grad, tx.grad)
        if tw.grad is not None:
            close(w.grad, tw.grad)
        else:
            assert w.grad is None


def test_two_three_two_sigmoid_network(rng):
    """sigma(W2 sigma(W1 x + b1) + b2), a 2-3-2 network: values and every gradient."""
    x = rng.standard_normal((5, 2)).astype(np.float32)
    params = {k: rng.standard_normal(s).astype(np.float32) for k, s in
              [("W1", (3, 2)), ("b1", (3,)), ("W2", (2, 3)), ("b2", (2,))]}
    ip = {k: irf.tensor(v, requires_grad=True) for k, v in params.items()}
    tp = {k: torch.tensor(v.astype(np.float64), requires_grad=True) for k, v in params.items()}
    target = rng.standard_normal((5, 2)).astype(np.float32)

    def net(F, p, xx, tt):
        h = F.sigmoid(F.linear(xx, p["W1"], p["b1"]))
        y = F.sigmoid(h @ p["W2"].T + p["b2"])
        return y, ((y - tt) ** 2).mean()

    y, loss = net(irf.nn.functional, ip, irf.tensor(x), irf.tensor(target))
    ty, tloss = net(torch.nn.functional, tp, torch.tensor(x, dtype=torch.float64), torch.tensor(target,
                                                                                                  dtype=torch.float64))
    close(y, ty)
    close(loss, tloss)
    loss.backward()
    tloss.backward()
    for k in params:
        close(ip[k].grad, tp[k].grad)


def test_second_backward_raises_unless_retained(rng):
    x = irf.tensor(rng.standard_normal((3, 3)), requires_grad=True)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        y.backward()
    z = (x.exp() * x).sum()
    x.grad = None
    z.backward(retain_graph=True)
    g1 = x.grad.copy()
    z.backward()   # allowed: retained, and gradients accumulate
    np.testing.assert_allclose(x.grad, 2 * g1, rtol=1e-6)


def test_saved_arrays_freed_after_backward(rng):
    x = irf.tensor(rng.standard_normal((4, 4)), requires_grad=True)
    h = x.exp()
    y = (h * x).sum()
    node = h._node
    assert node.saved
    y.backward()
    assert node.saved == () and node.inputs == ()


def test_gradient_accumulation_and_zero_grad(rng):
    x, tx = _pair(rng, (4, 3))
    for _ in range(3):
        (x * x).sum().backward()
        (tx * tx).sum().backward()
    close(x.grad, tx.grad)
    x.zero_grad()
    assert x.grad is None
    # a leaf used twice in one graph, and a gradient that is handed to two leaves (a + b)
    a, b = _pair(rng, (3,))[0], _pair(rng, (3,))[0]
    (a + b).backward(np.ones(3, np.float32))
    assert a.grad is not b.grad
    a.grad[0] = 5.0
    assert b.grad[0] == 1.0


def test_no_grad_and_detach(rng):
    x = irf.tensor(rng.standard_normal(3), requires_grad=True)
    with irf.no_grad():
        y = x * 2.0
    assert not y.requires_grad and y.is_leaf
    z = x.detach() * 2.0
    assert not z.requires_grad
    assert (x * 2.0).requires_grad


def test_backward_argument_checks(rng):
    x = irf.tensor(rng.standard_normal((2, 2)), requires_grad=True)
    with pytest.raises(RuntimeError, match="only for scalar outputs"):
        (x * 2.0).backward()
    with pytest.raises(RuntimeError, match=r"grad has shape \(3,\), expected \(2, 2\)"):
        (x * 2.0).backward(np.ones(3, np.float32))
    with pytest.raises(RuntimeError, match="does not require grad"):
        irf.tensor([1.0]).backward()
    with pytest.raises(TypeError, match="indexing supports"):
        x[np.array([0, 1])]
    with pytest.raises(ValueError, match="item"):
        x.item()


def test_tensor_basics():
    t = irf.tensor([[1, 2], [3, 4]])
    assert t.shape == (2, 2) and t.ndim == 2 and t.data.dtype == np.float32
    assert t.numpy() is t.data and t.grad is None and not t.requires_grad
    t.data[0, 0] = 7.0
    assert t.numpy()[0, 0] == 7.0
    assert irf.tensor(3.5).item() == 3.5


def test_numpy_left_operands_cat_and_misc_shapes(rng):
    x, tx = _pair(rng, (3, 4))
    y, ty = _pair(rng, (2, 4))
    c = np.asarray(rng.standard_normal((3, 4)), dtype=np.float32)
    cases = [
        (lambda v, u: c * v + c, lambda v, u: torch.tensor(c, dtype=torch.float64) * v + torch.tensor(c,
                                                                                                      dtype=torch.float64)),
        (lambda v, u: irf.cat([v, u, v * 2.0], dim=0), lambda v, u: torch.cat([v, u, v * 2.0], dim=0)),
        (lambda v, u: v.unsqueeze(1).squeeze(1).chunk(2, dim=1)[1], lambda v, u: v.unsqueeze(1).squeeze(1).chunk(2, dim=1)[1]),
        (lambda v, u: irf.nn.functional.linear(v[0], u), lambda v, u: torch.nn.functional.linear(v[0], u)),
    ]
    for f, tf in cases:
        x.grad = y.grad = tx.grad = ty.grad = None
        out, tout = f(x, y), tf(tx, ty)
        assert isinstance(out, irf.Tensor)
        close(out, tout)
        g = rng.standard_normal(tout.shape)
        out.backward(np.asarray(g, dtype=np.float32))
        tout.backward(torch.tensor(g))
        close(x.grad, tx.grad)
        if ty.grad is not None:
            close(y.grad, ty.grad)


def test_leaf_gradient_ownership_rule():
    # a leaf adopts a gradient array without copying only when nothing else can see its memory;
    # kernel outputs are 64-byte aligned views of a private buffer and count as owned
    from ironformer import ops
    from ironformer.autograd import _owns_memory
    a = ops.gelu_forward(np.ones((64, 64), np.float32))
    assert a.ctypes.data % 64 == 0 and not a.flags.owndata and _owns_memory(a)
    v = a[1:]
    assert not _owns_memory(v) and not _owns_memory(a)   # two arrays share the buffer now
    del v
    assert _owns_memory(a)
    x = np.ones(10, np.float32)
    assert _owns_memory(x) and not _owns_memory(x[2:])
