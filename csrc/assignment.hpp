// Dense linear assignment (Monge matching) solver: the C++ core behind `monge._core.assignment`.
#pragma once

#include <cstdint>

namespace monge {

// Solves min_{cols} sum_i C[i, cols[i]] over injective maps rows -> columns, for a dense row-major
// float64 matrix C of shape (n, m) with n <= m and finite entries.
//
// Outputs (caller-allocated): cols (n), u (n), v (m) and *cost. The duals certify optimality:
//   u[i] + v[j] <= C[i, j] for all i, j (up to floating-point rounding), with equality on matched pairs;
//   for n < m additionally v[j] <= 0 for all j and v[j] == 0 on unmatched columns, i.e. (u, v) is an
//   optimal solution of the LP dual  max sum(u) + sum(v)  s.t.  u_i + v_j <= C_ij,  v_j <= 0
//   (the dual of the rectangular problem whose column constraints are sum_i x_ij <= 1).
//   For n == m the sign of v is unconstrained (column constraints are equalities).
// So sum(u) + sum(v) == cost up to rounding.
//
// Throws std::invalid_argument if n > m or C contains a non-finite entry. Pure function: no global
// state, safe to call concurrently from several threads.
void solve_assignment(const double *C, int64_t n, int64_t m, int64_t *cols, double *u, double *v,
                      double *cost);

}  // namespace monge
