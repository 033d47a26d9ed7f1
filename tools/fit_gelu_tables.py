"""Fit the piecewise-polynomial tables of the AVX-512 GELU kernels (csrc/kernels/activations.cpp).

    python tools/fit_gelu_tables.py         # prints the C++ tables and their float32 error

gelu(x) = x s(x) with s(x) = Phi(x) (erf form; Phi, phi: the standard normal CDF and density)
or s(x) = sigmoid(2 u(x)), u = sqrt(2/pi) (x + 0.044715 x^3) (tanh form).  s - 1/2 and
gelu' - 1/2 = s - 1/2 + x s' are odd, so both are fitted on |x| only:
  forward   k(a) = s(a) - 1/2,          gelu(x) = |x| k(|x|) + x / 2
  backward  h(a) = s(a) - 1/2 + a s'(a), gelu'(x) = 1/2 + sign(x) h(|x|)  Interval j covers u = 4|x| in [j - 1/2, j + 1/2]
(width 1/4 in x, centred on j / 4, so u's nearest integer j picks the interval and t = u - j is
exact); on each, a polynomial in t (degree 4 forward, 5 backward), least squares on Chebyshev
nodes of [-0.52, 0.52] (near minimax, with a margin for u's rounding).  Beyond the limits below
the kernels use k = h = 1/2 (within 3.3e-8 of it there, which rounds to 1/2 in float32).  32 entries per coefficient: one vpermt2ps lookup.
The script also evaluates the kernels' float32 operation sequence (with FMA) against float64.
"""
from __future__ import annotations

import math

import numpy as np

SCALE = 4.0                # intervals per unit of x
DEG_F, DEG_B = 4, 5
MAGIC = 12582912.0         # 1.5 * 2^23: u + MAGIC holds round(u) in its low mantissa bits

_erf = np.vectorize(math.erf, otypes=[np.float64])


def k_fwd(a):
    return 0.5 * _erf(a / math.sqrt(2.0))


def h_bwd(a):
    return 0.5 * _erf(a / math.sqrt(2.0)) + a * np.exp(-0.5 * a * a) / math.sqrt(2.0 * math.pi)


_TK, _TC = math.sqrt(2.0 / math.pi), 0.044715


def _sig2u(a):
    return 1.0 / (1.0 + np.exp(-2.0 * _TK * (a + _TC * a ** 3)))


def k_fwd_tanh(a):
    return _sig2u(a) - 0.5


def h_bwd_tanh(a):
    s = _sig2u(a)
    return s - 0.5 + a * 2.0 * _TK * (1.0 + 3.0 * _TC * a * a) * s * (1.0 - s)


# name: (k, forward limit, h, backward limit); limits where k, h are within 3.3e-8 of 1/2
VARIANTS = {"Erf": (k_fwd, 5.6, h_bwd, 6.2), "Tanh": (k_fwd_tanh, 5.4, h_bwd_tanh, 6.0)}


def fit(f, limit, deg, ext=0.52, nodes=256):
    n_int = int(math.ceil(limit * SCALE + 0.5))      # intervals j = 0 .. round(4 * limit)
    assert n_int <= 32
    t = ext * np.cos(math.pi * (np.arange(nodes) + 0.5) / nodes)
    V = np.vander(t, deg + 1, increasing=True)
    coef = np.zeros((deg + 1, 32))
    for j in range(n_int):
        c, *_ = np.linalg.lstsq(V, f((j + t) / SCALE), rcond=None)
        coef[:, j] = c
    return coef.astype(np.float32)


def _r(a):
    return np.asarray(a, np.float64).astype(np.float32)


def _fma(a, b, c):   # float32 fused multiply-add: the float64 product of two floats is exact
    return _r(a.astype(np.float64) * b.astype(np.float64) + c.astype(np.float64))


def poly32(x, coef, limit):
    """The kernels' float32 steps: |x|, u, t, the table polynomial, 1/2 beyond the limit."""
    ax = np.abs(x)
    with np.errstate(all="ignore"):
        u = _r(ax.astype(np.float64) * SCALE)
        r = _r(u.astype(np.float64) + MAGIC)
        t = _r(u.astype(np.float64) - (r.astype(np.float64) - MAGIC))
        j = np.clip(np.rint(u), 0, 31).astype(np.int64)   # the low 5 bits of r where it matters
        p = coef[-1, j]
        for d in range(coef.shape[0] - 2, -1, -1):
            p = _fma(p, t, coef[d, j])
    return ax, np.where(ax < np.float32(limit), p, np.float32(0.5))


def check(k, lf, cf, h, lb, cb):
    rng = np.random.default_rng(0)
    x = np.concatenate([np.linspace(-8, 8, 400001), rng.uniform(-8, 8, 200000),
                        np.logspace(-30, 1, 2001), -np.logspace(-30, 1, 2001)]).astype(np.float32)
    xd = x.astype(np.float64)
    ax, p = poly32(x, cf, lf)
    y = _fma(ax, p, _r(np.float32(0.5) * x))
    want = xd * (0.5 + np.sign(xd) * k(np.abs(xd)))
    ef = np.abs(y - want)
    ax, p = poly32(x, cb, lb)
    g = _r(0.5 + np.copysign(p, x).astype(np.float64))
    eb = np.abs(g - (0.5 + np.sign(xd) * h(np.abs(xd))))
    return ef.max(), (ef / (3e-7 + 2e-6 * np.abs(want))).max(), eb.max()


def cpp_table(name, coef, comment):
    lines = [f"// {comment}", f"alignas(64) constexpr float {name}[{coef.shape[0]}][32] = {{"]
    for d in range(coef.shape[0]):
        vals = [f"{v:.9e}f" for v in coef[d]]
        rows = [", ".join(vals[i:i + 4]) for i in range(0, 32, 4)]
        lines.append("    {" + (",\n     ".join(rows)) + "},")
    lines.append("};")
    return "\n".join(lines)


def main():
    for name, (k, lf, h, lb) in VARIANTS.items():
        cf, cb = fit(k, lf, DEG_F), fit(h, lb, DEG_B)
        ab_f, tol_f, ab_b = check(k, lf, cf, h, lb, cb)
        print(f"// {name} form, float32 emulation over [-8, 8]: gelu max abs error {ab_f:.3g} ({tol_f:.2f} of"
              f" 3e-7 + 2e-6 |y|), gelu' max abs error {ab_b:.3g}; limits {lf} / {lb}")
        print(cpp_table(f"kGelu{name}FwdC", cf, f"k(a) = s(a) - 1/2, degree {DEG_F} in t, coefficient d of interval j at [d][j]"))
        print(cpp_table(f"kGelu{name}BwdC", cb, f"h(a) = s(a) - 1/2 + a s'(a), degree {DEG_B} in t"))


if __name__ == "__main__":
    main()
