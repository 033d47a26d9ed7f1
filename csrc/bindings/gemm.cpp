// bindings/gemm.cpp: ironformer.ops.matmul.
#include "bindings/bindings.h"

namespace irf {
namespace bind {
namespace {

// A float32 operand; byte strides that are not whole elements get a contiguous copy.
// (hint: the conversion to suggest in the dtype error; a literal, nothing is built per call)
py::array as_operand(const py::handle& obj, const char* name, const char* hint) {
  py::array a = f32_array(obj, "matmul", name, hint);
  for (py::ssize_t i = 0; i < a.ndim(); ++i)
    if (a.strides(i) % py::ssize_t(sizeof(float)) != 0)
      return py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(a);
  return a;
}

// out (batch?, M, N) = op(a) @ op(b) (+ out if accumulate) (+ bias); returns out.
py::array matmul_binding(py::object a_obj, py::object b_obj, bool trans_a, bool trans_b, py::object out_obj,
                         bool accumulate, py::object bias_obj, bool reference) {
  py::array a = as_operand(a_obj, "a", " (convert with a.astype(np.float32))");
  py::array b = as_operand(b_obj, "b", " (convert with b.astype(np.float32))");
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

  // (py::array's default constructor allocates an empty numpy array, ~0.15 us: build `out`
  // in one expression instead)
  if (out_obj.is_none() && accumulate)
    throw std::invalid_argument("matmul: accumulate=True needs out= to accumulate into");
  if (!out_obj.is_none() && !py::isinstance<py::array>(out_obj))
    throw py::type_error("matmul: out must be a numpy.ndarray of float32");
  py::array out = out_obj.is_none() ? (batched ? new_f32({p.batch, p.M, p.N}) : new_f32({p.M, p.N}))
                                    : py::reinterpret_borrow<py::array>(out_obj);
  if (!is_dtype<float>(out.dtype()))
    throw py::type_error("matmul: out must be float32, got " + std::string(py::str(out.dtype())));
  const View C = view(out, "matmul: out", true, 0, 4);
  const bool shape_ok = C.ndim == (batched ? 3 : 2) && C.shape[C.ndim - 2] == p.M && C.shape[C.ndim - 1] == p.N &&
                        (!batched || C.shape[0] == p.batch);
  if (!shape_ok)
    throw std::invalid_argument("matmul: out has shape " + shape_str(out) + ", expected (" +
                                (batched ? std::to_string(p.batch) + ", " : std::string()) + std::to_string(p.M) +
                                ", " + std::to_string(p.N) + ")");
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
  py::object bias_keep;   // keeps a contiguous copy of bias alive (a null py::object costs nothing)
  if (!bias_obj.is_none()) {
    if (!py::isinstance<py::array>(bias_obj)) throw py::type_error("matmul: bias must be a numpy.ndarray of float32");
    py::array bias_arr = py::reinterpret_borrow<py::array>(bias_obj);
    const View bv = view(bias_arr, "matmul: bias", false, 0, 4);
    if (bv.ndim != 1 || bv.shape[0] != p.N)
      throw std::invalid_argument("matmul: bias has shape " + shape_str(bias_arr) + ", expected (" +
                                  std::to_string(p.N) + ",)");
    if (p.N > 1 && bv.stride[0] != 1) bias_arr = py::array_t<float, py::array::c_style>::ensure(bias_arr);
    p.bias = static_cast<const float*>(bias_arr.data());
    bias_keep = bias_arr;
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

void bind_gemm(py::module_& m) {
  m.def("matmul", &matmul_binding, py::arg("a"), py::arg("b"), py::arg("trans_a") = false,
        py::arg("trans_b") = false, py::arg("out") = py::none(), py::arg("accumulate") = false,
        py::arg("bias") = py::none(), py::arg("reference") = false,
        "out = op(a) @ op(b) (+ out if accumulate) (+ bias); float32, 2-D or batched 3-D.");
}

}  // namespace bind
}  // namespace irf
