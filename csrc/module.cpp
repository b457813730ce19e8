// The compiled core of monge's exact solvers. Each solver registers its own bindings.
#include <nanobind/nanobind.h>

namespace nb = nanobind;

void register_network_simplex(nb::module_ &m);
void register_assignment(nb::module_ &m);
void register_softmin_lazy(nb::module_ &m);
void register_softmin_dense(nb::module_ &m);
void register_softmin_blocks(nb::module_ &m);
void register_softmin_blocks_select(nb::module_ &m);
void register_min_cost_flow(nb::module_ &m);
void register_reduced_costs(nb::module_ &m);
void register_sinkhorn_small(nb::module_ &m);

NB_MODULE(_core, m) {
  m.doc() = "monge's compiled core: exact OT solvers and the CPU soft-min kernels (GIL released)";
  register_network_simplex(m);
  register_assignment(m);
  register_softmin_lazy(m);
  register_softmin_dense(m);
  register_softmin_blocks(m);
  register_softmin_blocks_select(m);
  register_min_cost_flow(m);
  register_reduced_costs(m);
  register_sinkhorn_small(m);
}
