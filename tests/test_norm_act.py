"""norm_act kernels: LayerNorm, GELU (erf / tanh), ReLU, sigmoid, tanh, softmax, log-softmax,
add / add_bias / sum_rows against PyTorch float64 autograd, under every ISA.

Tolerances (``(rtol, atol)``, atol a multiple of the largest reference magnitude, see
tests/opinfo.py) are float32 bounds a few times the errors measured on this machine.
"""
from __future__ import annotations

import numpy as np
import pytest

import ironformer as irf
from ironformer import _C, ops
from opinfo import OpInfo, Sample, assert_close, check_errors, check_forward_backward

f32 = np.float32


def randn(rng, *shape, scale=1.0, shift=0.0):
    return (rng.standard_normal(shape) * scale + shift).astype(f32)


# ---- LayerNorm -------------------------------------------------------------------------------

LN_SHAPES = [(1, 1), (1, 3), (7, 17), (77, 3), (7, 768), (77, 768), (2048, 17), (2048, 768),
             (3,), (2, 5, 17), (2, 3, 4, 9)]


def ln_samples(affine):
    def gen(rng):
        def with_params(x):   # the inputs for rows x, with weight ~ 1 and bias ~ 0 when affine
            inp = {"x": x}
            if affine:
                inp["weight"] = randn(rng, x.shape[-1], shift=1.0)
                inp["bias"] = randn(rng, x.shape[-1])
            return inp

        out = []
        for shp in LN_SHAPES:
            C = shp[-1]
            inp = {"x": randn(rng, *shp)}
            if affine:
                inp["weight"] = randn(rng, C, scale=0.5, shift=1.0)
                inp["bias"] = randn(rng, C, scale=0.5)
            out.append(Sample(inp, {"eps": 1e-5}, name=f"{shp}"))
        # large common offset (mean/variance accuracy; the float32 mean itself is rounded to
        # ulp(100) / 2 = 3.8e-6), small spread, and a larger eps
        inp = with_params(randn(rng, 33, 100, scale=1.0, shift=100.0))
        out.append(Sample(inp, {"eps": 1e-5}, name="offset100"))
        inp = dict(inp, x=randn(rng, 33, 100, scale=1e-3))
        out.append(Sample(inp, {"eps": 1e-3}, name="tiny-spread-eps1e-3"))
        # the forward's one-pass statistics pivot on the first 64 values of a row: rows whose
        # first values are far from the rest (outliers up front, a GPT-2 style "massive
        # activation" channel, a step) must take its second pass and stay as accurate
        x = randn(rng, 6, 768)
        x[0, :64] += 1e3
        x[1, :64] -= 50.0
        x[2, 5] = 3e3
        x[3, :100] = 7.0
        x[4, 64:] += 100.0   # (an offset much larger than ~100 rounds the float32 mean itself,
        x[5, 64:] -= 60.0    # ulp(mean) / 2, beyond these tolerances in any algorithm)
        out.append(Sample(with_params(x), {"eps": 1e-5}, name="pivot-outliers"))
        # wide rows: the one-pass variance would cancel up to C / 64 = 128 times its error here
        x = randn(rng, 3, 8192)
        x[0, :64] += 1e3
        x[1, :64] -= 1e3
        x[2, 64:] += 30.0
        out.append(Sample(with_params(x), {"eps": 1e-5}, name="pivot-outliers-8192"))
        return out
    return gen


def ln_forward(s):
    out, mean, rstd = ops.layernorm_forward(s.inputs["x"], s.inputs.get("weight"), s.inputs.get("bias"),
                                            eps=s.kwargs["eps"])
    return (out, mean, rstd), (mean, rstd)


def ln_backward(s, state, douts):
    mean, rstd = state
    dx, dw, db = ops.layernorm_backward(douts[0], s.inputs["x"], mean, rstd, s.inputs.get("weight"))
    g = {"x": dx}
    if "weight" in s.inputs:
        g["weight"], g["bias"] = dw, db
    else:
        assert dw is None and db is None
    return g


def ln_reference(t, s):
    import torch
    x = t["x"]
    C = x.shape[-1]
    if C == 1:   # xhat == 0 exactly: torch's float64 dx is rounding noise (~1e-14), not a scale
        y = x * 0.0 * (t["weight"] if "weight" in t else 1.0) + (t["bias"] if "bias" in t else 0.0)
    else:
        y = torch.nn.functional.layer_norm(x, (C,), t.get("weight"), t.get("bias"), eps=s.kwargs["eps"])
    xd = x.detach()
    mean = xd.mean(-1)
    rstd = 1.0 / torch.sqrt(xd.var(-1, unbiased=False) + s.kwargs["eps"])
    return y, mean, rstd


def ln_errors():
    x = np.ones((4, 5), f32)
    w = np.ones(5, f32)
    m = np.zeros(4, f32)
    return [
        (lambda: ops.layernorm_forward(x.astype(np.float64), w, w), TypeError,
         r"layernorm_forward: x must be float32, got float64"),
        (lambda: ops.layernorm_forward(x, w.astype(np.float16), w), TypeError, r"weight must be float32, got float16"),
        (lambda: ops.layernorm_forward(x, np.ones(4, f32), w), ValueError,
         r"layernorm_forward: weight has shape \(4,\), expected \(5,\).*x \(4, 5\)"),
        (lambda: ops.layernorm_forward(x, w, np.ones(6, f32)), ValueError, r"bias has shape \(6,\), expected \(5,\)"),
        (lambda: ops.layernorm_forward(np.ones((3, 0), f32), None, None), ValueError, r"last\) dimension must be > 0"),
        (lambda: ops.layernorm_backward(np.ones((4, 6), f32), x, m, m, w), ValueError,
         r"layernorm_backward: dout has shape \(4, 6\), expected \(4, 5\)"),
        (lambda: ops.layernorm_backward(x, x, np.zeros(3, f32), m, w), ValueError,
         r"layernorm_backward: mean has shape \(3,\), expected \(4,\)"),
        (lambda: ops.layernorm_backward(x, x, m, m[:, None], w), ValueError, r"rstd has shape \(4, 1\), expected \(4,\)"),
        (lambda: ops.layernorm_backward(x, x, m, m, w, dweight=np.zeros(5)), TypeError,
         r"dweight must be float32, got float64"),
        (lambda: ops.layernorm_backward(x, x, m, m, w, dbias=np.zeros(6, f32)), ValueError,
         r"dbias has shape \(6,\), expected \(5,\)"),
        (lambda: ops.layernorm_backward(x, x, m, m, None, dweight=np.zeros(5, f32)), ValueError, r"weight is None"),
        (lambda: ops.layernorm_backward(x, x, m, m, w, dweight=np.zeros(10, f32)[::2]), ValueError, r"contiguous"),
    ]


OPS = [
    OpInfo("layernorm", ln_samples(True), ln_forward, ln_reference, ln_backward, ("x", "weight", "bias"),
           fwd_tol=(1e-5, 2e-6), bwd_tol=(1e-4, 5e-6), error_inputs=ln_errors),
    OpInfo("layernorm_no_affine", ln_samples(False), ln_forward, ln_reference, ln_backward, ("x",),
           fwd_tol=(1e-5, 2e-6), bwd_tol=(1e-4, 5e-6)),
]

# ---- activations ----------------------------------------------------------------------------

ACT_SHAPES = [(7,), (3, 17), (77, 17), (2048, 768), (2, 7, 9)]


def act_samples(scale):
    def gen(rng):
        # one element: fixed (a lone tiny output would make its own scale, see opinfo.assert_close)
        out = [Sample({"x": np.array([-0.37], f32)}, name="(1,)")]
        out += [Sample({"x": randn(rng, *s, scale=scale)}, name=f"{s}") for s in ACT_SHAPES]
        wide = np.concatenate([np.linspace(-12, 12, 2401), [-60.0, -30.0, 30.0, 60.0, 1e-30, -1e-30]]).astype(f32)
        out.append(Sample({"x": wide}, name="wide"))
        return out
    return gen


def act_op(name, fwd, bwd, ref, from_output, fwd_tol, bwd_tol, errors=lambda: []):
    def forward(s):
        y = fwd(s.inputs["x"])
        return (y,), (y if from_output else s.inputs["x"])

    def backward(s, state, douts):
        return {"x": bwd(douts[0], state)}

    return OpInfo(name, act_samples(3.0), forward, lambda t, s: (ref(t["x"]),), backward, ("x",),
                  fwd_tol=fwd_tol, bwd_tol=bwd_tol, error_inputs=errors)


def _torch_gelu(approx):
    def f(x):
        import torch
        return torch.nn.functional.gelu(x, approximate=approx)
    return f


def _torch(name):
    def f(x):
        import torch
        return {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh}[name](x)
    return f


def gelu_errors():
    x = np.ones((3, 4), f32)
    return [
        (lambda: ops.gelu_forward(x, approximate="exact"), ValueError, r"approximate must be 'none' or 'tanh'"),
        (lambda: ops.gelu_backward(x, x, approximate=None), ValueError, r"approximate must be"),
        (lambda: ops.gelu_forward(x.astype(np.float64)), TypeError, r"gelu_forward: x must be float32, got float64"),
        (lambda: ops.gelu_backward(x.astype(np.int32), x), TypeError, r"gelu_backward: dout must be float32, got int32"),
        (lambda: ops.gelu_backward(np.ones((3, 5), f32), x, approximate="tanh"), ValueError,
         r"gelu_backward: dout has shape \(3, 5\), expected \(3, 4\)"),
        (lambda: ops.relu_backward(np.ones(3, f32), x), ValueError, r"relu_backward: dout has shape \(3,\)"),
        (lambda: ops.sigmoid_backward(x, np.ones(4, f32)), ValueError,
         r"sigmoid_backward: dout has shape \(3, 4\), expected \(4,\)"),
        (lambda: ops.tanh_forward([1.0, 2.0]), TypeError, r"tanh_forward: x must be a numpy.ndarray"),
        (lambda: ops.tanh_backward(x, x.astype(np.float64)), TypeError, r"tanh_backward: out must be float32"),
    ]


ACT_OPS = [
    # erf GELU: verf abs error 1.25e-7 -> 0.5 |x| 1.25e-7 absolute in the output
    act_op("gelu_erf", ops.gelu_forward, ops.gelu_backward, _torch_gelu("none"), False, (2e-6, 3e-7), (2e-6, 3e-7),
           gelu_errors),
    act_op("gelu_tanh", lambda x: ops.gelu_forward(x, approximate="tanh"),
           lambda d, x: ops.gelu_backward(d, x, approximate="tanh"), _torch_gelu("tanh"), False, (2e-6, 3e-7),
           (2e-6, 3e-7)),
    act_op("relu", ops.relu_forward, ops.relu_backward, _torch("relu"), False, (0, 0), (0, 0)),
    # backward from the float32 output: 1 - out (sigmoid) and 1 - out^2 (tanh) carry the rounding of
    # out near 1 (~6e-8 absolute times dout), hence atol 1e-6 of the gradient scale
    act_op("sigmoid", ops.sigmoid_forward, ops.sigmoid_backward, _torch("sigmoid"), True, (1e-6, 1e-7), (2e-6, 1e-6)),
    act_op("tanh", ops.tanh_forward, ops.tanh_backward, _torch("tanh"), True, (1e-6, 2e-7), (2e-6, 1e-6)),
]

# ---- softmax / log-softmax ------------------------------------------------------------------

SM_SHAPES = [(1, 1), (1, 3), (7, 1), (7, 17), (77, 768), (2048, 17), (2, 3, 17), (1, 50257), (7, 50257), (5,)]


def sm_samples(rng):
    out = [Sample({"x": randn(rng, *s, scale=3.0)}, name=f"{s}") for s in SM_SHAPES]
    out.append(Sample({"x": randn(rng, 7, 768, scale=10.0, shift=1e4)}, name="shift1e4"))
    out.append(Sample({"x": randn(rng, 7, 768, scale=3.0, shift=-1e4)}, name="shift-1e4-wide"))
    out.append(Sample({"x": randn(rng, 5, 33, shift=-1e4)}, name="shift-1e4"))
    out.append(Sample({"x": randn(rng, 3, 50257, scale=30.0, shift=5e3)}, name="vocab-large"))
    return out


def sm_op(name, log):
    fwd = ops.log_softmax_forward if log else ops.softmax_forward
    bwd = ops.log_softmax_backward if log else ops.softmax_backward

    def forward(s):
        y = fwd(s.inputs["x"])
        return (y,), y

    def backward(s, y, douts):
        return {"x": bwd(douts[0], y)}

    def reference(t, s):
        import torch
        return ((torch.log_softmax if log else torch.softmax)(t["x"], -1),)

    def errors():
        x = np.ones((3, 4), f32)
        return [
            (lambda: fwd(x.astype(np.float64)), TypeError, rf"{name}_forward: x must be float32, got float64"),
            (lambda: fwd(np.array(3.0, f32)), ValueError, r"at least 1 dimension"),
            (lambda: bwd(np.ones((3, 5), f32), x), ValueError,
             rf"{name}_backward: dout has shape \(3, 5\), expected \(3, 4\)"),
            (lambda: bwd(x, x.astype(np.float64)), TypeError, rf"{name}_backward: out must be float32"),
        ]

    # log-softmax outputs reach -1e4 * few; atol is relative to that scale
    return OpInfo(name, sm_samples, forward, reference, backward, ("x",),
                  fwd_tol=(2e-6, 2e-7) if log else (2e-6, 1e-7), bwd_tol=(1e-5, 1e-6), error_inputs=errors)


SM_OPS = [sm_op("softmax", False), sm_op("log_softmax", True)]

# ---- add / add_bias / sum_rows --------------------------------------------------------------

ADD_SHAPES = [(1,), (7,), (3, 17), (77, 768), (2, 3, 5), (2048, 17)]


def add_samples(rng):
    return [Sample({"a": randn(rng, *s), "b": randn(rng, *s)}, name=f"{s}") for s in ADD_SHAPES]


def bias_samples(rng):
    return [Sample({"x": randn(rng, *s), "bias": randn(rng, s[-1])}, name=f"{s}") for s in ADD_SHAPES + [(2048, 768)]]


def add_errors():
    a = np.ones((3, 4), f32)
    return [
        (lambda: ops.add(a, np.ones((4, 3), f32)), ValueError, r"add: b has shape \(4, 3\), expected the shape of a \(3, 4\)"),
        (lambda: ops.add(a, a.astype(np.float64)), TypeError, r"add: b must be float32, got float64"),
        (lambda: ops.add(a, a, out=np.ones((3, 5), f32)), ValueError, r"add: out has shape \(3, 5\), expected \(3, 4\)"),
        (lambda: ops.add(a, a, out=np.ones((4, 3), f32).T), ValueError, r"C-contiguous"),
        (lambda: ops.add_bias(a, np.ones(3, f32)), ValueError, r"add_bias: bias has shape \(3,\), expected \(4,\)"),
        (lambda: ops.add_bias(a, np.ones(4, np.int64)), TypeError, r"add_bias: bias must be float32, got int64"),
        (lambda: ops.sum_rows(a, out=np.ones(3, f32)), ValueError, r"sum_rows: out has shape \(3,\), expected \(4,\)"),
        (lambda: ops.sum_rows(a, accumulate=True), ValueError, r"accumulate=True needs out="),
        (lambda: ops.sum_rows(a.astype(np.float16)), TypeError, r"sum_rows: x must be float32, got float16"),
    ]


def add_ref(t, s):
    return (t["a"] + t["b"],)


def bias_ref(t, s):
    return (t["x"] + t["bias"],)


ADD_OPS = [
    OpInfo("add", add_samples, lambda s: ((ops.add(s.inputs["a"], s.inputs["b"]),), None), add_ref,
           # the gradient of a + b is dout for both (no kernel): exercises the op registry path
           lambda s, st, d: {"a": d[0], "b": d[0]}, ("a", "b"), fwd_tol=(1e-7, 0), bwd_tol=(0, 0),
           error_inputs=add_errors),
    # the bias gradient of x + bias is sum_rows(dout)
    OpInfo("add_bias", bias_samples, lambda s: ((ops.add_bias(s.inputs["x"], s.inputs["bias"]),), None), bias_ref,
           lambda s, st, d: {"x": d[0], "bias": ops.sum_rows(d[0])}, ("x", "bias"), fwd_tol=(1e-7, 0),
           bwd_tol=(1e-5, 1e-6)),
]

ALL_OPS = OPS + ACT_OPS + SM_OPS + ADD_OPS


@pytest.mark.parametrize("op", ALL_OPS, ids=repr)
def test_forward_backward(isa, rng, op):
    check_forward_backward(op, rng)


@pytest.mark.parametrize("op", [o for o in ALL_OPS if o.error_inputs() ], ids=repr)
def test_errors(op):
    check_errors(op)


# ---- specific behaviour ---------------------------------------------------------------------

def test_layernorm_accumulates_param_grads(isa, rng):
    x, w, b = randn(rng, 77, 17), randn(rng, 17), randn(rng, 17)
    out, mean, rstd = ops.layernorm_forward(x, w, b)
    dout = randn(rng, 77, 17)
    dx0, dw0, db0 = ops.layernorm_backward(dout, x, mean, rstd, w)
    dw, db = np.ones(17, f32), np.ones(17, f32)
    dx, dw_r, db_r = ops.layernorm_backward(dout, x, mean, rstd, w, dweight=dw, dbias=db)
    assert dw_r is dw and db_r is db
    np.testing.assert_array_equal(dx, dx0)
    # accumulation rounds 1 + p0 + p1 + ... step by step (sums reach ~15): a few ulp apart
    np.testing.assert_allclose(dw, 1 + dw0.astype(np.float64), rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(db, 1 + db0.astype(np.float64), rtol=1e-6, atol=1e-5)
    assert not np.allclose(dw0, 0, atol=1e-3)   # a non-trivial gradient
    _, dw2, db2 = ops.layernorm_backward(dout, x, mean, rstd, w, dweight=dw)   # dbias fresh
    assert dw2 is dw
    np.testing.assert_allclose(dw, 1 + 2 * dw0.astype(np.float64), rtol=1e-6, atol=2e-5)
    np.testing.assert_array_equal(db2, db0)


def test_layernorm_variance_never_negative(isa):
    x = np.full((5, 768), 3.3, f32)   # constant rows: variance 0 exactly, rstd = 1/sqrt(eps)
    out, mean, rstd = ops.layernorm_forward(x, None, None, eps=1e-5)
    np.testing.assert_allclose(mean, 3.3, rtol=1e-6)
    np.testing.assert_allclose(rstd, 1 / np.sqrt(1e-5), rtol=1e-5)
    assert np.all(np.isfinite(out)) and np.max(np.abs(out)) < 1e-2


def test_softmax_masked_and_stable(isa):
    x = np.array([[0.0, -np.inf, 1.0, -np.inf], [1e4, 1e4, -1e4, 1e4 - 1]], f32)
    y = ops.softmax_forward(x)
    e = np.exp(np.array([0.0, 1.0]) - 1.0)
    np.testing.assert_allclose(y[0], [e[0] / e.sum(), 0, e[1] / e.sum(), 0], rtol=1e-6)
    assert np.all(np.isfinite(y)) and abs(y[1].sum() - 1) < 1e-6
    ly = ops.log_softmax_forward(x)
    assert ly[0, 1] == -np.inf and np.isfinite(ly[1]).all()


def test_activation_extremes(isa):
    x = np.array([-1e4, -100.0, -30.0, 30.0, 100.0, 1e4], f32)
    for approx in ("none", "tanh"):
        y = ops.gelu_forward(x, approximate=approx)
        np.testing.assert_array_equal(y, [0, 0, 0, 30, 100, 1e4])
        g = ops.gelu_backward(np.ones_like(x), x, approximate=approx)
        np.testing.assert_array_equal(g, [0, 0, 0, 1, 1, 1])
    np.testing.assert_allclose(ops.sigmoid_forward(x), [0, 0, 1 / (1 + np.exp(30.0)), 1, 1, 1], rtol=1e-6, atol=0)
    np.testing.assert_array_equal(ops.tanh_forward(x), [-1, -1, -1, 1, 1, 1])
    r = ops.relu_forward(np.array([np.nan, -1.0, 0.0, 2.0], f32))
    assert np.isnan(r[0]) and list(r[1:]) == [0, 0, 2]


@pytest.mark.parametrize("fn", ["layernorm", "gelu", "softmax", "log_softmax", "add", "add_bias", "sum_rows"])
def test_empty_rows(isa, fn):
    x = np.zeros((0, 5), f32)
    if fn == "layernorm":
        out, mean, rstd = ops.layernorm_forward(x, np.ones(5, f32), np.zeros(5, f32))
        assert out.shape == (0, 5) and mean.shape == (0,) and rstd.shape == (0,)
        dx, dw, db = ops.layernorm_backward(x, x, mean, rstd, np.ones(5, f32))
        assert dx.shape == (0, 5) and np.all(dw == 0) and np.all(db == 0)
    elif fn == "gelu":
        assert ops.gelu_forward(x).shape == (0, 5) and ops.gelu_backward(x, x).shape == (0, 5)
    elif fn in ("softmax", "log_softmax"):
        f, b = getattr(ops, fn + "_forward"), getattr(ops, fn + "_backward")
        assert f(x).shape == (0, 5) and b(x, x).shape == (0, 5)
    elif fn == "add":
        assert ops.add(x, x).shape == (0, 5)
    elif fn == "add_bias":
        assert ops.add_bias(x, np.ones(5, f32)).shape == (0, 5)
    else:
        assert np.array_equal(ops.sum_rows(x), np.zeros(5, f32))
        out = np.ones(5, f32)
        ops.sum_rows(x, out=out, accumulate=True)
        assert np.all(out == 1)


def test_non_contiguous_inputs(isa, rng):
    big = randn(rng, 40, 2, 50)
    x = big[:, 1, 3:46]          # (40, 43), row stride 100
    w, b = randn(rng, 86)[::2], randn(rng, 43)
    out, mean, rstd = ops.layernorm_forward(x, w, b)
    out2, _, _ = ops.layernorm_forward(np.ascontiguousarray(x), np.ascontiguousarray(w), b)
    np.testing.assert_array_equal(out, out2)
    np.testing.assert_array_equal(ops.softmax_forward(x.T), ops.softmax_forward(np.ascontiguousarray(x.T)))
    np.testing.assert_array_equal(ops.gelu_forward(x), ops.gelu_forward(np.ascontiguousarray(x)))
    np.testing.assert_array_equal(ops.sum_rows(x), ops.sum_rows(np.ascontiguousarray(x)))


def test_out_and_in_place(isa, rng):
    a, b = randn(rng, 7, 33), randn(rng, 7, 33)
    want = a + b
    out = np.empty_like(a)
    assert ops.add(a, b, out=out) is out
    np.testing.assert_array_equal(out, want)
    ops.add(a, b, out=a)                      # in place
    np.testing.assert_array_equal(a, want)
    bias = randn(rng, 33)
    ops.add_bias(a, bias, out=a)
    np.testing.assert_array_equal(a, want + bias)
    with pytest.raises(ValueError, match="partially overlaps"):
        buf = randn(rng, 100)
        ops.add(buf[:50], buf[50:], out=buf[10:60])
    s = np.ones(33, f32)
    ops.sum_rows(b, out=s, accumulate=True)
    np.testing.assert_allclose(s, 1 + b.astype(np.float64).sum(0), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="shares memory"):
        ops.sum_rows(b, out=b[0])


# ---- reference twins, ISA agreement, thread-count invariance --------------------------------

def run_all(rng_seed=7, reference=False):
    """Every kernel on fixed inputs (odd sizes), via _C so the scalar twins can be selected."""
    rng = np.random.default_rng(rng_seed)
    x, w, b = randn(rng, 301, 77), randn(rng, 77), randn(rng, 77)
    d = randn(rng, 301, 77)
    r = {}
    out, mean, rstd = _C.layernorm_forward(x, w, b, 1e-5, reference)
    r["ln"] = out
    r["ln_mean"], r["ln_rstd"] = mean, rstd
    dx, dw, db = _C.layernorm_backward(d, x, mean, rstd, w, None, None, reference)
    r["ln_dx"], r["ln_dw"], r["ln_db"] = dx, dw, db
    r["ln_dx_noaff"] = _C.layernorm_backward(d, x, mean, rstd, None, None, None, reference)[0]
    xa = randn(rng, 3001, scale=4.0)
    da = randn(rng, 3001)
    for act in range(5):
        y = _C.act_forward(xa, act, reference)
        r[f"act{act}"] = y
        r[f"act{act}_bwd"] = _C.act_backward(da, y if act >= 3 else xa, act, reference)
    for log in (False, True):
        y = _C.softmax_forward(x * 5, log, reference)
        r[f"sm{log}"] = y
        r[f"sm{log}_bwd"] = _C.softmax_backward(d, y, log, reference)
    r["add"] = _C.add(x, d, None, reference)
    r["add_bias"] = _C.add_bias(x, b, None, reference)
    r["sum_rows"] = _C.sum_rows(x, None, False, reference)
    big = randn(rng, 2048, 100)
    r["sum_rows_big"] = _C.sum_rows(big, None, False, reference)
    return r


def test_reference_twins_match_kernels(isa):
    fast, slow = run_all(), run_all(reference=True)
    for k in fast:
        assert_close(fast[k], slow[k], 2e-5, 2e-6, what=k)


def test_isa_variants_agree():
    prev = irf.isa()
    res = {}
    try:
        for name in ("generic", "avx2", "avx512"):
            if _C.isa_supported(name):
                _C.select_isa(name)
                res[name] = run_all()
    finally:
        _C.select_isa(prev)
    base = res["generic"]
    for name, r in res.items():
        for k in r:
            assert_close(r[k], base[k], 1e-5, 1e-6, what=f"{name} {k}")


def test_thread_count_gives_identical_results(isa, threads):
    rng = np.random.default_rng(3)
    threads(1)
    one = run_all()
    x, w = randn(rng, 4097, 96), randn(rng, 96)
    out, mean, rstd = ops.layernorm_forward(x, w, None)
    d = randn(rng, 4097, 96)
    big1 = ops.layernorm_backward(d, x, mean, rstd, w)
    s1 = ops.sum_rows(x)
    for t in (2, 3, 5):
        threads(t)
        other = run_all()
        for k in one:
            assert np.array_equal(one[k], other[k]), f"{k}: {t} threads differ from 1"
        big = ops.layernorm_backward(d, x, mean, rstd, w)
        for a, b_ in zip(big1, big):
            assert np.array_equal(a, b_), f"layernorm backward: {t} threads differ from 1"
        assert np.array_equal(ops.sum_rows(x), s1)


def test_streaming_stores_match_cached_path(isa, rng):
    # outputs of >= 2^20 floats are written with streaming stores (simd.h stream_ok); the values
    # must be bitwise those of the cached path that smaller calls take, row for row
    big = randn(rng, 1400, 768, scale=3.0)      # 1.07M floats: streamed
    g = randn(rng, 1400, 768)
    small, gs = big[:64].copy(), g[:64].copy()  # cached path
    w, b = randn(rng, 768), randn(rng, 768)
    y, m, r = ops.layernorm_forward(big, w, b)
    ys, ms, rs = ops.layernorm_forward(small, w, b)
    assert y.ctypes.data % 64 == 0                # the bindings allocate 64-byte aligned outputs
    np.testing.assert_array_equal(y[:64], ys)
    dx, _, _ = ops.layernorm_backward(g, big, m, r, w)
    dxs, _, _ = ops.layernorm_backward(gs, small, ms, rs, w)
    np.testing.assert_array_equal(dx[:64], dxs)
    for fwd, bwd in ((ops.softmax_forward, ops.softmax_backward),
                     (ops.log_softmax_forward, ops.log_softmax_backward)):
        y, ys = fwd(big), fwd(small)
        np.testing.assert_array_equal(y[:64], ys)
        np.testing.assert_array_equal(bwd(g, y)[:64], bwd(gs, ys))
    np.testing.assert_array_equal(ops.gelu_forward(big)[:64], ops.gelu_forward(small))
    np.testing.assert_array_equal(ops.gelu_backward(g, big)[:64], ops.gelu_backward(gs, small))
