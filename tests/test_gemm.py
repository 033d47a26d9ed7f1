"""SGEMM against float64 numpy: shapes, transposes, strides, batches, errors, ISAs, threads."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

import ironformer as irf
from ironformer import _C
from ironformer.ops import matmul


def ref_matmul(a, b, ta, tb, c0=None, bias=None):
    a64 = a.astype(np.float64)
    b64 = b.astype(np.float64)
    if ta:
        a64 = np.swapaxes(a64, -1, -2)
    if tb:
        b64 = np.swapaxes(b64, -1, -2)
    r = a64 @ b64
    if c0 is not None:
        r = r + c0
    if bias is not None:
        r = r + bias
    return r


def operands(rng, m, n, k, ta, tb, batch=None):
    pre = () if batch is None else (batch,)
    a = rng.standard_normal(pre + ((k, m) if ta else (m, k))).astype(np.float32)
    b = rng.standard_normal(pre + ((n, k) if tb else (k, n))).astype(np.float32)
    return a, b


def assert_close(got, want, k):
    # float32 accumulation of k products of N(0,1) values: error grows ~ sqrt(k) * eps
    tol = 2e-6 * max(1.0, np.sqrt(max(k, 1))) * 4
    scale = np.maximum(np.abs(want), np.sqrt(max(k, 1)))
    err = np.max(np.abs(got - want) / scale) if got.size else 0.0
    assert err < tol, f"max scaled error {err:.2e} >= {tol:.2e}"


SIZES = [1, 2, 7, 17, 65, 129]
SHAPES = [(m, n, k) for m, n, k in itertools.product(SIZES, repeat=3) if m * n * k <= 129 * 65 * 17 or m == 1 or n == 1]
SHAPES = SHAPES[::7] + [(1000, 1, 7), (1, 1000, 129), (1000, 17, 65), (7, 1000, 1000), (129, 129, 1000),
                        (301, 257, 263), (97, 500, 300)]


@pytest.mark.parametrize("ta,tb", list(itertools.product([False, True], repeat=2)))
@pytest.mark.parametrize("m,n,k", SHAPES)
def test_matches_float64(isa, rng, m, n, k, ta, tb):
    a, b = operands(rng, m, n, k, ta, tb)
    got = matmul(a, b, trans_a=ta, trans_b=tb)
    assert got.shape == (m, n) and got.dtype == np.float32
    assert_close(got, ref_matmul(a, b, ta, tb), k)


@pytest.mark.parametrize("m,n,k", [(1, 300, 77), (300, 1, 77), (64, 64, 64), (130, 70, 300), (2048, 96, 40)])
@pytest.mark.parametrize("ta,tb", [(False, False), (True, True), (False, True), (True, False)])
def test_accumulate_and_bias(isa, rng, m, n, k, ta, tb):
    a, b = operands(rng, m, n, k, ta, tb)
    c0 = rng.standard_normal((m, n)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    out = c0.copy()
    r = matmul(a, b, trans_a=ta, trans_b=tb, out=out, accumulate=True, bias=bias)
    assert r is out
    assert_close(out, ref_matmul(a, b, ta, tb, c0, bias), k)
    out2 = c0.copy()
    matmul(a, b, trans_a=ta, trans_b=tb, out=out2)  # no accumulate: old contents ignored
    assert_close(out2, ref_matmul(a, b, ta, tb), k)


# M, N <= 128 and K <= 2048 take the small-product path (A read in place, B read in place or
# packed once): sweep every row tail (counts below the register tile's MR rows: 4, 6 or 12),
# every column tail (lanes of a partial last vector: 4, 8 or 16 wide, one or two vectors),
# K from 1 to 2048, and each output mode.  M or N of 129 goes to the blocked path (or, for
# M <= 12 with row-major B, to the small path again; N <= 8: the skinny kernel).
SMALL_SHAPES = ([(m, 37, 19) for m in range(1, 26)] + [(9, n, 23) for n in range(1, 34)]
                + [(m, n, k) for m in (7, 64, 97, 128) for n in (17, 64, 128) for k in (1, 64, 128)]
                + [(128, 128, 128), (129, 128, 128), (128, 129, 128), (128, 128, 129), (100, 128, 128),
                   (38, 66, 505), (128, 40, 2048), (100, 64, 2049), (5, 3, 1500)])


@pytest.mark.parametrize("mode", ["plain", "out_accumulate_bias", "bias"])
@pytest.mark.parametrize("ta,tb", list(itertools.product([False, True], repeat=2)))
def test_small_products(isa, rng, ta, tb, mode):
    for m, n, k in SMALL_SHAPES:
        a, b = operands(rng, m, n, k, ta, tb)
        bias = rng.standard_normal(n).astype(np.float32) if mode != "plain" else None
        if mode == "out_accumulate_bias":
            buf = rng.standard_normal((m, n + 9)).astype(np.float32)   # out with a row stride
            out = buf[:, 4:4 + n]
            before = buf.copy()
            matmul(a, b, trans_a=ta, trans_b=tb, out=out, accumulate=True, bias=bias)
            assert_close(out, ref_matmul(a, b, ta, tb, before[:, 4:4 + n], bias), k)
            assert np.array_equal(buf[:, :4], before[:, :4]) and np.array_equal(buf[:, 4 + n:], before[:, 4 + n:])
        else:
            got = matmul(a, b, trans_a=ta, trans_b=tb, bias=bias)
            assert_close(got, ref_matmul(a, b, ta, tb, None, bias), k)


def test_small_products_long_k_packed_b(isa, rng, threads):
    # M, N <= 128 with K up to 2048 also take the small path, where B^T storage or L1-aliasing
    # B rows (stride 64 floats, M > 96) pack all of B (N x K, more than the blocked path's two
    # slice buffers): the packing buffer must hold it.  1 and 2 threads, same bits, also with
    # accumulate and bias.
    for (m, n, k, tb) in [(100, 64, 2000, False), (120, 100, 2048, True), (97, 128, 1500, True)]:
        a, b = operands(rng, m, n, k, False, tb)
        check_accumulate_bias_threads(rng, threads, a, b, False, tb, plain=True)


def test_small_products_strides(isa, rng):
    # B rows 128 floats apart with more than 96 rows of A: the in-place strip would alias in L1,
    # so B is packed; B with a column stride or negative strides; A strided both ways.
    big_b = rng.standard_normal((128, 128)).astype(np.float32)
    a = rng.standard_normal((120, 128)).astype(np.float32)
    for b in (big_b[:, :100], big_b[:, 3:103], big_b[:100, ::-1], big_b[::-1, ::2], big_b[:, ::3].T[:, :90]):
        kk = b.shape[0]
        for a_view in (a[:, :kk], a[::-1, :kk], a.T[:kk, :120].T, a[:, ::-1][:, :kk]):
            got = matmul(a_view, b)
            assert_close(got, ref_matmul(a_view, b, False, False), kk)
    # stride-0 (broadcast) operands
    a0 = np.broadcast_to(rng.standard_normal(40).astype(np.float32), (30, 40))
    b0 = np.broadcast_to(rng.standard_normal((40, 1)).astype(np.float32), (40, 20))
    assert_close(matmul(a0, b0), ref_matmul(np.array(a0), np.array(b0), False, False), 40)


# Matrix-vector products: M == 1 (x @ B) or N == 1 (A @ x).  With the matrix's rows
# contiguous over the output (B row-major, or A transposed) the kernel streams columns into
# aligned chunks of outputs, and with K >= 256 and at least 2^19 products it always sums K in
# two halves (whatever the thread count).  Odd K (4-row groups plus a remainder), matrices
# that start off the vector alignment, a strided x, out= with a row stride, accumulate, bias.
GEMV_CASES = [(1, 3001, 263), (1, 2048, 256), (1, 2047, 255), (1, 700, 64), (1, 9000, 63), (2003, 1, 301),
              (5000, 1, 100), (1, 50, 7)]


@pytest.mark.parametrize("m,n,k", GEMV_CASES)
@pytest.mark.parametrize("ta,tb", list(itertools.product([False, True], repeat=2)))
def test_gemv(isa, rng, m, n, k, ta, tb):
    a, b = operands(rng, m, n, k, ta, tb)
    assert_close(matmul(a, b, trans_a=ta, trans_b=tb), ref_matmul(a, b, ta, tb), k)
    # the matrix operand starting 1..3 floats past its allocation (and rows that are not a
    # whole number of vectors apart), the vector operand read with a stride
    def embed(x, off, step):
        big = rng.standard_normal((x.shape[0], x.shape[1] * step + off + 3)).astype(np.float32)
        view = big[:, off:off + x.shape[1] * step:step]
        view[...] = x
        return view
    for off in (1, 3):
        a2 = embed(a, off, 2 if m == 1 else 1)
        b2 = embed(b, off, 2 if n == 1 and m > 1 else 1)
        c0 = rng.standard_normal((m, n)).astype(np.float32)
        buf = np.zeros((m, n + 5), np.float32)
        out = buf[:, 2:2 + n]
        out[...] = c0
        bias = rng.standard_normal(n).astype(np.float32)
        matmul(a2, b2, trans_a=ta, trans_b=tb, out=out, accumulate=True, bias=bias)
        assert_close(out, ref_matmul(a2, b2, ta, tb, c0, bias), k)
        assert np.all(buf[:, :2] == 0) and np.all(buf[:, 2 + n:] == 0)


def test_gemv_batched(isa, rng):
    a, b = operands(rng, 1, 2100, 260, False, False, batch=3)
    assert_close(matmul(a, b), ref_matmul(a, b, False, False), 260)
    assert_close(matmul(a, b[1]), ref_matmul(a, b[1], False, False), 260)


def test_non_contiguous_inputs(isa, rng):
    big_a = rng.standard_normal((90, 3, 140)).astype(np.float32)
    big_b = rng.standard_normal((140, 2, 80)).astype(np.float32)
    a = big_a[5:70:2, 1, 3:130:3]        # (33, 43), strides (2*3*140, 3) elements
    b = big_b[4:133:3, 0, ::-2]          # (43, 40), negative column stride
    got = matmul(a, b)
    assert_close(got, ref_matmul(a, b, False, False), a.shape[1])
    # transposed views are taken as they are (strides), with or without the flag
    got_t = matmul(a.T, b[:, :33].T, trans_a=True, trans_b=True)
    assert_close(got_t, ref_matmul(a, b[:, :33], False, False).T.T, 43)
    # a byte stride that is not a multiple of 4 is copied, still correct
    raw = np.zeros(4 * 30 * 20 + 2, np.uint8)
    odd = np.ndarray((30, 20), dtype=np.float32, buffer=raw, offset=1, strides=(80, 4))
    odd[...] = rng.standard_normal((30, 20))
    got_o = matmul(odd, b[:20, :9])
    assert_close(got_o, ref_matmul(np.array(odd), b[:20, :9], False, False), 20)


def test_out_with_row_stride(isa, rng):
    a, b = operands(rng, 40, 30, 50, False, False)
    buf = np.zeros((40, 64), np.float32)
    out = buf[:, 5:35]
    matmul(a, b, out=out)
    assert_close(out, ref_matmul(a, b, False, False), 50)
    assert np.all(buf[:, :5] == 0) and np.all(buf[:, 35:] == 0)


def check_accumulate_bias_threads(rng, threads, a, b, ta, tb, counts=(1, 2), plain=False):
    """C = c0 + op(a) op(b) + bias (accumulate) at each thread count in `counts`: the float64
    result every time and the same bits for all counts; `plain`: also without out / bias."""
    m = a.shape[1] if ta else a.shape[0]
    k = a.shape[0] if ta else a.shape[1]
    n = b.shape[0] if tb else b.shape[1]
    bias = rng.standard_normal(n).astype(np.float32)
    c0 = rng.standard_normal((m, n)).astype(np.float32)
    want = ref_matmul(a, b, ta, tb, c0=c0, bias=bias)
    outs = []
    for t in counts:
        threads(t)
        out = c0.copy()
        matmul(a, b, trans_a=ta, trans_b=tb, out=out, accumulate=True, bias=bias)
        assert_close(out, want, k)
        outs.append(out)
        if plain:
            assert_close(matmul(a, b, trans_a=ta, trans_b=tb), ref_matmul(a, b, ta, tb), k)
    for t, out in zip(counts[1:], outs[1:]):
        assert np.array_equal(out, outs[0]), f"{t} threads differ from {counts[0]}"


# The blocked path's row tails: a last tile of 1..11 rows (runs the 6-, 8-, 10- or 12-row
# kernel on AVX-512, the whole tile on AVX2 / generic), with a column tail (N = 150) and two K
# slices; 1 and 2 threads (row blocks then split in half panels).
@pytest.mark.parametrize("tail", range(1, 12))
def test_blocked_row_tails(isa, rng, threads, tail):
    a, b = operands(rng, 12 * 40 + tail, 150, 300, False, True)
    check_accumulate_bias_threads(rng, threads, a, b, False, True)


# Skinny products (2..8 columns, some dimension > 128): row-major A as dot products of A rows
# with B's columns, R rows at a time with a remainder, K with a vector tail; A^T by
# accumulating C's columns along A^T's contiguous rows, in blocks of rows with a partial last
# one; B^T used in place or B copied; A (or A^T) a view with a row stride != its width; 9
# columns take the blocked path; 1 and 3 threads.
@pytest.mark.parametrize("n", range(2, 10))
@pytest.mark.parametrize("ta,tb", list(itertools.product([False, True], repeat=2)))
def test_skinny_columns(isa, rng, threads, n, ta, tb):
    m, k = 301, 203
    a = rng.standard_normal((k, m + 7)).astype(np.float32)[:, 3:m + 3] if ta else \
        rng.standard_normal((m, k + 5)).astype(np.float32)[:, 2:k + 2]
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
    check_accumulate_bias_threads(rng, threads, a, b, ta, tb, counts=(1, 3), plain=True)


# Products of at most 12 rows with row-major B go to the small-product kernel whatever N and K
# (B rows in place, K in one pass, column tiles split over threads), except K > 1024 with a
# row stride of B that is a multiple of 1024 floats: every row count up to 13, A and A^T, long
# K; 1 and 2 threads.
@pytest.mark.parametrize("m", [1, 2, 5, 6, 7, 11, 12, 13])
@pytest.mark.parametrize("n,k,ta", [(1000, 700, False), (333, 3000, True), (2048, 1100, False), (40, 200, True)])
def test_few_rows(isa, rng, threads, m, n, k, ta):
    a, b = operands(rng, m, n, k, ta, False)
    check_accumulate_bias_threads(rng, threads, a, b, ta, False)


# 2..8 rows with B^T storage (x W^T for a few sequences): B's rows against A's rows, C written
# transposed; 9..16 rows in two chunks; 17 rows take the blocked path.  Strided A, 1 vs 3 threads.
@pytest.mark.parametrize("m", list(range(2, 10)) + [13, 16, 17])
def test_skinny_rows_b_transposed(isa, rng, threads, m):
    n, k = 517, 203
    a = rng.standard_normal((m, k + 3)).astype(np.float32)[:, 1:k + 1]
    b = rng.standard_normal((n, k)).astype(np.float32)
    check_accumulate_bias_threads(rng, threads, a, b, False, True, counts=(1, 3), plain=True)


# The blocked path's column tails: a last panel of 1..31 columns (<= 16 on AVX-512: the
# one-vector kernel), for A read in place and packed (A^T); 1 and 2 threads.
@pytest.mark.parametrize("tail", [1, 7, 8, 15, 16, 17, 24, 31])
@pytest.mark.parametrize("ta", [False, True])
def test_blocked_column_tails(isa, rng, threads, tail, ta):
    a, b = operands(rng, 12 * 20 + 7, 32 * 5 + tail, 300, ta, False)
    check_accumulate_bias_threads(rng, threads, a, b, ta, False)


# C rows a multiple of 512 floats apart (row stride 1024 or 1536 here) make the AVX-512 kernel
# run each C tile as two half-height tiles; a row stride of N + 16 does not.  N = 1000 packs A;
# N = 500 (at most 16 column panels) reads A in place (row-major or A^T), in halves too.  Both
# must give the float64 result and the same bits (M = 100: edge rows; K > 256: several passes;
# with accumulate and bias), on every ISA and thread count.
@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("n", [1000, 500])
@pytest.mark.parametrize("ldc", [1024, 1536])
def test_aliasing_row_stride_same_bits(isa, rng, threads, ldc, n, ta):
    a, b = operands(rng, 100, n, 600, ta, False)
    bias = rng.standard_normal(n).astype(np.float32)
    c0 = rng.standard_normal((100, n)).astype(np.float32)
    want = ref_matmul(a, b, ta, False, c0=c0, bias=bias)
    for t in (1, 2):
        threads(t)
        outs = []
        for stride in (ldc, n + 16):
            buf = np.zeros((100, stride), np.float32)
            out = buf[:, :n]
            out[...] = c0
            matmul(a, b, trans_a=ta, out=out, accumulate=True, bias=bias)
            assert_close(out, want, 600)
            outs.append(out.copy())
        assert np.array_equal(outs[0], outs[1]), f"row stride {ldc} and {n + 16} differ ({t} threads)"


# Row-major A read in place (N <= 512) or packed (A's row stride a multiple of 1024 floats, or
# N > 512); A^T read in place (N <= 768, full panels; a partial last one packed) or packed
# (N = 800): every layout gives the same bits and the float64 result, with A a view into a
# wider array (row stride != K) and with edge rows and columns.  (N = 504: an edge panel of 24
# columns.  1-4 columns past a full vector, as N = 500 has, run apart on kernels chosen by A's
# layout, see test_tail_columns: their bits may differ between layouts.)
@pytest.mark.parametrize("lda", [300, 1024, 2048 + 8])
@pytest.mark.parametrize("n", [504, 40, 800])
def test_a_in_place_or_packed_same_bits(isa, rng, threads, lda, n):
    m, k = 389, 300
    big = rng.standard_normal((m, lda)).astype(np.float32)
    a = big[:, :k]
    b = rng.standard_normal((k, n)).astype(np.float32)
    want = ref_matmul(a, b, False, False)
    at = np.ascontiguousarray(a.T)
    for t in (1, 2):
        threads(t)
        got = matmul(a, b)
        assert_close(got, want, k)
        assert np.array_equal(got, matmul(at, b, trans_a=True)), f"lda {lda}: in place and packed A differ"
        assert np.array_equal(got, matmul(np.ascontiguousarray(a), b))


@pytest.mark.parametrize("ta,tb", list(itertools.product([False, True], repeat=2)))
@pytest.mark.parametrize("batch,m,n,k", [(1, 5, 7, 3), (6, 64, 33, 24), (13, 1, 40, 77), (4, 130, 65, 17), (3, 7, 1, 9)])
def test_batched(isa, rng, batch, m, n, k, ta, tb):
    a, b = operands(rng, m, n, k, ta, tb, batch=batch)
    got = matmul(a, b, trans_a=ta, trans_b=tb)
    assert got.shape == (batch, m, n)
    assert_close(got, ref_matmul(a, b, ta, tb), k)
    # a 2-D operand (or batch of 1) is shared by the whole batch
    got2 = matmul(a, b[0], trans_a=ta, trans_b=tb)
    assert_close(got2, ref_matmul(a, b[0], ta, tb), k)
    got3 = matmul(a[:1], b, trans_a=ta, trans_b=tb)
    assert_close(got3, ref_matmul(a[:1], b, ta, tb), k)


def test_zero_sized(isa, rng):
    a = np.zeros((0, 5), np.float32)
    b = np.ones((5, 3), np.float32)
    assert matmul(a, b).shape == (0, 3)
    assert matmul(np.ones((4, 5), np.float32), np.ones((5, 0), np.float32)).shape == (4, 0)
    # K == 0: an empty sum is zero (plus bias / accumulated value)
    r = matmul(np.ones((4, 0), np.float32), np.ones((0, 3), np.float32))
    assert r.shape == (4, 3) and np.all(r == 0)
    out = np.full((4, 3), 2.0, np.float32)
    matmul(np.ones((4, 0), np.float32), np.ones((0, 3), np.float32), out=out, accumulate=True,
           bias=np.arange(3, dtype=np.float32))
    assert np.array_equal(out, np.array([[2, 3, 4]] * 4, np.float32))
    assert matmul(np.ones((0, 4, 5), np.float32), np.ones((0, 5, 2), np.float32)).shape == (0, 4, 2)


def test_isa_variants_agree(rng):
    a, b = operands(rng, 301, 203, 517, False, True)
    results = {}
    prev = irf.isa()
    try:
        for name in ("generic", "avx2", "avx512"):
            if _C.isa_supported(name):
                _C.select_isa(name)
                results[name] = matmul(a, b, trans_b=True)
    finally:
        _C.select_isa(prev)
    base = results["generic"]
    for name, r in results.items():
        np.testing.assert_allclose(r, base, rtol=1e-4, atol=1e-4, err_msg=name)
    assert len(results) >= 1


def test_reference_twin_matches_kernel(rng):
    a, b = operands(rng, 77, 45, 130, True, False)
    bias = rng.standard_normal(45).astype(np.float32)
    fast = matmul(a, b, trans_a=True, bias=bias)
    slow = _C.matmul(a, b, True, False, None, False, bias, True)
    np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("m,n,k,tb", [(2048, 96, 200, False), (96, 700, 300, False), (1, 3000, 64, False),
                                      (3000, 1, 64, False), (5, 9, 11, False), (128, 128, 128, False),
                                      (128, 120, 128, True), (97, 33, 128, False), (1, 3001, 263, False),
                                      (1, 9000, 100, False), (3001, 1, 263, False),
                                      # row blocks split evenly in half panels at 2+ threads
                                      (1030, 130, 260, False), (774, 300, 257, True), (512, 512, 512, False)])
def test_thread_count_gives_identical_results(rng, threads, m, n, k, tb):
    a, b = operands(rng, m, n, k, False, tb)
    threads(1)
    r1 = matmul(a, b, trans_b=tb)
    for t in (2, 3, 4):
        threads(t)
        assert np.array_equal(matmul(a, b, trans_b=tb), r1), f"{t} threads differ from 1"


# B is packed one KC slice at a time into two alternating buffers while the team computes with
# the previous slice (claimed items, a barrier per slice): several slices with a ragged last
# one (K = 1100 is not a multiple of 256 or of the 8-row pack items; K = 4100: 17 slices, each
# buffer reused 8 times), two column blocks (N > 4064), both B layouts (row groups / panels as
# items), team and one-product-per-thread batches; every result must equal the float64 one and
# the 1-thread one.  At 2-4 threads these products run as private parts (see
# test_private_parts_threads); 5 and 6 threads (on any core count) run them as a team.
@pytest.mark.parametrize("m,n,k,tb,batch", [(800, 4200, 1100, False, None), (300, 4200, 1100, True, None),
                                            (200, 600, 700, True, 3), (129, 60, 520, False, 5),
                                            (130, 140, 4100, False, None)])
def test_packing_overlap_threads(rng, threads, m, n, k, tb, batch):
    a, b = operands(rng, m, n, k, False, tb, batch=batch)
    threads(1)
    r1 = matmul(a, b, trans_b=tb)
    assert_close(r1, ref_matmul(a, b, False, tb), k)
    for t in (2, 3, 4, 5, 6):
        threads(t)
        assert np.array_equal(matmul(a, b, trans_b=tb), r1), f"{t} threads differ from 1"


# A^T with a row stride that is a multiple of 1024 floats, against a C row stride that is a
# multiple of 512 (tiles run as split halves): A is packed there, read in place with any other
# stride; both must give the float64 result and the same bits, at 1 and 2 threads.
@pytest.mark.parametrize("m,n", [(1024, 512), (2048, 1024), (1024, 500)])
def test_a_transposed_aliasing_stride_same_bits(isa, rng, threads, m, n):
    k = 300
    b = rng.standard_normal((k, n)).astype(np.float32)
    wide = rng.standard_normal((k, m + 24)).astype(np.float32)
    at = np.ascontiguousarray(wide[:, :m])   # row stride m (a multiple of 1024)
    want = ref_matmul(at, b, True, False)
    for t in (1, 2):
        threads(t)
        got = matmul(at, b, trans_a=True)
        assert_close(got, want, k)
        assert np.array_equal(got, matmul(wide[:, :m], b, trans_a=True)), "strides m and m + 24 differ"


# At 2-4 threads a blocked product is split into one independent part per thread (columns
# when N > M with 3+ B panels per part and K > 32 or N >= 8 M, else rows when every part gets
# two row panels), each packing its own B (or A): the parts must give the float64 result and the same
# bits as one thread, with ragged part boundaries (M, N not multiples of the row grain or the
# panel width), reversed strides, accumulate and bias, batches, and 3 / 4 threads (parts of 1/3
# and 1/4, or the shared team where neither split applies: 30 x 100 x 300).  Each part runs on
# the blocked path even where its own dimensions would choose another kernel (row parts of
# 128 x 16 x 300, column parts of 100 x 256 x 300), and odd row counts (parts of unequal
# height); K <= 32 with N > M takes rows (533 x 855 x 32), with N >= 8 M columns (60 x 2000 x 10).
@pytest.mark.parametrize("m,n,k,ta,tb", [(2100, 521, 500, False, False), (1100, 777, 700, True, False),
                                         (530, 1300, 800, False, True), (800, 2100, 330, True, True),
                                         (1031, 1031, 520, False, False), (600, 100, 100, False, False),
                                         (530, 48, 200, True, False), (256, 16, 300, False, False),
                                         (200, 48, 1000, True, False), (300, 80, 500, True, True),
                                         (96, 16, 2100, False, True), (383, 130, 260, False, False),
                                         (40, 768, 600, False, False), (75, 900, 700, True, False),
                                         (533, 855, 32, False, False), (200, 61, 95, False, True),
                                         (30, 100, 300, False, False), (100, 256, 300, False, False),
                                         (60, 2000, 10, False, False), (66, 214, 812, True, True)])
def test_private_parts_threads(rng, threads, m, n, k, ta, tb):
    a, b = operands(rng, m, n, k, ta, tb)
    check_accumulate_bias_threads(rng, threads, a, b, ta, tb, counts=(1, 2, 3, 4))
    check_accumulate_bias_threads(rng, threads, a[::-1], b[:, ::-1], ta, tb, counts=(1, 2))


# Blocked products whose last B panel ends 1-4 columns past a full vector compute those columns
# on the skinny / matrix-vector kernels and the rest blocked (AVX-512; the other ISAs run
# them whole): 1 tail column (N = 17, 33, 321: matrix-vector), 2-4 (N = 20, 36, 50: skinny,
# row-major A or A^T); small products with one such column (100 x 17, 64 x 33, 120 x 97), with accumulate and bias (offset for the tail), batches, reversed
# strides, and A strided both ways (no unit stride: no split).  Float64 result, same bits at
# 1-4 threads.
@pytest.mark.parametrize("m,n,k,ta,tb", [(150, 17, 309, True, False), (300, 20, 1000, False, True),
                                         (1000, 33, 700, False, False), (200, 36, 300, True, False),
                                         (500, 50, 600, True, True), (400, 321, 276, False, True),
                                         (100, 17, 300, False, False), (64, 33, 500, True, False),
                                         (120, 97, 800, True, True)])
def test_tail_columns(isa, rng, threads, m, n, k, ta, tb):
    a, b = operands(rng, m, n, k, ta, tb)
    check_accumulate_bias_threads(rng, threads, a, b, ta, tb, counts=(1, 2, 3, 4), plain=True)
    check_accumulate_bias_threads(rng, threads, a[::-1], b[:, ::-1], ta, tb, counts=(1, 2))
    wide = rng.standard_normal((2 * a.shape[0], 2 * a.shape[1])).astype(np.float32)
    check_accumulate_bias_threads(rng, threads, wide[::2, ::2], b, ta, tb, counts=(1, 2))
    ab, bb = operands(rng, m, n, k, ta, tb, batch=2)
    threads(1)
    r1 = matmul(ab, bb, trans_a=ta, trans_b=tb)
    assert_close(r1, ref_matmul(ab, bb, ta, tb), k)
    threads(2)
    assert np.array_equal(matmul(ab, bb, trans_a=ta, trans_b=tb), r1)


def test_private_parts_batched(rng, threads):
    a, b = operands(rng, 640, 900, 950, True, False, batch=2)
    threads(1)
    r1 = matmul(a, b, trans_a=True)
    assert_close(r1, ref_matmul(a, b, True, False), 950)
    for t in (2, 3):
        threads(t)
        assert np.array_equal(matmul(a, b, trans_a=True), r1), f"{t} threads differ from 1"


def test_batched_thread_count_identical(rng, threads):
    a, b = operands(rng, 24, 40, 32, False, True, batch=9)
    threads(1)
    r1 = matmul(a, b, trans_b=True)
    threads(2)
    assert np.array_equal(matmul(a, b, trans_b=True), r1)


class TestErrors:
    def test_dtype(self):
        a = np.ones((3, 4))
        with pytest.raises(TypeError, match=r"matmul: a must be float32, got float64 \(convert with a.astype"):
            matmul(a, np.ones((4, 2), np.float32))
        with pytest.raises(TypeError, match="matmul: b must be float32, got int64"):
            matmul(np.ones((3, 4), np.float32), np.ones((4, 2), np.int64))
        with pytest.raises(TypeError, match="a must be a numpy.ndarray"):
            matmul([[1.0, 2.0]], np.ones((2, 2), np.float32))

    def test_inner_mismatch_names_both_shapes(self):
        with pytest.raises(ValueError, match=r"inner dimensions differ.*a \(3, 4\).*b \(5, 2\)"):
            matmul(np.ones((3, 4), np.float32), np.ones((5, 2), np.float32))
        with pytest.raises(ValueError, match=r"transposed"):
            matmul(np.ones((3, 4), np.float32), np.ones((4, 2), np.float32), trans_a=True)

    def test_ndim(self):
        with pytest.raises(ValueError, match="2-D or 3-D"):
            matmul(np.ones(4, np.float32), np.ones((4, 2), np.float32))
        with pytest.raises(ValueError, match="2-D or 3-D"):
            matmul(np.ones((2, 2, 3, 4), np.float32), np.ones((4, 2), np.float32))

    def test_batch_mismatch(self):
        with pytest.raises(ValueError, match=r"batch sizes differ: a \(2, 3, 4\) and b \(3, 4, 5\)"):
            matmul(np.ones((2, 3, 4), np.float32), np.ones((3, 4, 5), np.float32))

    def test_equivalent_dtype_objects(self):
        # an unpickled (or deep-copied) array carries its own float32 dtype object, equal to but
        # not the same as np.dtype(np.float32): accepted everywhere; byte-swapped '>f4' is not
        import copy
        import pickle
        from ironformer import ops
        rng = np.random.default_rng(0)
        a = rng.standard_normal((5, 7), dtype=np.float32)
        b = rng.standard_normal((7, 3), dtype=np.float32)
        ua, ub = pickle.loads(pickle.dumps(a)), copy.deepcopy(b)
        uo = pickle.loads(pickle.dumps(np.zeros((5, 3), np.float32)))
        assert ua.dtype is not np.dtype(np.float32) or ub.dtype is not np.dtype(np.float32)
        np.testing.assert_array_equal(matmul(ua, ub, out=uo), matmul(a, b))
        np.testing.assert_array_equal(ops.gelu_forward(ua), ops.gelu_forward(a))
        q = pickle.loads(pickle.dumps(rng.standard_normal((1, 2, 4, 8), dtype=np.float32)))
        mask = pickle.loads(pickle.dumps(np.array([[True, True, False, True]])))
        np.testing.assert_array_equal(ops.attention_forward(q, q, q, key_mask=mask)[0],
                                      ops.attention_forward(q.copy(), q.copy(), q.copy(),
                                                            key_mask=mask.copy())[0])
        with pytest.raises(TypeError, match="a must be float32, got >f4"):
            matmul(a.astype(">f4"), b)

    def test_out(self):
        a, b = np.ones((3, 4), np.float32), np.ones((4, 2), np.float32)
        with pytest.raises(ValueError, match=r"out has shape \(3, 3\), expected \(3, 2\)"):
            matmul(a, b, out=np.empty((3, 3), np.float32))
        with pytest.raises(ValueError, match=r"out has shape \(2, 3, 3\), expected \(2, 3, 2\)"):
            matmul(np.ones((2, 3, 4), np.float32), b, out=np.empty((2, 3, 3), np.float32))
        with pytest.raises(TypeError, match="out must be float32, got float64"):
            matmul(a, b, out=np.empty((3, 2)))
        with pytest.raises(ValueError, match="contiguous in its last dimension"):
            matmul(a, b, out=np.empty((3, 4), np.float32)[:, ::2])
        ro = np.empty((3, 2), np.float32)
        ro.flags.writeable = False
        with pytest.raises(ValueError, match="out must be writable"):
            matmul(a, b, out=ro)
        with pytest.raises(ValueError, match="shares memory"):
            big = np.ones((4, 4), np.float32)
            matmul(big, big[:, :2], out=big[:, 2:])
        with pytest.raises(ValueError, match="accumulate=True needs out="):
            matmul(a, b, accumulate=True)

    def test_bias(self):
        a, b = np.ones((3, 4), np.float32), np.ones((4, 2), np.float32)
        with pytest.raises(ValueError, match=r"bias has shape \(3,\), expected \(2,\)"):
            matmul(a, b, bias=np.ones(3, np.float32))
        with pytest.raises(TypeError, match="bias must be float32"):
            matmul(a, b, bias=np.ones(2))


# K <= 32 (band order in gemm.cpp): row panels across all B panels; with C rows 16 KiB apart
# and not 64-byte aligned, accumulate and bias, 1-3 threads: float64 result, same bits.
@pytest.mark.parametrize("k", [1, 3, 17, 32, 33])
def test_tiny_k_band_order_strided_out(rng, threads, k):
    m, n = 301, 203
    a, b = operands(rng, m, n, k, True, False)
    bias = rng.standard_normal(n).astype(np.float32)
    base = rng.standard_normal(m * 4096 + 8).astype(np.float32)
    c0 = base[4:4 + m * 4096].reshape(m, 4096)[:, :n].copy()
    want = ref_matmul(a, b, True, False, c0=c0, bias=bias)
    outs = []
    for t in (1, 2, 3):
        threads(t)
        out = base[4:4 + m * 4096].reshape(m, 4096)[:, :n]
        out[...] = c0
        matmul(a, b, trans_a=True, out=out, accumulate=True, bias=bias)
        assert_close(out, want, k)
        outs.append(out.copy())
    assert np.array_equal(outs[0], outs[1]) and np.array_equal(outs[0], outs[2])


# K split into equal slices (slice_depth in gemm.cpp: 257 -> 136 + 121, 769 -> 4 x <= 200),
# B packed by rows (row-major) or by panels (B^T), 1-3 threads: float64 result, same bits.
@pytest.mark.parametrize("k", [257, 520, 769])
@pytest.mark.parametrize("tb", [False, True])
def test_balanced_k_slices(rng, threads, k, tb):
    a, b = operands(rng, 200, 150, k, False, tb)
    check_accumulate_bias_threads(rng, threads, a, b, False, tb, counts=(1, 2, 3))


# Small products whose A^T rows are 2048 floats apart (gemm_small copies A first) and a
# reversed one: float64 result, same bits at 1-3 threads.
@pytest.mark.parametrize("m,n,k", [(7, 300, 900), (100, 128, 700), (12, 768, 260)])
def test_small_aliasing_a_is_copied(rng, threads, m, n, k):
    base = rng.standard_normal((k, 2048)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    for a in (base[:, :m], base[::-1, 5:5 + m]):
        check_accumulate_bias_threads(rng, threads, a, b, True, False, counts=(1, 2, 3), plain=True)


# A^T whose k lines alias (a_cs 64, 1024, 2048) with 129+ row-major B columns: copied per
# 6-row panel by each thread for the wide tiles (gemm_small_wide), last panels of 1-5 rows, 12
# rows (M <= MR), strips or panels split over the team: float64 result, same bits at 1-3
# threads.  (The copy reads A[i*a_rs + k*a_cs]; a wrong panel offset or row count fails here.)
@pytest.mark.parametrize("m,n,k,lda", [(64, 200, 300, 64), (61, 333, 129, 1024), (31, 130, 700, 2048),
                                       (12, 300, 260, 2048), (97, 257, 768, 1024)])
def test_small_wide_aliasing_a_copied(rng, threads, m, n, k, lda):
    base = rng.standard_normal((k, lda)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    check_accumulate_bias_threads(rng, threads, base[:, :m], b, True, False, counts=(1, 2, 3), plain=True)


# 2..12 rows with a large row-major B (16+ MiB, or 4+ MiB with a row stride a multiple of
# 1024 floats or 2048+ columns) stream B in blocks of 8 rows (gemm_rows_stream), prefetching 2 blocks ahead:
# K not a multiple of 8, K = 17 (the last prefetched block 1 row), partial last tiles and
# vectors, 7-12 rows in two panels, a B view with wider rows, A^T;
# float64 result and the same bits at 1-3 threads, accumulate and bias (added once, not per block).
@pytest.mark.parametrize("m,n,k,ldb,ta", [(2, 1024, 1100, 1024, False), (5, 1030, 4100, 1030, True),
                                          (7, 2048, 515, 2048, False), (12, 1000, 1100, 2048, True),
                                          (3, 4100, 1030, 4100, False), (4, 65600, 17, 65600, True)])
def test_rows_stream(rng, threads, m, n, k, ldb, ta):
    b = rng.standard_normal((k, ldb)).astype(np.float32)[:, :n]
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
    check_accumulate_bias_threads(rng, threads, a, b, ta, False, counts=(1, 2, 3), plain=True)


# Small products of 48+ rows whose B rows are 1024 floats apart take the blocked path (B
# packed once), 24 rows stay on gemm_small: float64 result, same bits at 1-3 threads.
@pytest.mark.parametrize("m,ta", [(87, True), (60, False), (24, False), (120, True)])
def test_small_strided_b_rows(rng, threads, m, ta):
    n, k = 104, 700
    b = rng.standard_normal((k, 1024)).astype(np.float32)[:, 3:3 + n]
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
    check_accumulate_bias_threads(rng, threads, a, b, ta, False, counts=(1, 2, 3), plain=True)


# Small products with row-major B of 64-128 columns run in 6 x 64 tiles on AVX-512
# (gemm_small_wide), and those of at most 128 rows with wider B and K <= 768 (column strips
# split over the team when there are 2+ per thread): last tiles of 1-4 vectors with partial
# lanes (N = 65, 79, 96, 100, 128, 200, 333, 1000),
# row panels of 1-6 rows, M <= MR only when 6 divides it (8 rows keep the 12 x 32 tile), a
# contiguous B whose row stride aliases in L1 (64x64x128: small, not blocked), reversed and
# strided A, A^T; float64 result and the same bits at 1-3 threads.
@pytest.mark.parametrize("m,n,k", [(6, 64, 300), (12, 65, 1), (8, 128, 77), (13, 79, 7), (17, 96, 256),
                                   (64, 64, 128), (61, 100, 33), (127, 128, 129), (100, 113, 2000),
                                   (16, 768, 768), (13, 200, 300), (128, 1000, 65), (6, 333, 768)])
@pytest.mark.parametrize("ta", [False, True])
def test_small_wide_tiles(isa, rng, threads, m, n, k, ta):
    a, b = operands(rng, m, n, k, ta, False)
    check_accumulate_bias_threads(rng, threads, a, b, ta, False, counts=(1, 2, 3), plain=True)
    wide = rng.standard_normal((2 * a.shape[0], 2 * a.shape[1])).astype(np.float32)
    check_accumulate_bias_threads(rng, threads, wide[::-2, ::2], b, ta, False, counts=(1, 2))
