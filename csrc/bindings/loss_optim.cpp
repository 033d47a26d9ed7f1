// bindings/loss_optim.cpp: cross-entropy, embedding, optimizer steps, grad-norm helpers, dropout.
// Every entry point validates dtypes, shapes, contiguity and index ranges before any kernel
// runs, then releases the GIL.  `reference=True` runs the scalar twin (csrc/reference/).
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "bindings/bindings.h"

namespace irf {
namespace bind {
namespace {

using IdArray = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>;
using FArray = py::array_t<float, py::array::c_style>;
using AdamWScalars = KernelTable::AdamWScalars;
using SgdScalars = KernelTable::SgdScalars;
using DropoutParams = KernelTable::DropoutParams;

std::string shape_of(const std::vector<py::ssize_t>& s) {
  std::string r = "(";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) r += ", ";
    r += std::to_string(s[i]);
  }
  if (s.size() == 1) r += ",";
  return r + ")";
}

std::vector<py::ssize_t> shape_vec(const py::array& a) {
  return std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim());
}

i64 ceil_div_i64(i64 a, i64 b) { return (a + b - 1) / b; }

py::array as_array(const py::handle& obj, const std::string& op, const char* name) {
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(op + ": " + name + " must be a numpy.ndarray, got " +
                         std::string(py::str(py::type::of(obj).attr("__name__"))));
  return py::reinterpret_borrow<py::array>(obj);
}

// Integer ids / targets of any integer dtype -> contiguous int64 (a copy only when needed).
IdArray as_ids(const py::handle& obj, const std::string& op, const char* name) {
  py::array a = as_array(obj, op, name);
  const char kind = a.dtype().kind();
  if (kind != 'i' && kind != 'u')
    throw py::type_error(op + ": " + name + " must have an integer dtype, got " + std::string(py::str(a.dtype())));
  return IdArray::ensure(a);
}

// A float32 input (dtype checked: TypeError) as a C-contiguous array (copied if needed).
FArray as_input(const py::handle& obj, const std::string& op, const char* name) {
  py::array a = f32_array(obj, op, name);
  return FArray::ensure(a);
}

// A float32 array updated in place: must be C-contiguous and writable (ValueError otherwise).
py::array as_inout(const py::handle& obj, const std::string& op, const char* name) {
  py::array a = f32_array(obj, op, name);
  if (!a.writeable()) throw std::invalid_argument(op + ": " + name + " must be writable (it is updated in place)");
  if (!(a.flags() & py::array::c_style))
    throw std::invalid_argument(op + ": " + name + " must be C-contiguous (it is updated in place)");
  return a;
}

float* fptr(py::array& a) { return static_cast<float*>(a.mutable_data()); }
const float* cfptr(const py::array& a) { return static_cast<const float*>(a.data()); }

bool same_memory(const py::array& a, const py::array& b) {
  if (a.nbytes() == 0 || b.nbytes() == 0) return false;
  const char* a0 = static_cast<const char*>(a.data());
  const char* b0 = static_cast<const char*>(b.data());
  return a0 < b0 + b.nbytes() && b0 < a0 + a.nbytes();
}

// ---------------------------------------------------------------------------------------
// Output buffers of cross_entropy_backward (dlogits: N*V floats, 400 MB for GPT-2's vocabulary
// at 2048 tokens) come from a tiny cache of freed blocks: a training loop drops dlogits every
// step and asks for the same size again, and faulting in 100k fresh pages costs more than the
// kernel itself.  A block returns to the cache only from the owning capsule's destructor, i.e.
// when no numpy array (or view) refers to it any more; the kernel overwrites every element.
// Both ends run with the GIL held, which serialises access to the cache.
constexpr std::size_t kCacheMinBytes = std::size_t(16) << 20;   // only large buffers are cached
constexpr int kCacheBlocks = 2;                                  // at most this many kept

struct Block { void* ptr; std::size_t bytes; };
struct BlockCache {
  Block blocks[kCacheBlocks] = {};
  int count = 0;
};
BlockCache& block_cache() {
  static BlockCache* cache = new BlockCache();   // never destroyed: capsules may outlive statics
  return *cache;
}

void release_block(void* raw) {
  Block* b = static_cast<Block*>(raw);
  BlockCache& c = block_cache();
  if (c.count == kCacheBlocks) {                 // evict the oldest
    aligned_free64(c.blocks[0].ptr);
    for (int i = 1; i < kCacheBlocks; ++i) c.blocks[i - 1] = c.blocks[i];
    --c.count;
  }
  c.blocks[c.count++] = *b;
  delete b;
}

// A new C-contiguous float32 array of `shape` (uninitialised: the caller writes every element).
py::array_t<float> new_output(const std::vector<py::ssize_t>& shape) {
  std::size_t n = 1;
  for (py::ssize_t d : shape) n *= std::size_t(d);
  const std::size_t bytes = n * sizeof(float);
  if (bytes < kCacheMinBytes) return py::array_t<float>(shape);
  BlockCache& c = block_cache();
  Block* b = new Block{nullptr, bytes};
  for (int i = c.count - 1; i >= 0; --i)
    if (c.blocks[i].bytes == bytes) {
      b->ptr = c.blocks[i].ptr;
      for (int j = i + 1; j < c.count; ++j) c.blocks[j - 1] = c.blocks[j];
      --c.count;
      break;
    }
  if (!b->ptr) {
    try {
      b->ptr = aligned_alloc64(bytes);
    } catch (...) {
      delete b;
      throw;
    }
  }
  py::capsule owner(b, &release_block);
  return py::array_t<float>(shape, static_cast<float*>(b->ptr), owner);
}

// ---------------------------------------------------------------------------------------
// cross-entropy

struct CeArgs {
  FArray logits;
  IdArray targets;
  i64 N = 0, V = 0;
};

CeArgs ce_args(const py::handle& logits_obj, const py::handle& targets_obj, i64 ignore_index, const std::string& op) {
  CeArgs a;
  a.logits = as_input(logits_obj, op, "logits");
  if (a.logits.ndim() != 2)
    throw std::invalid_argument(op + ": logits must be 2-D (N, V), got shape " + shape_str(a.logits));
  a.N = a.logits.shape(0);
  a.V = a.logits.shape(1);
  a.targets = as_ids(targets_obj, op, "targets");
  if (a.targets.ndim() != 1 || a.targets.shape(0) != a.N)
    throw std::invalid_argument(op + ": targets must have shape (" + std::to_string(a.N) + ",) to match logits " +
                                shape_str(a.logits) + ", got " + shape_str(a.targets));
  if (a.V < 1 && a.N > 0)
    throw std::invalid_argument(op + ": logits must have at least one class (V >= 1), got shape " + shape_str(a.logits));
  const std::int64_t* t = a.targets.data();
  for (i64 n = 0; n < a.N; ++n)
    if (t[n] != ignore_index && (t[n] < 0 || t[n] >= a.V))
      throw py::index_error(op + ": target " + std::to_string(t[n]) + " (row " + std::to_string(n) +
                            ") is out of range for V=" + std::to_string(a.V) + " classes; expected a class in [0, " +
                            std::to_string(a.V) + ") or ignore_index=" + std::to_string(ignore_index));
  return a;
}

py::tuple cross_entropy_forward(py::object logits_obj, py::object targets_obj, i64 ignore_index, bool reference) {
  const std::string op = "cross_entropy_forward";
  CeArgs a = ce_args(logits_obj, targets_obj, ignore_index, op);
  py::array_t<float> lse({a.N});
  std::vector<double> row_loss(size_t(a.N), 0.0);
  {
    py::gil_scoped_release nogil;
    DenormalGuard ftz;
    if (a.N > 0) {
      if (reference)
        irf::ref::cross_entropy_forward(lse.mutable_data(), row_loss.data(), a.logits.data(), a.targets.data(), a.N,
                                        a.V, ignore_index);
      else
        irf::kernels().cross_entropy_forward(lse.mutable_data(), row_loss.data(), a.logits.data(), a.targets.data(),
                                             a.N, a.V, ignore_index, num_threads());
    }
  }
  // mean over the rows that count, summed in row order in double (thread-count independent)
  double sum = 0.0;
  i64 count = 0;
  const std::int64_t* t = a.targets.data();
  for (i64 n = 0; n < a.N; ++n)
    if (t[n] != ignore_index) { sum += row_loss[size_t(n)]; ++count; }
  const double loss = count > 0 ? sum / double(count) : std::numeric_limits<double>::quiet_NaN();
  return py::make_tuple(loss, lse);
}

py::array cross_entropy_backward(py::object logits_obj, py::object targets_obj, py::object lse_obj, double dloss,
                                 i64 ignore_index, bool reference) {
  const std::string op = "cross_entropy_backward";
  CeArgs a = ce_args(logits_obj, targets_obj, ignore_index, op);
  FArray lse = as_input(lse_obj, op, "lse");
  if (lse.ndim() != 1 || lse.shape(0) != a.N)
    throw std::invalid_argument(op + ": lse must have shape (" + std::to_string(a.N) + ",), got " + shape_str(lse));
  i64 count = 0;
  const std::int64_t* t = a.targets.data();
  for (i64 n = 0; n < a.N; ++n) count += t[n] != ignore_index;
  const float scale = count > 0 ? float(dloss / double(count)) : 0.f;
  py::array_t<float> d = new_output({py::ssize_t(a.N), py::ssize_t(a.V)});
  {
    py::gil_scoped_release nogil;
    DenormalGuard ftz;
    if (a.N > 0 && a.V > 0) {
      if (reference)
        irf::ref::cross_entropy_backward(d.mutable_data(), lse.data(), a.logits.data(), t, scale, a.N, a.V,
                                         ignore_index);
      else
        irf::kernels().cross_entropy_backward(d.mutable_data(), lse.data(), a.logits.data(), t, scale, a.N, a.V,
                                              ignore_index, num_threads());
    }
  }
  return d;
}

// ---------------------------------------------------------------------------------------
// embedding

void check_ids(const IdArray& ids, i64 V, const std::string& op) {
  const std::int64_t* p = ids.data();
  for (i64 i = 0, n = ids.size(); i < n; ++i)
    if (p[i] < 0 || p[i] >= V)
      throw py::index_error(op + ": id " + std::to_string(p[i]) + " is out of range for a vocabulary of size " +
                            std::to_string(V) + " (ids must lie in [0, " + std::to_string(V) + "))");
}

py::array embedding_forward(py::object ids_obj, py::object weight_obj, bool reference) {
  const std::string op = "embedding_forward";
  IdArray ids = as_ids(ids_obj, op, "ids");
  FArray w = as_input(weight_obj, op, "weight");
  if (w.ndim() != 2) throw std::invalid_argument(op + ": weight must be 2-D (V, C), got shape " + shape_str(w));
  const i64 V = w.shape(0), C = w.shape(1);
  check_ids(ids, V, op);
  std::vector<py::ssize_t> shape = shape_vec(ids);
  shape.push_back(C);
  py::array_t<float> out(shape);
  const i64 N = ids.size();
  {
    py::gil_scoped_release nogil;
    DenormalGuard ftz;
    if (N > 0 && C > 0) {
      if (reference) irf::ref::embedding_forward(out.mutable_data(), ids.data(), w.data(), N, C);
      else irf::kernels().embedding_forward(out.mutable_data(), ids.data(), w.data(), N, C, num_threads());
    }
  }
  return out;
}

py::array embedding_backward(py::object dout_obj, py::object ids_obj, py::object dweight_obj, bool reference) {
  const std::string op = "embedding_backward";
  IdArray ids = as_ids(ids_obj, op, "ids");
  py::array dw = as_inout(dweight_obj, op, "dweight");
  if (dw.ndim() != 2) throw std::invalid_argument(op + ": dweight must be 2-D (V, C), got shape " + shape_str(dw));
  const i64 V = dw.shape(0), C = dw.shape(1);
  FArray dout = as_input(dout_obj, op, "dout");
  std::vector<py::ssize_t> want = shape_vec(ids);
  want.push_back(C);
  if (shape_vec(dout) != want)
    throw std::invalid_argument(op + ": dout must have shape " + shape_of(want) + " (ids.shape + (C,)), got " +
                                shape_str(dout));
  check_ids(ids, V, op);
  if (same_memory(dw, dout)) throw std::invalid_argument(op + ": dweight shares memory with dout");
  const i64 N = ids.size();
  {
    py::gil_scoped_release nogil;
    DenormalGuard ftz;
    if (N > 0 && C > 0) {
      if (reference) irf::ref::embedding_backward(fptr(dw), dout.data(), ids.data(), N, C);
      else irf::kernels().embedding_backward(fptr(dw), dout.data(), ids.data(), N, C, num_threads());
    }
  }
  return dw;
}

// ---------------------------------------------------------------------------------------
// optimizers

void same_shape(const py::array& ref, const py::array& a, const std::string& op, const char* ref_name,
                const char* name) {
  if (shape_vec(ref) != shape_vec(a))
    throw std::invalid_argument(op + ": " + name + " must have the shape of " + ref_name + " " + shape_str(ref) +
                                ", got " + shape_str(a));
}

void adamw_step(py::object param_obj, py::object grad_obj, py::object m_obj, py::object v_obj, i64 step, double lr,
                double beta1, double beta2, double eps, double weight_decay, bool reference) {
  const std::string op = "adamw_step";
  py::array p = as_inout(param_obj, op, "param");
  py::array m = as_inout(m_obj, op, "exp_avg");
  py::array v = as_inout(v_obj, op, "exp_avg_sq");
  py::array g = f32_array(grad_obj, op, "grad");
  if (!(g.flags() & py::array::c_style)) throw std::invalid_argument(op + ": grad must be C-contiguous");
  same_shape(p, g, op, "param", "grad");
  same_shape(p, m, op, "param", "exp_avg");
  same_shape(p, v, op, "param", "exp_avg_sq");
  if (same_memory(p, m) || same_memory(p, v) || same_memory(m, v) || same_memory(p, g) || same_memory(m, g) ||
      same_memory(v, g))
    throw std::invalid_argument(op + ": param, grad, exp_avg and exp_avg_sq must be distinct arrays");
  if (step < 1) throw std::invalid_argument(op + ": step must be >= 1 (the count after incrementing), got " + std::to_string(step));
  if (!(lr >= 0.0)) throw std::invalid_argument(op + ": lr must be >= 0, got " + std::to_string(lr));
  if (!(eps >= 0.0)) throw std::invalid_argument(op + ": eps must be >= 0, got " + std::to_string(eps));
  if (!(beta1 >= 0.0 && beta1 < 1.0)) throw std::invalid_argument(op + ": beta1 must be in [0, 1), got " + std::to_string(beta1));
  if (!(beta2 >= 0.0 && beta2 < 1.0)) throw std::invalid_argument(op + ": beta2 must be in [0, 1), got " + std::to_string(beta2));
  if (!(weight_decay >= 0.0)) throw std::invalid_argument(op + ": weight_decay must be >= 0, got " + std::to_string(weight_decay));
  // Scalars exactly as torch.optim.adamw._single_tensor_adam computes them (Python floats).
  AdamWScalars s;
  s.apply_decay = weight_decay != 0.0;
  s.decay = float(1.0 - lr * weight_decay);
  s.beta1 = float(beta1);
  s.one_minus_beta1 = float(1.0 - beta1);
  s.beta2 = float(beta2);
  s.one_minus_beta2 = float(1.0 - beta2);
  const double bc1 = 1.0 - std::pow(beta1, double(step));
  const double bc2 = 1.0 - std::pow(beta2, double(step));
  s.step_size = float(lr / bc1);
  s.bc2_sqrt = float(std::sqrt(bc2));
  s.eps = float(eps);
  const i64 n = p.size();
  py::gil_scoped_release nogil;
  DenormalGuard ftz;
  if (n == 0) return;
  if (reference) irf::ref::adamw_step(fptr(p), fptr(m), fptr(v), cfptr(g), s, n);
  else irf::kernels().adamw_step(fptr(p), fptr(m), fptr(v), cfptr(g), s, n, num_threads());
}

void sgd_step(py::object param_obj, py::object grad_obj, py::object buf_obj, double lr, double momentum,
              double dampening, double weight_decay, bool nesterov, bool first_step, bool reference) {
  const std::string op = "sgd_step";
  py::array p = as_inout(param_obj, op, "param");
  py::array g = f32_array(grad_obj, op, "grad");
  if (!(g.flags() & py::array::c_style)) throw std::invalid_argument(op + ": grad must be C-contiguous");
  same_shape(p, g, op, "param", "grad");
  if (!(lr >= 0.0)) throw std::invalid_argument(op + ": lr must be >= 0, got " + std::to_string(lr));
  if (!(momentum >= 0.0)) throw std::invalid_argument(op + ": momentum must be >= 0, got " + std::to_string(momentum));
  if (!(weight_decay >= 0.0)) throw std::invalid_argument(op + ": weight_decay must be >= 0, got " + std::to_string(weight_decay));
  if (nesterov && (momentum <= 0.0 || dampening != 0.0))
    throw std::invalid_argument(op + ": nesterov momentum requires momentum > 0 and dampening == 0");
  py::array b;
  float* bptr = nullptr;
  if (momentum != 0.0) {
    if (buf_obj.is_none()) throw std::invalid_argument(op + ": momentum_buf is required when momentum != 0");
    b = as_inout(buf_obj, op, "momentum_buf");
    same_shape(p, b, op, "param", "momentum_buf");
    if (same_memory(p, b) || same_memory(b, g))
      throw std::invalid_argument(op + ": momentum_buf must not share memory with param or grad");
    bptr = fptr(b);
  }
  if (same_memory(p, g)) throw std::invalid_argument(op + ": param and grad must be distinct arrays");
  SgdScalars s;
  s.lr = float(lr);
  s.momentum = float(momentum);
  s.one_minus_dampening = float(1.0 - dampening);
  s.weight_decay = float(weight_decay);
  s.nesterov = nesterov;
  s.first_step = first_step;
  const i64 n = p.size();
  py::gil_scoped_release nogil;
  DenormalGuard ftz;
  if (n == 0) return;
  if (reference) irf::ref::sgd_step(fptr(p), bptr, cfptr(g), s, n);
  else irf::kernels().sgd_step(fptr(p), bptr, cfptr(g), s, n, num_threads());
}

double sum_squares(py::object arrays_obj, bool reference) {
  const std::string op = "sum_squares";
  if (!py::isinstance<py::list>(arrays_obj) && !py::isinstance<py::tuple>(arrays_obj))
    throw py::type_error(op + ": arrays must be a list or tuple of float32 numpy arrays");
  std::vector<FArray> arrays;
  i64 k = 0;
  for (py::handle h : arrays_obj) {
    const std::string name = "arrays[" + std::to_string(k++) + "]";
    arrays.push_back(as_input(h, op, name.c_str()));
  }
  double total = 0.0;
  std::vector<double> partials;
  for (const FArray& a : arrays) {
    const i64 n = a.size();
    if (n == 0) continue;
    partials.assign(size_t(ceil_div_i64(n, KernelTable::kSumSquaresBlock)), 0.0);
    {
      py::gil_scoped_release nogil;
      DenormalGuard ftz;
      if (reference) irf::ref::sum_squares(partials.data(), a.data(), n);
      else irf::kernels().sum_squares(partials.data(), a.data(), n, num_threads());
    }
    for (double x : partials) total += x;   // block order: independent of the thread count
  }
  return total;
}

void scale_(py::object array_obj, double factor, bool reference) {
  const std::string op = "scale_";
  py::array a = as_inout(array_obj, op, "array");
  const i64 n = a.size();
  const float f = float(factor);
  py::gil_scoped_release nogil;
  DenormalGuard ftz;
  if (n == 0) return;
  if (reference) irf::ref::scale(fptr(a), f, n);
  else irf::kernels().scale(fptr(a), f, n, num_threads());
}

// ---------------------------------------------------------------------------------------
// dropout

py::array dropout(py::object x_obj, double p, std::uint64_t seed, std::uint64_t offset, bool backward,
                  bool reference) {
  const std::string op = backward ? "dropout_backward" : "dropout_forward";
  FArray x = as_input(x_obj, op, backward ? "dout" : "x");
  if (!(p >= 0.0 && p <= 1.0)) throw std::invalid_argument(op + ": p must be in [0, 1], got " + std::to_string(p));
  py::array_t<float> out(shape_vec(x));
  const i64 n = x.size();
  if (n == 0) return out;
  if (p == 0.0) {   // identity
    std::memcpy(out.mutable_data(), x.data(), size_t(n) * sizeof(float));
    return out;
  }
  if (p == 1.0) {   // everything dropped
    std::memset(out.mutable_data(), 0, size_t(n) * sizeof(float));
    return out;
  }
  DropoutParams d;
  d.seed = seed;
  d.offset = offset;
  d.p24 = std::uint32_t(std::llround(p * 16777216.0));
  d.scale = float(1.0 / (1.0 - p));
  py::gil_scoped_release nogil;
  DenormalGuard ftz;
  float* o = out.mutable_data();
  if (reference) {
    if (backward) irf::ref::dropout_backward(o, x.data(), d, n);
    else irf::ref::dropout_forward(o, x.data(), d, n);
  } else {
    if (backward) irf::kernels().dropout_backward(o, x.data(), d, n, num_threads());
    else irf::kernels().dropout_forward(o, x.data(), d, n, num_threads());
  }
  return out;
}

}  // namespace

void bind_loss_optim(py::module_& m) {
  m.def("cross_entropy_forward", &cross_entropy_forward, py::arg("logits"), py::arg("targets"),
        py::arg("ignore_index") = -100, py::arg("reference") = false,
        "(loss, lse): mean cross-entropy of logits (N, V) against int64 targets (N,), NaN if all ignored.");
  m.def("cross_entropy_backward", &cross_entropy_backward, py::arg("logits"), py::arg("targets"), py::arg("lse"),
        py::arg("dloss") = 1.0, py::arg("ignore_index") = -100, py::arg("reference") = false,
        "dlogits (N, V) = (softmax - onehot) * dloss / count, zero rows for ignored targets.");
  m.def("embedding_forward", &embedding_forward, py::arg("ids"), py::arg("weight"), py::arg("reference") = false,
        "out (ids.shape + (C,)) = weight[ids].");
  m.def("embedding_backward", &embedding_backward, py::arg("dout"), py::arg("ids"), py::arg("dweight"),
        py::arg("reference") = false, "dweight[ids] += dout (in place, deterministic); returns dweight.");
  m.def("adamw_step", &adamw_step, py::arg("param"), py::arg("grad"), py::arg("exp_avg"), py::arg("exp_avg_sq"),
        py::arg("step"), py::arg("lr"), py::arg("beta1") = 0.9, py::arg("beta2") = 0.999, py::arg("eps") = 1e-8,
        py::arg("weight_decay") = 0.01, py::arg("reference") = false, "One torch.optim.AdamW step, in place.");
  m.def("sgd_step", &sgd_step, py::arg("param"), py::arg("grad"), py::arg("momentum_buf"), py::arg("lr"),
        py::arg("momentum") = 0.0, py::arg("dampening") = 0.0, py::arg("weight_decay") = 0.0,
        py::arg("nesterov") = false, py::arg("first_step") = false, py::arg("reference") = false,
        "One torch.optim.SGD step, in place.");
  m.def("sum_squares", &sum_squares, py::arg("arrays"), py::arg("reference") = false,
        "Sum of squares of every element of a list of float32 arrays (float64, deterministic).");
  m.def("scale_", &scale_, py::arg("array"), py::arg("factor"), py::arg("reference") = false, "array *= factor.");
  m.def("dropout_forward",
        [](py::object x, double p, std::uint64_t seed, std::uint64_t offset, bool reference) {
          return dropout(x, p, seed, offset, false, reference);
        },
        py::arg("x"), py::arg("p"), py::arg("seed"), py::arg("offset") = 0, py::arg("reference") = false,
        "x * mask / (1 - p) with mask from a counter-based hash of (seed, offset + index).");
  m.def("dropout_backward",
        [](py::object dout, double p, std::uint64_t seed, std::uint64_t offset, bool reference) {
          return dropout(dout, p, seed, offset, true, reference);
        },
        py::arg("dout"), py::arg("p"), py::arg("seed"), py::arg("offset") = 0, py::arg("reference") = false,
        "dout * mask / (1 - p), the mask regenerated from (seed, offset).");
}

}  // namespace bind
}  // namespace irf
