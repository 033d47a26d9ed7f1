// bindings/elementwise.cpp: ironformer.ops.binary / unary / reduce_sum (autograd's small ops).
//
// numpy shapes of any rank (<= 16) are broadcast here, then size-1 dims are dropped and
// neighbouring dims whose strides chain are merged for every operand, so the kernel sees at
// most 4 dims (each with element strides, 0 for broadcast).  A contiguous same-shape or
// scalar-operand op collapses to one dim and runs the kernel's vector paths.
#include <cstring>
#include <unordered_map>
#include <vector>

#include "bindings/bindings.h"
#include "elementwise.h"

namespace irf {
namespace bind {
namespace {

constexpr int kMaxDims = 16;

struct OpName {
  int op;
  bool binary;
};

const std::unordered_map<std::string, OpName>& op_table() {
  static const std::unordered_map<std::string, OpName> t = {
      {"add", {kEwAdd, true}},       {"sub", {kEwSub, true}},   {"mul", {kEwMul, true}},
      {"div", {kEwDiv, true}},       {"affine", {kEwAffine, false}}, {"exp", {kEwExp, false}},
      {"log", {kEwLog, false}},      {"sqrt", {kEwSqrt, false}}, {"pow", {kEwPow, false}},
  };
  return t;
}

// A float32 array with element strides (copied to contiguous when a byte stride is not a
// multiple of 4).  Checks dtype, rank, writability.
struct Arr {
  py::array arr;
  int nd = 0;
  i64 shape[kMaxDims];
  i64 stride[kMaxDims];
  float* ptr = nullptr;
};

Arr as_arr(const py::handle& obj, const std::string& op, const char* name, bool writable) {
  Arr r;
  r.arr = f32_array(obj, op, name);
  if (r.arr.ndim() > kMaxDims)
    throw std::invalid_argument(op + ": " + name + " has " + std::to_string(r.arr.ndim()) +
                                " dimensions, at most 16 are supported");
  if (writable && !r.arr.writeable()) throw std::invalid_argument(op + ": " + name + " must be writable");
  bool odd = false;
  for (py::ssize_t i = 0; i < r.arr.ndim(); ++i)
    if (r.arr.strides(i) % py::ssize_t(sizeof(float)) != 0) odd = true;
  if (odd) {
    if (writable) throw std::invalid_argument(op + ": " + name + " has a stride that is not a multiple of 4 bytes");
    r.arr = py::array_t<float, py::array::c_style>::ensure(r.arr);
  }
  r.nd = int(r.arr.ndim());
  for (int i = 0; i < r.nd; ++i) {
    r.shape[i] = r.arr.shape(i);
    r.stride[i] = r.arr.strides(i) / py::ssize_t(sizeof(float));
  }
  r.ptr = static_cast<float*>(const_cast<void*>(r.arr.data()));
  return r;
}

std::string shape_of(const i64* s, int nd) {
  std::string r = "(";
  for (int i = 0; i < nd; ++i) {
    if (i) r += ", ";
    r += std::to_string(s[i]);
  }
  if (nd == 1) r += ",";
  return r + ")";
}

View span_view(const float* p, const i64* shape, const i64* stride, int nd) {
  // overlaps() only needs the extent: fold the dims into at most 4 (sum of extents).
  View v;
  v.ptr = const_cast<float*>(p);
  v.ndim = 1;
  i64 lo = 0, hi = 0;
  for (int i = 0; i < nd; ++i) {
    if (shape[i] == 0) { v.shape[0] = 0; return v; }
    const i64 ext = (shape[i] - 1) * stride[i];
    if (ext < 0) lo += ext; else hi += ext;
  }
  v.ptr = const_cast<float*>(p) + lo;
  v.shape[0] = hi - lo + 1;
  v.stride[0] = 1;
  return v;
}

// out = op(a, b) / op(a) with numpy broadcasting; returns out.
py::array elementwise_binding(const std::string& opname, py::object a_obj, py::object b_obj, py::object out_obj,
                              float alpha, float beta, bool reference) {
  auto it = op_table().find(opname);
  if (it == op_table().end())
    throw std::invalid_argument("elementwise: unknown op '" + opname +
                                "'; expected add, sub, mul, div, affine, exp, log, sqrt or pow");
  const OpName on = it->second;
  const std::string op = (on.binary ? "binary " : "unary ") + opname;
  Arr A = as_arr(a_obj, op, on.binary ? "a" : "x", false);
  Arr B;
  if (on.binary) {
    if (b_obj.is_none()) throw std::invalid_argument(op + ": b is required");
    B = as_arr(b_obj, op, "b", false);
  } else if (!b_obj.is_none()) {
    throw std::invalid_argument(op + ": takes one operand, got b");
  }
  // Broadcast shape, right-aligned; strides of broadcast dims become 0.
  const int nd = on.binary ? (A.nd > B.nd ? A.nd : B.nd) : A.nd;
  i64 shape[kMaxDims], as[kMaxDims], bs[kMaxDims], os[kMaxDims];
  for (int d = 0; d < nd; ++d) {
    const int da = d - (nd - A.nd), db = on.binary ? d - (nd - B.nd) : -1;
    const i64 sa = da >= 0 ? A.shape[da] : 1, sb = db >= 0 ? B.shape[db] : 1;
    if (on.binary && sa != sb && sa != 1 && sb != 1)
      throw std::invalid_argument(op + ": shapes " + shape_of(A.shape, A.nd) + " and " + shape_of(B.shape, B.nd) +
                                  " cannot be broadcast together");
    shape[d] = on.binary ? (sa == 1 ? sb : sa) : sa;
    as[d] = (da >= 0 && sa != 1) ? A.stride[da] : 0;
    bs[d] = (db >= 0 && sb != 1) ? B.stride[db] : 0;
  }
  py::array out;
  Arr O;
  if (out_obj.is_none()) {
    std::vector<py::ssize_t> sh(shape, shape + nd);
    out = new_f32(sh);
    O = as_arr(out, op, "out", true);
  } else {
    O = as_arr(out_obj, op, "out", true);
    out = O.arr;
    bool same = O.nd == nd;
    for (int d = 0; same && d < nd; ++d) same = O.shape[d] == shape[d];
    if (!same)
      throw std::invalid_argument(op + ": out has shape " + shape_of(O.shape, O.nd) + ", expected " +
                                  shape_of(shape, nd));
  }
  for (int d = 0; d < nd; ++d) os[d] = O.stride[d];
  i64 total = 1;
  for (int d = 0; d < nd; ++d) total *= shape[d];
  if (total == 0) return out;
  // Aliasing: out may be exactly an input (same start, same strides everywhere), nothing else.
  auto check_alias = [&](const Arr& X, const i64* xs, const char* name) {
    const View vo = span_view(O.ptr, shape, os, nd), vx = span_view(X.ptr, shape, xs, nd);
    if (!overlaps(vo, vx)) return;
    bool exact = O.ptr == X.ptr;
    for (int d = 0; exact && d < nd; ++d) exact = shape[d] == 1 || os[d] == xs[d];
    if (!exact)
      throw std::invalid_argument(op + ": out shares memory with " + name +
                                  " (only an exact in-place alias is allowed); pass a separate output array");
  };
  check_alias(A, as, on.binary ? "a" : "x");
  if (on.binary) check_alias(B, bs, "b");
  // Drop size-1 dims, then merge neighbours whose strides chain for every operand.
  i64 cs[kMaxDims], cos_[kMaxDims], cas[kMaxDims], cbs[kMaxDims];
  int cn = 0;
  for (int d = 0; d < nd; ++d) {
    if (shape[d] == 1) continue;
    if (cn > 0) {
      const i64 n = shape[d];
      const bool chain = cos_[cn - 1] == os[d] * n && cas[cn - 1] == as[d] * n && cbs[cn - 1] == bs[d] * n;
      if (chain) {
        cs[cn - 1] *= n;
        cos_[cn - 1] = os[d];
        cas[cn - 1] = as[d];
        cbs[cn - 1] = bs[d];
        continue;
      }
    }
    cs[cn] = shape[d]; cos_[cn] = os[d]; cas[cn] = as[d]; cbs[cn] = bs[d];
    ++cn;
  }
  if (cn > 4)
    throw std::invalid_argument(op + ": the operands of shape " + shape_of(shape, nd) +
                                " need more than 4 strided dimensions; make one of them contiguous");
  EwParams p;
  p.op = on.op;
  const int off = 4 - cn;
  for (int d = 0; d < cn; ++d) {
    p.shape[off + d] = cs[d];
    p.os[off + d] = cos_[d];
    p.as[off + d] = cas[d];
    p.bs[off + d] = cbs[d];
  }
  p.out = O.ptr;
  p.a = A.ptr;
  p.b = on.binary ? B.ptr : nullptr;
  p.alpha = alpha;
  p.beta = beta;
  p.nthreads = num_threads();
  {
    py::gil_scoped_release nogil;
    DenormalGuard ftz;
    if (reference) irf::ref::elementwise(p);
    else irf::kernels().elementwise(p);
  }
  return out;
}

// Sum of x over `axes` (None: all), keepdim as in torch.sum.
py::array reduce_sum_binding(py::object x_obj, py::object axes_obj, bool keepdim, bool reference) {
  const std::string op = "reduce_sum";
  Arr X = as_arr(x_obj, op, "x", false);
  const int nd = X.nd;
  bool red[kMaxDims] = {false};
  if (axes_obj.is_none()) {
    for (int d = 0; d < nd; ++d) red[d] = true;
  } else {
    std::vector<py::object> axes;
    if (py::isinstance<py::int_>(axes_obj)) axes.push_back(axes_obj);
    else for (auto h : axes_obj) axes.push_back(py::reinterpret_borrow<py::object>(h));
    for (auto& ao : axes) {
      if (!py::isinstance<py::int_>(ao))
        throw py::type_error("reduce_sum: axes must be ints, got " + std::string(py::str(py::type::handle_of(ao).attr("__name__"))));
      const i64 a = ao.cast<i64>();
      const i64 lim = nd == 0 ? 1 : nd;
      if (a < -lim || a >= lim)
        throw py::index_error("reduce_sum: axis " + std::to_string(a) + " is out of range for x of shape " +
                              shape_of(X.shape, nd));
      const int d = int(a < 0 ? a + lim : a);
      if (nd == 0) continue;
      if (red[d]) throw std::invalid_argument("reduce_sum: axis " + std::to_string(a) + " appears more than once");
      red[d] = true;
    }
  }
  std::vector<py::ssize_t> oshape;
  for (int d = 0; d < nd; ++d) {
    if (!red[d]) oshape.push_back(X.shape[d]);
    else if (keepdim) oshape.push_back(1);
  }
  py::array_t<float> out(oshape);
  float* optr = out.mutable_data();
  i64 ototal = 1;
  for (auto s : oshape) ototal *= s;
  if (ototal == 0) return out;
  py::array xc = py::array_t<float, py::array::c_style>::ensure(X.arr);
  // Groups of neighbouring dims of one kind (size-1 dims join either).
  i64 gs[kMaxDims];
  bool gr[kMaxDims];
  int gn = 0;
  for (int d = 0; d < nd; ++d) {
    if (X.shape[d] == 1) continue;
    if (gn > 0 && gr[gn - 1] == red[d]) { gs[gn - 1] *= X.shape[d]; continue; }
    gs[gn] = X.shape[d];
    gr[gn] = red[d];
    ++gn;
  }
  int nred = 0;
  for (int g = 0; g < gn; ++g) nred += gr[g];
  const float* src = static_cast<const float*>(xc.data());
  if (nred == 0) {   // nothing to add: a copy
    std::memcpy(optr, src, sizeof(float) * size_t(ototal));
    return out;
  }
  std::vector<py::array_t<float>> temps;
  const int nthreads = num_threads();
  while (nred > 0) {
    int g = gn - 1;
    while (!gr[g]) --g;
    ReduceParams p;
    p.O = 1; p.I = 1;
    for (int k = 0; k < g; ++k) p.O *= gs[k];
    for (int k = g + 1; k < gn; ++k) p.I *= gs[k];
    p.R = gs[g];
    p.x = src;
    --nred;
    if (nred == 0) {
      p.out = optr;
    } else {
      temps.emplace_back(py::array_t<float>(py::ssize_t(p.O * p.I)));
      p.out = temps.back().mutable_data();
    }
    p.nthreads = nthreads;
    {
      py::gil_scoped_release nogil;
      DenormalGuard ftz;
      if (reference) irf::ref::reduce_sum(p);
      else irf::kernels().reduce_sum(p);
    }
    src = p.out;
    for (int k = g; k + 1 < gn; ++k) { gs[k] = gs[k + 1]; gr[k] = gr[k + 1]; }
    --gn;
    // merge the now-neighbouring kept groups
    if (g > 0 && g < gn && !gr[g - 1] && !gr[g]) {
      gs[g - 1] *= gs[g];
      for (int k = g; k + 1 < gn; ++k) { gs[k] = gs[k + 1]; gr[k] = gr[k + 1]; }
      --gn;
    }
  }
  return out;
}

}  // namespace

void bind_elementwise(py::module_& m) {
  m.def("elementwise", &elementwise_binding, py::arg("op"), py::arg("a"), py::arg("b") = py::none(),
        py::arg("out") = py::none(), py::arg("alpha") = 1.0f, py::arg("beta") = 0.0f, py::arg("reference") = false,
        "out = a (add|sub|mul|div) b with numpy broadcasting, or out = affine|exp|log|sqrt|pow(a); float32.");
  m.def("reduce_sum", &reduce_sum_binding, py::arg("x"), py::arg("axes") = py::none(), py::arg("keepdim") = false,
        py::arg("reference") = false, "Sum of x over axes (None: all), float32, blocked deterministic order.");
}

}  // namespace bind
}  // namespace irf
