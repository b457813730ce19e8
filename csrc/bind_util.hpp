// Small helpers shared by the bindings of the compiled core: handing a heap buffer to numpy without a copy,
// and running independent problems of a batch on std::threads (inline, with no thread at all, for one).
#pragma once

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <initializer_list>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

namespace monge {

template <class T, size_t N>
using NumpyOut = nanobind::ndarray<nanobind::numpy, T, nanobind::ndim<N>>;

// A numpy array that owns `data` (freed when the array is).
template <class T, size_t N>
NumpyOut<T, N> owned(std::unique_ptr<T[]> data, std::initializer_list<size_t> shape) {
  T *ptr = data.release();
  nanobind::capsule owner(ptr, [](void *p) noexcept { delete[] static_cast<T *>(p); });
  return NumpyOut<T, N>(ptr, shape, owner);
}

// A 1-D numpy array that takes over the vector v (no copy; freed when the array is).
template <class T>
NumpyOut<T, 1> to_numpy(std::vector<T> &&v) {
  auto *heap = new std::vector<T>(std::move(v));
  nanobind::capsule owner(heap, [](void *p) noexcept { delete static_cast<std::vector<T> *>(p); });
  return NumpyOut<T, 1>(heap->data(), {heap->size()}, owner);
}

// A zero-initialised buffer of max(1, count) elements (numpy arrays may be empty, allocations may not).
template <class T>
std::unique_ptr<T[]> zeros(int64_t count) {
  return std::unique_ptr<T[]>(new T[static_cast<size_t>(std::max<int64_t>(1, count))]());
}

// The exponent e of a power of two 2^e that brings the largest |entry| of a cost matrix (of `count` entries)
// near 1 when it is far from 1 (beyond 2^+-500), else 0. Solvers divide by it (exactly: a power of two) so that
// sums of up to n + m costs (potentials, objective values) do not overflow near 1e308 and differences of tiny
// costs keep their bits. `finite` is set to whether every entry is finite.
inline int cost_exponent(const double *C, int64_t count, bool &finite) {
  double cmax = 0.0;
  bool ok = true;
  for (int64_t k = 0; k < count; ++k) {
    const double c = C[k] < 0.0 ? -C[k] : C[k];
    ok &= c <= 1.7976931348623157e308;  // false for inf and NaN
    cmax = c > cmax ? c : cmax;
  }
  finite = ok;
  if (!ok || !(cmax > 0.0) || (cmax <= 0x1p500 && cmax >= 0x1p-500)) return 0;
  int e = 0;
  std::frexp(cmax, &e);
  return e;
}

// Shifts dual potentials (f + c, g - c) so that their means meet halfway: for balanced OT (equal masses) and
// square assignments the shift keeps them feasible and optimal, and it keeps them representable when the cost
// scale is near the float64 limit (a solver fixes one potential at 0; the others are then up to ~2 max|C|).
inline void centre_duals(double *f, int64_t n, double *g, int64_t m) {
  double mf = 0.0, mg = 0.0;
  for (int64_t i = 0; i < n; ++i) mf += f[i];
  for (int64_t j = 0; j < m; ++j) mg += g[j];
  const double c = 0.5 * (mg / double(m) - mf / double(n));
  for (int64_t i = 0; i < n; ++i) f[i] += c;
  for (int64_t j = 0; j < m; ++j) g[j] -= c;
}

// Runs run(t) for t = 0 .. nt - 1, t = 0 on the calling thread (nt <= 1: inline, no thread started).
template <class F>
void run_threads(int nt, F &&run) {
  if (nt <= 1) {
    run(0);
    return;
  }
  std::vector<std::thread> pool;
  pool.reserve(nt - 1);
  for (int t = 1; t < nt; ++t) pool.emplace_back(run, t);
  run(0);
  for (auto &th : pool) th.join();
}

// Calls body(t, i) for i in [0, count) on nt threads, handing out `chunk` indices at a time through one atomic
// counter (items of uneven cost: block lists, tree walks); t is the thread's number, for per-thread buffers.
template <class F>
void parallel_chunks(int nt, int64_t count, int64_t chunk, F &&body) {
  std::atomic<int64_t> next{0};
  run_threads(nt, [&](int t) {
    for (int64_t r0 = next.fetch_add(chunk); r0 < count; r0 = next.fetch_add(chunk))
      for (int64_t i = r0, r1 = std::min(count, r0 + chunk); i < r1; ++i) body(t, i);
  });
}

// Calls body(k) for k in [0, count) on min(n_threads, count) threads (n_threads <= 0: one per hardware
// thread), handing out indices one at a time (problems of a batch differ in cost). One problem or one thread:
// run inline, no thread is started. The first exception thrown by a body is rethrown here after the join.
template <class F>
void parallel_for(int64_t count, int n_threads, F &&body) {
  int nt = n_threads > 0 ? n_threads : static_cast<int>(std::thread::hardware_concurrency());
  nt = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(std::max(nt, 1), count)));
  if (nt == 1) {
    for (int64_t k = 0; k < count; ++k) body(k);
    return;
  }
  std::atomic<int64_t> next{0};
  std::exception_ptr error;
  std::atomic<bool> failed{false};
  auto work = [&]() {
    for (int64_t k; !failed.load(std::memory_order_relaxed) && (k = next.fetch_add(1)) < count;) {
      try {
        body(k);
      } catch (...) {
        if (!failed.exchange(true)) error = std::current_exception();
      }
    }
  };
  run_threads(nt, [&](int) { work(); });
  if (error) std::rethrow_exception(error);
}

}  // namespace monge
