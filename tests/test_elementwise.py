"""elementwise family: broadcasting binary ops, unary maps, reduce_sum (vs torch float64)."""
from __future__ import annotations

import numpy as np
import pytest

from ironformer import _C, ops
from opinfo import OpInfo, Sample, check_errors, check_forward_backward

# (a shape, b shape): same shape, scalar, row/column broadcast, leading dims, size-1, primes
BCAST = [((7,), (7,)), ((3, 5), ()), ((), (4, 9)), ((13, 17), (17,)), ((13, 17), (13, 1)),
         ((2, 3, 5, 7), (3, 1, 7)), ((1, 6, 1), (5, 1, 11)), ((1,), (1,)), ((0, 3), (3,)),
         ((4, 1, 33), (4, 29, 1)), ((3000,), (3000,)), ((77, 129), (1, 129))]


def _bsamples(rng, positive_b=False):
    out = []
    for sa, sb in BCAST:
        a = np.asarray(rng.standard_normal(sa), dtype=np.float32)
        b = np.asarray(rng.standard_normal(sb), dtype=np.float32)
        if positive_b:
            b = np.asarray(np.abs(b) + 0.5, dtype=np.float32)
        out.append(Sample({"a": a, "b": b}, name=f"{sa}x{sb}"))
    # a transposed (non-contiguous) operand
    t = rng.standard_normal((9, 14)).astype(np.float32).T
    out.append(Sample({"a": t, "b": (np.abs(rng.standard_normal(9)) + 0.5).astype(np.float32)}, name="transposed"))
    return out


def _binary_op(name, torch_fn, positive_b=False):
    def forward(s):
        return (ops.binary(name, s.inputs["a"], s.inputs["b"]),), None

    def backward(s, state, douts):
        # the autograd composition: gradients through binary ops, summed back to shapes
        (g,) = douts
        a, b = s.inputs["a"], s.inputs["b"]
        if name == "add":
            da, db = g, g
        elif name == "sub":
            da, db = g, ops.unary("neg", g)
        elif name == "mul":
            da, db = ops.binary("mul", g, b), ops.binary("mul", g, a)
        else:
            da = ops.binary("div", g, b)
            db = ops.unary("neg", ops.binary("mul", da, ops.binary("div", a, b)))
        return {"a": ops.sum_to_shape(np.ascontiguousarray(np.broadcast_to(da, g.shape)), a.shape),
                "b": ops.sum_to_shape(np.ascontiguousarray(np.broadcast_to(db, g.shape)), b.shape)}

    return OpInfo(name=f"binary_{name}", samples=lambda rng: _bsamples(rng, positive_b), forward=forward,
                  backward=backward, grad_inputs=("a", "b"),
                  reference=lambda t, s: (torch_fn(t["a"], t["b"]),), fwd_tol=(2e-7, 1e-7), bwd_tol=(2e-6, 2e-6))


def _usamples(rng, positive):
    out = []
    for shape in [(1,), (7,), (3, 5), (31, 17), (4, 1, 9), (5000,), (0, 4)]:
        x = rng.standard_normal(shape).astype(np.float32)
        if positive:
            x = (np.abs(x) + 0.1).astype(np.float32)
        out.append(Sample({"x": x}, name=str(shape)))
    out.append(Sample({"x": (np.abs(rng.standard_normal((12, 10))) + 0.1).astype(np.float32)[::2, 1::3]},
                      name="strided"))
    return out


def _unary_op(name, torch_fn, positive=False, exponent=None, tol=(1e-6, 1e-7)):
    return OpInfo(name=f"unary_{name}{'' if exponent is None else exponent}",
                  samples=lambda rng: _usamples(rng, positive),
                  forward=lambda s: ((ops.unary(name, s.inputs["x"], exponent=exponent),), None),
                  reference=lambda t, s: (torch_fn(t["x"]),), fwd_tol=tol)


def _reduce_samples(rng):
    cases = [((7,), None, False), ((7,), 0, True), ((3, 5), 1, False), ((3, 5), (0,), True),
             ((2, 3, 5, 7), (0, 2), False), ((2, 3, 5, 7), (1, 3), True), ((2, 3, 5, 7), (-1, 0, 1, 2), False),
             ((40000,), None, False), ((12, 64, 128), (0, 1), False), ((3, 4097), 1, False),
             ((5, 1, 7), 1, False), ((0, 6), 0, False), ((6, 0), 1, True), ((130, 3, 2), 0, False)]
    out = []
    for shape, axes, keep in cases:
        out.append(Sample({"x": rng.standard_normal(shape).astype(np.float32)}, {"axes": axes, "keepdim": keep},
                          name=f"{shape}/{axes}/{keep}"))
    return out


def _reduce_ref(t, s):
    axes = s.kwargs["axes"]
    x = t["x"]
    if axes is None:
        return (x.sum(),)
    return (x.sum(dim=axes, keepdim=s.kwargs["keepdim"]),)


REDUCE = OpInfo(name="reduce_sum", samples=_reduce_samples,
                forward=lambda s: ((ops.reduce_sum(s.inputs["x"], s.kwargs["axes"], s.kwargs["keepdim"]),), None),
                reference=_reduce_ref, fwd_tol=(1e-5, 2e-6))

OPS = [
    _binary_op("add", lambda a, b: a + b),
    _binary_op("sub", lambda a, b: a - b),
    _binary_op("mul", lambda a, b: a * b),
    _binary_op("div", lambda a, b: a / b, positive_b=True),
    _unary_op("neg", lambda x: -x),
    _unary_op("copy", lambda x: x + 0),
    _unary_op("exp", lambda x: x.exp(), tol=(5e-7, 1e-7)),
    _unary_op("log", lambda x: x.log(), positive=True, tol=(5e-7, 2e-7)),
    _unary_op("sqrt", lambda x: x.sqrt(), positive=True, tol=(2e-7, 1e-7)),
    _unary_op("pow", lambda x: x ** 2, exponent=2.0),
    _unary_op("pow", lambda x: x ** 0.5, positive=True, exponent=0.5),
    _unary_op("pow", lambda x: x ** -1, positive=True, exponent=-1.0),
    _unary_op("pow", lambda x: x ** 3.5, positive=True, exponent=3.5, tol=(2e-6, 1e-7)),
    REDUCE,
]


@pytest.mark.parametrize("op", OPS, ids=repr)
def test_forward_backward(isa, rng, op):
    check_forward_backward(op, rng)


def test_scalar_helpers(isa, rng):
    x = rng.standard_normal((17, 3)).astype(np.float32)
    np.testing.assert_allclose(ops.mul_scalar(x, 0.37), x.astype(np.float64) * 0.37, rtol=2e-7)
    np.testing.assert_allclose(ops.add_scalar(x, -1.5), x.astype(np.float64) - 1.5, rtol=2e-7, atol=1e-7)
    np.testing.assert_allclose(ops.affine(x, 2.0, 1.0), 2.0 * x.astype(np.float64) + 1.0, rtol=2e-7, atol=1e-7)
    np.testing.assert_allclose(ops.binary("sub", 1.0, x), 1.0 - x.astype(np.float64), rtol=2e-7, atol=1e-7)


def test_out_in_place_and_strided_out(isa, rng):
    g = rng.standard_normal((33, 65)).astype(np.float32)
    d = rng.standard_normal((33, 65)).astype(np.float32)
    want = g.astype(np.float64) + d
    r = ops.binary("add", g, d, out=g)
    assert r is g
    np.testing.assert_allclose(g, want, rtol=2e-7)
    # write into a strided slice (the backward of indexing)
    buf = np.zeros((10, 12), np.float32)
    src = rng.standard_normal((4, 5)).astype(np.float32)
    ops.copy_(buf[1:9:2, 2:12:2], src)
    ref = np.zeros((10, 12), np.float32)
    ref[1:9:2, 2:12:2] = src
    assert np.array_equal(buf, ref)
    # broadcast copy
    ops.copy_(buf, rng.standard_normal(12).astype(np.float32))
    assert np.all(buf == buf[0])


def test_sum_to_shape(isa, rng):
    g = rng.standard_normal((4, 5, 6)).astype(np.float32)
    for shape in [(6,), (5, 1), (1, 5, 6), (4, 1, 6), (), (1, 1, 1), (4, 5, 6)]:
        want = g.astype(np.float64)
        lead = g.ndim - len(shape)
        want = want.sum(axis=tuple(range(lead))) if lead else want
        for i, s in enumerate(shape):
            if s == 1:
                want = want.sum(axis=i, keepdims=True)
        got = ops.sum_to_shape(g, shape)
        assert got.shape == tuple(shape)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_sum_to_shape_bad_input(rng):
    g = rng.standard_normal((4, 1, 6)).astype(np.float32)
    with pytest.raises(TypeError, match="numpy array, got list"):
        ops.sum_to_shape([1.0, 2.0], (1,))
    with pytest.raises(ValueError, match="larger rank"):
        ops.sum_to_shape(g, (2, 4, 1, 6))
    for shape in [(4, 5, 6), (5, 6), (3, 1, 6)]:   # a dim of g neither equal to shape's nor summed to 1
        with pytest.raises(ValueError, match=r"does not broadcast from"):
            ops.sum_to_shape(g, shape)


def test_reference_twin_matches_kernel(rng):
    a = rng.standard_normal((6, 1, 37)).astype(np.float32)
    b = (np.abs(rng.standard_normal((5, 37))) + 0.5).astype(np.float32)
    for op in ("add", "sub", "mul", "div"):
        fast = _C.elementwise(op, a, b)
        slow = _C.elementwise(op, a, b, reference=True)
        np.testing.assert_allclose(fast, slow, rtol=1e-7, atol=0)
    x = np.abs(a) + 0.1
    for op, alpha, beta in [("affine", 1.7, -0.3), ("exp", 1, 0), ("log", 1, 0), ("sqrt", 1, 0), ("pow", 3.5, 0)]:
        np.testing.assert_allclose(_C.elementwise(op, x, None, None, alpha, beta),
                                   _C.elementwise(op, x, None, None, alpha, beta, True), rtol=1e-6, atol=1e-7)
    big = rng.standard_normal((3, 5000, 7)).astype(np.float32)
    for axes in [(1,), (0, 2), None]:
        np.testing.assert_allclose(_C.reduce_sum(big, axes, False), _C.reduce_sum(big, axes, False, True),
                                   rtol=1e-5, atol=1e-3)


def test_thread_count_gives_identical_results(rng, threads):
    a = rng.standard_normal((3, 70000)).astype(np.float32)
    b = rng.standard_normal((70000,)).astype(np.float32)
    x = rng.standard_normal((700, 300)).astype(np.float32)
    threads(1)
    r1 = [ops.binary("mul", a, b), ops.unary("exp", a), ops.reduce_sum(a), ops.reduce_sum(a, 1),
          ops.reduce_sum(x, 0), ops.reduce_sum(x, 1), ops.affine(a, 0.3, 0.1)]
    for t in (2, 3):
        threads(t)
        r = [ops.binary("mul", a, b), ops.unary("exp", a), ops.reduce_sum(a), ops.reduce_sum(a, 1),
             ops.reduce_sum(x, 0), ops.reduce_sum(x, 1), ops.affine(a, 0.3, 0.1)]
        for i, (u, v) in enumerate(zip(r1, r)):
            assert np.array_equal(u, v), f"result {i} differs at {t} threads"


def _errors():
    f32 = np.ones((3, 4), np.float32)
    ro = np.ones((3, 4), np.float32)
    ro.flags.writeable = False
    return [
        (lambda: ops.binary("add", f32, np.ones((3, 4))), TypeError, "binary add: b must be float32, got float64"),
        (lambda: ops.binary("mul", f32, np.ones((2, 4), np.float32)), ValueError,
         r"binary mul: shapes \(3, 4\) and \(2, 4\) cannot be broadcast"),
        (lambda: ops.binary("pow", f32, f32), ValueError, "unknown op"),
        (lambda: ops.binary("add", f32, f32, out=np.ones((4, 3), np.float32)), ValueError,
         r"out has shape \(4, 3\), expected \(3, 4\)"),
        (lambda: ops.binary("add", f32, f32, out=ro), ValueError, "out must be writable"),
        (lambda: ops.binary("add", f32[:, :3], f32[:, 1:], out=f32[:, 1:]), ValueError, "shares memory with a"),
        (lambda: ops.unary("exp", [1.0]), TypeError, "must be a numpy.ndarray"),
        (lambda: ops.unary("pow", f32), ValueError, "needs exponent"),
        (lambda: ops.reduce_sum(f32, 2), IndexError, r"axis 2 is out of range for x of shape \(3, 4\)"),
        (lambda: ops.reduce_sum(f32, (1, -1)), ValueError, "appears more than once"),
        (lambda: ops.reduce_sum(np.ones(3, np.int32)), TypeError, "reduce_sum: x must be float32, got int32"),
    ]


def test_errors():
    check_errors(OpInfo(name="errors", samples=lambda r: [], forward=None, reference=None, error_inputs=_errors))
