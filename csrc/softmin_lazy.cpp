// Lazy (O(n + m) memory) squared-Euclidean soft-min and its backward, streamed over tiles of y.
//
//   out_i = -eps log sum_j exp((h_j - |x_i - y_j|^2) / eps)
//
// Design
// - y and h are copied once per call into a padded structure-of-arrays (d coordinate rows + h row, padded
//   with y = 0, h = -inf to a multiple of the SIMD width), so the inner loop over j is a plain vector loop.
// - Rows i (flattened over the batch) are split into contiguous ranges, one per std::thread; the GIL is
//   released. Each thread walks tiles of TJ columns (kept in L1) and, inside a tile, blocks of R rows that
//   share the loads of y.
// - Forward: online (streaming) log-sum-exp with one running shift M_i per row (flash-attention style),
//   in base 2: t = p - M_i with p = (h_j - C_ij) * (log2(e)/eps) rounded, the same p that sets the shift
//   (an fma's exact product would exceed the rounded maximum by up to half an ulp of p: +inf once |p|
//   passes ~2^31 in float32; the build turns off the compiler's own contraction for this reason). When a
//   vector has a lane with t > 0 (rare: about log(m) times per row on unordered data, at worst every vector
//   on adversarially sorted data, which stays correct) the row's shift is raised and its partial sums
//   rescaled. The 2^t are summed in the input precision inside a tile (at most TJ/W terms per lane) and
//   the tile sums are added in float64. out_i = -(M_i + log2 S_i) / (log2(e)/eps), dividing by the same
//   rounded scale that multiplied the arguments, so the shift maps back exactly.
// - |x_i - y_j|^2 is computed directly (sum of squared differences), not by the norm expansion
//   |x|^2 + |y|^2 - 2 x.y: no cancellation for near points, which are the ones that dominate the sum when
//   eps is small. Specialised at compile time for d = 1..8 (R rows per block), a runtime-d path otherwise.
// - 2^x: the vectorised exp2 of simd.hpp (-inf and NaN arguments give exactly 0).
// - Backward: p_ij = 2^((h_j - C_ij) * s + out_i * s), s = log2(e)/eps, recomputed from out; rows whose
//   |out_i s| is too large for out_i's rounding (beyond 2^(digits - 6)) recompute their shift and sum as the
//   forward does and use p_ij = 2^((h_j - C_ij) * s - M_i) / S_i instead. Row sums
//   (sum_j p_ij y_j) are kept in registers over a tile then added in float64; the column sums
//   (sum_i u_i p_ij and sum_i u_i p_ij x_i) are accumulated per thread in a tile-sized buffer of the input
//   precision (R rows at a time, so the buffer is read and written once per R rows), flushed every
//   FLUSH_ROWS rows into per-thread float64 arrays of size m (d + 1), and finally reduced across threads
//   under a mutex into float64 per-batch totals (O(threads * m * d) extra memory).
// (The vector layer and 2^x live in simd.hpp; the dense kernel, against a materialised cost, in softmin_dense.cpp.)
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/tuple.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "softmin_common.hpp"

namespace nb = nanobind;

namespace monge_softmin {

// Padded structure-of-arrays copy of y and h for one batch: rows 0..d-1 are coordinates, row d is h.
// Returns whether y or h holds a NaN (the kernels would otherwise treat NaN like a zero weight).
template <class T>
bool pack_y(const T *y, const T *h, int64_t m, int d, int64_t mp, T *dst) {
  bool nan = false;
  for (int k = 0; k < d; ++k) {
    T *row = dst + k * mp;
    for (int64_t j = 0; j < m; ++j) {
      row[j] = y[j * d + k];
      nan |= std::isnan(row[j]);
    }
    for (int64_t j = m; j < mp; ++j) row[j] = T(0);
  }
  T *hr = dst + static_cast<int64_t>(d) * mp;
  std::memcpy(hr, h, sizeof(T) * m);
  for (int64_t j = 0; j < m; ++j) nan |= std::isnan(hr[j]);
  for (int64_t j = m; j < mp; ++j) hr[j] = -std::numeric_limits<T>::infinity();
  return nan;
}

template <class T>
bool row_has_nan(const T *xi, int d) {
  bool nan = false;
  for (int k = 0; k < d; ++k) nan |= std::isnan(xi[k]);
  return nan;
}

// ---------------------------------------------------------------------------------------------------
// Forward: rows [i0, i1) of one batch. forward_lse leaves each row's log-sum-exp in base 2 as a shift and a
// sum, lse_i = M_i + log2 S_i (Mrow, Srow: nr = i1 - i0 entries, overwritten); forward_rows turns it into out.
// ---------------------------------------------------------------------------------------------------
template <class T, int D, int R>
void forward_lse(const T *x, const T *ys, int d, int64_t mp, T inv_eps, int64_t i0, int64_t i1, T *Mrow,
                 double *Srow) {
  using S = Simd<T>;
  constexpr int W = S::W;
  const int dd = D > 0 ? D : d;
  // Work in base 2: t = (h_j - C_ij) * log2(e) / eps - M, summed as 2^t (OnlineLse, softmin_common.hpp).
  const int64_t nr = i1 - i0;
  std::fill(Mrow, Mrow + nr, -std::numeric_limits<T>::infinity());
  std::fill(Srow, Srow + nr, 0.0);
  const T *hrow = ys + static_cast<int64_t>(dd) * mp;

  for (int64_t j0 = 0; j0 < mp; j0 += S::TJ) {
    const int64_t j1 = std::min<int64_t>(mp, j0 + S::TJ);
    for (int64_t ib = 0; ib < nr; ib += R) {
      const RowTile<T, D, R> rows(x, dd, i0 + ib, i1 - 1);
      OnlineLse<T, R> lse(inv_eps);
      for (int r = 0; r < R; ++r) {
        const int64_t ii = std::min<int64_t>(ib + r, nr - 1);
        lse.start(r, Mrow[ii], Srow[ii]);
      }
      for (int64_t j = j0; j < j1; j += W) {
        typename S::V a[R];
        rows.exponents(ys + j, mp, load(hrow + j), a);
        lse.push(a);
      }
      for (int r = 0; r < R && ib + r < nr; ++r) {
        Mrow[ib + r] = lse.M[r];
        Srow[ib + r] = lse.sum(r);
      }
    }
  }
}

template <class T, int D, int R>
void forward_rows(const T *x, const T *ys, int d, int64_t mp, T eps, int64_t i0, int64_t i1, T *out) {
  const int dd = D > 0 ? D : d;
  const T inv_eps = static_cast<T>(LOG2E / static_cast<double>(eps));
  const int64_t nr = i1 - i0;
  std::vector<T> Mrow(nr);
  std::vector<double> Srow(nr);
  forward_lse<T, D, R>(x, ys, d, mp, inv_eps, i0, i1, Mrow.data(), Srow.data());
  // The arguments were scaled by inv_eps = log2(e)/eps as rounded to T: divide by that same value so that
  // the shift M_i, which carries the magnitude, maps back exactly to max_j (h_j - C_ij).
  const double scale_back = 1.0 / static_cast<double>(inv_eps);
  for (int64_t ii = 0; ii < nr; ++ii) {
    // S = 0 only when every weight is zero (M = -inf): the result is +inf.
    const double lse = static_cast<double>(Mrow[ii]) + std::log2(Srow[ii]);
    out[i0 + ii] = row_has_nan(x + (i0 + ii) * dd, dd) ? std::numeric_limits<T>::quiet_NaN()
                                                        : static_cast<T>(-scale_back * lse);
  }
}

// ---------------------------------------------------------------------------------------------------
// Backward: rows [i0, i1) of one batch. gx rows written directly; column sums added to colacc (float64,
// layout (d + 1) x mp: rows 0..d-1 = sum_i u_i p_ij x_ik, row d = sum_i u_i p_ij).
// ---------------------------------------------------------------------------------------------------
template <class T, int D, int R>
void backward_rows(const T *x, const T *ys, int d, int64_t mp, const T *out, const T *u, T eps, int64_t i0,
                   int64_t i1, T *gx, double *colacc) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int W = S::W;
  constexpr int KD = D > 0 ? D : 1;
  const int dd = D > 0 ? D : d;
  const T inv_eps = static_cast<T>(LOG2E / static_cast<double>(eps));  // base 2, as in the forward
  const V vinv = set1(inv_eps);
  const int64_t nr = i1 - i0;
  std::vector<double> racc(static_cast<size_t>(nr) * dd, 0.0);  // sum_j p_ij y_j
  std::vector<T> tile(static_cast<size_t>(S::TJ) * (dd + 1));   // column accumulators of a tile
  std::vector<V> rsum_dyn(D > 0 ? 0 : static_cast<size_t>(R) * dd);
  const T *hrow = ys + static_cast<int64_t>(dd) * mp;
  constexpr T NEG_INF = -std::numeric_limits<T>::infinity();
  // p_ij = 2^(a_ij s - lse_i) with lse_i = -out_i s: the exponent offset is out_i s, as rounded to T. The
  // rounding of out_i puts an error of about |out_i s| 2^-digits on every exponent of the row: harmless for
  // moderate |out_i s|, but past 2^(digits - 6) the weights no longer sum to one (by 1% and more), and past
  // the exponent range they overflow. Those rows recompute their log-sum-exp as the forward does (the shift
  // M_i, exact in T, and the sum S_i): exponent offset -M_i (so the exponent is <= 0) and weights / S_i.
  std::vector<T> offset(nr), rscale(nr, T(1));
  const double too_far = std::ldexp(1.0, std::numeric_limits<T>::digits - 6);
  auto recompute = [&](int64_t ii) {
    const double os = static_cast<double>(out[i0 + ii]) * static_cast<double>(inv_eps);
    return std::isfinite(os) && std::abs(os) > too_far;
  };
  bool any_recompute = false;
  for (int64_t ii = 0; ii < nr; ++ii) {
    offset[ii] = static_cast<T>(static_cast<double>(out[i0 + ii]) * static_cast<double>(inv_eps));
    any_recompute |= recompute(ii);
  }
  if (SM_UNLIKELY(any_recompute)) {
    std::vector<T> Mr(nr);
    std::vector<double> Sr(nr);
    forward_lse<T, D, R>(x, ys, d, mp, inv_eps, i0, i1, Mr.data(), Sr.data());
    for (int64_t ii = 0; ii < nr; ++ii)
      if (recompute(ii) && Sr[ii] > 0.0 && std::isfinite(Mr[ii])) {
        offset[ii] = -Mr[ii];
        rscale[ii] = static_cast<T>(1.0 / Sr[ii]);
      }
  }

  for (int64_t j0 = 0; j0 < mp; j0 += S::TJ) {
    const int64_t j1 = std::min<int64_t>(mp, j0 + S::TJ);
    const int64_t tw = j1 - j0;
    std::fill(tile.begin(), tile.end(), T(0));
    int64_t rows_since_flush = 0;
    auto flush = [&]() {
      for (int k = 0; k <= dd; ++k) {
        double *dst = colacc + k * mp + j0;
        T *src = tile.data() + k * S::TJ;
        for (int64_t q = 0; q < tw; ++q) dst[q] += static_cast<double>(src[q]);
      }
      std::fill(tile.begin(), tile.end(), T(0));
      rows_since_flush = 0;
    };
    for (int64_t ib = 0; ib < nr; ib += R) {
      const T *xr[R];
      V xb[R][KD], xw[R][KD];
      V ob[R], ub[R];
      V rs[R][KD];
      for (int r = 0; r < R; ++r) {
        const bool valid = ib + r < nr;
        const int64_t ii = std::min<int64_t>(ib + r, nr - 1);
        xr[r] = x + (i0 + ii) * dd;
        const T oi = out[i0 + ii], ui = valid ? u[i0 + ii] * rscale[ii] : T(0);
        // Rows with zero weight everywhere (out = +inf) or padding rows contribute nothing.
        const bool live = valid && std::isfinite(oi) && ui != T(0);
        ob[r] = set1(live ? offset[ii] : NEG_INF);
        ub[r] = set1(live ? ui : T(0));
        if constexpr (D > 0)
          for (int k = 0; k < D; ++k) {
            xb[r][k] = set1(xr[r][k]);
            xw[r][k] = set1(live ? ui * xr[r][k] : T(0));
            rs[r][k] = set1(T(0));
          }
        else
          for (int k = 0; k < dd; ++k) rsum_dyn[r * dd + k] = set1(T(0));
      }
      for (int64_t j = j0; j < j1; j += W) {
        const V hv = load(hrow + j);
        V a[R];
        for (int r = 0; r < R; ++r) a[r] = hv;
        if constexpr (D > 0) {
          V yk[D];
          for (int k = 0; k < D; ++k) {
            yk[k] = load(ys + k * mp + j);
            for (int r = 0; r < R; ++r) {
              const V df = sub(xb[r][k], yk[k]);
              a[r] = fnmadd(df, df, a[r]);
            }
          }
          T *tp = tile.data() + (j - j0);
          V col = load(tp + D * S::TJ);
          V lin[D];
          for (int k = 0; k < D; ++k) lin[k] = load(tp + k * S::TJ);
          for (int r = 0; r < R; ++r) {
            const V p = vexp2(add(mul(a[r], vinv), ob[r]));  // as the forward rounds
            for (int k = 0; k < D; ++k) rs[r][k] = fmadd(p, yk[k], rs[r][k]);
            col = fmadd(ub[r], p, col);
            for (int k = 0; k < D; ++k) lin[k] = fmadd(xw[r][k], p, lin[k]);
          }
          store(tp + D * S::TJ, col);
          for (int k = 0; k < D; ++k) store(tp + k * S::TJ, lin[k]);
        } else {
          for (int k = 0; k < dd; ++k) {
            const V yk = load(ys + k * mp + j);
            for (int r = 0; r < R; ++r) {
              const V df = sub(set1(xr[r][k]), yk);
              a[r] = fnmadd(df, df, a[r]);
            }
          }
          T *tp = tile.data() + (j - j0);
          for (int r = 0; r < R; ++r) {
            const V p = vexp2(add(mul(a[r], vinv), ob[r]));  // as the forward rounds
            const V up = mul(ub[r], p);
            store(tp + dd * S::TJ, add(load(tp + dd * S::TJ), up));
            for (int k = 0; k < dd; ++k) {
              const V yk = load(ys + k * mp + j);
              rsum_dyn[r * dd + k] = fmadd(p, yk, rsum_dyn[r * dd + k]);
              store(tp + k * S::TJ, fmadd(up, set1(xr[r][k]), load(tp + k * S::TJ)));
            }
          }
        }
      }
      for (int r = 0; r < R && ib + r < nr; ++r)
        for (int k = 0; k < dd; ++k) {
          const double sc = static_cast<double>(rscale[ib + r]);
          if constexpr (D > 0)
            racc[(ib + r) * dd + k] += sc * reduce_add(rs[r][k]);
          else
            racc[(ib + r) * dd + k] += sc * reduce_add(rsum_dyn[r * dd + k]);
        }
      rows_since_flush += R;
      if (rows_since_flush >= FLUSH_ROWS) flush();
    }
    flush();
  }
  for (int64_t ii = 0; ii < nr; ++ii) {
    const int64_t i = i0 + ii;
    const T oi = out[i], ui = u[i];
    const bool live = std::isfinite(oi) && ui != T(0);
    for (int k = 0; k < dd; ++k) {
      const double xi = static_cast<double>(x[i * dd + k]);
      const double s = live ? racc[ii * dd + k] : std::isnan(oi) ? std::nan("") : 0.0;
      gx[i * dd + k] = static_cast<T>(2.0 * static_cast<double>(ui) * (xi - s));
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// Dispatch on d and threading.
// ---------------------------------------------------------------------------------------------------
#ifndef SM_R_FWD
#define SM_R_FWD 4
#endif
#ifndef SM_R_BWD
#define SM_R_BWD 4
#endif
constexpr int R_FWD = SM_R_FWD;
constexpr int R_BWD = SM_R_BWD;

template <class T>
using FwdFn = void (*)(const T *, const T *, int, int64_t, T, int64_t, int64_t, T *);
template <class T>
using BwdFn = void (*)(const T *, const T *, int, int64_t, const T *, const T *, T, int64_t, int64_t, T *,
                       double *);

template <class T>
FwdFn<T> pick_forward(int d) {
  switch (d) {
    case 1: return &forward_rows<T, 1, R_FWD>;
    case 2: return &forward_rows<T, 2, R_FWD>;
    case 3: return &forward_rows<T, 3, R_FWD>;
    case 4: return &forward_rows<T, 4, R_FWD>;
    case 5: return &forward_rows<T, 5, 2>;
    case 6: return &forward_rows<T, 6, 2>;
    case 7: return &forward_rows<T, 7, 2>;
    case 8: return &forward_rows<T, 8, 2>;
    default: return &forward_rows<T, 0, 2>;
  }
}
template <class T>
BwdFn<T> pick_backward(int d) {
  switch (d) {
    case 1: return &backward_rows<T, 1, R_BWD>;
    case 2: return &backward_rows<T, 2, R_BWD>;
    case 3: return &backward_rows<T, 3, R_BWD>;
    case 4: return &backward_rows<T, 4, 2>;
    case 5: return &backward_rows<T, 5, 2>;
    case 6: return &backward_rows<T, 6, 2>;
    case 7: return &backward_rows<T, 7, 2>;
    case 8: return &backward_rows<T, 8, 2>;
    default: return &backward_rows<T, 0, 1>;
  }
}
template <class T>
void check_shapes(const In3<T> &x, const In3<T> &y, const In2<T> &h, double eps, const char *name) {
  if (y.shape(0) != x.shape(0) || h.shape(0) != x.shape(0))
    throw nb::value_error((std::string(name) + ": x, y, h must share the batch size B").c_str());
  if (y.shape(2) != x.shape(2))
    throw nb::value_error((std::string(name) + ": x and y must have the same dimension d").c_str());
  if (h.shape(1) != y.shape(1)) throw nb::value_error((std::string(name) + ": h must be (B, m)").c_str());
  if (x.shape(2) < 1) throw nb::value_error((std::string(name) + ": d must be >= 1").c_str());
  if (!(eps > 0.0) || !std::isfinite(eps))
    throw nb::value_error((std::string(name) + ": eps must be positive and finite").c_str());
}

template <class T>
Out<T, 2> softmin_binding(In3<T> x, In3<T> y, In2<T> h, double eps, int n_threads) {
  check_shapes<T>(x, y, h, eps, "softmin_sqeuclid");
  const int64_t B = x.shape(0), n = x.shape(1), m = y.shape(1);
  const int d = static_cast<int>(x.shape(2));
  const int64_t mp = padded<T>(m);
  auto out = std::make_unique<T[]>(std::max<int64_t>(1, B * n));
  {
    nb::gil_scoped_release release;
    if (B * n > 0) {
      std::vector<T> ys(static_cast<size_t>(B) * (d + 1) * mp);
      std::vector<char> nan_batch(B);
      for (int64_t b = 0; b < B; ++b)
        nan_batch[b] = pack_y(y.data() + b * m * d, h.data() + b * m, m, d, mp, ys.data() + b * (d + 1) * mp);
      const int nt = resolve_threads(n_threads, B * n, B * n * mp * d);
      FwdFn<T> fn = pick_forward<T>(d);
      const T *xd = x.data();
      T *od = out.get();
      parallel_rows(nt, B, n, [&](int, int64_t b, int64_t i0, int64_t i1) {
        fn(xd + b * n * d, ys.data() + b * (d + 1) * mp, d, mp, static_cast<T>(eps), i0, i1, od + b * n);
      });
      for (int64_t b = 0; b < B; ++b)
        if (nan_batch[b]) std::fill(od + b * n, od + (b + 1) * n, std::numeric_limits<T>::quiet_NaN());
    }
  }
  return owned<T, 2>(std::move(out), {static_cast<size_t>(B), static_cast<size_t>(n)});
}

template <class T>
std::tuple<Out<T, 3>, Out<T, 3>, Out<T, 2>> softmin_backward_binding(In3<T> x, In3<T> y, In2<T> h, In2<T> out,
                                                                      In2<T> u, double eps, int n_threads) {
  check_shapes<T>(x, y, h, eps, "softmin_sqeuclid_backward");
  const int64_t B = x.shape(0), n = x.shape(1), m = y.shape(1);
  const int d = static_cast<int>(x.shape(2));
  if (out.shape(0) != static_cast<size_t>(B) || out.shape(1) != static_cast<size_t>(n) ||
      u.shape(0) != static_cast<size_t>(B) || u.shape(1) != static_cast<size_t>(n))
    throw nb::value_error("softmin_sqeuclid_backward: out and u must be (B, n)");
  const int64_t mp = padded<T>(m);
  auto gx = std::make_unique<T[]>(std::max<int64_t>(1, B * n * d));
  auto gy = std::make_unique<T[]>(std::max<int64_t>(1, B * m * d));
  auto gh = std::make_unique<T[]>(std::max<int64_t>(1, B * m));
  {
    nb::gil_scoped_release release;
    std::vector<double> total(static_cast<size_t>(B) * (d + 1) * mp, 0.0);
    std::vector<char> nan_batch(B, 0);
    if (B * n > 0 && m > 0) {
      std::vector<T> ys(static_cast<size_t>(B) * (d + 1) * mp);
      for (int64_t b = 0; b < B; ++b) {
        nan_batch[b] = pack_y(y.data() + b * m * d, h.data() + b * m, m, d, mp, ys.data() + b * (d + 1) * mp);
        for (int64_t i = 0; i < n; ++i)  // a NaN result with a nonzero cotangent poisons the column sums
          nan_batch[b] |= std::isnan(out.data()[b * n + i]) && u.data()[b * n + i] != T(0);
      }
      const int nt = resolve_threads(n_threads, B * n, B * n * mp * d);
      BwdFn<T> fn = pick_backward<T>(d);
      std::vector<std::vector<double>> partial(nt);
      std::mutex mu;
      const T *xd = x.data(), *od = out.data(), *ud = u.data();
      T *gxd = gx.get();
      parallel_rows(nt, B, n, [&](int t, int64_t b, int64_t i0, int64_t i1) {
        auto &acc = partial[t];
        acc.assign(static_cast<size_t>(d + 1) * mp, 0.0);
        fn(xd + b * n * d, ys.data() + b * (d + 1) * mp, d, mp, od + b * n, ud + b * n, static_cast<T>(eps),
           i0, i1, gxd + b * n * d, acc.data());
        std::lock_guard<std::mutex> lock(mu);
        double *dst = total.data() + b * (d + 1) * mp;
        for (size_t q = 0; q < acc.size(); ++q) dst[q] += acc[q];
      });
    } else if (B * n > 0) {  // m == 0: every out is +inf, the gradient of x is 2 u x
      for (int64_t q = 0; q < B * n; ++q)
        for (int k = 0; k < d; ++k)
          gx[q * d + k] = static_cast<T>(2.0 * double(u.data()[q]) * double(x.data()[q * d + k]));
    }
    for (int64_t b = 0; b < B; ++b) {
      const double *lin = total.data() + b * (d + 1) * mp, *col = lin + static_cast<int64_t>(d) * mp;
      const T *yb = y.data() + b * m * d;
      if (nan_batch[b]) {
        std::fill(gh.get() + b * m, gh.get() + (b + 1) * m, std::numeric_limits<T>::quiet_NaN());
        std::fill(gy.get() + b * m * d, gy.get() + (b + 1) * m * d, std::numeric_limits<T>::quiet_NaN());
        continue;
      }
      for (int64_t j = 0; j < m; ++j) {
        gh[b * m + j] = static_cast<T>(-col[j]);
        for (int k = 0; k < d; ++k)
          gy[(b * m + j) * d + k] =
              static_cast<T>(2.0 * (col[j] * static_cast<double>(yb[j * d + k]) - lin[k * mp + j]));
      }
    }
  }
  return {owned<T, 3>(std::move(gx), {size_t(B), size_t(n), size_t(d)}),
          owned<T, 3>(std::move(gy), {size_t(B), size_t(m), size_t(d)}),
          owned<T, 2>(std::move(gh), {size_t(B), size_t(m)})};
}

}  // namespace monge_softmin

void register_softmin_lazy(nb::module_ &m) {
  using namespace monge_softmin;
  static const char *fwd_doc =
      "softmin_sqeuclid(x, y, h, eps, n_threads=0) -> out\n\n"
      "out[b, i] = -eps * log sum_j exp((h[b, j] - |x[b, i] - y[b, j]|^2) / eps), streamed over tiles of y\n"
      "(online log-sum-exp, O(n + m) memory). x: (B, n, d), y: (B, m, d), h: (B, m); all float32 or all\n"
      "float64, C-contiguous, CPU (no implicit conversion or copy). h may hold -inf (zero weight); a row\n"
      "whose weights are all zero gives +inf; a NaN in x (its row) or in y, h (its batch) gives NaN.\n"
      "Returns a new (B, n) numpy array of the input dtype. float32 sums are accumulated per tile in\n"
      "float32 and across tiles in float64. n_threads <= 0: all hardware threads. Releases the GIL.\n"
      "SIMD: " SM_ISA ".";
  static const char *bwd_doc =
      "softmin_sqeuclid_backward(x, y, h, out, u, eps, n_threads=0) -> (gx, gy, gh)\n\n"
      "Vector-Jacobian product of softmin_sqeuclid for the cotangent u (B, n), recomputing the weights\n"
      "p_ij = exp((h_j - |x_i - y_j|^2 + out_i) / eps) from out (the forward result):\n"
      "gx_i = 2 (u_i x_i - sum_j u_i p_ij y_j), gh_j = -sum_i u_i p_ij,\n"
      "gy_j = 2 (c_j y_j - sum_i u_i p_ij x_i) with c_j = sum_i u_i p_ij. Column sums are reduced in float64.\n"
      "Rows with out = +inf (no weight) or u = 0 contribute nothing. Not differentiable itself.\n"
      "Same dtype/layout rules as softmin_sqeuclid; returns numpy arrays. Releases the GIL.";
  m.def("softmin_sqeuclid", &softmin_binding<float>, nb::arg("x").noconvert(), nb::arg("y").noconvert(),
        nb::arg("h").noconvert(), nb::arg("eps"), nb::arg("n_threads") = 0, fwd_doc);
  m.def("softmin_sqeuclid", &softmin_binding<double>, nb::arg("x").noconvert(), nb::arg("y").noconvert(),
        nb::arg("h").noconvert(), nb::arg("eps"), nb::arg("n_threads") = 0);
  m.def("softmin_sqeuclid_backward", &softmin_backward_binding<float>, nb::arg("x").noconvert(),
        nb::arg("y").noconvert(), nb::arg("h").noconvert(), nb::arg("out").noconvert(),
        nb::arg("u").noconvert(), nb::arg("eps"), nb::arg("n_threads") = 0, bwd_doc);
  m.def("softmin_sqeuclid_backward", &softmin_backward_binding<double>, nb::arg("x").noconvert(),
        nb::arg("y").noconvert(), nb::arg("h").noconvert(), nb::arg("out").noconvert(),
        nb::arg("u").noconvert(), nb::arg("eps"), nb::arg("n_threads") = 0);
}
