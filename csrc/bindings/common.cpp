// bindings/common.cpp: helpers shared by the binding files.
#include "bindings/bindings.h"

#include <cstdint>

namespace irf {
namespace bind {

namespace {
int g_num_threads = 0;   // 0: not yet read from OpenMP
}  // namespace

int num_threads() {
  if (g_num_threads <= 0) g_num_threads = irf::max_threads();
  return g_num_threads;
}

void set_num_threads(int n) {
  if (n < 1) throw std::invalid_argument("set_num_threads: n must be >= 1, got " + std::to_string(n));
  g_num_threads = n;
}

py::array f32_array(const py::handle& obj, const std::string& op, const char* name, const char* hint) {
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(op + ": " + name + " must be a numpy.ndarray of float32, got " +
                         std::string(py::str(py::type::handle_of(obj).attr("__name__"))));
  py::array a = py::reinterpret_borrow<py::array>(obj);
  if (!is_dtype<float>(a.dtype()))
    throw py::type_error(op + ": " + name + " must be float32, got " + std::string(py::str(a.dtype())) + hint);
  return a;
}

py::array new_f32(const std::vector<py::ssize_t>& shape) {
  py::ssize_t n = 1;
  for (py::ssize_t d : shape) n *= d;
  // small arrays: numpy's own allocation (the view costs ~0.2 us a call, more than it saves)
  if (n < 1024) return py::array_t<float>(shape);
  constexpr py::ssize_t kAlignFloats = 16;   // 64 bytes
  py::array_t<float> buf(n + kAlignFloats - 1);
  const auto addr = reinterpret_cast<std::uintptr_t>(buf.data());
  const py::ssize_t off = py::ssize_t((64 - addr % 64) % 64) / py::ssize_t(sizeof(float));
  return py::array(py::dtype::of<float>(), shape, buf.mutable_data() + off, buf);   // C-contiguous strides
}

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
  if (!is_dtype<float>(a.dtype()))
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

namespace {
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

}  // namespace

bool overlaps(const View& x, const View& y) {
  auto a = span(x), b = span(y);
  return a.first < a.second && b.first < b.second && a.first < b.second && b.first < a.second;
}

}  // namespace bind
}  // namespace irf
