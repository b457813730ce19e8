// What the lazy (softmin_lazy.cpp), block-sparse (softmin_blocks.cpp) and dense (softmin_dense.cpp) soft-min
// kernels share: the tile and shift constants per precision, the exponent tile of R rows against one vector
// of columns and its online log-sum-exp (one copy for the lazy and block forwards), the split of rows over
// std::threads, the nanobind array types and the hand-over of a result buffer to numpy.
#pragma once

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>
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

constexpr int FLUSH_ROWS = 256;

// R rows of x (d coordinates, compile-time when D > 0) against W columns at a time: the exponents
// a_rj = h_j - |x_r - y_j|^2, the squared distance summed directly (no norm expansion: no cancellation for the
// near points that dominate at small eps). Rows past `last` repeat row `last` (the caller ignores them).
template <class T, int D, int R>
struct RowTile {
  using V = typename Simd<T>::V;
  static constexpr int KD = D > 0 ? D : 1;
  const T *xr[R];
  V xb[R][KD];
  int dd;

  SM_INLINE RowTile(const T *x, int d, int64_t first, int64_t last) : dd(D > 0 ? D : d) {
    for (int r = 0; r < R; ++r) {
      xr[r] = x + std::min<int64_t>(first + r, last) * dd;
      if constexpr (D > 0)
        for (int k = 0; k < D; ++k) xb[r][k] = set1(xr[r][k]);
    }
  }

  // a[r] for the W columns whose coordinate k is at y + k * stride, potentials hv.
  SM_INLINE void exponents(const T *y, int64_t stride, const V hv, V (&a)[R]) const {
    for (int r = 0; r < R; ++r) a[r] = hv;
    for (int k = 0; k < dd; ++k) {
      const V yk = load(y + k * stride);
      for (int r = 0; r < R; ++r) {
        V df;
        if constexpr (D > 0)
          df = sub(xb[r][k], yk);
        else
          df = sub(set1(xr[r][k]), yk);
        a[r] = fnmadd(df, df, a[r]);
      }
    }
  }
};

// The online (streaming) log-sum-exp of R rows in base 2, one running shift M_r per row: push(a) sums
// 2^(a s - M_r) with s = log2(e)/eps, p = a s rounded once and used both for the shift and the exponent (an
// fma's exact product could exceed the rounded maximum: +inf once |p| passes ~2^31 in float32; hence
// -ffp-contract=off). A vector with a lane above the shift raises it HEAD above that lane and rescales the
// row's partial sums. Sums run in the input precision between flush()es into float64; lse(r) = M_r + log2 S_r.
template <class T, int R>
struct OnlineLse {
  using S = Simd<T>;
  using V = typename S::V;
  T M[R];
  double Sd[R];
  V negM[R], acc[R];
  const V vinv, vninf;

  SM_INLINE explicit OnlineLse(T inv_eps) : vinv(set1(inv_eps)), vninf(set1(-std::numeric_limits<T>::infinity())) {}

  SM_INLINE void start(int r, T M0, double S0) {
    M[r] = M0;
    Sd[r] = S0;
    negM[r] = set1(-M0);
    acc[r] = set1(T(0));
  }

  SM_INLINE void push(const V (&a)[R]) {
    V p[R], t[R];
    bool any = false;
    for (int r = 0; r < R; ++r) {
      p[r] = mul(a[r], vinv);
      t[r] = add(p[r], negM[r]);
      any |= any_pos(t[r]);
    }
    if (SM_UNLIKELY(any)) {
      for (int r = 0; r < R; ++r) {
        if (!any_pos(t[r])) continue;
        const T newM = std::max(M[r], reduce_max(maxv(p[r], vninf)) + S::HEAD);  // >= every p: t <= 0
        const T scale = std::exp2(M[r] - newM);  // M = -inf -> 0 (nothing accumulated yet)
        acc[r] = mul(acc[r], set1(scale));
        Sd[r] *= static_cast<double>(scale);
        M[r] = newM;
        negM[r] = set1(-newM);
        t[r] = add(p[r], negM[r]);
      }
    }
    for (int r = 0; r < R; ++r) acc[r] = add(acc[r], vexp2(t[r]));
  }

  SM_INLINE void flush() {
    for (int r = 0; r < R; ++r) {
      Sd[r] += reduce_add(acc[r]);
      acc[r] = set1(T(0));
    }
  }

  // The row's sum S_r (flushed) and its log-sum-exp M_r + log2 S_r (S = 0, M = -inf: -inf).
  SM_INLINE double sum(int r) const { return Sd[r] + reduce_add(acc[r]); }
  SM_INLINE double lse(int r) const { return static_cast<double>(M[r]) + std::log2(sum(r)); }
};  // backward: rows between flushes of the column accumulators to float64


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
  monge::run_threads(nt, run);
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
