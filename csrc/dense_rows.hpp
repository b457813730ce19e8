// Row sweeps of a dense row-major kernel K (n x m), shared by the compiled Sinkhorn loops:
// axpy_rows: acc_j += sum_i K_ij u_i over rows [i0, i1); dot_rows: out_i = sum_j K_ij v_j over rows [i0, i1).
#pragma once

#include <cstdint>

#include "simd.hpp"

namespace monge {
namespace dense {

using namespace monge::simd;

// out_j = sum_i K_ij u_i for rows [i0, i1) (four rows per sweep of acc, vectorised across j).
inline void axpy_rows(const double *K, const double *u, int64_t m, int64_t i0, int64_t i1, double *acc) {
  int64_t i = i0;
  for (; i + 4 <= i1; i += 4) {
    const double *k0 = K + i * m, *k1 = k0 + m, *k2 = k1 + m, *k3 = k2 + m;
    const double u0 = u[i], u1 = u[i + 1], u2 = u[i + 2], u3 = u[i + 3];
#pragma GCC ivdep
    for (int64_t j = 0; j < m; ++j) acc[j] += (k0[j] * u0 + k1[j] * u1) + (k2[j] * u2 + k3[j] * u3);
  }
  for (; i < i1; ++i) {
    const double *k0 = K + i * m, u0 = u[i];
#pragma GCC ivdep
    for (int64_t j = 0; j < m; ++j) acc[j] += k0[j] * u0;
  }
}

// out_i = sum_j K_ij v_j for rows [i0, i1).
inline void dot_rows(const double *K, const double *v, int64_t m, int64_t i0, int64_t i1, double *out) {
  using V = VD;
  constexpr int W = WD;
  const int64_t mf = m / (4 * W) * (4 * W);
  for (int64_t i = i0; i < i1; ++i) {
    const double *k = K + i * m;
    V a0 = set1(0.0), a1 = set1(0.0), a2 = set1(0.0), a3 = set1(0.0);
    for (int64_t j = 0; j < mf; j += 4 * W) {
      a0 = fmadd(load(k + j), load(v + j), a0);
      a1 = fmadd(load(k + j + W), load(v + j + W), a1);
      a2 = fmadd(load(k + j + 2 * W), load(v + j + 2 * W), a2);
      a3 = fmadd(load(k + j + 3 * W), load(v + j + 3 * W), a3);
    }
    double s = reduce_add(add(add(a0, a1), add(a2, a3)));
    for (int64_t j = mf; j < m; ++j) s += k[j] * v[j];
    out[i] = s;
  }
}

}  // namespace dense
}  // namespace monge
