"""Applications and inverse problems built on the solvers: flows, generative models, k-means, interpolation,
barycentric coordinates, dictionary learning. Each subpackage is imported on first use."""
