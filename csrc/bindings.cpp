// bindings.cpp: the only file that includes pybind11.  Every entry point checks dtype, shape
// and strides (enough that no call from Python can read or write out of bounds), releases the
// GIL, flushes denormals for the duration of the call and calls the active kernel table.
// Friendlier messages (argument names, both shapes) are produced earlier in ironformer/ops.py.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <xmmintrin.h>

#include <chrono>
#include <string>
#include <utility>

#include "kernels.h"
#ifdef _OPENMP
#include <omp.h>
#endif

namespace py = pybind11;
using irf::i64;

namespace {

#ifndef IRF_VERSION
#define IRF_VERSION "0.0.0"
#endif
#ifndef IRF_COMPILER
#define IRF_COMPILER "unknown"
#endif

int g_num_threads = 0;   // 0: not yet read from OpenMP

int num_threads() {
  if (g_num_threads <= 0) g_num_threads = irf::max_threads();
  return g_num_threads;
}

// Saves the caller's MXCSR, sets flush-to-zero / denormals-are-zero for the kernel call, and
// restores it afterwards so numpy code on the same thread keeps IEEE denormals.
struct DenormalGuard {
  unsigned saved;
  DenormalGuard() : saved(_mm_getcsr()) { _mm_setcsr(saved | 0x8040u); }
  ~DenormalGuard() { _mm_setcsr(saved); }
};

// A float32 numpy array as a strided view with element (not byte) strides.
struct View {
  float* ptr = nullptr;
  int ndim = 0;
  i64 shape[4] = {0, 0, 0, 0};
  i64 stride[4] = {0, 0, 0, 0};
};

std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) {
    if (i) s += ", ";
    s += std::to_string(a.shape(i));
  }
  if (a.ndim() == 1) s += ",";
  return s + ")";
}

View view(const py::array& a, const char* name, bool writable, int min_nd, int max_nd) {
  if (!a.dtype().is(py::dtype::of<float>()))
    throw py::type_error(std::string(name) + " must be float32, got " + std::string(py::str(a.dtype())));
  if (a.ndim() < min_nd || a.ndim() > max_nd)
    throw std::invalid_argument(std::string(name) + " must have " + std::to_string(min_nd) + " to " +
                                std::to_string(max_nd) + " dimensions, got shape " + shape_str(a));
  if (writable && !a.writeable())
    throw std::invalid_argument(std::string(name) + " must be writable");
  View v;
  v.ptr = static_cast<float*>(const_cast<void*>(a.data()));
  v.ndim = int(a.ndim());
  for (int i = 0; i < v.ndim; ++i) {
    v.shape[i] = a.shape(i);
    const py::ssize_t st = a.strides(i);
    if (st % py::ssize_t(sizeof(float)) != 0)
      throw std::invalid_argument(std::string(name) + " has a stride that is not a multiple of 4 bytes");
    v.stride[i] = st / py::ssize_t(sizeof(float));
  }
  return v;
}

// Byte range [lo, hi) spanned by a view (conservative overlap test, like np.may_share_memory).
std::pair<const char*, const char*> span(const View& v) {
  const char* lo = reinterpret_cast<const char*>(v.ptr);
  const char* hi = lo;
  for (int i = 0; i < v.ndim; ++i) {
    if (v.shape[i] == 0) return {lo, lo};
    const i64 ext = (v.shape[i] - 1) * v.stride[i] * i64(sizeof(float));
    if (ext < 0) lo += ext; else hi += ext;
  }
  return {lo, hi + sizeof(float)};
}

bool overlaps(const View& x, const View& y) {
  auto a = span(x), b = span(y);
  return a.first < a.second && b.first < b.second && a.first < b.second && b.first < a.second;
}

// A float32 operand; byte strides that are not whole elements get a contiguous copy.
py::array as_operand(const py::handle& obj, const char* name) {
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(std::string("matmul: ") + name + " must be a numpy.ndarray of float32, got " +
                         std::string(py::str(obj.get_type().attr("__name__"))));
  py::array a = py::reinterpret_borrow<py::array>(obj);
  if (!a.dtype().is(py::dtype::of<float>()))
    throw py::type_error(std::string("matmul: ") + name + " must be float32, got " + std::string(py::str(a.dtype())) +
                         " (convert with " + name + ".astype(np.float32))");
  for (py::ssize_t i = 0; i < a.ndim(); ++i)
    if (a.strides(i) % py::ssize_t(sizeof(float)) != 0)
      return py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(a);
  return a;
}

// out (batch?, M, N) = op(a) @ op(b) (+ out if accumulate) (+ bias); returns out.
py::array matmul_binding(py::object a_obj, py::object b_obj, bool trans_a, bool trans_b, py::object out_obj,
                         bool accumulate, py::object bias_obj, bool reference) {
  py::array a = as_operand(a_obj, "a"), b = as_operand(b_obj, "b");
  if (a.ndim() < 2 || a.ndim() > 3 || b.ndim() < 2 || b.ndim() > 3)
    throw std::invalid_argument("matmul: a and b must be 2-D or 3-D, got a " + shape_str(a) + " and b " + shape_str(b));
  const View A = view(a, "a", false, 2, 3), Bv = view(b, "b", false, 2, 3);
  irf::GemmParams p;
  const int ar = A.ndim - 2, br = Bv.ndim - 2;   // index of the row dim
  p.M = trans_a ? A.shape[ar + 1] : A.shape[ar];
  p.K = trans_a ? A.shape[ar] : A.shape[ar + 1];
  const i64 kb = trans_b ? Bv.shape[br + 1] : Bv.shape[br];
  p.N = trans_b ? Bv.shape[br] : Bv.shape[br + 1];
  if (kb != p.K)
    throw std::invalid_argument("matmul: inner dimensions differ: op(a) is " + std::to_string(p.M) + "x" +
                                std::to_string(p.K) + " (a " + shape_str(a) + (trans_a ? ", transposed" : "") +
                                ") but op(b) is " + std::to_string(kb) + "x" + std::to_string(p.N) + " (b " +
                                shape_str(b) + (trans_b ? ", transposed" : "") + ")");
  const bool batched = A.ndim == 3 || Bv.ndim == 3;
  const i64 ba = A.ndim == 3 ? A.shape[0] : 1, bb = Bv.ndim == 3 ? Bv.shape[0] : 1;
  if (ba != bb && ba != 1 && bb != 1)
    throw std::invalid_argument("matmul: batch sizes differ: a " + shape_str(a) + " and b " + shape_str(b));
  p.batch = ba > bb ? ba : bb;
  std::string expect = batched ? "(" + std::to_string(p.batch) + ", " : "(";
  expect += std::to_string(p.M) + ", " + std::to_string(p.N) + ")";

  py::array out;
  if (out_obj.is_none()) {
    if (accumulate) throw std::invalid_argument("matmul: accumulate=True needs out= to accumulate into");
    out = batched ? py::array_t<float>({p.batch, p.M, p.N}) : py::array_t<float>({p.M, p.N});
  } else {
    if (!py::isinstance<py::array>(out_obj))
      throw py::type_error("matmul: out must be a numpy.ndarray of float32");
    out = py::reinterpret_borrow<py::array>(out_obj);
    if (!out.dtype().is(py::dtype::of<float>()))
      throw py::type_error("matmul: out must be float32, got " + std::string(py::str(out.dtype())));
  }
  const View C = view(out, "matmul: out", true, 0, 4);
  const bool shape_ok = C.ndim == (batched ? 3 : 2) && C.shape[C.ndim - 2] == p.M && C.shape[C.ndim - 1] == p.N &&
                        (!batched || C.shape[0] == p.batch);
  if (!shape_ok) throw std::invalid_argument("matmul: out has shape " + shape_str(out) + ", expected " + expect);
  const int cr = C.ndim - 2;
  if (p.M == 0 || p.N == 0 || p.batch == 0) return out;   // nothing to compute or check
  if (p.N > 1 && C.stride[cr + 1] != 1)
    throw std::invalid_argument("matmul: out must be contiguous in its last dimension");
  if (overlaps(C, A) || overlaps(C, Bv))
    throw std::invalid_argument("matmul: out shares memory with an input; pass a separate output array");
  p.a = A.ptr; p.a_bs = ba > 1 ? A.stride[0] : 0;
  p.a_rs = trans_a ? A.stride[ar + 1] : A.stride[ar];
  p.a_cs = trans_a ? A.stride[ar] : A.stride[ar + 1];
  p.b = Bv.ptr; p.b_bs = bb > 1 ? Bv.stride[0] : 0;
  p.b_rs = trans_b ? Bv.stride[br + 1] : Bv.stride[br];
  p.b_cs = trans_b ? Bv.stride[br] : Bv.stride[br + 1];
  p.c = C.ptr; p.c_bs = batched ? C.stride[0] : 0; p.ldc = C.stride[cr];
  p.accumulate = accumulate;
  p.nthreads = num_threads();
  py::array bias_arr;
  if (!bias_obj.is_none()) {
    if (!py::isinstance<py::array>(bias_obj)) throw py::type_error("matmul: bias must be a numpy.ndarray of float32");
    bias_arr = py::reinterpret_borrow<py::array>(bias_obj);
    const View bv = view(bias_arr, "matmul: bias", false, 0, 4);
    if (bv.ndim != 1 || bv.shape[0] != p.N)
      throw std::invalid_argument("matmul: bias has shape " + shape_str(bias_arr) + ", expected (" +
                                  std::to_string(p.N) + ",)");
    if (p.N > 1 && bv.stride[0] != 1) bias_arr = py::array_t<float, py::array::c_style>::ensure(bias_arr);
    p.bias = static_cast<const float*>(bias_arr.data());
  }
  {
    py::gil_scoped_release nogil;
    DenormalGuard ftz;
    if (reference) irf::ref::gemm(p);
    else irf::kernels().gemm(p);
  }
  return out;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "ironformer C++ kernels (SIMD + OpenMP)";
  m.attr("__version__") = IRF_VERSION;
  m.attr("compiler") = IRF_COMPILER;
#ifdef IRF_HAVE_OPENMP
  m.attr("has_openmp") = true;
#else
  m.attr("has_openmp") = false;
#endif
  m.def("isa", []() { return std::string(irf::kernels().isa); }, "The ISA whose kernels are in use.");
  m.def("best_isa", []() { return std::string(irf::best_isa()); });
  m.def("isa_supported", [](const std::string& s) { return irf::isa_supported(s); });
  m.def("select_isa", [](const std::string& s) { irf::select_isa(s); }, py::arg("name"));
  m.def("get_num_threads", &num_threads);
  m.def("set_num_threads", [](int n) {
    if (n < 1) throw std::invalid_argument("set_num_threads: n must be >= 1, got " + std::to_string(n));
    g_num_threads = n;
  }, py::arg("n"));
  m.def("peak_gflops", [](int nthreads, double seconds) {
    if (nthreads < 1) throw std::invalid_argument("peak_gflops: nthreads must be >= 1");
    py::gil_scoped_release nogil;
    DenormalGuard ftz;
    const auto& k = irf::kernels();
    k.fma_burn(1 << 16, nthreads);   // warm up the threads and the clock
    i64 iters = 1 << 16;
    double best = 0.0;
    const auto start = std::chrono::steady_clock::now();
    while (true) {
      const auto t0 = std::chrono::steady_clock::now();
      const double flops = k.fma_burn(iters, nthreads);
      const auto t1 = std::chrono::steady_clock::now();
      const double dt = std::chrono::duration<double>(t1 - t0).count();
      if (dt < 0.01) { iters *= 4; continue; }
      if (flops / dt > best) best = flops / dt;
      if (std::chrono::duration<double>(t1 - start).count() > seconds) break;
    }
    return best / 1e9;
  }, py::arg("nthreads") = 1, py::arg("seconds") = 0.2,
     "Measured fp32 FMA peak in GFLOP/s of the active ISA on nthreads threads (best of repeats).");
  m.def("matmul", &matmul_binding, py::arg("a"), py::arg("b"), py::arg("trans_a") = false,
        py::arg("trans_b") = false, py::arg("out") = py::none(), py::arg("accumulate") = false,
        py::arg("bias") = py::none(), py::arg("reference") = false,
        "out = op(a) @ op(b) (+ out if accumulate) (+ bias); float32, 2-D or batched 3-D.");
}
