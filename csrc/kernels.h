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
// ---- end loss_optim ----

// ---- elementwise ----
void elementwise(const EwParams& p);   // double arithmetic, scalar loops
void reduce_sum(const ReduceParams& p);   // double accumulation
// ---- end elementwise ----
}

}  // namespace irf
