// attention_ref.cpp: the scalar specification of kernels/attention.cpp (double accumulation,
// the full score row of one query at a time).
#include <cmath>
#include <limits>
#include <vector>

#include "attention_args.h"
#include "kernels.h"

namespace irf {
namespace ref {
namespace {

const float* row(const float* base, i64 bs, i64 hs, i64 ts, i64 b, i64 h, i64 t) {
  return base + b * bs + h * hs + t * ts;
}

// Whether query i may attend key j of batch row b.
bool visible(const AttentionArgs& p, i64 b, i64 i, i64 j) {
  if (p.key_mask && !p.key_mask[b * p.Tk + j]) return false;
  return !p.causal || j <= i + (p.Tk - p.Tq);
}

}  // namespace

// out[b,h,i] = sum_j softmax_j(s_ij) v[b,h,j],  s_ij = scale * q_i . k_j over visible keys;
// lse[b,h,i] = log sum_j exp(s_ij);  a row with no visible key: out 0, lse -inf.
void attention_forward(float* out, float* lse, const AttentionArgs& p) {
  const i64 HS = p.HS;
  std::vector<double> s(p.Tk > 0 ? p.Tk : 1), acc(HS > 0 ? HS : 1);
  for (i64 b = 0; b < p.B; ++b)
    for (i64 h = 0; h < p.NH; ++h)
      for (i64 i = 0; i < p.Tq; ++i) {
        const float* q = row(p.q, p.q_bs, p.q_hs, p.q_ts, b, h, i);
        double m = -std::numeric_limits<double>::infinity();
        for (i64 j = 0; j < p.Tk; ++j) {
          if (!visible(p, b, i, j)) continue;
          const float* k = row(p.k, p.k_bs, p.k_hs, p.k_ts, b, h, j);
          double d = 0.0;
          for (i64 c = 0; c < HS; ++c) d += double(q[c]) * double(k[c]);
          s[j] = d * p.scale;
          if (s[j] > m) m = s[j];
        }
        float* o = out + ((b * p.NH + h) * p.Tq + i) * HS;
        float* l = lse + (b * p.NH + h) * p.Tq + i;
        if (m == -std::numeric_limits<double>::infinity()) {
          for (i64 c = 0; c < HS; ++c) o[c] = 0.f;
          *l = -std::numeric_limits<float>::infinity();
          continue;
        }
        double sum = 0.0;
        for (i64 c = 0; c < HS; ++c) acc[c] = 0.0;
        for (i64 j = 0; j < p.Tk; ++j) {
          if (!visible(p, b, i, j)) continue;
          const double e = std::exp(s[j] - m);
          sum += e;
          const float* v = row(p.v, p.v_bs, p.v_hs, p.v_ts, b, h, j);
          for (i64 c = 0; c < HS; ++c) acc[c] += e * double(v[c]);
        }
        for (i64 c = 0; c < HS; ++c) o[c] = float(acc[c] / sum);
        *l = float(m + std::log(sum));
      }
}

// With P_ij = exp(s_ij - lse_i) (the saved lse), D_i = dout_i . out_i:
//   dv_j = sum_i P_ij dout_i;   dS_ij = P_ij (dout_i . v_j - D_i);
//   dq_i = scale sum_j dS_ij k_j;   dk_j = scale sum_i dS_ij q_i.
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* out, const float* lse,
                        const AttentionArgs& p) {
  const i64 HS = p.HS;
  std::vector<double> gq(HS > 0 ? HS : 1), gk(p.Tk * HS + 1), gv(p.Tk * HS + 1);
  for (i64 b = 0; b < p.B; ++b)
    for (i64 h = 0; h < p.NH; ++h) {
      const i64 bh = b * p.NH + h;
      for (auto& x : gk) x = 0.0;
      for (auto& x : gv) x = 0.0;
      for (i64 i = 0; i < p.Tq; ++i) {
        const float* q = row(p.q, p.q_bs, p.q_hs, p.q_ts, b, h, i);
        const float* go = dout + (bh * p.Tq + i) * HS;
        const float* o = out + (bh * p.Tq + i) * HS;
        const double L = lse[bh * p.Tq + i];
        double D = 0.0;
        for (i64 c = 0; c < HS; ++c) D += double(go[c]) * double(o[c]);
        for (i64 c = 0; c < HS; ++c) gq[c] = 0.0;
        if (L != -std::numeric_limits<double>::infinity())
          for (i64 j = 0; j < p.Tk; ++j) {
            if (!visible(p, b, i, j)) continue;
            const float* k = row(p.k, p.k_bs, p.k_hs, p.k_ts, b, h, j);
            const float* v = row(p.v, p.v_bs, p.v_hs, p.v_ts, b, h, j);
            double s = 0.0, dp = 0.0;
            for (i64 c = 0; c < HS; ++c) {
              s += double(q[c]) * double(k[c]);
              dp += double(go[c]) * double(v[c]);
            }
            const double P = std::exp(s * p.scale - L);
            const double ds = P * (dp - D) * p.scale;
            for (i64 c = 0; c < HS; ++c) {
              gv[j * HS + c] += P * double(go[c]);
              gk[j * HS + c] += ds * double(q[c]);
              gq[c] += ds * double(k[c]);
            }
          }
        for (i64 c = 0; c < HS; ++c) dq[(bh * p.Tq + i) * HS + c] = float(gq[c]);
      }
      for (i64 j = 0; j < p.Tk * HS; ++j) {
        dk[bh * p.Tk * HS + j] = float(gk[j]);
        dv[bh * p.Tk * HS + j] = float(gv[j]);
      }
    }
}

}  // namespace ref
}  // namespace irf
