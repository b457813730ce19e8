// The state and one iteration of the dense fixed-support barycenter (csrc/barycenter_dense.cpp), with the
// residuals that certify it (csrc/barycenter_dense_iter.cpp).
#pragma once

#include <cstdint>
#include <vector>

#include "barycenter_dense_kernel.hpp"

namespace monge_barycenter_dense {

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

// One iteration from `s` into `o` (all of o written); false where a soft-min was unreliable.
bool iterate(const Problem &P, const State &s, State &o, double omega, Work &w);

// The soft-mins and log b of the state (f, g, h) in s: one pass over a symmetric kernel (2R + 1 rows), else two.
bool start_state(const Problem &P, State &s, Work &w);

// The first marginals' residuals max_r sum_i |P_r 1 - ta_r| (ta = a, or a e^{-f/rho} with a penalty).
double rows_residual(const Problem &P, const State &s, std::vector<double> &tmp);

// max_r (rows_r + cols_r) (+ the debiasing residual sum_j |d_j (K d)_j - b_j|): the solver's error.
double full_error(const Problem &P, const State &s, std::vector<double> &tmp);

}  // namespace monge_barycenter_dense
