// attention_args.h: the argument block of the fused attention kernels (kernels/attention.cpp,
// reference/attention_ref.cpp, bindings/attention.cpp).
#pragma once
#include <cstdint>

#include "common.h"

namespace irf {

// Inputs, parameters and sizes of attention_forward / attention_backward.
//   q (B, NH, Tq, HS), k and v (B, NH, Tk, HS): element (b, h, t, d) of q lives at
//   q + b*q_bs + h*q_hs + t*q_ts + d (the head dim is contiguous; the other strides are any
//   element strides, negative included), likewise k and v.
//   key_mask: null, or (B, Tk) contiguous bytes, nonzero = real token (Hugging Face
//   attention_mask convention).
//   causal: query i sees keys j <= i + (Tk - Tq) (bottom-right aligned, the KV-cache
//   convention; equals PyTorch's is_causal when Tq == Tk).
struct AttentionArgs {
  i64 B = 0, NH = 0, Tq = 0, Tk = 0, HS = 0;
  const float* q = nullptr; i64 q_bs = 0, q_hs = 0, q_ts = 0;
  const float* k = nullptr; i64 k_bs = 0, k_hs = 0, k_ts = 0;
  const float* v = nullptr; i64 v_bs = 0, v_hs = 0, v_ts = 0;
  const std::uint8_t* key_mask = nullptr;
  bool causal = false;
  float scale = 1.f;
  int nthreads = 1;
};

}  // namespace irf
