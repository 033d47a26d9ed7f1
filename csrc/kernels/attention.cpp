// attention.cpp: fused multi-head scaled-dot-product attention (flash-attention style),
// compiled once per ISA.
//
//   q (B, NH, Tq, HS), k, v (B, NH, Tk, HS) -> out (B, NH, Tq, HS), lse (B, NH, Tq)
//   S = q k^T * scale + mask;  P = softmax_rows(S);  out = P v;  lse = logsumexp_rows(S)
//
// Design.  Work is tiled in query x key blocks and the T x T score matrix is never stored:
// per thread a few block-sized tiles live in a workspace (L2); memory is O(B*NH*T*HS).
//  * Forward: one work unit per (b, h, query block of BQF rows); key blocks of BKF stream
//    past with an online softmax (running max m and sum l per query, the output tile rescaled
//    when m grows).  Scores are formed transposed, S^T = k (q*scale)^T, so q^T is packed once
//    per unit, k rows are read in place and the softmax statistics of the block's queries sit
//    in vectors.  Causal key blocks entirely above the diagonal are never visited; tiles that
//    cross it get a -inf step bias.  A problem with Tq <= kRowTq queries (KV-cache decoding)
//    takes a per-query path instead (one score row of Tk floats per thread, k and v read once).
//  * Backward: D_i = rowsum(dout_i * out_i) first; then one unit per (b, h, key chunk), a key
//    chunk being every G-th key block (BKB keys) of that head, G fixed by the problem size,
//    never by the thread count.  For each of its key blocks the unit holds dK, dV tiles and
//    walks the query blocks (BLK rows) recomputing P = exp(S - lse) tile by tile; dQ rows of
//    the head are accumulated by the unit into its own buffer (chunk 0 into dq, chunk g > 0
//    into a partial buffer summed into dq afterwards in g order), so every sum has the same
//    order whatever the number of threads.
// Inner products are register-blocked micro-kernels in the simd.h vocabulary:
//  * tile_abt: MR rows x 2W columns of A B^T (A rows read in place: k, q or dout rows; B^T
//    packed k-major: q^T in the forward, k^T and v^T in the backward),
//  * tile_ab:  MR output rows x HS += A(MR x n) B(n x HS) (P v, dS k, P^T dout, dS^T q).
#include <cmath>

#include "attention_args.h"
#include "kernels.h"
#include "simd.h"

namespace irf {
namespace IRF_ISA {
namespace {

// MR rows x 2 vectors of accumulators + 2 loads + 1 broadcast fit the register file.
constexpr int MR = kTileRows;
constexpr int NV = 2 * W;        // key columns of one tile_abt call
constexpr int BLK = 8 * MR;      // query and key block: a multiple of MR and of NV
constexpr int BQF = 2 * BLK;     // the forward's query block
constexpr int BKF = 2 * BLK;     // the forward's key block (BLK keys: 1-6% slower, more per-block work)
constexpr int BKB = 2 * BLK;     // the backward's key block
constexpr float kNegInf = -__builtin_inff();

// s[r*lds + c] = sum_{d < HS} arow[r][d] * bt[d*ldb + c]   for r < MR, c < 2W.
IRF_INLINE void tile_abt(float* __restrict s, i64 lds, const float* const* arow, const float* __restrict bt,
                         i64 ldb, i64 HS) {
  vf acc0[MR], acc1[MR];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) { acc0[r] = vzero(); acc1[r] = vzero(); }
  const float* a[MR];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) a[r] = arow[r];
#pragma GCC unroll 2
  for (i64 d = 0; d < HS; ++d) {
    const vf b0 = vload(bt + d * ldb), b1 = vload(bt + d * ldb + W);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      const vf x = vset1(a[r][d]);
      acc0[r] = vfma(x, b0, acc0[r]);
      acc1[r] = vfma(x, b1, acc1[r]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) {
    vstore(s + r * lds, acc0[r]);
    vstore(s + r * lds + W, acc1[r]);
  }
}

// c[r][0:HS] += sum_{t < nt} a[r*ars + t*acs] * b[t*bs + 0:HS]   for r < MR.
// Columns go 2W at a time; the last chunk (HS not a multiple of 2W) uses masked loads.
IRF_INLINE void tile_ab(float* const* crow, const float* __restrict a, i64 ars, i64 acs, const float* __restrict b,
                        i64 bs, i64 nt, i64 HS) {
  i64 c0 = 0;
  for (; c0 + NV <= HS; c0 += NV) {
    vf acc0[MR], acc1[MR];
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) { acc0[r] = vload(crow[r] + c0); acc1[r] = vload(crow[r] + c0 + W); }
    const float* bp = b + c0;
    const float* ap = a;
#pragma GCC unroll 2
    for (i64 t = 0; t < nt; ++t) {
      const vf b0 = vload(bp), b1 = vload(bp + W);
#pragma GCC unroll 16
      for (int r = 0; r < MR; ++r) {
        const vf x = vset1(ap[r * ars]);
        acc0[r] = vfma(x, b0, acc0[r]);
        acc1[r] = vfma(x, b1, acc1[r]);
      }
      bp += bs;
      ap += acs;
    }
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) { vstore(crow[r] + c0, acc0[r]); vstore(crow[r] + c0 + W, acc1[r]); }
  }
  if (c0 == HS) return;
  const int n = int(HS - c0);
  if (n <= W) {                       // one (partial) vector
    vf acc[MR];
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) acc[r] = vload_part(crow[r] + c0, n);
    const float* bp = b + c0;
    const float* ap = a;
    for (i64 t = 0; t < nt; ++t) {
      const vf b0 = vload_part(bp, n);
#pragma GCC unroll 16
      for (int r = 0; r < MR; ++r) acc[r] = vfma(vset1(ap[r * ars]), b0, acc[r]);
      bp += bs;
      ap += acs;
    }
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) vstore_part(crow[r] + c0, acc[r], n);
    return;
  }
  const int n1 = n - W;               // one full vector and one partial one
  vf acc0[MR], acc1[MR];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) { acc0[r] = vload(crow[r] + c0); acc1[r] = vload_part(crow[r] + c0 + W, n1); }
  const float* bp = b + c0;
  const float* ap = a;
  for (i64 t = 0; t < nt; ++t) {
    const vf b0 = vload(bp), b1 = vload_part(bp + W, n1);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      const vf x = vset1(ap[r * ars]);
      acc0[r] = vfma(x, b0, acc0[r]);
      acc1[r] = vfma(x, b1, acc1[r]);
    }
    bp += bs;
    ap += acs;
  }
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) { vstore(crow[r] + c0, acc0[r]); vstore_part(crow[r] + c0 + W, acc1[r], n1); }
}

// dst[d*BKB + j] = src[j*ts + d] for j < nk, 0 for nk <= j < BKB  (a key block, transposed).
void pack_t(float* __restrict dst, const float* src, i64 ts, i64 nk, i64 HS) {
  for (i64 j = 0; j < nk; ++j) {
    const float* s = src + j * ts;
    for (i64 d = 0; d < HS; ++d) dst[d * BKB + j] = s[d];
  }
  if (nk < BKB)
    for (i64 d = 0; d < HS; ++d)
      for (i64 j = nk; j < BKB; ++j) dst[d * BKB + j] = 0.f;
}

// kbias[j] = 0 for a real key of the block (j < nk, key mask set), -inf otherwise; returns
// whether any key of the block is real.
bool key_bias(float* kbias, const std::uint8_t* mask, i64 j0, i64 nk, i64 n) {
  bool any = false;
  for (i64 j = 0; j < n; ++j) {
    const bool real = j < nk && (!mask || mask[j0 + j]);
    kbias[j] = real ? 0.f : kNegInf;
    any |= real;
  }
  return any;
}

// The causal step: cz[x] = 0 for x <= BKB, -inf above.  Key j of a row whose last visible key
// (relative to the block) is L in [-1, BKB-1] gets bias cz[j - L + BKB] (-inf iff j > L).
void causal_step(float* cz) {
  for (int x = 0; x < 2 * BKB + W; ++x) cz[x] = x <= BKB ? 0.f : kNegInf;
}

// The transposed causal step for the forward's S^T tiles: czt[x] = -inf for x < BQF, 0 from
// BQF on.  Key row j whose first visible query column is Lq in [1, BQF-1] gets, for query
// column c, bias czt[c - Lq + BQF] (-inf iff c < Lq).
void causal_step_t(float* czt) {
  for (int x = 0; x < 2 * BQF + W; ++x) czt[x] = x < BQF ? kNegInf : 0.f;
}

// Forward per-thread workspace (floats).
struct FwdWs {
  float *qt, *st, *o, *m, *l, *alpha, *kbias, *czt;
  static i64 floats(i64 HS, i64 HSP) { return HS * BQF + BKF * BQF + BQF * HSP + 4 * BQF + BKF + BQF + W + 8 * 16; }
  FwdWs(float* w, i64 HS, i64 HSP) {
    qt = w; w += round_up(HS * BQF, 16);
    st = w; w += BKF * BQF;
    o = w; w += BQF * HSP;
    m = w; w += BQF;
    l = w; w += BQF;
    alpha = w; w += BQF;
    kbias = w; w += BKF;
    czt = w;
  }
};

// ---------------------------------------------------------------------------------------
// Forward: one (b, h, query block).  Scores are formed transposed, S^T = k (q*scale)^T
// (rows = keys, columns = the block's queries), so that q^T is packed once per block, k rows
// are read in place, and the online-softmax statistics of 2W..BQF queries sit in vectors.
void fwd_block(float* out, float* lse, const AttentionArgs& p, i64 b, i64 h, i64 qb, const FwdWs& ws, i64 HSP) {
  constexpr int MAXV = BQF / W;
  const i64 HS = p.HS, Tq = p.Tq, Tk = p.Tk, off = Tk - Tq;
  const i64 i0 = qb * BQF, nq = Tq - i0 < BQF ? Tq - i0 : BQF, nqp = round_up(nq, MR);
  const i64 ncq = round_up(nq, NV);            // query columns computed (multiple of 2W)
  const int nv = int(ncq / W);
  const float* qb_ = p.q + b * p.q_bs + h * p.q_hs;
  const float* kb_ = p.k + b * p.k_bs + h * p.k_hs;
  const float* vb_ = p.v + b * p.v_bs + h * p.v_hs;
  const std::uint8_t* mask = p.key_mask ? p.key_mask + b * Tk : nullptr;
  float* orow = out + ((b * p.NH + h) * Tq + i0) * HS;
  float* lrow = lse + (b * p.NH + h) * Tq + i0;

  // qt[d*BQF + c] = q[i0 + c][d] * scale (0 for padding columns)
  for (i64 c = 0; c < nq; ++c) {
    const float* s = qb_ + (i0 + c) * p.q_ts;
    for (i64 d = 0; d < HS; ++d) ws.qt[d * BQF + c] = s[d] * p.scale;
  }
  for (i64 d = 0; d < HS; ++d)
    for (i64 c = nq; c < ncq; ++c) ws.qt[d * BQF + c] = 0.f;
  float* crow[BQF];
  for (i64 r = 0; r < nqp; ++r) {
    crow[r] = ws.o + r * HSP;
    for (i64 c = 0; c < HSP; c += W) vstore(ws.o + r * HSP + c, vzero());
  }
  for (i64 c = 0; c < ncq; ++c) { ws.m[c] = kNegInf; ws.l[c] = 0.f; }
  // keys j < kend can be seen by some row of the block (causal: row i sees j <= i + off)
  i64 kend = Tk;
  if (p.causal && i0 + nq + off < kend) kend = i0 + nq + off;
  const float* krow[BKF];

  for (i64 j0 = 0; j0 < kend; j0 += BKF) {
    const i64 nk = Tk - j0 < BKF ? Tk - j0 : BKF, nkp = round_up(nk, MR);
    if (!key_bias(ws.kbias, mask, j0, nk, BKF)) continue;   // every key of the block is padding
    for (i64 r = 0; r < nkp; ++r) krow[r] = kb_ + (r < nk ? j0 + r : j0 + nk - 1) * p.k_ts;
    // S^T = k (q*scale)^T
    for (i64 r0 = 0; r0 < nkp; r0 += MR)
      for (i64 c0 = 0; c0 < ncq; c0 += NV) tile_abt(ws.st + r0 * BQF + c0, BQF, krow + r0, ws.qt + c0, BQF, HS);
    // online softmax over the key rows: x = S + masks; m' = max(m, colmax x); p = exp(x - m');
    // l = l*exp(m - m') + colsum p; o = o*exp(m - m')
    const bool diag = p.causal && j0 + nk - 1 > i0 + off;   // the tile crosses the diagonal
    vf vmx[MAXV];
    for (int v = 0; v < nv; ++v) vmx[v] = vset1(kNegInf);
    for (i64 j = 0; j < nk; ++j) {
      float* sj = ws.st + j * BQF;
      i64 Lq = 0;                                   // first query column that sees key j
      if (diag) Lq = j0 + j - off - i0;
      if (ws.kbias[j] != 0.f || Lq >= ncq) { ws.kbias[j] = kNegInf; continue; }   // key seen by none
      if (Lq > 0) {
        const float* cz = ws.czt + BQF - Lq;
        for (int v = 0; v < nv; ++v) {
          const vf x = vadd(vload(sj + v * W), vload(cz + v * W));
          vstore(sj + v * W, x);
          vmx[v] = vmax(vmx[v], x);
        }
      } else {
        for (int v = 0; v < nv; ++v) vmx[v] = vmax(vmx[v], vload(sj + v * W));
      }
    }
    vf mu[MAXV], lsum[MAXV];
    const vf lowest = vset1(-3.4028234663852886e38f);
    for (int v = 0; v < nv; ++v) {
      const vf mold = vload(ws.m + v * W), mnew = vmax(vmx[v], mold);
      mu[v] = vmax(mnew, lowest);                   // keeps exp(x - mu) = 0 when nothing is seen
      vstore(ws.alpha + v * W, vexp_nonpos(vsub(mold, mu[v])));
      vstore(ws.m + v * W, mnew);
      lsum[v] = vzero();
    }
    for (i64 j = 0; j < nk; ++j) {
      float* sj = ws.st + j * BQF;
      if (ws.kbias[j] != 0.f) {
        for (int v = 0; v < nv; ++v) vstore(sj + v * W, vzero());
        continue;
      }
      for (int v = 0; v < nv; ++v) {
        const vf e = vexp_nonpos(vsub(vload(sj + v * W), mu[v]));
        vstore(sj + v * W, e);
        lsum[v] = vadd(lsum[v], e);
      }
    }
    for (int v = 0; v < nv; ++v)
      vstore(ws.l + v * W, vfma(vload(ws.l + v * W), vload(ws.alpha + v * W), lsum[v]));
    for (i64 r = 0; r < nq; ++r) {
      const float a = ws.alpha[r];
      if (a == 1.f) continue;
      const vf va = vset1(a);
      float* o = ws.o + r * HSP;
      for (i64 c = 0; c < HSP; c += W) vstore(o + c, vmul(vload(o + c), va));
    }
    // o += P v  (P^T is the tile: a(r, t) = st[t*BQF + r])
    for (i64 r0 = 0; r0 < nqp; r0 += MR) tile_ab(crow + r0, ws.st + r0, 1, BQF, vb_ + j0 * p.v_ts, p.v_ts, nk, HS);
  }
  // out = o / l, lse = m + log l  (a row with no visible key: out 0, lse -inf)
  for (i64 r = 0; r < nq; ++r) {
    float* dst = orow + r * HS;
    const float* o = ws.o + r * HSP;
    const float l = ws.l[r];
    if (!(l > 0.f)) {
      for (i64 c = 0; c < HS; ++c) dst[c] = 0.f;
      lrow[r] = kNegInf;
      continue;
    }
    const vf inv = vset1(1.f / l);
    i64 c = 0;
    for (; c + W <= HS; c += W) vstore(dst + c, vmul(vload(o + c), inv));
    if (c < HS) vstore_part(dst + c, vmul(vload(o + c), inv), int(HS - c));
    lrow[r] = ws.m[r] + std::log(l);
  }
}


// ---------------------------------------------------------------------------------------
// Forward for a few queries (Tq <= kRowTq: KV-cache decoding): one unit per (b, h, query);
// the query's Tk scores are kept in a per-thread row (O(Tk), never O(Tq*Tk)), then
// out = sum_j softmax(s)_j v_j.  Reads k and v once, with no padding of the query block.
constexpr i64 kRowTq = 4;

// s = q . k_j * scale for j in [0, n) (4 keys at a time for independent chains)
void row_scores(float* __restrict s, const float* q, const float* k, i64 ts, i64 n, i64 HS, float scale) {
  i64 j = 0;
  for (; j + 4 <= n; j += 4) {
    const float* k0 = k + j * ts;
    vf a0 = vzero(), a1 = vzero(), a2 = vzero(), a3 = vzero();
    i64 c = 0;
    for (; c + W <= HS; c += W) {
      const vf x = vload(q + c);
      a0 = vfma(x, vload(k0 + c), a0);
      a1 = vfma(x, vload(k0 + ts + c), a1);
      a2 = vfma(x, vload(k0 + 2 * ts + c), a2);
      a3 = vfma(x, vload(k0 + 3 * ts + c), a3);
    }
    if (c < HS) {
      const int r = int(HS - c);
      const vf x = vload_part(q + c, r);
      a0 = vfma(x, vload_part(k0 + c, r), a0);
      a1 = vfma(x, vload_part(k0 + ts + c, r), a1);
      a2 = vfma(x, vload_part(k0 + 2 * ts + c, r), a2);
      a3 = vfma(x, vload_part(k0 + 3 * ts + c, r), a3);
    }
    s[j] = vreduce_add(a0) * scale;
    s[j + 1] = vreduce_add(a1) * scale;
    s[j + 2] = vreduce_add(a2) * scale;
    s[j + 3] = vreduce_add(a3) * scale;
  }
  for (; j < n; ++j) {
    const float* kj = k + j * ts;
    vf a = vzero();
    i64 c = 0;
    for (; c + W <= HS; c += W) a = vfma(vload(q + c), vload(kj + c), a);
    if (c < HS) a = vfma(vload_part(q + c, int(HS - c)), vload_part(kj + c, int(HS - c)), a);
    s[j] = vreduce_add(a) * scale;
  }
}

void fwd_row(float* out, float* lse, const AttentionArgs& p, i64 b, i64 h, i64 i, float* s) {
  const i64 HS = p.HS, Tk = p.Tk;
  const float* q = p.q + b * p.q_bs + h * p.q_hs + i * p.q_ts;
  const float* kb_ = p.k + b * p.k_bs + h * p.k_hs;
  const float* vb_ = p.v + b * p.v_bs + h * p.v_hs;
  const std::uint8_t* mask = p.key_mask ? p.key_mask + b * Tk : nullptr;
  float* o = out + ((b * p.NH + h) * p.Tq + i) * HS;
  float* l_out = lse + (b * p.NH + h) * p.Tq + i;
  i64 n = Tk;                                            // keys j < n may be visible
  if (p.causal && i + (Tk - p.Tq) + 1 < n) n = i + (Tk - p.Tq) + 1;
  if (n < 0) n = 0;
  row_scores(s, q, kb_, p.k_ts, n, HS, p.scale);
  if (mask)
    for (i64 j = 0; j < n; ++j)
      if (!mask[j]) s[j] = kNegInf;
  // softmax: m = max s, p = exp(s - m), l = sum p
  vf vmx = vset1(kNegInf);
  i64 j = 0;
  for (; j + W <= n; j += W) vmx = vmax(vmx, vload(s + j));
  float m = vreduce_max(vmx);
  for (; j < n; ++j) m = s[j] > m ? s[j] : m;
  if (m == kNegInf) {                                    // no visible key
    for (i64 c = 0; c < HS; ++c) o[c] = 0.f;
    *l_out = kNegInf;
    return;
  }
  const vf vm = vset1(m);
  vf vs = vzero();
  for (j = 0; j + W <= n; j += W) {
    const vf e = vexp_nonpos(vsub(vload(s + j), vm));
    vstore(s + j, e);
    vs = vadd(vs, e);
  }
  if (j < n) {
    const int r = int(n - j);
    const vf e = vexp_nonpos(vsub(vload_part(s + j, r), vm));   // lanes past n hold exp(-m): not stored,
    vstore_part(s + j, e, r);
    vs = vadd(vs, vload_part(s + j, r));                 // and not summed (re-read the r stored)
  }
  const float l = vreduce_add(vs);
  // out = (sum_j p_j v_j) / l, 4W columns at a time
  const float inv = 1.f / l;
  for (i64 c0 = 0; c0 < HS; c0 += 4 * W) {
    const i64 nc = HS - c0 < 4 * W ? HS - c0 : 4 * W;
    vf a0 = vzero(), a1 = vzero(), a2 = vzero(), a3 = vzero();
    if (nc == 4 * W) {
      for (i64 t = 0; t < n; ++t) {
        const float* vr = vb_ + t * p.v_ts + c0;
        const vf pt = vset1(s[t]);
        a0 = vfma(pt, vload(vr), a0);
        a1 = vfma(pt, vload(vr + W), a1);
        a2 = vfma(pt, vload(vr + 2 * W), a2);
        a3 = vfma(pt, vload(vr + 3 * W), a3);
      }
      const vf vi = vset1(inv);
      vstore(o + c0, vmul(a0, vi));
      vstore(o + c0 + W, vmul(a1, vi));
      vstore(o + c0 + 2 * W, vmul(a2, vi));
      vstore(o + c0 + 3 * W, vmul(a3, vi));
    } else {
      alignas(64) float acc[4 * W] = {};
      for (i64 t = 0; t < n; ++t) {
        const float* vr = vb_ + t * p.v_ts + c0;
        const vf pt = vset1(s[t]);
        for (i64 c = 0; c < nc; c += W) {
          const int r = nc - c < W ? int(nc - c) : W;
          vstore(acc + c, vfma(pt, vload_part(vr + c, r), vload(acc + c)));
        }
      }
      for (i64 c = 0; c < nc; ++c) o[c0 + c] = acc[c] * inv;
    }
  }
  *l_out = m + std::log(l);
}

// out (B, NH, Tq, HS), lse (B, NH, Tq)
void attention_forward(float* out, float* lse, const AttentionArgs& p) {
  if (p.B * p.NH * p.Tq == 0) return;
  if (p.Tq <= kRowTq) {
    const i64 rows = p.B * p.NH * p.Tq;
    const std::size_t bytes = std::size_t(round_up(p.Tk, 16) + 16) * sizeof(float);
    TeamState* const placement = team_before(p.nthreads);
#ifdef _OPENMP
#pragma omp parallel num_threads(p.nthreads)
#endif
    {
      enter_region(placement);
      float* s = static_cast<float*>(workspace(kWsScratch1, bytes));
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
      for (i64 u = 0; u < rows; ++u) {
        const i64 i = u % p.Tq, bh = u / p.Tq;
        fwd_row(out, lse, p, bh / p.NH, bh % p.NH, i, s);
      }
    }
    return;
  }
  const i64 nqb = ceil_div(p.Tq, BQF), units = p.B * p.NH * nqb;
  const i64 HSP = round_up(p.HS, W);
  const std::size_t bytes = std::size_t(FwdWs::floats(p.HS, HSP)) * sizeof(float);
  TeamState* const placement = team_before(p.nthreads);
#ifdef _OPENMP
#pragma omp parallel num_threads(p.nthreads)
#endif
  {
    enter_region(placement);
    FwdWs ws(static_cast<float*>(workspace(kWsScratch0, bytes)), p.HS, HSP);
    causal_step_t(ws.czt);
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
    for (i64 u = 0; u < units; ++u) {
      const i64 qb = u % nqb, bh = u / nqb;
      fwd_block(out, lse, p, bh / p.NH, bh % p.NH, qb, ws, HSP);
    }
  }
}

// ---------------------------------------------------------------------------------------
// Backward.  Differentiates, for one tile,
//   (f1) S = q k^T * scale + masks      (f2) P = exp(S - lse)      (f3) out = P v
// as dV += P^T dout (f3), dP = dout v^T (f3), dS = P * (dP - D) with D = rowsum(dout*out)
// (f2, softmax), dq += scale * dS k and dk += scale * dS^T q (f1).
struct BwdWs {
  float *kt, *vt, *s, *dp, *dk, *dv, *kbias, *cz, *dummy;
  static i64 floats(i64 HS, i64 HSP) {
    return 2 * round_up(HS * BKB, 16) + 2 * BLK * BKB + 2 * BKB * HSP + BKB + round_up(2 * BKB + W, 16) + HSP + 8 * 16;
  }
  BwdWs(float* w, i64 HS, i64 HSP) {
    kt = w; w += round_up(HS * BKB, 16);
    vt = w; w += round_up(HS * BKB, 16);
    s = w; w += BLK * BKB;
    dp = w; w += BLK * BKB;
    dk = w; w += BKB * HSP;
    dv = w; w += BKB * HSP;
    kbias = w; w += BKB;
    cz = w; w += round_up(2 * BKB + W, 16);
    dummy = w;
  }
};

// One (b, h, key chunk g of G): key blocks g, g+G, g+2G, ...; dq rows of the head go to dqh.
void bwd_unit(float* dqh, float* dk, float* dv, const float* dout, const float* D, const float* lse,
              const AttentionArgs& p, i64 b, i64 h, i64 g, i64 G, const BwdWs& ws, i64 HSP) {
  const i64 HS = p.HS, Tq = p.Tq, Tk = p.Tk, off = Tk - Tq;
  const i64 bh = b * p.NH + h, nkb = ceil_div(Tk, BKB), nqb = ceil_div(Tq, BLK);
  const float* qb_ = p.q + b * p.q_bs + h * p.q_hs;
  const float* kb_ = p.k + b * p.k_bs + h * p.k_hs;
  const float* vb_ = p.v + b * p.v_bs + h * p.v_hs;
  const float* dob = dout + bh * Tq * HS;
  const float* Dh = D + bh * Tq;
  const float* lh = lse + bh * Tq;
  const std::uint8_t* mask = p.key_mask ? p.key_mask + b * Tk : nullptr;
  const vf vscale = vset1(p.scale);
  const float* qrow[BLK];
  const float* drow[BLK];
  float* crow[BLK];
  float* dkrow[BKB];
  float* dvrow[BKB];
  for (int r = 0; r < BKB; ++r) { dkrow[r] = ws.dk + r * HSP; dvrow[r] = ws.dv + r * HSP; }

  for (i64 kb = g; kb < nkb; kb += G) {
    const i64 j0 = kb * BKB, nk = Tk - j0 < BKB ? Tk - j0 : BKB, ncols = round_up(nk, NV), nkp = round_up(nk, MR);
    float* dkd = dk + (bh * Tk + j0) * HS;
    float* dvd = dv + (bh * Tk + j0) * HS;
    // queries that see some key of the block: i + off >= j0
    i64 qstart = 0;
    if (p.causal && j0 - off > 0) qstart = j0 - off;
    if (!key_bias(ws.kbias, mask, j0, nk, BKB) || qstart >= Tq) {   // no query sees these keys
      for (i64 i = 0; i < nk * HS; ++i) { dkd[i] = 0.f; dvd[i] = 0.f; }
      continue;
    }
    pack_t(ws.kt, kb_ + j0 * p.k_ts, p.k_ts, nk, HS);
    pack_t(ws.vt, vb_ + j0 * p.v_ts, p.v_ts, nk, HS);
    for (i64 r = 0; r < nkp; ++r)
      for (i64 c = 0; c < HSP; c += W) { vstore(ws.dk + r * HSP + c, vzero()); vstore(ws.dv + r * HSP + c, vzero()); }

    for (i64 qb = qstart / BLK; qb < nqb; ++qb) {
      const i64 i0 = qb * BLK, nq = Tq - i0 < BLK ? Tq - i0 : BLK, nqp = round_up(nq, MR);
      for (i64 r = 0; r < nqp; ++r) {
        const i64 i = r < nq ? i0 + r : i0 + nq - 1;
        qrow[r] = qb_ + i * p.q_ts;
        drow[r] = dob + i * HS;
        crow[r] = r < nq ? dqh + (i0 + r) * HS : ws.dummy;
      }
      // (f1) S = q k^T;  dP = dout v^T
      for (i64 r0 = 0; r0 < nqp; r0 += MR)
        for (i64 c0 = 0; c0 < ncols; c0 += NV) {
          tile_abt(ws.s + r0 * BKB + c0, BKB, qrow + r0, ws.kt + c0, BKB, HS);
          tile_abt(ws.dp + r0 * BKB + c0, BKB, drow + r0, ws.vt + c0, BKB, HS);
        }
      const bool diag = p.causal && j0 + nk - 1 > i0 + off;
      for (i64 r = 0; r < nq; ++r) {
        float* sr = ws.s + r * BKB;
        float* dpr = ws.dp + r * BKB;
        const float L = lh[i0 + r];
        if (L == kNegInf) {                    // a row with no visible key: P = 0, dS = 0
          for (i64 c = 0; c < ncols; c += W) { vstore(sr + c, vzero()); vstore(dpr + c, vzero()); }
          continue;
        }
        const float* cz = nullptr;
        if (diag) {
          i64 Lk = i0 + r + off - j0;
          if (Lk < -1) Lk = -1;
          if (Lk < ncols - 1) cz = ws.cz + BKB - Lk;
        }
        const vf vl = vset1(L), vd = vset1(Dh[i0 + r]);
        for (i64 c = 0; c < ncols; c += W) {
          vf x = vfma(vload(sr + c), vscale, vload(ws.kbias + c));   // (f1)
          if (cz) x = vadd(x, vload(cz + c));
          const vf pr = vexp_nonpos(vsub(x, vl));                              // (f2)
          vstore(sr + c, pr);
          // dS * scale = P * (dP - D) * scale
          vstore(dpr + c, vmul(vmul(pr, vsub(vload(dpr + c), vd)), vscale));
        }
      }
      // dV += P^T dout;  dK += (scale dS)^T q   (rows = keys of the block)
      for (i64 r0 = 0; r0 < nkp; r0 += MR) {
        tile_ab(dvrow + r0, ws.s + r0, 1, BKB, dob + i0 * HS, HS, nq, HS);
        tile_ab(dkrow + r0, ws.dp + r0, 1, BKB, qb_ + i0 * p.q_ts, p.q_ts, nq, HS);
      }
      // dQ += (scale dS) k
      for (i64 r0 = 0; r0 < nqp; r0 += MR) tile_ab(crow + r0, ws.dp + r0 * BKB, BKB, 1, kb_ + j0 * p.k_ts, p.k_ts, nk, HS);
    }
    for (i64 r = 0; r < nk; ++r)
      for (i64 c = 0; c < HS; ++c) { dkd[r * HS + c] = ws.dk[r * HSP + c]; dvd[r * HS + c] = ws.dv[r * HSP + c]; }
  }
}

// Key chunks per head: enough units (>= 16 in all) to keep a team busy when B*NH is small;
// depends only on the problem size so that sums do not change with the thread count.  Costs
// G - 1 extra dq-sized buffers (linear in T).
i64 key_chunks(i64 BNH, i64 nkb) {
  i64 G = ceil_div(16, BNH > 0 ? BNH : 1);
  if (G > nkb) G = nkb;
  return G < 1 ? 1 : G;
}

// dq (B, NH, Tq, HS), dk, dv (B, NH, Tk, HS); dout, out (B, NH, Tq, HS), lse (B, NH, Tq)
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* out, const float* lse,
                        const AttentionArgs& p) {
  const i64 HS = p.HS, Tq = p.Tq, Tk = p.Tk, BNH = p.B * p.NH;
  if (BNH == 0 || HS == 0) return;
  const i64 nkb = ceil_div(Tk, BKB), G = key_chunks(BNH, nkb);
  const i64 nrows = BNH * Tq;
  const i64 qsize = BNH * Tq * HS;
  // D (BNH*Tq) then the partial dq buffers of chunks 1..G-1
  float* scratch = static_cast<float*>(aligned_alloc64(std::size_t(nrows + (G - 1) * qsize + 16) * sizeof(float)));
  float* D = scratch;
  float* partial = scratch + round_up(nrows, 16);
  const i64 HSP = round_up(HS, W);
  const std::size_t bytes = std::size_t(BwdWs::floats(HS, HSP)) * sizeof(float);
  const i64 units = BNH * G;
  TeamState* const placement = team_before(p.nthreads);
#ifdef _OPENMP
#pragma omp parallel num_threads(p.nthreads)
#endif
  {
    enter_region(placement);
    // D_i = rowsum(dout_i * out_i); dq and the partial buffers start at zero
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
    for (i64 i = 0; i < nrows; ++i) {
      const float* a = dout + i * HS;
      const float* o = out + i * HS;
      vf s = vzero();
      i64 c = 0;
      for (; c + W <= HS; c += W) s = vfma(vload(a + c), vload(o + c), s);
      if (c < HS) s = vfma(vload_part(a + c, int(HS - c)), vload_part(o + c, int(HS - c)), s);
      D[i] = vreduce_add(s);
      for (i64 g = 0; g < G; ++g) {
        float* d = (g == 0 ? dq : partial + (g - 1) * qsize) + i * HS;
        for (c = 0; c < HS; ++c) d[c] = 0.f;
      }
    }
    BwdWs ws(static_cast<float*>(workspace(kWsScratch0, bytes)), HS, HSP);
    causal_step(ws.cz);
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
    for (i64 u = 0; u < units; ++u) {
      const i64 bh = u / G, g = u % G;
      float* dqh = (g == 0 ? dq : partial + (g - 1) * qsize) + bh * Tq * HS;
      bwd_unit(dqh, dk, dv, dout, D, lse, p, bh / p.NH, bh % p.NH, g, G, ws, HSP);
    }
    // dq += partial[g] for g = 1..G-1, in that order
    if (G > 1) {
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
      for (i64 i = 0; i < nrows; ++i) {
        float* d = dq + i * HS;
        for (i64 g = 1; g < G; ++g) {
          const float* s = partial + (g - 1) * qsize + i * HS;
          i64 c = 0;
          for (; c + W <= HS; c += W) vstore(d + c, vadd(vload(d + c), vload(s + c)));
          for (; c < HS; ++c) d[c] += s[c];
        }
      }
    }
  }
  aligned_free64(scratch);
}

}  // namespace

void register_attention(KernelTable& t) {
  t.attention_forward = &attention_forward;
  t.attention_backward = &attention_backward;
}

}  // namespace IRF_ISA
}  // namespace irf
