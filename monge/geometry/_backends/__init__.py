"""Backends behind the geometries' ``softmin`` (chosen once, when a geometry is built): the lazy point-cloud
kernels and the dense kernel fast path. Nothing outside :mod:`monge.geometry` imports them."""
