"""Applications and inverse problems built on the solvers: barycentric coordinates, dictionary learning, flows."""
