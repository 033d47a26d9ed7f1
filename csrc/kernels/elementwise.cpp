// elementwise.cpp: the small ops autograd composes with, compiled once per ISA.
//
//   elementwise  out[i] = a[i] (+ - * /) b[i]  or  f(a[i]) (affine, exp, log, sqrt, pow)
//                over a broadcast iteration space of <= 4 dims with arbitrary element
//                strides (0 = broadcast); the binding collapses numpy shapes onto it.
//   reduce_sum   out (O, I) = sum_r x (O, R, I)   (the "sum back to the input shape" of
//                broadcasting gradients, Tensor.sum / mean)
//
// Every output element is computed by one thread from its own inputs, so elementwise results
// never depend on the thread count.  reduce_sum uses a fixed blocked order (below) that is
// also independent of the thread count.
#include <cmath>

#include "kernels.h"
#include "elementwise.h"
#include "simd.h"

namespace irf {
namespace IRF_ISA {
namespace {

// Scalar forms (tails, strided rows, and ops without a vector form: log, general pow).
IRF_INLINE float apply1(int op, float x, float alpha, float beta) {
  switch (op) {
    case kEwAffine: return alpha * x + beta;
    case kEwExp: { vf v = vexp(vset1(x)); float r[W]; vstore(r, v); return r[0]; }
    case kEwLog: return std::log(x);
    case kEwSqrt: return std::sqrt(x);
    case kEwPow:
      if (alpha == 2.f) return x * x;
      if (alpha == 1.f) return x;
      if (alpha == -1.f) return 1.f / x;
      if (alpha == 0.5f) return std::sqrt(x);
      return std::pow(x, alpha);
    default: return 0.f;
  }
}
IRF_INLINE float apply2(int op, float a, float b) {
  switch (op) {
    case kEwAdd: return a + b;
    case kEwSub: return a - b;
    case kEwMul: return a * b;
    default: return a / b;
  }
}

// One row of n elements: out[j*os] = op(a[j*as], b[j*bs]).  Vector paths when out is
// contiguous and each input is contiguous (stride 1) or a broadcast scalar (stride 0).
template <int OP, int SA, int SB>
IRF_INLINE void binary_row_vec(float* __restrict out, const float* a, const float* b, i64 n) {
  auto ld = [](const float* p, i64 j, int S) { return S ? vload(p + j) : vset1(p[0]); };
  auto ldp = [](const float* p, i64 j, int S, int m) { return S ? vload_part(p + j, m) : vset1(p[0]); };
  auto f = [](vf x, vf y) {
    if (OP == kEwAdd) return vadd(x, y);
    if (OP == kEwSub) return vsub(x, y);
    if (OP == kEwMul) return vmul(x, y);
    return vdiv(x, y);
  };
  i64 j = 0;
  for (; j + 2 * W <= n; j += 2 * W) {
    const vf r0 = f(ld(a, j, SA), ld(b, j, SB));
    const vf r1 = f(ld(a, j + W, SA), ld(b, j + W, SB));
    vstore(out + j, r0);
    vstore(out + j + W, r1);
  }
  for (; j + W <= n; j += W) vstore(out + j, f(ld(a, j, SA), ld(b, j, SB)));
  if (j < n) {
    const int m = int(n - j);
    vstore_part(out + j, f(ldp(a, j, SA, m), ldp(b, j, SB, m)), m);
  }
}

template <int OP>
void binary_row(float* out, i64 os, const float* a, i64 as, const float* b, i64 bs, i64 n) {
  if (os == 1) {
    if (as == 1 && bs == 1) return binary_row_vec<OP, 1, 1>(out, a, b, n);
    if (as == 1 && bs == 0) return binary_row_vec<OP, 1, 0>(out, a, b, n);
    if (as == 0 && bs == 1) return binary_row_vec<OP, 0, 1>(out, a, b, n);
  }
  for (i64 j = 0; j < n; ++j) out[j * os] = apply2(OP, a[j * as], b[j * bs]);
}

void unary_row(int op, float* out, i64 os, const float* a, i64 as, i64 n, float alpha, float beta) {
  if (os == 1 && as == 1) {
    i64 j = 0;
    const vf va = vset1(alpha), vb = vset1(beta);
    switch (op) {
      case kEwAffine:
        for (; j + W <= n; j += W) vstore(out + j, vfma(va, vload(a + j), vb));
        break;
      case kEwExp:
        for (; j + W <= n; j += W) vstore(out + j, vexp(vload(a + j)));
        break;
      case kEwSqrt:
        for (; j + W <= n; j += W) vstore(out + j, vsqrt(vload(a + j)));
        break;
      case kEwPow:
        if (alpha == 2.f)
          for (; j + W <= n; j += W) { const vf x = vload(a + j); vstore(out + j, vmul(x, x)); }
        else if (alpha == -1.f)
          for (; j + W <= n; j += W) vstore(out + j, vdiv(vset1(1.f), vload(a + j)));
        else if (alpha == 0.5f)
          for (; j + W <= n; j += W) vstore(out + j, vsqrt(vload(a + j)));
        break;
      default:
        break;
    }
    // vfma rounds once; keep the scalar tail identical (std::fma) so results do not depend on
    // where a row is split between threads.
    if (op == kEwAffine) {
      for (; j < n; ++j) out[j] = std::fma(alpha, a[j], beta);
      return;
    }
    for (; j < n; ++j) out[j] = apply1(op, a[j], alpha, beta);
    return;
  }
  for (i64 j = 0; j < n; ++j) out[j * os] = apply1(op, a[j * as], alpha, beta);
}

// Rows of the last dimension; a work item is (row, column chunk).  kChunk is a multiple of
// every W so vector/scalar boundaries inside a row never move with the thread count.
constexpr i64 kChunk = 4096;

void elementwise(const EwParams& p) {
  const i64 n = p.shape[3];
  const i64 rows = p.shape[0] * p.shape[1] * p.shape[2];
  if (n == 0 || rows == 0) return;
  const i64 chunks = ceil_div(n, kChunk);
  const i64 items = rows * chunks;
  int nth = p.nthreads < 1 ? 1 : p.nthreads;
  if (rows * n < 32768) nth = 1;   // too small to pay for waking the team
  if (i64(nth) > items) nth = int(items);
  auto run = [&](int tid, int nt) {
    i64 lo, hi;
    split_range(items, tid, nt, lo, hi);
    for (i64 it = lo; it < hi; ++it) {
      const i64 row = it / chunks, c0 = (it % chunks) * kChunk;
      const i64 len = n - c0 < kChunk ? n - c0 : kChunk;
      const i64 i2 = row % p.shape[2], r1 = row / p.shape[2];
      const i64 i1 = r1 % p.shape[1], i0 = r1 / p.shape[1];
      float* o = p.out + i0 * p.os[0] + i1 * p.os[1] + i2 * p.os[2] + c0 * p.os[3];
      const float* a = p.a + i0 * p.as[0] + i1 * p.as[1] + i2 * p.as[2] + c0 * p.as[3];
      if (ew_is_binary(p.op)) {
        const float* b = p.b + i0 * p.bs[0] + i1 * p.bs[1] + i2 * p.bs[2] + c0 * p.bs[3];
        switch (p.op) {
          case kEwAdd: binary_row<kEwAdd>(o, p.os[3], a, p.as[3], b, p.bs[3], len); break;
          case kEwSub: binary_row<kEwSub>(o, p.os[3], a, p.as[3], b, p.bs[3], len); break;
          case kEwMul: binary_row<kEwMul>(o, p.os[3], a, p.as[3], b, p.bs[3], len); break;
          default: binary_row<kEwDiv>(o, p.os[3], a, p.as[3], b, p.bs[3], len); break;
        }
      } else {
        unary_row(p.op, o, p.os[3], a, p.as[3], len, p.alpha, p.beta);
      }
    }
  };
  run_team(nth, run);
}

// ---------------------------------------------------------------------------------------
// reduce_sum.  Summation order (the definition, for every ISA and thread count):
//   I == 1: the R values of a row are cut into blocks of kRowBlock; a block's sum is taken
//           with 4*W lane accumulators (element j into lane j mod 4W), folded in a fixed tree;
//           the block sums are added left to right.
//   I  > 1: rows r are cut into blocks of kColBlock; within a block each column adds its
//           values top to bottom; the block sums are added top to bottom.
// Blocking keeps the float32 error ~ (block + R/block) * eps instead of R * eps.
constexpr i64 kRowBlock = 2048;   // multiple of 4 * W for every ISA
constexpr i64 kColBlock = 64;
constexpr i64 kColChunk = 256;  // columns per work item (multiple of every W; 1 KiB of sums)

float block_sum_contig(const float* x, i64 n) {
  vf s0 = vzero(), s1 = vzero(), s2 = vzero(), s3 = vzero();
  i64 j = 0;
  for (; j + 4 * W <= n; j += 4 * W) {
    s0 = vadd(s0, vload(x + j));
    s1 = vadd(s1, vload(x + j + W));
    s2 = vadd(s2, vload(x + j + 2 * W));
    s3 = vadd(s3, vload(x + j + 3 * W));
  }
  for (int q = 0; j < n; ++q, j += W) {   // tail: whole or partial vectors into s0..s3 in turn
    const int m = n - j < W ? int(n - j) : W;
    const vf v = vload_part(x + j, m);
    if (q == 0) s0 = vadd(s0, v);
    else if (q == 1) s1 = vadd(s1, v);
    else s2 = vadd(s2, v);
  }
  return vreduce_add(vadd(vadd(s0, s1), vadd(s2, s3)));
}

// cols (<= kColChunk) columns starting at x (row stride I) summed over rows [0, R) into acc:
// per block of kColBlock rows, s[j] = x[b0][j] + x[b0+1][j] + ... (rows streamed contiguously),
// then acc[j] = s_block0[j] + s_block1[j] + ... in block order.
void column_sums(float* __restrict acc, const float* x, i64 I, i64 R, i64 cols) {
  alignas(64) float s[kColChunk];
  const i64 nv = cols / W;
  const int tail = int(cols - nv * W);
  for (i64 b0 = 0; b0 < R; b0 += kColBlock) {
    const i64 b1 = b0 + kColBlock < R ? b0 + kColBlock : R;
    float* dst = b0 == 0 ? acc : s;
    for (i64 v = 0; v < nv; ++v) vstore(dst + v * W, vload(x + b0 * I + v * W));
    if (tail) vstore_part(dst + nv * W, vload_part(x + b0 * I + nv * W, tail), tail);
    for (i64 r = b0 + 1; r < b1; ++r) {
      const float* row = x + r * I;
      for (i64 v = 0; v < nv; ++v) vstore(dst + v * W, vadd(vload(dst + v * W), vload(row + v * W)));
      if (tail) vstore_part(dst + nv * W, vadd(vload_part(dst + nv * W, tail), vload_part(row + nv * W, tail)), tail);
    }
    if (b0 != 0) {
      for (i64 v = 0; v < nv; ++v) vstore(acc + v * W, vadd(vload(acc + v * W), vload(s + v * W)));
      if (tail) vstore_part(acc + nv * W, vadd(vload_part(acc + nv * W, tail), vload_part(s + nv * W, tail)), tail);
    }
  }
}

void reduce_sum(const ReduceParams& p) {
  const i64 O = p.O, R = p.R, I = p.I;
  if (O == 0 || I == 0) return;
  int nth = p.nthreads < 1 ? 1 : p.nthreads;
  if (O * R * I < 32768) nth = 1;
  if (I == 1) {
    const i64 nb = R == 0 ? 1 : ceil_div(R, kRowBlock);
    float* part = static_cast<float*>(aligned_alloc64(sizeof(float) * size_t(O * nb)));
    if (!part) {   // out of memory: no parallel partials, same order
      nth = 1;
    }
    auto run = [&](int tid, int nt) {
      i64 lo, hi;
      split_range(O * nb, tid, nt, lo, hi);
      for (i64 it = lo; it < hi; ++it) {
        const i64 o = it / nb, b = it % nb;
        const i64 r0 = b * kRowBlock, len = R - r0 < kRowBlock ? R - r0 : kRowBlock;
        part[it] = len > 0 ? block_sum_contig(p.x + o * R + r0, len) : 0.f;
      }
    };
    if (part) {
      run_team(nth, run);
      for (i64 o = 0; o < O; ++o) {
        float s = part[o * nb];
        for (i64 b = 1; b < nb; ++b) s += part[o * nb + b];
        p.out[o] = p.accumulate ? p.out[o] + s : s;
      }
      aligned_free64(part);
    } else {
      for (i64 o = 0; o < O; ++o) {
        float s = 0.f;
        for (i64 r0 = 0; r0 < R; r0 += kRowBlock) {
          const float bs = block_sum_contig(p.x + o * R + r0, R - r0 < kRowBlock ? R - r0 : kRowBlock);
          s = r0 == 0 ? bs : s + bs;
        }
        p.out[o] = p.accumulate ? p.out[o] + s : s;
      }
    }
    return;
  }
  // I > 1: work items are (o, column chunk); each owns its outputs, so no partials needed.
  const i64 chunks = ceil_div(I, kColChunk), items = O * chunks;
  if (i64(nth) > items) nth = int(items);
  auto run = [&](int tid, int nt) {
    alignas(64) float acc[kColChunk];
    i64 lo, hi;
    split_range(items, tid, nt, lo, hi);
    for (i64 it = lo; it < hi; ++it) {
      const i64 o = it / chunks, c0 = (it % chunks) * kColChunk;
      const i64 cols = I - c0 < kColChunk ? I - c0 : kColChunk;
      float* out = p.out + o * I + c0;
      if (R == 0) {
        for (i64 j = 0; j < cols; ++j) acc[j] = 0.f;
      } else {
        column_sums(acc, p.x + o * R * I + c0, I, R, cols);
      }
      if (p.accumulate)
        for (i64 j = 0; j < cols; ++j) out[j] += acc[j];
      else
        for (i64 j = 0; j < cols; ++j) out[j] = acc[j];
    }
  };
  run_team(nth, run);
}

}  // namespace

void register_elementwise(KernelTable& t) {
  t.elementwise = &elementwise;
  t.reduce_sum = &reduce_sum;
}

}  // namespace IRF_ISA
}  // namespace irf
