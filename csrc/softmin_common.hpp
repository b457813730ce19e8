// What the lazy (softmin_lazy.cpp) and dense (softmin_dense.cpp) soft-min kernels share: the tile and
// shift constants per precision, the split of rows over std::threads, the nanobind array types and the
// hand-over of a result buffer to numpy.
#pragma once

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <thread>
#include <vector>

#include "bind_util.hpp"
#include "simd.hpp"

namespace monge_softmin {

namespace nb = nanobind;
using namespace monge::simd;

// Forward shift headroom (base-2 units): a raised shift is set HEAD above the largest argument seen, so
// that slowly increasing arguments (points sorted along an axis) do not trigger a rescale at every vector.
// It costs precision in t = a * s - M (rounded relative to |t| ~ HEAD for the dominant terms).
#ifndef SM_HEAD_F
#define SM_HEAD_F 8.0f
#endif
#ifndef SM_HEAD_D
#define SM_HEAD_D 64.0
#endif
template <class T>
struct Simd;
template <>
struct Simd<float> {
  using V = VF;
  static constexpr int W = WF;
  static constexpr int TJ = 1024;  // columns per tile (y tile + column accumulators stay in L1/L2)
  static constexpr float HEAD = SM_HEAD_F;
};
template <>
struct Simd<double> {
  using V = VD;
  static constexpr int W = WD;
  static constexpr int TJ = 512;
  static constexpr double HEAD = SM_HEAD_D;
};

constexpr int FLUSH_ROWS = 256;  // backward: rows between flushes of the column accumulators to float64


inline int resolve_threads(int n_threads, int64_t rows, int64_t work) {
  int nt = n_threads > 0 ? n_threads : static_cast<int>(std::thread::hardware_concurrency());
  nt = std::max(1, nt);
  // Not worth a thread below ~2^16 pairs each.
  const int64_t by_work = std::max<int64_t>(1, work >> 16);
  nt = static_cast<int>(std::min<int64_t>({static_cast<int64_t>(nt), rows, by_work}));
  return std::max(1, nt);
}

// Calls body(t, b, i0, i1) for the rows of thread t, split contiguously over the flattened (B * n) rows.
template <class F>
void parallel_rows(int nt, int64_t B, int64_t n, F &&body) {
  const int64_t total = B * n;
  auto run = [&](int t) {
    const int64_t r0 = total * t / nt, r1 = total * (t + 1) / nt;
    for (int64_t r = r0; r < r1;) {
      const int64_t b = r / n, i0 = r % n, i1 = std::min<int64_t>(n, i0 + (r1 - r));
      body(t, b, i0, i1);
      r += i1 - i0;
    }
  };
  if (nt == 1) {
    run(0);
    return;
  }
  std::vector<std::thread> pool;
  pool.reserve(nt - 1);
  for (int t = 1; t < nt; ++t) pool.emplace_back(run, t);
  run(0);
  for (auto &th : pool) th.join();
}

template <class T>
using In3 = nb::ndarray<const T, nb::ndim<3>, nb::c_contig, nb::device::cpu>;
template <class T>
using In2 = nb::ndarray<const T, nb::ndim<2>, nb::c_contig, nb::device::cpu>;
template <class T, size_t N>
using Out = monge::NumpyOut<T, N>;
using monge::owned;

template <class T>
int64_t padded(int64_t m) {
  constexpr int W = Simd<T>::W;
  return std::max<int64_t>(W, (m + W - 1) / W * W);
}

}  // namespace monge_softmin
