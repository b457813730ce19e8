// The compiled core of monge's exact solvers. Each solver registers its own bindings.
#include <nanobind/nanobind.h>

namespace nb = nanobind;

void register_network_simplex(nb::module_ &m);
void register_assignment(nb::module_ &m);

NB_MODULE(_core, m) {
  m.doc() = "monge's compiled exact OT solvers (float64, CPU, GIL released)";
  register_network_simplex(m);
  register_assignment(m);
}
