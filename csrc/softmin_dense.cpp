// Dense soft-min against a materialised cost C (B, n, m): one streaming pass over C with the base-2 online
// log-sum-exp and the vectorised 2^x of simd.hpp (the lazy point-cloud kernel is softmin_lazy.cpp).
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "softmin_common.hpp"

namespace nb = nanobind;

namespace monge_softmin {

// ---------------------------------------------------------------------------------------------------
// Dense soft-min against a materialised cost C (B, n, m), same base-2 online log-sum-exp and vexp2.
//   dim = 1: out_i = -eps log sum_j exp((h_j - C_ij) / eps): each row is one contiguous online LSE.
//   dim = 0: out_j = -eps log sum_i exp((h_i - C_ij) / eps): rows streamed one by one, per-column running
//            shift and sums (vectorised across j); per-thread partials merged (LSE merge) in float64.
// Partial sums are accumulated in T over at most TJ / W terms per lane (dim = 1) or FLUSH_ROWS rows
// (dim = 0) and then added in float64. A NaN term (e.g. -inf - (-inf)) counts as zero weight.
// ---------------------------------------------------------------------------------------------------
template <class T>
void dense_rows(const T *C, const T *hp, int64_t m, T inv, int64_t i0, int64_t i1, T *out) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int W = S::W;
  constexpr T INF = std::numeric_limits<T>::infinity();
  const int64_t mf = m / W * W;
  const V vinv = set1(inv), vninf = set1(-INF);
  const double scale_back = 1.0 / static_cast<double>(inv);
  T tail[W];
  for (int64_t i = i0; i < i1; ++i) {
    const T *row = C + i * m;
    T M = -INF;
    double Sd = 0.0;
    V negM = set1(INF), acc = set1(T(0));
    auto step = [&](V a) SM_INLINE_LAMBDA {
      // The shift and the exponent see the same rounded product (see softmin_lazy.cpp): t <= 0 after a raise.
      const V p = mul(a, vinv);
      V t = add(p, negM);
      if (SM_UNLIKELY(any_pos(t))) {
        const T newM = std::max(M, reduce_max(maxv(p, vninf)) + S::HEAD);
        const T sc = std::exp2(M - newM);  // M = -inf -> 0 (nothing accumulated yet)
        acc = mul(acc, set1(sc));
        Sd *= static_cast<double>(sc);
        M = newM;
        negM = set1(-newM);
        t = add(p, negM);
      }
      acc = add(acc, vexp2(t));
    };
    for (int64_t j0 = 0; j0 < mf; j0 += S::TJ) {
      const int64_t j1 = std::min<int64_t>(mf, j0 + S::TJ);
      for (int64_t j = j0; j < j1; j += W) step(sub(load(hp + j), load(row + j)));
      Sd += reduce_add(acc);
      acc = set1(T(0));
    }
    if (mf < m) {
      for (int q = 0; q < W; ++q) tail[q] = mf + q < m ? row[mf + q] : T(0);  // hp is -inf there
      step(sub(load(hp + mf), load(tail)));
      Sd += reduce_add(acc);
    }
    // Sd = 0 only when every weight is zero (M = -inf): the result is +inf.
    out[i] = static_cast<T>(-scale_back * (static_cast<double>(M) + std::log2(Sd)));
  }
}

// Rows [i0, i1) of one batch for dim = 0. NM (-shift), acc: T arrays of size mp (NM = +inf, acc = 0 on
// entry); Sv: float64 sums of size mp (0 on entry). On return Sv holds sum_i 2^(t_ij + M_j) / 2^M_j... i.e.
// the column sums relative to the shifts M_j = -NM_j.
template <class T>
void dense_cols(const T *C, const T *h, int64_t m, int64_t mp, T inv, int64_t i0, int64_t i1, T *NM, T *acc,
                double *Sv) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int W = S::W;
  constexpr T INF = std::numeric_limits<T>::infinity();
  const int64_t mf = m / W * W;
  const V vinv = set1(inv), zero = set1(T(0)), head = set1(S::HEAD);
  std::vector<T> tail(static_cast<size_t>(mp - mf) + W, INF);
  T sc_l[W];
  int rows = 0;
  auto flush = [&]() {
    for (int64_t j = 0; j < mp; ++j) {
      Sv[j] += static_cast<double>(acc[j]);
      acc[j] = T(0);
    }
    rows = 0;
  };
  for (int64_t i = i0; i < i1; ++i) {
    const T hi = h[i];
    if (hi == -INF) continue;  // zero weight for the whole row
    const V hv = set1(hi);
    const T *row = C + i * m;
    if (mf < m) std::copy(row + mf, row + m, tail.begin());
    for (int64_t j = 0; j < mp; j += W) {
      const V a = sub(hv, load(j < mf ? row + j : tail.data() + (j - mf)));
      V nm = load(NM + j);
      const V p = mul(a, vinv);  // the shift and the exponent see the same rounded product
      V t = add(p, nm);
      V ac = load(acc + j);
      if (SM_UNLIKELY(any_pos(t))) {
        const V Mo = sub(zero, nm);
        const V Mn = maxv(add(p, head), Mo);  // NaN candidates keep the old shift
        const V sc = vexp2(sub(Mo, Mn));                 // -inf - -inf = NaN -> 0: nothing accumulated there
        ac = mul(ac, sc);
        store(sc_l, sc);
        for (int q = 0; q < W; ++q) Sv[j + q] *= static_cast<double>(sc_l[q]);
        nm = sub(zero, Mn);
        store(NM + j, nm);
        t = add(p, nm);
      }
      store(acc + j, add(ac, vexp2(t)));
    }
    if (++rows >= FLUSH_ROWS) flush();
  }
  flush();
}

template <class T>
Out<T, 2> softmin_dense_binding(In3<T> C, In2<T> h, double eps, int dim, int n_threads) {
  if (dim != 0 && dim != 1) throw nb::value_error("softmin_dense: dim must be 0 or 1");
  if (!(eps > 0.0) || !std::isfinite(eps)) throw nb::value_error("softmin_dense: eps must be positive and finite");
  const int64_t B = C.shape(0), n = C.shape(1), m = C.shape(2);
  const int64_t hl = dim == 1 ? m : n, nout = dim == 1 ? n : m;
  if (static_cast<int64_t>(h.shape(0)) != B || static_cast<int64_t>(h.shape(1)) != hl)
    throw nb::value_error(dim == 1 ? "softmin_dense: h must be (B, m) for dim=1" : "softmin_dense: h must be (B, n) for dim=0");
  auto out = std::make_unique<T[]>(std::max<int64_t>(1, B * nout));
  {
    nb::gil_scoped_release release;
    const T inv = static_cast<T>(LOG2E / eps);
    int nt = n_threads > 0 ? n_threads : static_cast<int>(std::thread::hardware_concurrency());
    if (B * n * m < (int64_t(1) << 21)) nt = 1;  // thread start-up (~250 us) dominates below ~2M entries
    nt = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(std::max(nt, 1), B * n)));
    const int64_t mp = padded<T>(m);
    T *od = out.get();
    const T *Cd = C.data(), *hd = h.data();
    if (dim == 1) {
      if (B * n > 0) {
        std::vector<T> hp(static_cast<size_t>(B) * mp, -std::numeric_limits<T>::infinity());
        for (int64_t b = 0; b < B; ++b) std::copy(hd + b * m, hd + (b + 1) * m, hp.data() + b * mp);
        parallel_rows(nt, B, n, [&](int, int64_t b, int64_t i0, int64_t i1) {
          dense_rows<T>(Cd + b * n * m, hp.data() + b * mp, m, inv, i0, i1, od + b * n);
        });
      }
    } else if (B * m > 0) {
      std::vector<double> GM(static_cast<size_t>(B) * m, -std::numeric_limits<double>::infinity());
      std::vector<double> GS(static_cast<size_t>(B) * m, 0.0);
      std::mutex mu;
      if (n > 0)
        parallel_rows(nt, B, n, [&](int, int64_t b, int64_t i0, int64_t i1) {
          std::vector<T> NM(mp, std::numeric_limits<T>::infinity()), acc(mp, T(0));
          std::vector<double> Sv(mp, 0.0);
          dense_cols<T>(Cd + b * n * m, hd + b * n, m, mp, inv, i0, i1, NM.data(), acc.data(), Sv.data());
          std::lock_guard<std::mutex> lock(mu);
          double *gm = GM.data() + b * m, *gs = GS.data() + b * m;
          for (int64_t j = 0; j < m; ++j) {
            if (!(Sv[j] > 0.0)) continue;
            const double Mt = -static_cast<double>(NM[j]);
            if (!(gs[j] > 0.0)) {
              gm[j] = Mt;
              gs[j] = Sv[j];
            } else {
              const double nm = std::max(gm[j], Mt);
              gs[j] = gs[j] * std::exp2(gm[j] - nm) + Sv[j] * std::exp2(Mt - nm);
              gm[j] = nm;
            }
          }
        });
      const double scale_back = 1.0 / static_cast<double>(inv);
      for (int64_t q = 0; q < B * m; ++q)
        od[q] = GS[q] > 0.0 ? static_cast<T>(-scale_back * (GM[q] + std::log2(GS[q])))
                            : std::numeric_limits<T>::infinity();
    }
  }
  return owned<T, 2>(std::move(out), {static_cast<size_t>(B), static_cast<size_t>(nout)});
}

}  // namespace monge_softmin

void register_sinkhorn_dense(nb::module_ &m);  // csrc/sinkhorn_dense.cpp: the scaling-domain loop

void register_softmin_dense(nb::module_ &m) {
  register_sinkhorn_dense(m);
  using namespace monge_softmin;
  static const char *dense_doc =
      "softmin_dense(C, h, eps, dim, n_threads=0) -> out\n\n"
      "Dense soft-min against a materialised cost C (B, n, m), one streaming pass over C:\n"
      "dim=1: out[b, i] = -eps log sum_j exp((h[b, j] - C[b, i, j]) / eps), h: (B, m), out: (B, n);\n"
      "dim=0: out[b, j] = -eps log sum_i exp((h[b, i] - C[b, i, j]) / eps), h: (B, n), out: (B, m).\n"
      "C, h: same dtype (float32/float64), C-contiguous, CPU (no conversion). h may hold -inf (zero weight);\n"
      "an all-zero-weight reduction gives +inf; NaN terms count as zero weight. Forward only. Threads only\n"
      "when B*n*m >= 2^21 (n_threads <= 0: all hardware threads). Releases the GIL. SIMD: " SM_ISA ".";
  m.def("softmin_dense", &softmin_dense_binding<float>, nb::arg("C").noconvert(), nb::arg("h").noconvert(),
        nb::arg("eps"), nb::arg("dim"), nb::arg("n_threads") = 0, dense_doc);
  m.def("softmin_dense", &softmin_dense_binding<double>, nb::arg("C").noconvert(), nb::arg("h").noconvert(),
        nb::arg("eps"), nb::arg("dim"), nb::arg("n_threads") = 0);
}
