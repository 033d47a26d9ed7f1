// bindings/norm_act.cpp: layernorm, activations, softmax / log-softmax, add / add_bias /
// sum_rows (csrc/kernels/{layernorm,activations,softmax,bias_add}.cpp) and the simd.h
// transcendental probe.  Inputs of any shape are flattened to (rows, C = last dim); inputs that
// are not C-contiguous are copied; outputs are new C-contiguous float32 arrays unless out= is
// given (then it must be float32, C-contiguous, writable and of the result's shape).
#include <algorithm>
#include <vector>

#include "bindings/bindings.h"

namespace irf {
namespace bind {
namespace {

using Shape = std::vector<py::ssize_t>;

std::string shape_str(const Shape& s) {
  std::string r = "(";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + (s.size() == 1 ? ",)" : ")");
}

Shape shape_of(const py::array& a) { return Shape(a.shape(), a.shape() + a.ndim()); }

// A float32 input as a C-contiguous array (copied if it is not).  TypeError names op and arg.
py::array input(const py::handle& obj, const char* op, const char* name) {
  return py::array_t<float, py::array::c_style>::ensure(f32_array(obj, op, name));
}

void expect_shape(const py::array& a, const Shape& want, const char* op, const char* name, const std::string& why) {
  if (shape_of(a) != want)
    throw std::invalid_argument(std::string(op) + ": " + name + " has shape " + shape_str(shape_of(a)) +
                                ", expected " + shape_str(want) + " (" + why + ")");
}

// Number of rows (product of all but the last dim) and C (last dim) of a >= 1-D array.
void rows_cols(const py::array& a, const char* op, const char* name, i64& N, i64& C) {
  if (a.ndim() < 1)
    throw std::invalid_argument(std::string(op) + ": " + name + " must have at least 1 dimension, got a scalar");
  C = a.shape(a.ndim() - 1);
  N = 1;
  for (py::ssize_t i = 0; i + 1 < a.ndim(); ++i) N *= a.shape(i);
}

float* fptr(const py::array& a) { return static_cast<float*>(const_cast<void*>(a.data())); }
const float* cptr(const py::array& a) { return static_cast<const float*>(a.data()); }

bool same_or_disjoint(const py::array& x, const py::array& y) {
  if (x.size() == 0 || y.size() == 0) return true;
  const char* x0 = static_cast<const char*>(x.data());
  const char* y0 = static_cast<const char*>(y.data());
  const char* x1 = x0 + x.nbytes();
  const char* y1 = y0 + y.nbytes();
  return x0 == y0 || x1 <= y0 || y1 <= x0;
}

// out= argument: None -> a new array of `shape`; else checked (float32, writable, C-contiguous,
// exact shape).  Inputs it may alias exactly (in-place) or must not overlap at all.
py::array output(const py::object& obj, const Shape& shape, const char* op, const char* name) {
  if (obj.is_none()) return new_f32(shape);
  py::array a = f32_array(obj, op, name);
  expect_shape(a, shape, op, name, "the result's shape");
  if (!a.writeable()) throw std::invalid_argument(std::string(op) + ": " + name + " must be writable");
  if (!(a.flags() & py::array::c_style))
    throw std::invalid_argument(std::string(op) + ": " + name + " must be C-contiguous");
  return a;
}

void no_partial_overlap(const py::array& out, const py::array& in, const char* op, const char* name) {
  if (!same_or_disjoint(out, in))
    throw std::invalid_argument(std::string(op) + ": out partially overlaps " + name);
}

// ---- layernorm -----------------------------------------------------------------------------

py::tuple layernorm_forward(py::object x_obj, py::object w_obj, py::object b_obj, float eps, bool reference) {
  const char* op = "layernorm_forward";
  py::array x = input(x_obj, op, "x");
  i64 N, C;
  rows_cols(x, op, "x", N, C);
  if (C == 0) throw std::invalid_argument("layernorm_forward: x has shape " + shape_str(shape_of(x)) +
                                          "; the normalized (last) dimension must be > 0");
  if (!(eps >= 0.f)) throw std::invalid_argument("layernorm_forward: eps must be >= 0, got " + std::to_string(eps));
  py::array w, b;   // (a default py::array is an empty array, not null: track presence in wp / bp)
  const float* wp = nullptr;
  const float* bp = nullptr;
  const Shape cs{py::ssize_t(C)};
  if (!w_obj.is_none()) {
    w = input(w_obj, op, "weight");
    expect_shape(w, cs, op, "weight", "the last dim of x " + shape_str(shape_of(x)));
    wp = cptr(w);
  }
  if (!b_obj.is_none()) {
    b = input(b_obj, op, "bias");
    expect_shape(b, cs, op, "bias", "the last dim of x " + shape_str(shape_of(x)));
    bp = cptr(b);
  }
  Shape rs(x.shape(), x.shape() + x.ndim() - 1);
  py::array out = new_f32(shape_of(x)), mean = py::array_t<float>(rs), rstd = py::array_t<float>(rs);
  {
    py::gil_scoped_release nogil;
    DenormalGuard ftz;
    if (reference) ref::layernorm_forward(fptr(out), fptr(mean), fptr(rstd), cptr(x), wp, bp, N, C, eps);
    else kernels().layernorm_forward(fptr(out), fptr(mean), fptr(rstd), cptr(x), wp, bp, N, C, eps, num_threads());
  }
  return py::make_tuple(out, mean, rstd);
}

// A parameter-gradient buffer to accumulate into in place: float32, (C,), writable, contiguous.
py::array grad_buffer(const py::object& obj, const Shape& cs, const char* name) {
  const char* op = "layernorm_backward";
  py::array a = f32_array(obj, op, name);
  expect_shape(a, cs, op, name, "the shape of weight");
  if (!a.writeable()) throw std::invalid_argument(std::string(op) + ": " + name + " must be writable");
  if (!(a.flags() & py::array::c_style))
    throw std::invalid_argument(std::string(op) + ": " + name + " must be contiguous (it is accumulated in place)");
  return a;
}

py::tuple layernorm_backward(py::object dout_obj, py::object x_obj, py::object mean_obj, py::object rstd_obj,
                             py::object w_obj, py::object dw_obj, py::object db_obj, bool reference) {
  const char* op = "layernorm_backward";
  py::array x = input(x_obj, op, "x");
  i64 N, C;
  rows_cols(x, op, "x", N, C);
  py::array dout = input(dout_obj, op, "dout");
  expect_shape(dout, shape_of(x), op, "dout", "the shape of x");
  Shape rs(x.shape(), x.shape() + x.ndim() - 1);
  py::array mean = input(mean_obj, op, "mean"), rstd = input(rstd_obj, op, "rstd");
  expect_shape(mean, rs, op, "mean", "x.shape[:-1] of x " + shape_str(shape_of(x)));
  expect_shape(rstd, rs, op, "rstd", "x.shape[:-1] of x " + shape_str(shape_of(x)));
  const Shape cs{py::ssize_t(C)};
  py::array w, dw, db;   // present iff wp / dwp / dbp are set
  const float* wp = nullptr;
  float* dwp = nullptr;
  float* dbp = nullptr;
  py::object dw_ret = py::none(), db_ret = py::none();
  if (!w_obj.is_none()) {
    w = input(w_obj, op, "weight");
    wp = cptr(w);
    expect_shape(w, cs, op, "weight", "the last dim of x " + shape_str(shape_of(x)));
    if (dw_obj.is_none()) {
      dw = py::array_t<float>(cs);
      std::fill_n(fptr(dw), C, 0.f);
    } else {
      dw = grad_buffer(dw_obj, cs, "dweight");
    }
    if (db_obj.is_none()) {
      db = py::array_t<float>(cs);
      std::fill_n(fptr(db), C, 0.f);
    } else {
      db = grad_buffer(db_obj, cs, "dbias");
    }
    if (dw.data() == db.data() && C > 0)
      throw std::invalid_argument("layernorm_backward: dweight and dbias must be different arrays");
    dw_ret = dw;
    db_ret = db;
    dwp = fptr(dw);
    dbp = fptr(db);
  } else if (!dw_obj.is_none() || !db_obj.is_none()) {
    throw std::invalid_argument("layernorm_backward: dweight/dbias given but weight is None (no affine parameters)");
  }
  py::array dx = new_f32(shape_of(x));
  if (N > 0 && C > 0) {
    py::gil_scoped_release nogil;
    DenormalGuard ftz;
    if (reference) ref::layernorm_backward(fptr(dx), dwp, dbp, cptr(dout), cptr(x), cptr(mean), cptr(rstd), wp, N, C);
    else kernels().layernorm_backward(fptr(dx), dwp, dbp, cptr(dout), cptr(x), cptr(mean), cptr(rstd), wp, N, C,
                                      num_threads());
  }
  return py::make_tuple(dx, dw_ret, db_ret);
}

// ---- activations ---------------------------------------------------------------------------

const char* act_name(int act, bool fwd) {
  static const char* f[] = {"gelu_forward", "gelu_forward", "relu_forward", "sigmoid_forward", "tanh_forward"};
  static const char* b[] = {"gelu_backward", "gelu_backward", "relu_backward", "sigmoid_backward", "tanh_backward"};
  return fwd ? f[act] : b[act];
}

void check_act(int act) {
  if (act < 0 || act > ref::kActTanh) throw py::index_error("activation id " + std::to_string(act) + " out of range [0, 5)");
}

py::array act_forward(py::object x_obj, int act, bool reference) {
  check_act(act);
  const char* op = act_name(act, true);
  py::array x = input(x_obj, op, "x");
  py::array out = new_f32(shape_of(x));
  const i64 n = x.size();
  {
    py::gil_scoped_release nogil;
    DenormalGuard ftz;
    if (reference) ref::act_forward(fptr(out), cptr(x), n, act);
    else kernels().act_forward(fptr(out), cptr(x), n, act, num_threads());
  }
  return out;
}

py::array act_backward(py::object dout_obj, py::object saved_obj, int act, bool reference) {
  check_act(act);
  const char* op = act_name(act, false);
  const char* sname = act == ref::kActSigmoid || act == ref::kActTanh ? "out" : "x";
  py::array dout = input(dout_obj, op, "dout");
  py::array s = input(saved_obj, op, sname);
  expect_shape(dout, shape_of(s), op, "dout", std::string("the shape of ") + sname);
  py::array dx = new_f32(shape_of(s));
  const i64 n = s.size();
  {
    py::gil_scoped_release nogil;
    DenormalGuard ftz;
    if (reference) ref::act_backward(fptr(dx), cptr(dout), cptr(s), n, act);
    else kernels().act_backward(fptr(dx), cptr(dout), cptr(s), n, act, num_threads());
  }
  return dx;
}

// ---- softmax -------------------------------------------------------------------------------

py::array softmax_forward(py::object x_obj, bool log, bool reference) {
  const char* op = log ? "log_softmax_forward" : "softmax_forward";
  py::array x = input(x_obj, op, "x");
  i64 N, C;
  rows_cols(x, op, "x", N, C);
  py::array out = new_f32(shape_of(x));
  {
    py::gil_scoped_release nogil;
    DenormalGuard ftz;
    if (reference) ref::softmax_forward(fptr(out), cptr(x), N, C, log);
    else kernels().softmax_forward(fptr(out), cptr(x), N, C, log, num_threads());
  }
  return out;
}

py::array softmax_backward(py::object dout_obj, py::object out_obj, bool log, bool reference) {
  const char* op = log ? "log_softmax_backward" : "softmax_backward";
  py::array y = input(out_obj, op, "out");
  i64 N, C;
  rows_cols(y, op, "out", N, C);
  py::array dout = input(dout_obj, op, "dout");
  expect_shape(dout, shape_of(y), op, "dout", "the shape of out");
  py::array dx = new_f32(shape_of(y));
  {
    py::gil_scoped_release nogil;
    DenormalGuard ftz;
    if (reference) ref::softmax_backward(fptr(dx), cptr(dout), cptr(y), N, C, log);
    else kernels().softmax_backward(fptr(dx), cptr(dout), cptr(y), N, C, log, num_threads());
  }
  return dx;
}

// ---- add / add_bias / sum_rows -------------------------------------------------------------

py::array add(py::object a_obj, py::object b_obj, py::object out_obj, bool reference) {
  py::array a = input(a_obj, "add", "a"), b = input(b_obj, "add", "b");
  if (shape_of(a) != shape_of(b))
    throw std::invalid_argument("add: b has shape " + shape_str(shape_of(b)) + ", expected the shape of a " +
                                shape_str(shape_of(a)));
  py::array out = output(out_obj, shape_of(a), "add", "out");
  no_partial_overlap(out, a, "add", "a");
  no_partial_overlap(out, b, "add", "b");
  const i64 n = a.size();
  {
    py::gil_scoped_release nogil;
    DenormalGuard ftz;
    if (reference) ref::add(fptr(out), cptr(a), cptr(b), n);
    else kernels().add(fptr(out), cptr(a), cptr(b), n, num_threads());
  }
  return out;
}

py::array add_bias(py::object x_obj, py::object bias_obj, py::object out_obj, bool reference) {
  py::array x = input(x_obj, "add_bias", "x");
  i64 N, C;
  rows_cols(x, "add_bias", "x", N, C);
  py::array bias = input(bias_obj, "add_bias", "bias");
  expect_shape(bias, Shape{py::ssize_t(C)}, "add_bias", "bias", "the last dim of x " + shape_str(shape_of(x)));
  py::array out = output(out_obj, shape_of(x), "add_bias", "out");
  no_partial_overlap(out, x, "add_bias", "x");
  if (!same_or_disjoint(out, bias) || (out.size() && bias.size() && out.data() == bias.data() && N > 1))
    throw std::invalid_argument("add_bias: out overlaps bias");
  {
    py::gil_scoped_release nogil;
    DenormalGuard ftz;
    if (reference) ref::add_bias(fptr(out), cptr(x), cptr(bias), N, C);
    else kernels().add_bias(fptr(out), cptr(x), cptr(bias), N, C, num_threads());
  }
  return out;
}

py::array sum_rows(py::object x_obj, py::object out_obj, bool accumulate, bool reference) {
  py::array x = input(x_obj, "sum_rows", "x");
  i64 N, C;
  rows_cols(x, "sum_rows", "x", N, C);
  if (accumulate && out_obj.is_none())
    throw std::invalid_argument("sum_rows: accumulate=True needs out= to accumulate into");
  py::array out = output(out_obj, Shape{py::ssize_t(C)}, "sum_rows", "out");
  if (!same_or_disjoint(out, x) || (out.size() && x.size() && out.data() == x.data()))
    throw std::invalid_argument("sum_rows: out shares memory with x");
  {
    py::gil_scoped_release nogil;
    DenormalGuard ftz;
    if (reference) ref::sum_rows(fptr(out), cptr(x), N, C, accumulate);
    else kernels().sum_rows(fptr(out), cptr(x), N, C, accumulate, num_threads());
  }
  return out;
}

py::array simd_math(py::object x_obj, const std::string& fn) {
  py::array x = input(x_obj, "simd_math", "x");
  int id = fn == "exp" ? 0 : fn == "tanh" ? 1 : fn == "erf" ? 2 : -1;
  if (id < 0) throw std::invalid_argument("simd_math: fn must be 'exp', 'tanh' or 'erf', got '" + fn + "'");
  py::array out = new_f32(shape_of(x));
  {
    py::gil_scoped_release nogil;
    DenormalGuard ftz;
    kernels().simd_math(fptr(out), cptr(x), x.size(), id);
  }
  return out;
}

}  // namespace

void bind_norm_act(py::module_& m) {
  m.def("layernorm_forward", &layernorm_forward, py::arg("x"), py::arg("weight"), py::arg("bias"),
        py::arg("eps") = 1e-5f, py::arg("reference") = false,
        "(out, mean, rstd) of LayerNorm over the last dim of x; weight/bias (C,) or None.");
  m.def("layernorm_backward", &layernorm_backward, py::arg("dout"), py::arg("x"), py::arg("mean"), py::arg("rstd"),
        py::arg("weight"), py::arg("dweight") = py::none(), py::arg("dbias") = py::none(),
        py::arg("reference") = false,
        "(dx, dweight, dbias); parameter gradients accumulate into dweight/dbias when given.");
  m.def("act_forward", &act_forward, py::arg("x"), py::arg("act"), py::arg("reference") = false,
        "Activation forward; act: 0 gelu(erf) 1 gelu(tanh) 2 relu 3 sigmoid 4 tanh.");
  m.def("act_backward", &act_backward, py::arg("dout"), py::arg("saved"), py::arg("act"),
        py::arg("reference") = false,
        "Activation backward from x (gelu, relu) or from the output (sigmoid, tanh).");
  m.def("softmax_forward", &softmax_forward, py::arg("x"), py::arg("log") = false, py::arg("reference") = false,
        "Softmax (or log-softmax) over the last dim.");
  m.def("softmax_backward", &softmax_backward, py::arg("dout"), py::arg("out"), py::arg("log") = false,
        py::arg("reference") = false, "Softmax (or log-softmax) backward from the saved output.");
  m.def("add", &add, py::arg("a"), py::arg("b"), py::arg("out") = py::none(), py::arg("reference") = false,
        "a + b, same shapes.");
  m.def("add_bias", &add_bias, py::arg("x"), py::arg("bias"), py::arg("out") = py::none(),
        py::arg("reference") = false, "x (..., C) + bias (C,).");
  m.def("sum_rows", &sum_rows, py::arg("x"), py::arg("out") = py::none(), py::arg("accumulate") = false,
        py::arg("reference") = false, "(C,) sums of x (..., C) over all leading dims (deterministic).");
  m.def("simd_math", &simd_math, py::arg("x"), py::arg("fn"),
        "simd.h vexp / vtanh / verf applied to x (for the error-bound tests).");
}

}  // namespace bind
}  // namespace irf
