// bindings/bindings.h: shared helpers of the binding files (csrc/bindings/*.cpp), the only
// code that includes pybind11.  Every entry point checks dtype, shape and strides (enough that
// no call from Python can read or write out of bounds), releases the GIL, flushes denormals
// for the duration of the call and calls the active kernel table.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <xmmintrin.h>

#include <string>
#include <utility>
#include <vector>

#include "kernels.h"

namespace irf {
namespace bind {

namespace py = pybind11;

// Threads the kernels use (set_num_threads); defaults to OpenMP's max threads.
int num_threads();
void set_num_threads(int n);

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

// "(2, 3)" / "(4,)"
std::string shape_str(const py::array& a);
// Checks dtype float32 (TypeError "<name> must be float32, got ..."), min_nd <= ndim <= max_nd
// (max 4), writability and element-multiple strides (ValueError), and returns the view.
View view(const py::array& a, const char* name, bool writable, int min_nd, int max_nd);

// Whether dtype d is T's: the same dtype object (the common case, one pointer compare) or an
// equivalent one (numpy's own test: an unpickled or deep-copied array carries its own float32
// descriptor object; a byte-swapped '>f4' is not equivalent and is rejected).
template <class T>
bool is_dtype(const py::dtype& d) {
  const py::dtype want = py::dtype::of<T>();
  return d.is(want) || py::detail::npy_api::get().PyArray_EquivTypes_(d.ptr(), want.ptr());
}
// Conservative overlap test of the memory two views span (like np.may_share_memory).
bool overlaps(const View& x, const View& y);

// obj as a float32 numpy array, not copied: TypeError "<op>: <name> must be a numpy.ndarray of
// float32, got <type>" or "<op>: <name> must be float32, got <dtype><hint>".
py::array f32_array(const py::handle& obj, const std::string& op, const char* name, const char* hint = "");

// A new C-contiguous float32 array whose data starts on a 64-byte boundary (numpy's own
// allocations are only 16-byte aligned): full-vector and streaming stores of the kernels then
// line up with cache lines.  From 1024 floats on; the array is then a view of a slightly
// larger private buffer (its base).
py::array new_f32(const std::vector<py::ssize_t>& shape);

// Per-layer registration (one file each in csrc/bindings/).
void bind_gemm(py::module_& m);
void bind_attention(py::module_& m);
void bind_norm_act(py::module_& m);
void bind_loss_optim(py::module_& m);
void bind_elementwise(py::module_& m);

}  // namespace bind
}  // namespace irf
