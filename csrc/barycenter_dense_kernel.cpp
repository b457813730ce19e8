// Kernel products and soft-mins of the dense fixed-support barycenter (csrc/barycenter_dense.cpp). Each soft-min
// is a shifted product, softmin(h) = c0 - (M + eps log sum K e^{(h - M)/eps}), M = max h, with the R (+1)
// vectors of a half-iteration in one pass over the kernel. A symmetric kernel (C = C^T bitwise) is read through
// its upper triangle only (one pass = n^2 / 2 entries, each used twice: y_i += K_ij u_j, y_j += K_ij u_i).
#include "barycenter_dense_kernel.hpp"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <limits>
#include <thread>
#include <vector>

#include "softmin_common.hpp"

namespace monge_barycenter_dense {

using namespace monge_softmin;

constexpr int G = 4;  // right-hand sides per sweep of the kernel (register budget of the symmetric sweep)

// The row units of [i0, i1): pairs (i, i + 1) from i0, then a single last row if the count is odd; visited in
// reverse when `rev` (alternate passes run in opposite directions, so the rows a pass read last, still in cache,
// are the first the next pass reads).
template <class Pair, class One>
SM_INLINE void row_units(int64_t i0, int64_t i1, bool rev, Pair &&pair, One &&one) {
  const int64_t np = (i1 - i0) / 2;
  const bool odd = (i1 - i0) & 1;
  if (rev) {
    if (odd) one(i1 - 1);
    for (int64_t q = np - 1; q >= 0; --q) pair(i0 + 2 * q);
  } else {
    for (int64_t q = 0; q < np; ++q) pair(i0 + 2 * q);
    if (odd) one(i1 - 1);
  }
}

// P[r][j] += sum_{i in [i0, i1)} K_ij U[r][i] for r < GS (two rows per sweep of P).
template <int GS>
void axpy_block(const double *K, int64_t m, int64_t i0, int64_t i1, bool rev, const double *U, int64_t ldu,
                double *P, int64_t ldp) {
  const int64_t mf = m / WD * WD;
  auto pair = [&](int64_t i) SM_INLINE_LAMBDA {
    const double *k0 = K + i * m, *k1 = k0 + m;
    double s0[GS], s1[GS];
    VD a0[GS], a1[GS];
    for (int r = 0; r < GS; ++r) {
      s0[r] = U[r * ldu + i], s1[r] = U[r * ldu + i + 1];
      a0[r] = set1(s0[r]), a1[r] = set1(s1[r]);
    }
    for (int64_t j = 0; j < mf; j += WD) {
      const VD x0 = load(k0 + j), x1 = load(k1 + j);
      for (int r = 0; r < GS; ++r) {
        double *p = P + r * ldp + j;
        store(p, fmadd(x1, a1[r], fmadd(x0, a0[r], load(p))));
      }
    }
    for (int64_t j = mf; j < m; ++j)
      for (int r = 0; r < GS; ++r) P[r * ldp + j] += k0[j] * s0[r] + k1[j] * s1[r];
  };
  auto one = [&](int64_t i) SM_INLINE_LAMBDA {
    const double *k0 = K + i * m;
    for (int r = 0; r < GS; ++r) {
      const double s = U[r * ldu + i];
      double *p = P + r * ldp;
      for (int64_t j = 0; j < m; ++j) p[j] += k0[j] * s;
    }
  };
  row_units(i0, i1, rev, pair, one);
}

// O[r][i] = sum_j K_ij V[r][j] for i in [i0, i1), r < GS.
template <int GS>
void dot_block(const double *K, int64_t m, int64_t i0, int64_t i1, bool rev, const double *V, int64_t ldv,
               double *O, int64_t ldo) {
  const int64_t mf = m / WD * WD;
  for (int64_t q = 0; q < i1 - i0; ++q) {
    const int64_t i = rev ? i1 - 1 - q : i0 + q;
    const double *k = K + i * m;
    VD acc[GS];
    for (int r = 0; r < GS; ++r) acc[r] = set1(0.0);
    for (int64_t j = 0; j < mf; j += WD) {
      const VD x = load(k + j);
      for (int r = 0; r < GS; ++r) acc[r] = fmadd(x, load(V + r * ldv + j), acc[r]);
    }
    for (int r = 0; r < GS; ++r) {
      double s = reduce_add(acc[r]);
      for (int64_t j = mf; j < m; ++j) s += k[j] * V[r * ldv + j];
      O[r * ldo + i] = s;
    }
  }
}

// P[r][.] += K U[r] for a symmetric n x n kernel, from the upper triangle of rows [i0, i1): row i adds
// sum_{j >= i} K_ij U[r][j] to P[r][i] and K_ij U[r][i] to P[r][j] for j > i (two rows per sweep).
template <int GS>
void sym_block(const double *K, int64_t n, int64_t i0, int64_t i1, bool rev, const double *U, int64_t ldu,
               double *P, int64_t ldp) {
  auto pair = [&](int64_t i) SM_INLINE_LAMBDA {
    const double *k0 = K + i * n, *k1 = k0 + n;
    double u0[GS], u1[GS], s0[GS], s1[GS];
    VD a0[GS], a1[GS], d0[GS], d1[GS];
    for (int r = 0; r < GS; ++r) {
      u0[r] = U[r * ldu + i], u1[r] = U[r * ldu + i + 1];
      a0[r] = set1(u0[r]), a1[r] = set1(u1[r]), d0[r] = set1(0.0), d1[r] = set1(0.0);
    }
    int64_t j = i + 2;
    for (; j + WD <= n; j += WD) {
      const VD x0 = load(k0 + j), x1 = load(k1 + j);
      for (int r = 0; r < GS; ++r) {
        const VD uj = load(U + r * ldu + j);
        d0[r] = fmadd(x0, uj, d0[r]);
        d1[r] = fmadd(x1, uj, d1[r]);
        double *p = P + r * ldp + j;
        store(p, fmadd(x1, a1[r], fmadd(x0, a0[r], load(p))));
      }
    }
    for (int r = 0; r < GS; ++r) s0[r] = reduce_add(d0[r]), s1[r] = reduce_add(d1[r]);
    for (; j < n; ++j)
      for (int r = 0; r < GS; ++r) {
        const double uj = U[r * ldu + j];
        s0[r] += k0[j] * uj, s1[r] += k1[j] * uj;
        P[r * ldp + j] += k0[j] * u0[r] + k1[j] * u1[r];
      }
    for (int r = 0; r < GS; ++r) {  // the 2 x 2 diagonal block
      P[r * ldp + i] += s0[r] + k0[i] * u0[r] + k0[i + 1] * u1[r];
      P[r * ldp + i + 1] += s1[r] + k0[i + 1] * u0[r] + k1[i + 1] * u1[r];
    }
  };
  auto one = [&](int64_t i) SM_INLINE_LAMBDA {
    const double *k0 = K + i * n;
    for (int r = 0; r < GS; ++r) {
      const double u = U[r * ldu + i];
      double s = k0[i] * u, *p = P + r * ldp;
      for (int64_t j = i + 1; j < n; ++j) s += k0[j] * U[r * ldu + j], p[j] += k0[j] * u;
      p[i] += s;
    }
  };
  row_units(i0, i1, rev, pair, one);
}

template <template <int> class F, class... A>
void by_group(int gs, A... args) {
  switch (gs) {
    case 1: F<1>::run(args...); break;
    case 2: F<2>::run(args...); break;
    case 3: F<3>::run(args...); break;
    default: F<4>::run(args...); break;
  }
}
template <int GS> struct Axpy { template <class... A> static void run(A... a) { axpy_block<GS>(a...); } };
template <int GS> struct Dot { template <class... A> static void run(A... a) { dot_block<GS>(a...); } };
template <int GS> struct Sym { template <class... A> static void run(A... a) { sym_block<GS>(a...); } };

Kernel make_kernel(const double *K, int64_t n, int64_t m, bool sym, int n_threads) {
  Kernel k{K, n, m, sym, 1, {}, false};
  if (n * m >= (int64_t(1) << 21)) {
    const int nt = n_threads > 0 ? n_threads : static_cast<int>(std::thread::hardware_concurrency());
    k.nt = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(std::max(nt, 1), n / 2)));
  }
  k.sym_rows.assign(k.nt + 1, n);
  k.sym_rows[0] = 0;
  const double total = 0.5 * double(n) * double(n + 1);
  int64_t i = 0;
  double acc = 0.0;
  for (int t = 1; t < k.nt; ++t) {
    while (i < n && acc < total * t / k.nt) acc += double(n - i), ++i;
    k.sym_rows[t] = std::min(n, std::max(k.sym_rows[t - 1], i + (i & 1)));  // even: whole row pairs per thread
  }
  return k;
}

// O (R x out) = the kernel contracted with U (R x len) along `dim` (0: O_rj = sum_i K_ij U_ri; 1: O_ri = sum_j
// K_ij U_rj); for a symmetric kernel both are one product. `part`: nt buffers of R * max(n, m) doubles.
void product(const Kernel &k, int dim, const double *U, int64_t R, double *O, std::vector<std::vector<double>> &part) {
  struct Flip {
    const Kernel &k;
    ~Flip() { k.rev = !k.rev; }
  } flip{k};
  const int64_t len = dim == 0 ? k.n : k.m, out = dim == 0 ? k.m : k.n;
  if (k.sym || dim == 0) {
    for (int t = 0; t < k.nt; ++t) std::fill(part[t].begin(), part[t].begin() + R * out, 0.0);
    const int nt = k.nt;
    auto body = [&](int t) {
      const int64_t i0 = k.sym ? k.sym_rows[t] : k.n * t / nt, i1 = k.sym ? k.sym_rows[t + 1] : k.n * (t + 1) / nt;
      for (int64_t r0 = 0; r0 < R; r0 += G) {
        const int gs = static_cast<int>(std::min<int64_t>(G, R - r0));
        if (k.sym)
          by_group<Sym>(gs, k.K, k.n, i0, i1, k.rev, U + r0 * len, len, part[t].data() + r0 * out, out);
        else
          by_group<Axpy>(gs, k.K, k.m, i0, i1, k.rev, U + r0 * len, len, part[t].data() + r0 * out, out);
      }
    };
    parallel_rows(nt, 1, nt, [&](int, int64_t, int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) body(static_cast<int>(t));
    });
    for (int64_t q = 0; q < R * out; ++q) {
      double s = part[0][q];
      for (int t = 1; t < nt; ++t) s += part[t][q];
      O[q] = s;
    }
    return;
  }
  parallel_rows(k.nt, 1, k.n, [&](int, int64_t, int64_t i0, int64_t i1) {
    for (int64_t r0 = 0; r0 < R; r0 += G) {
      const int gs = static_cast<int>(std::min<int64_t>(G, R - r0));
      by_group<Dot>(gs, k.K, k.m, i0, i1, k.rev, U + r0 * len, len, O + r0 * out, out);
    }
  });
}

// S (R x out) = softmin along `dim` of the R rows of H (R x len): c0 - (M_r + eps log (K-product of
// e^{(H_r - M_r)/eps})). False where a sum is unreliable (S is then partly written; the caller discards it).
bool softmins(const Kernel &k, int dim, const double *H, int64_t R, double c0, double eps, double *S, Work &w) {
  const int64_t len = dim == 0 ? k.n : k.m, out = dim == 0 ? k.m : k.n;
  const double scale = LOG2E / eps;
  std::vector<double> M(R);
  for (int64_t r = 0; r < R; ++r) {
    const double *h = H + r * len;
    double mx = -std::numeric_limits<double>::infinity();
    bool nan = false;
    for (int64_t q = 0; q < len; ++q) mx = h[q] > mx ? h[q] : mx, nan |= std::isnan(h[q]);
    if (nan || !std::isfinite(mx)) return false;
    M[r] = mx;
    double *u = w.U.data() + r * len;
    const int64_t lf = len / WD * WD;
    const VD vm = set1(mx), vs = set1(scale);
    for (int64_t q = 0; q < lf; q += WD) store(u + q, vexp2(mul(sub(load(h + q), vm), vs)));
    for (int64_t q = lf; q < len; ++q) u[q] = std::exp((h[q] - mx) / eps);
  }
  product(k, dim, w.U.data(), R, w.O.data(), w.part);
  const double floor = static_cast<double>(len) * DBL_MIN / DBL_EPSILON;
  bool ok = true;
  for (int64_t r = 0; r < R; ++r)
    for (int64_t q = 0; q < out; ++q) {
      const double s = w.O[r * out + q];
      ok &= s >= floor && s <= DBL_MAX;  // NaN fails both
      S[r * out + q] = c0 - (M[r] + eps * std::log(s));
    }
  return ok;
}

}  // namespace monge_barycenter_dense
