// Block-sparse squared-Euclidean soft-min and its backward: the multiscale backend's fine level.
//
//   out_i = -eps log sum_{J in K_I} sum_{j in J} exp((h_j - |x_i - y_j|^2) / eps),   i in leaf I
//
// Layout: both clouds in padded leaf tiles, x (Kr, Sr, d), y (Kc, Sc, d), h (Kc, Sc) (padding slots: h = -inf,
// their x rows are computed and ignored by the caller); the kept column leaves of each row leaf as CSR
// (ptr (Kr + 1), cols (nnz)). Work ~ Sr Sc nnz d instead of n m d.
//
// Design (the style of softmin_lazy.cpp, whose notes on rounding apply here unchanged)
// - y and h are packed once per call into one structure-of-arrays tile per leaf, padded to a multiple of the
//   SIMD width (Sp): leaf J's coordinates and potentials are contiguous, so a kept block is a plain vector loop.
// - Row leaves are handed to std::threads one at a time through an atomic counter (kept counts vary per
//   leaf); the GIL is released. Inside a leaf, blocks of R rows share the loads of y, and walk the kept leaves.
// - Forward: online log-sum-exp in base 2 with one running shift per row, the same rounded product for the
//   shift and the exponent (hence -ffp-contract=off); vector partial sums are flushed into float64 every
//   FLUSH_VEC vectors.
// - Backward: p_ij = 2^((h_j - C_ij) s + out_i s), s = log2(e)/eps. Row sums (sum_j p_ij y_j) in registers,
//   flushed into float64 like the forward; column sums (sum_i u_i p_ij, sum_i u_i p_ij x_i) accumulated per
//   thread in a tile buffer of the input precision over the rows of one leaf (R rows at a time), then added
//   to per-thread float64 totals (O(threads m d) memory) and reduced across threads at the end. Rows whose
//   |out_i s| exceeds 2^(digits - 6) lose the normalisation to out's rounding: the caller passes float64 then.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/tuple.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "softmin_common.hpp"

namespace nb = nanobind;

namespace monge_blocks {

using namespace monge_softmin;

constexpr int FLUSH_VEC = 128;  // vectors summed in the input precision before a float64 flush

// One tile of (d + 1) rows of Sp entries per column leaf: coordinates, then h (padding: y = 0, h = -inf).
template <class T>
void pack_leaves(const T *y, const T *h, int64_t Kc, int64_t Sc, int d, int64_t Sp, T *dst) {
  for (int64_t J = 0; J < Kc; ++J) {
    T *tile = dst + J * (d + 1) * Sp;
    for (int k = 0; k < d; ++k) {
      T *row = tile + k * Sp;
      for (int64_t j = 0; j < Sc; ++j) row[j] = y[(J * Sc + j) * d + k];
      for (int64_t j = Sc; j < Sp; ++j) row[j] = T(0);
    }
    T *hr = tile + static_cast<int64_t>(d) * Sp;
    std::memcpy(hr, h + J * Sc, sizeof(T) * Sc);
    for (int64_t j = Sc; j < Sp; ++j) hr[j] = -std::numeric_limits<T>::infinity();
  }
}

struct Csr {
  const int64_t *ptr, *cols;
};

// Calls body(t, I) for every row leaf I, leaves handed out one at a time (kept counts vary per leaf).
template <class F>
void parallel_leaves(int nt, int64_t K, F &&body) {
  monge::parallel_chunks(nt, K, 1, body);
}

// The rows of leaf I: their soft-min over the kept leaves (out: Sr entries); the exponent tile and the online
// log-sum-exp are softmin_common.hpp's (RowTile, OnlineLse), flushed into float64 every FLUSH_VEC vectors.
template <class T, int D, int R, class Ix>
void forward_leaf(const T *x, const T *ys, int d, int64_t Sr, int64_t Sp, const Ix *cb, const Ix *ce,
                  T inv_eps, T *out) {
  using S = Simd<T>;
  constexpr int W = S::W;
  const int dd = D > 0 ? D : d;
  const int64_t tile = static_cast<int64_t>(dd + 1) * Sp;
  const double scale_back = 1.0 / static_cast<double>(inv_eps);
  for (int64_t ib = 0; ib < Sr; ib += R) {
    const RowTile<T, D, R> rows(x, dd, ib, Sr - 1);
    OnlineLse<T, R> lse(inv_eps);
    for (int r = 0; r < R; ++r) lse.start(r, -std::numeric_limits<T>::infinity(), 0.0);
    int count = 0;
    for (const Ix *c = cb; c != ce; ++c) {
      const T *yl = ys + *c * tile;
      const T *hrow = yl + static_cast<int64_t>(dd) * Sp;
      for (int64_t j = 0; j < Sp; j += W) {
        typename S::V a[R];
        rows.exponents(yl + j, Sp, load(hrow + j), a);
        lse.push(a);
        if (++count == FLUSH_VEC) {
          lse.flush();
          count = 0;
        }
      }
    }
    for (int r = 0; r < R && ib + r < Sr; ++r)
      out[ib + r] = static_cast<T>(-scale_back * lse.lse(r));  // no kept weight: +inf
  }
}

// The gradients of sum_i u_i out_i for the rows of leaf I: gx (Sr, d) written, column sums added to the
// thread's tile buffer colT and flushed into its float64 totals colD (both (Kc, d + 1, Sp)).
template <class T, int D, int R, class Ix>
void backward_leaf(const T *x, const T *ys, int d, int64_t Sr, int64_t Sp, const Ix *cb, const Ix *ce,
                   const T *out, const T *u, T inv_eps, T *gx, T *colT, double *colD) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int W = S::W;
  constexpr int KD = D > 0 ? D : 1;
  const int dd = D > 0 ? D : d;
  const int64_t tile = static_cast<int64_t>(dd + 1) * Sp;
  constexpr T NEG_INF = -std::numeric_limits<T>::infinity();
  const V vinv = set1(inv_eps);
  std::vector<double> racc(static_cast<size_t>(Sr) * dd, 0.0);
  std::vector<V> rsd(D > 0 ? 0 : static_cast<size_t>(R) * dd), xwd(D > 0 ? 0 : static_cast<size_t>(R) * dd);
  V rsf[R][KD];  // row sums in registers when d is known at compile time
  auto RS = [&](int r, int k) SM_INLINE_LAMBDA -> V & {
    if constexpr (D > 0)
      return rsf[r][k];
    else
      return rsd[r * dd + k];
  };
  for (int64_t ib = 0; ib < Sr; ib += R) {
    const RowTile<T, D, R> rows(x, dd, ib, Sr - 1);  // rows past Sr - 1 repeat it (their weights are 0)
    const T *const *xr = rows.xr;
    V ob[R], ub[R];
    T xw[R][KD];
    for (int r = 0; r < R; ++r) {
      const bool valid = ib + r < Sr;
      const int64_t ii = std::min<int64_t>(ib + r, Sr - 1);
      const T oi = out[ii], ui = valid ? u[ii] : T(0);
      const bool live = valid && std::isfinite(oi) && ui != T(0);
      ob[r] = set1(live ? static_cast<T>(static_cast<double>(oi) * static_cast<double>(inv_eps)) : NEG_INF);
      ub[r] = set1(live ? ui : T(0));
      for (int k = 0; k < dd; ++k) {
        RS(r, k) = set1(T(0));
        if constexpr (D > 0) {
          xw[r][k] = live ? ui * xr[r][k] : T(0);
        } else {
          xwd[r * dd + k] = set1(live ? ui * xr[r][k] : T(0));
        }
      }
    }
    int count = 0;
    for (const Ix *c = cb; c != ce; ++c) {
      const T *yl = ys + *c * tile;
      const T *hrow = yl + static_cast<int64_t>(dd) * Sp;
      T *tp0 = colT + *c * tile;
      for (int64_t j = 0; j < Sp; j += W) {
        V a[R];
        rows.exponents(yl + j, Sp, load(hrow + j), a);
        T *tp = tp0 + j;
        V col = load(tp + static_cast<int64_t>(dd) * Sp);
        for (int r = 0; r < R; ++r) {
          const V p = vexp2(add(mul(a[r], vinv), ob[r]));
          col = fmadd(ub[r], p, col);
          for (int k = 0; k < dd; ++k) {
            const V yk = load(yl + k * Sp + j);
            RS(r, k) = fmadd(p, yk, RS(r, k));
            const V w = D > 0 ? set1(xw[r][k]) : xwd[r * dd + k];
            store(tp + k * Sp, fmadd(w, p, load(tp + k * Sp)));
          }
        }
        store(tp + static_cast<int64_t>(dd) * Sp, col);
        if (++count == FLUSH_VEC) {
          for (int r = 0; r < R && ib + r < Sr; ++r)
            for (int k = 0; k < dd; ++k) {
              racc[(ib + r) * dd + k] += reduce_add(RS(r, k));
              RS(r, k) = set1(T(0));
            }
          count = 0;
        }
      }
    }
    for (int r = 0; r < R && ib + r < Sr; ++r)
      for (int k = 0; k < dd; ++k) racc[(ib + r) * dd + k] += reduce_add(RS(r, k));
  }
  for (const Ix *c = cb; c != ce; ++c) {  // the leaf's column sums into float64, the tiles cleared
    T *src = colT + *c * tile;
    double *dst = colD + *c * tile;
    for (int64_t q = 0; q < tile; ++q) dst[q] += static_cast<double>(src[q]);
    std::fill(src, src + tile, T(0));
  }
  for (int64_t i = 0; i < Sr; ++i) {
    const T oi = out[i], ui = u[i];
    const bool live = std::isfinite(oi) && ui != T(0);
    for (int k = 0; k < dd; ++k) {
      const double s = live ? racc[i * dd + k] : 0.0;
      gx[i * dd + k] = static_cast<T>(2.0 * static_cast<double>(ui) * (static_cast<double>(x[i * dd + k]) - s));
    }
  }
}

template <class T, class Ix>
using FwdFn = void (*)(const T *, const T *, int, int64_t, int64_t, const Ix *, const Ix *, T, T *);
template <class T, class Ix>
using BwdFn = void (*)(const T *, const T *, int, int64_t, int64_t, const Ix *, const Ix *, const T *,
                       const T *, T, T *, T *, double *);

template <class T, class Ix>
FwdFn<T, Ix> pick_forward(int d) {
  switch (d) {
    case 1: return &forward_leaf<T, 1, 4, Ix>;
    case 2: return &forward_leaf<T, 2, 4, Ix>;
    case 3: return &forward_leaf<T, 3, 4, Ix>;
    case 4: return &forward_leaf<T, 4, 4, Ix>;
    case 5: return &forward_leaf<T, 5, 2, Ix>;
    case 6: return &forward_leaf<T, 6, 2, Ix>;
    case 8: return &forward_leaf<T, 8, 2, Ix>;
    case 10: return &forward_leaf<T, 10, 2, Ix>;
    default: return &forward_leaf<T, 0, 2, Ix>;
  }
}
template <class T, class Ix>
BwdFn<T, Ix> pick_backward(int d) {
  switch (d) {
    case 1: return &backward_leaf<T, 1, 4, Ix>;
    case 2: return &backward_leaf<T, 2, 4, Ix>;
    case 3: return &backward_leaf<T, 3, 4, Ix>;
    case 4: return &backward_leaf<T, 4, 2, Ix>;
    case 5: return &backward_leaf<T, 5, 2, Ix>;
    case 6: return &backward_leaf<T, 6, 2, Ix>;
    case 8: return &backward_leaf<T, 8, 2, Ix>;
    case 10: return &backward_leaf<T, 10, 2, Ix>;
    default: return &backward_leaf<T, 0, 1, Ix>;
  }
}

using I1 = nb::ndarray<const int64_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
template <class Ix>
using Cols = nb::ndarray<const Ix, nb::ndim<1>, nb::c_contig, nb::device::cpu>;  // int64 or int32 leaves

template <class T, class Ix>
void check(const In3<T> &x, const In3<T> &y, const In2<T> &h, const I1 &ptr, const Cols<Ix> &cols, double eps,
           const char *name) {
  auto fail = [&](const std::string &what) { throw nb::value_error((std::string(name) + ": " + what).c_str()); };
  if (y.shape(2) != x.shape(2) || x.shape(2) < 1) fail("x (Kr, Sr, d) and y (Kc, Sc, d) must share d >= 1");
  if (h.shape(0) != y.shape(0) || h.shape(1) != y.shape(1)) fail("h must be (Kc, Sc), the shape of y's tiles");
  if (ptr.shape(0) != x.shape(0) + 1) fail("ptr must hold Kr + 1 offsets");
  const int64_t Kr = x.shape(0), Kc = y.shape(0), nnz = cols.shape(0);
  if (ptr.data()[0] != 0 || ptr.data()[Kr] != nnz) fail("ptr must run from 0 to len(cols)");
  for (int64_t I = 0; I < Kr; ++I)
    if (ptr.data()[I + 1] < ptr.data()[I]) fail("ptr must be nondecreasing");
  for (int64_t e = 0; e < nnz; ++e)
    if (cols.data()[e] < 0 || cols.data()[e] >= Kc) fail("cols must hold column leaves in [0, Kc)");
  if (!(eps > 0.0) || !std::isfinite(eps)) fail("eps must be positive and finite");
}

template <class T, class Ix>
Out<T, 2> forward_binding(In3<T> x, In3<T> y, In2<T> h, I1 ptr, Cols<Ix> cols, double eps, int n_threads) {
  check<T, Ix>(x, y, h, ptr, cols, eps, "softmin_sqeuclid_blocks");
  const int64_t Kr = x.shape(0), Sr = x.shape(1), Kc = y.shape(0), Sc = y.shape(1);
  const int d = static_cast<int>(x.shape(2));
  const int64_t Sp = padded<T>(Sc), tile = (d + 1) * Sp;
  auto out = std::make_unique<T[]>(std::max<int64_t>(1, Kr * Sr));
  {
    nb::gil_scoped_release release;
    std::vector<T> ys(static_cast<size_t>(std::max<int64_t>(1, Kc * tile)));
    pack_leaves(y.data(), h.data(), Kc, Sc, d, Sp, ys.data());
    const int64_t nnz = cols.shape(0);
    const int nt = resolve_threads(n_threads, Kr, nnz * Sr * Sp * d);
    const T inv_eps = static_cast<T>(LOG2E / eps);
    FwdFn<T, Ix> fn = pick_forward<T, Ix>(d);
    const int64_t *p = ptr.data();
    const Ix *c = cols.data();
    parallel_leaves(nt, Kr, [&](int, int64_t I) {
      fn(x.data() + I * Sr * d, ys.data(), d, Sr, Sp, c + p[I], c + p[I + 1], inv_eps, out.get() + I * Sr);
    });
  }
  return owned<T, 2>(std::move(out), {static_cast<size_t>(Kr), static_cast<size_t>(Sr)});
}

template <class T, class Ix>
std::tuple<Out<T, 3>, Out<T, 3>, Out<T, 2>> backward_binding(In3<T> x, In3<T> y, In2<T> h, I1 ptr, Cols<Ix> cols,
                                                             In2<T> out, In2<T> u, double eps, int n_threads) {
  check<T, Ix>(x, y, h, ptr, cols, eps, "softmin_sqeuclid_blocks_backward");
  const int64_t Kr = x.shape(0), Sr = x.shape(1), Kc = y.shape(0), Sc = y.shape(1);
  const int d = static_cast<int>(x.shape(2));
  if (out.shape(0) != size_t(Kr) || out.shape(1) != size_t(Sr) || u.shape(0) != size_t(Kr) ||
      u.shape(1) != size_t(Sr))
    throw nb::value_error("softmin_sqeuclid_blocks_backward: out and u must be (Kr, Sr), the rows of x");
  const int64_t Sp = padded<T>(Sc), tile = (d + 1) * Sp;
  auto gx = std::make_unique<T[]>(std::max<int64_t>(1, Kr * Sr * d));
  auto gy = std::make_unique<T[]>(std::max<int64_t>(1, Kc * Sc * d));
  auto gh = std::make_unique<T[]>(std::max<int64_t>(1, Kc * Sc));
  {
    nb::gil_scoped_release release;
    std::vector<T> ys(static_cast<size_t>(std::max<int64_t>(1, Kc * tile)));
    pack_leaves(y.data(), h.data(), Kc, Sc, d, Sp, ys.data());
    const int64_t nnz = cols.shape(0);
    const int nt = resolve_threads(n_threads, Kr, nnz * Sr * Sp * d);
    const T inv_eps = static_cast<T>(LOG2E / eps);
    BwdFn<T, Ix> fn = pick_backward<T, Ix>(d);
    std::vector<std::vector<T>> colT(nt);
    std::vector<std::vector<double>> colD(nt);
    const int64_t *p = ptr.data();
    const Ix *c = cols.data();
    parallel_leaves(nt, Kr, [&](int t, int64_t I) {
      if (colT[t].empty()) {
        colT[t].assign(static_cast<size_t>(std::max<int64_t>(1, Kc * tile)), T(0));
        colD[t].assign(static_cast<size_t>(std::max<int64_t>(1, Kc * tile)), 0.0);
      }
      fn(x.data() + I * Sr * d, ys.data(), d, Sr, Sp, c + p[I], c + p[I + 1], out.data() + I * Sr,
         u.data() + I * Sr, inv_eps, gx.get() + I * Sr * d, colT[t].data(), colD[t].data());
    });
    std::vector<double> tot(static_cast<size_t>(std::max<int64_t>(1, Kc * tile)), 0.0);
    for (auto &acc : colD)
      for (size_t q = 0; q < acc.size(); ++q) tot[q] += acc[q];
    for (int64_t J = 0; J < Kc; ++J) {
      const double *lin = tot.data() + J * tile, *col = lin + static_cast<int64_t>(d) * Sp;
      for (int64_t j = 0; j < Sc; ++j) {
        const int64_t q = J * Sc + j;
        gh[q] = static_cast<T>(-col[j]);
        for (int k = 0; k < d; ++k)
          gy[q * d + k] = static_cast<T>(2.0 * (col[j] * static_cast<double>(y.data()[q * d + k]) - lin[k * Sp + j]));
      }
    }
  }
  return {owned<T, 3>(std::move(gx), {size_t(Kr), size_t(Sr), size_t(d)}),
          owned<T, 3>(std::move(gy), {size_t(Kc), size_t(Sc), size_t(d)}),
          owned<T, 2>(std::move(gh), {size_t(Kc), size_t(Sc)})};
}

}  // namespace monge_blocks

void register_softmin_blocks(nb::module_ &m) {
  using namespace monge_blocks;
  static const char *fwd_doc =
      "softmin_sqeuclid_blocks(x, y, h, ptr, cols, eps, n_threads=0) -> out\n\n"
      "out[I, i] = -eps * log sum_{J in cols[ptr[I]:ptr[I+1]]} sum_j exp((h[J, j] - |x[I, i] - y[J, j]|^2) / eps)\n"
      "over the kept column leaves of each row leaf (block-sparse, online log-sum-exp). x: (Kr, Sr, d),\n"
      "y: (Kc, Sc, d), h: (Kc, Sc) (padding slots h = -inf), ptr: (Kr + 1,) int64, cols: (nnz,) int64 or\n"
      "int32; all float32 or all float64, C-contiguous, CPU. A row with no kept weight gives +inf. Releases the GIL.";
  static const char *bwd_doc =
      "softmin_sqeuclid_blocks_backward(x, y, h, ptr, cols, out, u, eps, n_threads=0) -> (gx, gy, gh)\n\n"
      "Vector-Jacobian product of softmin_sqeuclid_blocks for the cotangent u (Kr, Sr) over the same blocks:\n"
      "gx_i = 2 u_i (x_i - sum_j p_ij y_j), gh_j = -sum_i u_i p_ij, gy_j = 2 (c_j y_j - sum_i u_i p_ij x_i),\n"
      "c_j = sum_i u_i p_ij, p_ij = exp((h_j - |x_i - y_j|^2 + out_i) / eps). Column sums in float64.";
  auto fwd = [&](auto fn, const char *doc) {
    m.def("softmin_sqeuclid_blocks", fn, nb::arg("x").noconvert(), nb::arg("y").noconvert(), nb::arg("h").noconvert(),
          nb::arg("ptr").noconvert(), nb::arg("cols").noconvert(), nb::arg("eps"), nb::arg("n_threads") = 0,
          doc ? doc : "");
  };
  fwd(&forward_binding<float, int64_t>, fwd_doc);
  fwd(&forward_binding<double, int64_t>, nullptr);
  fwd(&forward_binding<float, int32_t>, nullptr);
  fwd(&forward_binding<double, int32_t>, nullptr);
  auto bwd = [&](auto fn, const char *doc) {
    m.def("softmin_sqeuclid_blocks_backward", fn, nb::arg("x").noconvert(), nb::arg("y").noconvert(),
          nb::arg("h").noconvert(), nb::arg("ptr").noconvert(), nb::arg("cols").noconvert(), nb::arg("out").noconvert(),
          nb::arg("u").noconvert(), nb::arg("eps"), nb::arg("n_threads") = 0, doc ? doc : "");
  };
  bwd(&backward_binding<float, int64_t>, bwd_doc);
  bwd(&backward_binding<double, int64_t>, nullptr);
  bwd(&backward_binding<float, int32_t>, nullptr);
  bwd(&backward_binding<double, int32_t>, nullptr);
}
