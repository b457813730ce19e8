// The materialised Gibbs kernel of the dense fixed-support barycenter (csrc/barycenter_dense.cpp): its
// orientation and threads, and the soft-mins of several right-hand sides in one pass over it
// (csrc/barycenter_dense_kernel.cpp).
#pragma once

#include <cstdint>
#include <vector>

namespace monge_barycenter_dense {

// The kernel, its orientation and its threads. Work buffers: `part` holds one (R x len) partial per thread.
struct Kernel {
  const double *K;
  int64_t n, m;
  bool sym;
  int nt;
  std::vector<int64_t> sym_rows;  // thread t: rows [sym_rows[t], sym_rows[t + 1]) of equal triangle work
  mutable bool rev = false;       // the direction of the next pass (flipped at each pass)
};

Kernel make_kernel(const double *K, int64_t n, int64_t m, bool sym, int n_threads);

struct Work {
  std::vector<double> U, O, H, S;
  std::vector<std::vector<double>> part;
};

// S (R x out) = softmin along `dim` of the R rows of H (R x len): c0 - (M_r + eps log (K-product of
// e^{(H_r - M_r)/eps})). False where a sum is unreliable (S is then partly written; the caller discards it).
bool softmins(const Kernel &k, int dim, const double *H, int64_t R, double c0, double eps, double *S, Work &w);

}  // namespace monge_barycenter_dense
