// bindings/attention.cpp: ironformer.ops.attention_forward / attention_backward.
#include "attention_args.h"
#include "bindings/bindings.h"

namespace irf {
namespace bind {
namespace {

// q, k or v: 4-D float32 whose head dim is contiguous (copied when it is not); the other
// strides are handed to the kernel as they are.
py::array as_qkv(const py::handle& obj, const char* op, const char* name) {
  py::array a = f32_array(obj, op, name);
  if (a.ndim() != 4)
    throw std::invalid_argument(std::string(op) + ": " + name + " must be 4-D (B, NH, T, HS), got shape " + shape_str(a));
  bool copy = a.shape(3) > 1 && a.strides(3) != py::ssize_t(sizeof(float));
  for (int i = 0; i < 4; ++i)
    if (a.strides(i) % py::ssize_t(sizeof(float)) != 0) copy = true;
  if (copy) return py::array_t<float, py::array::c_style>::ensure(a);
  return a;
}

// An array the kernel reads as contiguous (dout, out, lse).
py::array as_contiguous(const py::handle& obj, const char* op, const char* name) {
  py::array a = f32_array(obj, op, name);
  return py::array_t<float, py::array::c_style>::ensure(a);
}

std::string shape_of(std::initializer_list<i64> dims) {
  std::string s = "(";
  bool first = true;
  for (i64 d : dims) {
    if (!first) s += ", ";
    s += std::to_string(d);
    first = false;
  }
  return s + (dims.size() == 1 ? ",)" : ")");
}

// Validates q, k, v and key_mask and fills the argument block (arrays kept alive by the caller).
AttentionArgs make_args(const char* op, const py::array& q, const py::array& k, const py::array& v,
                        py::array& mask_keep, const py::object& key_mask, bool causal, double scale) {
  const View Q = view(q, "q", false, 4, 4), K = view(k, "k", false, 4, 4), V = view(v, "v", false, 4, 4);
  const std::string o = std::string(op) + ": ";
  if (K.shape[0] != Q.shape[0] || K.shape[1] != Q.shape[1] || K.shape[3] != Q.shape[3])
    throw std::invalid_argument(o + "k must have q's batch, heads and head size (B, NH, *, HS): q " + shape_str(q) +
                                ", k " + shape_str(k));
  if (V.shape[0] != K.shape[0] || V.shape[1] != K.shape[1] || V.shape[2] != K.shape[2] || V.shape[3] != K.shape[3])
    throw std::invalid_argument(o + "v must have the shape of k: k " + shape_str(k) + ", v " + shape_str(v));
  if (Q.shape[3] < 1) throw std::invalid_argument(o + "head size must be >= 1, got q " + shape_str(q));
  AttentionArgs a;
  a.B = Q.shape[0]; a.NH = Q.shape[1]; a.Tq = Q.shape[2]; a.Tk = K.shape[2]; a.HS = Q.shape[3];
  a.q = Q.ptr; a.q_bs = Q.stride[0]; a.q_hs = Q.stride[1]; a.q_ts = Q.stride[2];
  a.k = K.ptr; a.k_bs = K.stride[0]; a.k_hs = K.stride[1]; a.k_ts = K.stride[2];
  a.v = V.ptr; a.v_bs = V.stride[0]; a.v_hs = V.stride[1]; a.v_ts = V.stride[2];
  if (!key_mask.is_none()) {
    if (!py::isinstance<py::array>(key_mask))
      throw py::type_error(o + "key_mask must be a numpy.ndarray of bool or uint8");
    py::array m = py::reinterpret_borrow<py::array>(key_mask);
    if (!is_dtype<bool>(m.dtype()) && !is_dtype<std::uint8_t>(m.dtype()))
      throw py::type_error(o + "key_mask must be bool or uint8, got " + std::string(py::str(m.dtype())));
    if (m.ndim() != 2 || m.shape(0) != a.B || m.shape(1) != a.Tk)
      throw std::invalid_argument(o + "key_mask has shape " + shape_str(m) + ", expected (B, Tk) = " +
                                  shape_of({a.B, a.Tk}) + " for q " + shape_str(q) + " and k " + shape_str(k));
    mask_keep = py::array_t<std::uint8_t, py::array::c_style>::ensure(m.view("uint8"));
    a.key_mask = static_cast<const std::uint8_t*>(mask_keep.data());
  }
  a.causal = causal;
  a.scale = float(scale);
  a.nthreads = num_threads();
  return a;
}

py::tuple attention_forward_binding(py::object q_obj, py::object k_obj, py::object v_obj, py::object key_mask,
                                    bool causal, double scale, bool reference) {
  const char* op = "attention_forward";
  py::array q = as_qkv(q_obj, op, "q"), k = as_qkv(k_obj, op, "k"), v = as_qkv(v_obj, op, "v");
  py::array mask_keep;
  const AttentionArgs a = make_args(op, q, k, v, mask_keep, key_mask, causal, scale);
  py::array_t<float> out({a.B, a.NH, a.Tq, a.HS}), lse({a.B, a.NH, a.Tq});
  float* o = out.mutable_data();
  float* l = lse.mutable_data();
  {
    py::gil_scoped_release nogil;
    DenormalGuard ftz;
    if (reference) irf::ref::attention_forward(o, l, a);
    else irf::kernels().attention_forward(o, l, a);
  }
  return py::make_tuple(out, lse);
}

py::tuple attention_backward_binding(py::object dout_obj, py::object q_obj, py::object k_obj, py::object v_obj,
                                     py::object out_obj, py::object lse_obj, py::object key_mask, bool causal,
                                     double scale, bool reference) {
  const char* op = "attention_backward";
  py::array q = as_qkv(q_obj, op, "q"), k = as_qkv(k_obj, op, "k"), v = as_qkv(v_obj, op, "v");
  py::array dout = as_contiguous(dout_obj, op, "dout"), out = as_contiguous(out_obj, op, "out"),
            lse = as_contiguous(lse_obj, op, "lse");
  py::array mask_keep;
  const AttentionArgs a = make_args(op, q, k, v, mask_keep, key_mask, causal, scale);
  const std::string o = std::string(op) + ": ";
  auto same_as_q = [&](const py::array& x, const char* name) {
    bool ok = x.ndim() == 4;
    for (int i = 0; ok && i < 4; ++i) ok = x.shape(i) == q.shape(i);
    if (!ok)
      throw std::invalid_argument(o + name + " has shape " + shape_str(x) + ", expected q's shape " + shape_str(q));
  };
  same_as_q(dout, "dout");
  same_as_q(out, "out");
  if (lse.ndim() != 3 || lse.shape(0) != a.B || lse.shape(1) != a.NH || lse.shape(2) != a.Tq)
    throw std::invalid_argument(o + "lse has shape " + shape_str(lse) + ", expected (B, NH, Tq) = " +
                                shape_of({a.B, a.NH, a.Tq}) + " for q " + shape_str(q));
  py::array_t<float> dq({a.B, a.NH, a.Tq, a.HS}), dk({a.B, a.NH, a.Tk, a.HS}), dv({a.B, a.NH, a.Tk, a.HS});
  float* gq = dq.mutable_data();
  float* gk = dk.mutable_data();
  float* gv = dv.mutable_data();
  const float* pd = static_cast<const float*>(dout.data());
  const float* po = static_cast<const float*>(out.data());
  const float* pl = static_cast<const float*>(lse.data());
  {
    py::gil_scoped_release nogil;
    DenormalGuard ftz;
    if (reference) irf::ref::attention_backward(gq, gk, gv, pd, po, pl, a);
    else irf::kernels().attention_backward(gq, gk, gv, pd, po, pl, a);
  }
  return py::make_tuple(dq, dk, dv);
}

}  // namespace

void bind_attention(py::module_& m) {
  m.def("attention_forward", &attention_forward_binding, py::arg("q"), py::arg("k"), py::arg("v"),
        py::arg("key_mask") = py::none(), py::arg("causal") = false, py::arg("scale") = 1.0,
        py::arg("reference") = false,
        "(out, lse) = fused softmax(q k^T * scale + masks) v and its row logsumexp; see ops.attention_forward.");
  m.def("attention_backward", &attention_backward_binding, py::arg("dout"), py::arg("q"), py::arg("k"),
        py::arg("v"), py::arg("out"), py::arg("lse"), py::arg("key_mask") = py::none(), py::arg("causal") = false,
        py::arg("scale") = 1.0, py::arg("reference") = false,
        "(dq, dk, dv) of attention_forward from dout and the saved out, lse; see ops.attention_backward.");
}

}  // namespace bind
}  // namespace irf
