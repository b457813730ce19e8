// Fixed-support barycenter iterations (iterative Bregman projections) against a materialised Gibbs kernel
// K = exp(-(C - c0) / eps), several iterations per call (float64, CPU, GIL released). Same state and update as
// monge/solvers/barycenter.py (the K couplings are R rows of one right-hand-side block):
//   f_r <- relaxed(f_r, kappa (eps log a_r + S1_r)),   S0_r = softmin_0(f_r),   log b = bar(S0) (+ h / eps),
//   g_r <- relaxed(g_r, kappa (eps log b + S0_r)),     [h <- (h + eps log b + Sh) / 2, Sh = softmin_0(h)],
//   S1_r = softmin_1(g_r).
// Each soft-min is a shifted product, softmin(h) = c0 - (M + eps log sum K e^{(h - M)/eps}), M = max h, with the
// R (+1) vectors of a half-iteration in one pass over the kernel. A symmetric kernel (C = C^T bitwise) is read
// through its upper triangle only (one pass = n^2 / 2 entries, each used twice: y_i += K_ij u_j, y_j += K_ij u_i).
// A sum below len * tiny / ulp (or not finite) may have lost terms to underflow: the call stops at the last
// certified state and says so (the caller finishes in the log domain).
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/tuple.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <vector>

#include "softmin_common.hpp"

namespace nb = nanobind;

namespace monge_barycenter_dense {

using namespace monge_softmin;
using Vec1 = nb::ndarray<const double, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using Mat = nb::ndarray<const double, nb::ndim<2>, nb::c_contig, nb::device::cpu>;

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

// The kernel, its orientation and its threads. Work buffers: `part` holds one (R x len) partial per thread.
struct Kernel {
  const double *K;
  int64_t n, m;
  bool sym;
  int nt;
  std::vector<int64_t> sym_rows;  // thread t: rows [sym_rows[t], sym_rows[t + 1]) of equal triangle work
  mutable bool rev = false;       // the direction of the next pass (flipped at each pass)
};

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

struct Work {
  std::vector<double> U, O, H, S;
  std::vector<std::vector<double>> part;
};

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

inline double relax1(double old, double nw, double omega) {
  return (omega == 1.0 || !std::isfinite(nw)) ? nw : old + omega * (nw - old);
}

// sum_q |e^{(p_q - s_q)/eps} - t_q|: an l1 marginal residual (t_q: the target).
double l1_residual(const double *p, const double *s, const double *t, int64_t len, double eps) {
  const int64_t lf = len / WD * WD;
  const VD vs = set1(LOG2E / eps), zero = set1(0.0);
  VD acc = zero;
  for (int64_t q = 0; q < lf; q += WD) {
    const VD d = sub(vexp2(mul(sub(load(p + q), load(s + q)), vs)), load(t + q));
    acc = add(acc, maxv(d, sub(zero, d)));
  }
  double r = reduce_add(acc);
  for (int64_t q = lf; q < len; ++q) r += std::fabs(std::exp((p[q] - s[q]) / eps) - t[q]);
  return r;
}

struct State {
  std::vector<double> f, g, h, S1, S0, lb, Sh;
};

struct Problem {
  Kernel k;
  int64_t R, n, m;
  double c0, eps, rho, kappa, omega;
  const double *la, *lam, *a;
  bool debias;
};

// log b from the column soft-mins S0 (R x m) and (debiased) h: -sum_r lam_r S0_r / eps (+ h / eps), or with a
// penalty rho, (t / eps) log sum_r lam_r e^{-S0_r / t}, t = rho + eps.
void log_barycenter(const Problem &P, const double *S0, const double *h, double *lbo) {
  const int64_t R = P.R, m = P.m;
  const double eps = P.eps, t = P.rho + eps;
  for (int64_t j = 0; j < m; ++j) {
    double lb = 0.0;
    if (std::isinf(P.rho)) {
      for (int64_t r = 0; r < R; ++r) lb -= P.lam[r] * S0[r * m + j];
      lb /= eps;
    } else {
      double mx = -std::numeric_limits<double>::infinity();
      for (int64_t r = 0; r < R; ++r) mx = std::max(mx, std::log(P.lam[r]) - S0[r * m + j] / t);
      double z = 0.0;
      for (int64_t r = 0; r < R; ++r) z += std::exp(std::log(P.lam[r]) - S0[r * m + j] / t - mx);
      lb = (t / eps) * (mx + std::log(z));
    }
    lbo[j] = h != nullptr ? lb + h[j] / eps : lb;
  }
}

// One iteration from `s` into `o` (all of o written); false where a soft-min was unreliable.
bool iterate(const Problem &P, const State &s, State &o, double omega, Work &w) {
  const int64_t R = P.R, n = P.n, m = P.m;
  const double eps = P.eps;
  for (int64_t q = 0; q < R * n; ++q) o.f[q] = relax1(s.f[q], P.kappa * (eps * P.la[q] + s.S1[q]), omega);
  if (!softmins(P.k, 0, o.f.data(), R, P.c0, eps, o.S0.data(), w)) return false;
  log_barycenter(P, o.S0.data(), P.debias ? s.h.data() : nullptr, o.lb.data());
  for (int64_t r = 0; r < R; ++r)
    for (int64_t j = 0; j < m; ++j)
      o.g[r * m + j] = relax1(s.g[r * m + j], P.kappa * (eps * o.lb[j] + o.S0[r * m + j]), omega);
  if (!P.debias) return softmins(P.k, 1, o.g.data(), R, P.c0, eps, o.S1.data(), w);
  for (int64_t j = 0; j < m; ++j) o.h[j] = 0.5 * (s.h[j] + eps * o.lb[j] + s.Sh[j]);
  if (!P.k.sym)
    return softmins(P.k, 1, o.g.data(), R, P.c0, eps, o.S1.data(), w) &&
           softmins(P.k, 0, o.h.data(), 1, P.c0, eps, o.Sh.data(), w);
  // symmetric: S1 and Sh in one pass (R + 1 rows)
  std::copy(o.g.begin(), o.g.end(), w.H.begin());
  std::copy(o.h.begin(), o.h.end(), w.H.begin() + R * m);
  if (!softmins(P.k, 1, w.H.data(), R + 1, P.c0, eps, w.S.data(), w)) return false;
  std::copy(w.S.begin(), w.S.begin() + R * n, o.S1.begin());
  std::copy(w.S.begin() + R * n, w.S.begin() + (R + 1) * n, o.Sh.begin());
  return true;
}

// max(a, b), NaN if either is NaN (a NaN residual must reach the caller: status 'diverged').
inline double nan_max(double a, double b) {
  return std::isnan(a) || std::isnan(b) ? std::numeric_limits<double>::quiet_NaN() : std::max(a, b);
}

// The soft-mins and log b of the state (f, g, h) in s: one pass over a symmetric kernel (2R + 1 rows), else two.
bool start_state(const Problem &P, State &s, Work &w) {
  const int64_t R = P.R, n = P.n, m = P.m, nh = P.debias ? 1 : 0;
  bool ok;
  if (P.k.sym) {
    std::copy(s.f.begin(), s.f.end(), w.H.begin());
    std::copy(s.g.begin(), s.g.end(), w.H.begin() + R * n);
    std::copy(s.h.begin(), s.h.end(), w.H.begin() + 2 * R * n);
    ok = softmins(P.k, 0, w.H.data(), 2 * R + nh, P.c0, P.eps, w.S.data(), w);
    std::copy(w.S.begin(), w.S.begin() + R * n, s.S0.begin());
    std::copy(w.S.begin() + R * n, w.S.begin() + 2 * R * n, s.S1.begin());
    std::copy(w.S.begin() + 2 * R * n, w.S.begin() + (2 * R + nh) * n, s.Sh.begin());
  } else {
    std::copy(s.f.begin(), s.f.end(), w.H.begin());
    std::copy(s.h.begin(), s.h.end(), w.H.begin() + R * n);
    ok = softmins(P.k, 0, w.H.data(), R + nh, P.c0, P.eps, w.S.data(), w) &&
         softmins(P.k, 1, s.g.data(), R, P.c0, P.eps, s.S1.data(), w);
    std::copy(w.S.begin(), w.S.begin() + R * m, s.S0.begin());
    std::copy(w.S.begin() + R * m, w.S.begin() + (R + nh) * m, s.Sh.begin());
  }
  if (ok) log_barycenter(P, s.S0.data(), P.debias ? s.h.data() : nullptr, s.lb.data());
  return ok;
}

// The first marginals' residuals max_r sum_i |P_r 1 - ta_r| (ta = a, or a e^{-f/rho} with a penalty).
double rows_residual(const Problem &P, const State &s, std::vector<double> &tmp) {
  double worst = 0.0;
  for (int64_t r = 0; r < P.R; ++r) {
    const double *f = s.f.data() + r * P.n, *a = P.a + r * P.n;
    for (int64_t i = 0; i < P.n; ++i)  // a zero weight has f = -inf: its target is 0, not 0 * inf
      tmp[i] = std::isinf(P.rho) || !(a[i] > 0.0) ? a[i] : a[i] * std::exp(-f[i] / P.rho);
    worst = nan_max(worst, l1_residual(f, s.S1.data() + r * P.n, tmp.data(), P.n, P.eps));
  }
  return worst;
}

// max_r (rows_r + cols_r) (+ the debiasing residual sum_j |d_j (K d)_j - b_j|): the solver's error.
double full_error(const Problem &P, const State &s, std::vector<double> &tmp) {
  double worst = 0.0;
  std::vector<double> b(P.m), tb(P.m);
  for (int64_t j = 0; j < P.m; ++j) b[j] = std::exp(s.lb[j]);
  for (int64_t r = 0; r < P.R; ++r) {
    const double *f = s.f.data() + r * P.n, *a = P.a + r * P.n, *g = s.g.data() + r * P.m;
    for (int64_t i = 0; i < P.n; ++i)  // a zero weight has f = -inf: its target is 0, not 0 * inf
      tmp[i] = std::isinf(P.rho) || !(a[i] > 0.0) ? a[i] : a[i] * std::exp(-f[i] / P.rho);
    for (int64_t j = 0; j < P.m; ++j) tb[j] = std::isinf(P.rho) ? b[j] : std::exp(s.lb[j] - g[j] / P.rho);
    const double e = l1_residual(f, s.S1.data() + r * P.n, tmp.data(), P.n, P.eps) +
                     l1_residual(g, s.S0.data() + r * P.m, tb.data(), P.m, P.eps);
    worst = nan_max(worst, e);
  }
  if (P.debias) worst += l1_residual(s.h.data(), s.Sh.data(), b.data(), P.m, P.eps);
  return worst;
}


// A symmetric kernel, bitwise (blocks of 64 x 64, stops at the first difference).
bool is_symmetric(const double *K, int64_t n) {
  constexpr int64_t B = 64;
  for (int64_t i0 = 0; i0 < n; i0 += B)
    for (int64_t j0 = i0; j0 < n; j0 += B)
      for (int64_t i = i0; i < std::min(n, i0 + B); ++i)
        for (int64_t j = std::max(j0, i + 1); j < std::min(n, j0 + B); ++j)
          if (!(K[i * n + j] == K[j * n + i])) return false;
  return true;
}

bool kernel_symmetric(Mat K) {
  if (K.shape(0) != K.shape(1)) return false;
  nb::gil_scoped_release release;
  return is_symmetric(K.data(), static_cast<int64_t>(K.shape(0)));
}

using Arr1 = monge::NumpyOut<double, 1>;
using Arr2 = monge::NumpyOut<double, 2>;

template <size_t N>
monge::NumpyOut<double, N> to_numpy(const std::vector<double> &v, std::initializer_list<size_t> shape) {
  auto p = monge::zeros<double>(static_cast<int64_t>(v.size()));
  std::copy(v.begin(), v.end(), p.get());
  return monge::owned<double, N>(std::move(p), shape);
}

nb::tuple barycenter_kernel_run(Mat K, double c0, double eps, Mat f0, Mat g0, Mat S10, Vec1 h0, Vec1 Sh0, Mat la,
                                Vec1 lam, Mat a, double rho, double omega, int64_t iters, bool symmetric, bool start,
                                int n_threads) {
  const int64_t n = K.shape(0), m = K.shape(1), R = f0.shape(0);
  const bool debias = h0.shape(0) > 0;
  if ((R < 1 || g0.shape(0) != size_t(R) || S10.shape(0) != size_t(R) || la.shape(0) != size_t(R) ||
          a.shape(0) != size_t(R) || lam.shape(0) != size_t(R) || f0.shape(1) != size_t(n) ||
          S10.shape(1) != size_t(n) || la.shape(1) != size_t(n) || a.shape(1) != size_t(n) ||
          g0.shape(1) != size_t(m)))
    throw nb::value_error("barycenter_kernel_run: f, S1, log a, a must be R x n, g R x m, lam R (K: n x m)");
  if (debias && (n != m || h0.shape(0) != size_t(m) || Sh0.shape(0) != size_t(m)))
    throw nb::value_error("barycenter_kernel_run: h, Sh must have m entries and K must be square (debiased)");
  if (symmetric && n != m) throw nb::value_error("barycenter_kernel_run: symmetric needs a square kernel");
  if (!(eps > 0.0) || !(rho > 0.0)) throw nb::value_error("barycenter_kernel_run: eps and rho must be positive");
  if (debias && !std::isinf(rho)) throw nb::value_error("barycenter_kernel_run: debiased is balanced only");
  const int64_t mx = std::max(n, m), hm = debias ? m : 0;
  State s{std::vector<double>(f0.data(), f0.data() + R * n), std::vector<double>(g0.data(), g0.data() + R * m),
          std::vector<double>(h0.data(), h0.data() + hm), std::vector<double>(S10.data(), S10.data() + R * n),
          std::vector<double>(R * m), std::vector<double>(m), std::vector<double>(Sh0.data(), Sh0.data() + hm)};
  State o = s;
  int64_t done = 0;
  bool complete = true, valid = false;
  double err = std::numeric_limits<double>::quiet_NaN(), rows = err;
  std::vector<double> trace(std::max<int64_t>(iters, 1), err);
  {
    nb::gil_scoped_release release;
    Problem P{make_kernel(K.data(), n, m, symmetric, n_threads), R, n, m, c0, eps, rho,
              std::isinf(rho) ? 1.0 : rho / (rho + eps), omega, la.data(), lam.data(), a.data(), debias};
    Work w;
    const int64_t rows_max = (2 * R + 1) * mx;
    w.U.resize(rows_max), w.O.resize(rows_max), w.H.resize(rows_max), w.S.resize(rows_max);
    w.part.assign(P.k.nt, std::vector<double>(rows_max));
    std::vector<double> tmp(mx);
    complete = !start || start_state(P, s, w);
    valid = start && complete;
    for (; complete && done < iters; ++done) {
      if (!iterate(P, s, o, omega, w)) { complete = false; break; }
      std::swap(s, o);
      trace[done] = rows_residual(P, s, tmp);
    }
    valid |= done > 0;
    if (valid) err = full_error(P, s, tmp), rows = done > 0 ? trace[done - 1] : rows_residual(P, s, tmp);
  }
  if (!valid)
    return nb::make_tuple(nb::none(), nb::none(), nb::none(), nb::none(), nb::none(), nb::none(), nb::none(), done,
                          complete, err, rows, nb::none());
  const size_t R_ = size_t(R), n_ = size_t(n), m_ = size_t(m), h_ = size_t(hm);
  trace.resize(std::max<int64_t>(done, 1));
  return nb::make_tuple(to_numpy<2>(s.f, {R_, n_}), to_numpy<2>(s.g, {R_, m_}), to_numpy<1>(s.h, {h_}),
                        to_numpy<2>(s.S1, {R_, n_}), to_numpy<2>(s.S0, {R_, m_}), to_numpy<1>(s.lb, {m_}),
                        to_numpy<1>(s.Sh, {h_}), done, complete, err, rows, to_numpy<1>(trace, {trace.size()}));
}

}  // namespace monge_barycenter_dense

void register_barycenter_dense(nb::module_ &m) {
  using namespace monge_barycenter_dense;
  m.def("kernel_symmetric", &kernel_symmetric, nb::arg("K").noconvert(),
        "kernel_symmetric(K) -> bool\n\nWhether the float64 C-contiguous square matrix K equals its transpose "
        "bitwise (blocked scan, stops at the first difference; GIL released).");
  m.def("barycenter_kernel_run", &barycenter_kernel_run, nb::arg("K").noconvert(), nb::arg("c0"), nb::arg("eps"),
        nb::arg("f").noconvert(), nb::arg("g").noconvert(), nb::arg("S1").noconvert(), nb::arg("h").noconvert(),
        nb::arg("Sh").noconvert(), nb::arg("la").noconvert(), nb::arg("lam").noconvert(), nb::arg("a").noconvert(),
        nb::arg("rho"), nb::arg("omega"), nb::arg("iters"), nb::arg("symmetric"), nb::arg("start") = false,
        nb::arg("n_threads") = 0,
        "barycenter_kernel_run(K, c0, eps, f, g, S1, h, Sh, la, lam, a, rho, omega, iters, symmetric, start=False,\n"
        "                      n_threads=0)\n"
        "  -> (f, g, h, S1, S0, lb, Sh, iterations, complete, error, rows, rows_trace)\n\n"
        "`iters` fixed-support barycenter iterations (iterative Bregman projections, monge.solvers.barycenter) in\n"
        "one call (float64, CPU, GIL released) with K = exp(-(C - c0)/eps): R couplings (f, S1, la = log a, a:\n"
        "R x n; g: R x m; lam: R weights), rho = inf (balanced) or a KL penalty, h/Sh of m entries (debiased,\n"
        "square K) or empty. symmetric: K = K^T (read through its upper triangle). complete = False: a sum was\n"
        "unreliable at iteration `iterations`; the state returned is the last certified one (all None if none).\n"
        "error: max_r of both marginals' l1 residuals (+ the debiasing residual) at the returned state; rows: the\n"
        "first marginals' residual there, rows_trace: after each iteration. start: first compute S1, S0, lb, Sh\n"
        "of the (f, g, h) given (the S1, Sh given are ignored; iters = 0: just that state and its error).");
}
