// kernels.h: the table of kernel entry points, one instance per ISA (generic, avx2, avx512).
// dispatch.cpp fills the active table once, at import.  Forward/backward pairs sit together.
#pragma once
#include "common.h"

namespace irf {

// C[b] (M x N) = op(A[b]) (M x K) @ op(B[b]) (K x N)  (+ C[b] when accumulate) (+ bias[N])
// Operand element (i, k) of A lives at a + b*a_bs + i*a_rs + k*a_cs (transposes and any numpy
// strides are expressed through a_rs / a_cs), likewise for B.  C rows are contiguous:
// C[b](i, j) at c + b*c_bs + i*ldc + j.  bias (may be null) is added once per output row.
struct GemmParams {
  i64 batch = 1, M = 0, N = 0, K = 0;
  const float* a = nullptr; i64 a_bs = 0, a_rs = 0, a_cs = 0;
  const float* b = nullptr; i64 b_bs = 0, b_rs = 0, b_cs = 0;
  float* c = nullptr;       i64 c_bs = 0, ldc = 0;
  const float* bias = nullptr;
  bool accumulate = false;
  int nthreads = 1;
};

// ---- elementwise (structs used by the table; csrc/kernels/elementwise.cpp) ----
// Operations of the elementwise kernel.  Binary: out = a (op) b.  Unary (b unused):
//   kAffine  out = alpha * a + beta   (copy, negation, scaling, scalar add / subtract)
//   kExp, kLog, kSqrt                 out = exp(a), log(a), sqrt(a)
//   kPow     out = a ** alpha         (alpha a scalar exponent)
enum EwOp : int { kEwAdd = 0, kEwSub, kEwMul, kEwDiv, kEwAffine, kEwExp, kEwLog, kEwSqrt, kEwPow, kEwOpCount };
inline bool ew_is_binary(int op) { return op <= kEwDiv; }
// Element (i0, i1, i2, i3) of operand X lives at x + i0*xs[0] + ... + i3*xs[3] (element
// strides; 0 for broadcast dimensions).  Unused leading dims have shape 1.  out must not
// partially overlap an input (an exact alias is fine: every element is read before written).
struct EwParams {
  int op = kEwAdd;
  i64 shape[4] = {1, 1, 1, 1};
  float* out = nullptr;     i64 os[4] = {0, 0, 0, 0};
  const float* a = nullptr; i64 as[4] = {0, 0, 0, 0};
  const float* b = nullptr; i64 bs[4] = {0, 0, 0, 0};
  float alpha = 1.f, beta = 0.f;
  int nthreads = 1;
};
// out (O, I) [+]= sum over r of x (O, R, I); x and out contiguous.
struct ReduceParams {
  float* out = nullptr;
  const float* x = nullptr;
  i64 O = 1, R = 1, I = 1;
  bool accumulate = false;
  int nthreads = 1;
};
// ---- end elementwise ----

// ---- loss_optim (parameter structs) ----
// AdamW (torch.optim.AdamW): param *= decay; m += (1-beta1)(g - m); v = beta2 v + (1-beta2) g^2;
// param -= step_size * m / (sqrt(v) / bc2_sqrt + eps).  decay = 1 - lr*wd, step_size = lr/bc1,
// bc1 = 1 - beta1^step, bc2_sqrt = sqrt(1 - beta2^step), all computed in double then rounded.
struct AdamWScalars {
  float decay = 1.f, beta1 = 0.9f, one_minus_beta1 = 0.1f, beta2 = 0.999f, one_minus_beta2 = 0.001f;
  float step_size = 0.f, bc2_sqrt = 1.f, eps = 1e-8f;
  bool apply_decay = false;
};
// SGD (torch.optim.SGD): g += wd * param; buf = first ? g : momentum*buf + (1-dampening)*g;
// g = nesterov ? g + momentum*buf : buf (momentum != 0); param -= lr * g.
struct SgdScalars {
  float lr = 0.f, momentum = 0.f, one_minus_dampening = 1.f, weight_decay = 0.f;
  bool nesterov = false, first_step = false;
};
// Elements per partial sum of sum_squares (fixed, so the result is independent of threads).
constexpr i64 kSumSquaresBlock = 4096;
// Dropout mask parameters: element i is kept iff (hash(seed, offset + i) >> 8) >= p24.
struct DropoutParams {
  std::uint64_t seed = 0, offset = 0;
  std::uint32_t p24 = 0;
  float scale = 1.f;
};
// The dropout hash (counter-based, stateless): 32 well-mixed bits from (seed, counter).
// hash = mix32(mix32(lo32(counter) ^ k1) + k2) with (k1, k2) = dropout_keys(seed, hi32(counter));
// mix32 is a bijective xorshift-multiply finaliser (Wellons' lowbias32), so for one key no two
// counters in a 2^32 run collide.  `static` gives each ISA object its own copy (no ODR merging).
static inline std::uint32_t dropout_mix32(std::uint32_t x) {
  x ^= x >> 16; x *= 0x7feb352dU; x ^= x >> 15; x *= 0x846ca68bU; x ^= x >> 16;
  return x;
}
static inline void dropout_keys(std::uint64_t seed, std::uint32_t hi, std::uint32_t& k1, std::uint32_t& k2) {
  k1 = dropout_mix32(std::uint32_t(seed) ^ dropout_mix32(std::uint32_t(seed >> 32) ^ 0x9E3779B9U ^
                                                        dropout_mix32(hi + 0x85EBCA6BU)));
  k2 = dropout_mix32(k1 ^ 0x68E31DA4U);
}
static inline std::uint32_t dropout_hash(std::uint32_t lo, std::uint32_t k1, std::uint32_t k2) {
  return dropout_mix32(dropout_mix32(lo ^ k1) + k2);
}
// ---- end loss_optim (parameter structs) ----

struct KernelTable {
  const char* isa;
  // matrix multiply (csrc/kernels/gemm.cpp)
  void (*gemm)(const GemmParams& p);
  // fp32 FMA throughput loop: `iters` rounds of 12 vector FMAs per thread; returns flops done
  double (*fma_burn)(i64 iters, int nthreads);

  // ---- attention (csrc/kernels/attention.cpp) ----
  // Fused scaled-dot-product attention (flash style, never materialises T x T scores);
  // `struct AttentionArgs` is defined in attention_args.h (declared here in namespace irf).
  //   out (B, NH, Tq, HS), lse (B, NH, Tq) contiguous = softmax(q k^T * scale + masks) v
  //   and the per-row logsumexp (-inf for a row whose keys are all masked; its out is 0).
  void (*attention_forward)(float* out, float* lse, const struct AttentionArgs& a);
  //   dq (B, NH, Tq, HS), dk, dv (B, NH, Tk, HS) contiguous (overwritten) from dout and the
  //   saved out and lse (contiguous, as attention_forward wrote them).
  void (*attention_backward)(float* dq, float* dk, float* dv, const float* dout, const float* out,
                             const float* lse, const struct AttentionArgs& a);
  // ---- end attention ----

  // ---- norm_act: layernorm, activations, softmax, bias/residual add, column sums
  //      (csrc/kernels/norm_act.cpp and neighbours) ----
  // Activation ids (act argument below): kActGeluErf 0 (BERT gelu), kActGeluTanh 1 (GPT-2
  // gelu_new), kActRelu 2, kActSigmoid 3, kActTanh 4 (enum irf::ref::Act below).
  // Every tensor is a contiguous (N rows, C) float32 matrix (N = product of leading dims).
  // layernorm (csrc/kernels/layernorm.cpp): out = (x - mean) * rstd * weight + bias per row;
  // saves mean, rstd (N,).  weight / bias may be null (no affine; then dweight / dbias too).
  // Backward writes dx and ACCUMULATES dweight, dbias (C,) (deterministic row-chunk order).
  void (*layernorm_forward)(float* out, float* mean, float* rstd, const float* x, const float* weight,
                            const float* bias, i64 N, i64 C, float eps, int nthreads);
  void (*layernorm_backward)(float* dx, float* dweight, float* dbias, const float* dout, const float* x,
                             const float* mean, const float* rstd, const float* weight, i64 N, i64 C,
                             int nthreads);
  // activations (csrc/kernels/activations.cpp), n elements, act one of irf::Act.  Backward takes
  // the forward input x for gelu / relu and the forward output for sigmoid / tanh.
  void (*act_forward)(float* out, const float* x, i64 n, int act, int nthreads);
  void (*act_backward)(float* dx, const float* dout, const float* saved, i64 n, int act, int nthreads);
  // softmax / log-softmax over the last dim (csrc/kernels/softmax.cpp); backward from the output.
  void (*softmax_forward)(float* out, const float* x, i64 N, i64 C, bool log, int nthreads);
  void (*softmax_backward)(float* dx, const float* dout, const float* out, i64 N, i64 C, bool log,
                           int nthreads);
  // out = a + b (n elements); out = x + bias (N x C, bias (C,)); out (C,) (+)= sum over rows of x
  // (csrc/kernels/bias_add.cpp).  sum_rows is deterministic (fixed row chunks, fixed order).
  void (*add)(float* out, const float* a, const float* b, i64 n, int nthreads);
  void (*add_bias)(float* out, const float* x, const float* bias, i64 N, i64 C, int nthreads);
  void (*sum_rows)(float* out, const float* x, i64 N, i64 C, bool accumulate, int nthreads);
  // simd.h transcendentals on n elements for the error tests: fn 0 vexp, 1 vtanh, 2 verf.
  void (*simd_math)(float* out, const float* x, i64 n, int fn);
  // ---- end norm_act ----

  // ---- loss_optim: cross-entropy, embedding, optimizers, grad norm, dropout
  //      (csrc/kernels/loss_optim.cpp and neighbours) ----
  // cross-entropy fused with softmax (csrc/kernels/cross_entropy.cpp).  logits (N, V), targets
  // (N,) already validated (ignore_index or in [0, V)).  Forward: lse[n] = logsumexp(logits[n]),
  // row_loss[n] = lse[n] - logits[n, targets[n]] (0 for ignored rows), double.  Backward:
  // dlogits[n] = (softmax(logits[n]) - onehot(targets[n])) * scale, zero for ignored rows.
  void (*cross_entropy_forward)(float* lse, double* row_loss, const float* logits, const i64* targets,
                                i64 N, i64 V, i64 ignore_index, int nthreads);
  void (*cross_entropy_backward)(float* dlogits, const float* lse, const float* logits, const i64* targets,
                                 float scale, i64 N, i64 V, i64 ignore_index, int nthreads);
  // embedding (csrc/kernels/embedding.cpp): out (N, C) = weight (V, C)[ids (N,)];
  // dweight[ids[i]] += dout[i] (ids already validated to lie in [0, V)).
  void (*embedding_forward)(float* out, const i64* ids, const float* weight, i64 N, i64 C, int nthreads);
  void (*embedding_backward)(float* dweight, const float* dout, const i64* ids, i64 N, i64 C, int nthreads);
  // optimizers over flat float32 buffers of n elements (csrc/kernels/optim.cpp); the scalar
  // hyper-parameters are prepared by the binding exactly as torch.optim computes them.
  void (*adamw_step)(float* param, float* exp_avg, float* exp_avg_sq, const float* grad,
                     const AdamWScalars& s, i64 n, int nthreads);
  void (*sgd_step)(float* param, float* momentum_buf, const float* grad, const SgdScalars& s, i64 n,
                   int nthreads);
  // partials[b] = sum of x[i]^2 over block b = [b*kSumSquaresBlock, (b+1)*kSumSquaresBlock) (double)
  void (*sum_squares)(double* partials, const float* x, i64 n, int nthreads);
  // x *= factor
  void (*scale)(float* x, float factor, i64 n, int nthreads);
  // dropout (csrc/kernels/dropout.cpp): out[i] = keep(seed, offset + i) ? x[i] * scale : 0 with
  // keep = (hash(seed, offset + i) >> 8) >= p24 (p24 = round(p * 2^24)); backward applies the same mask.
  void (*dropout_forward)(float* out, const float* x, const DropoutParams& d, i64 n, int nthreads);
  void (*dropout_backward)(float* dx, const float* dout, const DropoutParams& d, i64 n, int nthreads);
  // ---- end loss_optim ----

  // ---- elementwise: broadcasting binary ops, unary maps, axis reductions for autograd
  //      (csrc/kernels/elementwise.cpp) ----
  // out (strided) = op(a, b) or op(a) elementwise over an already broadcast and collapsed
  // iteration space of <= 4 dims (EwParams); results do not depend on nthreads.
  void (*elementwise)(const EwParams& p);
  // out (O, I) = (accumulate ? out : 0) + sum_r x (O, R, I), all contiguous; fixed blocked
  // summation order (see elementwise.cpp), identical for every thread count.
  void (*reduce_sum)(const ReduceParams& p);
  // ---- end elementwise ----
};

// Per-ISA table fillers (each defined in the kernel objects of that ISA).
namespace generic { void fill_table(KernelTable& t); }
namespace avx2 { void fill_table(KernelTable& t); }
namespace avx512 { void fill_table(KernelTable& t); }

// The active table (dispatch.cpp).
const KernelTable& kernels();
// Select by name ("generic", "avx2", "avx512"); throws if the CPU/OS cannot run it.
void select_isa(const std::string& name);
// Best ISA this CPU *and* OS support.
const char* best_isa();
bool isa_supported(const std::string& name);

// Plain scalar twins of every kernel (csrc/reference/), the readable specification.
namespace ref {
void gemm(const GemmParams& p);

// ---- attention ----
void attention_forward(float* out, float* lse, const AttentionArgs& a);
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* out,
                        const float* lse, const AttentionArgs& a);
// ---- end attention ----

// ---- norm_act ----
// Activation ids of KernelTable::act_forward / act_backward (and of the twins below).
enum Act : int { kActGeluErf = 0, kActGeluTanh = 1, kActRelu = 2, kActSigmoid = 3, kActTanh = 4 };
// Scalar twins of the norm_act kernels (same signatures, double accumulation; no nthreads).
void layernorm_forward(float* out, float* mean, float* rstd, const float* x, const float* weight,
                       const float* bias, i64 N, i64 C, float eps);
void layernorm_backward(float* dx, float* dweight, float* dbias, const float* dout, const float* x,
                        const float* mean, const float* rstd, const float* weight, i64 N, i64 C);
void act_forward(float* out, const float* x, i64 n, int act);
void act_backward(float* dx, const float* dout, const float* saved, i64 n, int act);
void softmax_forward(float* out, const float* x, i64 N, i64 C, bool log);
void softmax_backward(float* dx, const float* dout, const float* out, i64 N, i64 C, bool log);
void add(float* out, const float* a, const float* b, i64 n);
void add_bias(float* out, const float* x, const float* bias, i64 N, i64 C);
void sum_rows(float* out, const float* x, i64 N, i64 C, bool accumulate);
// ---- end norm_act ----

// ---- loss_optim ----
void cross_entropy_forward(float* lse, double* row_loss, const float* logits, const i64* targets, i64 N, i64 V,
                           i64 ignore_index);
void cross_entropy_backward(float* dlogits, const float* lse, const float* logits, const i64* targets,
                            float scale, i64 N, i64 V, i64 ignore_index);
void embedding_forward(float* out, const i64* ids, const float* weight, i64 N, i64 C);
void embedding_backward(float* dweight, const float* dout, const i64* ids, i64 N, i64 C);
void adamw_step(float* param, float* exp_avg, float* exp_avg_sq, const float* grad, const AdamWScalars& s, i64 n);
void sgd_step(float* param, float* momentum_buf, const float* grad, const SgdScalars& s, i64 n);
void sum_squares(double* partials, const float* x, i64 n);
void scale(float* x, float factor, i64 n);
void dropout_forward(float* out, const float* x, const DropoutParams& d, i64 n);
void dropout_backward(float* dx, const float* dout, const DropoutParams& d, i64 n);
// ---- end loss_optim ----

// ---- elementwise ----
void elementwise(const EwParams& p);   // double arithmetic, scalar loops
void reduce_sum(const ReduceParams& p);   // double accumulation
// ---- end elementwise ----
}

}  // namespace irf
