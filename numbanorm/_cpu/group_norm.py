"""GroupNorm CPU kernels on the ``(N, O, C, I)`` view.

Layout: ``x``/``out``/``grad_out``/``grad_x`` are C-contiguous ``(N, O, C, I)`` arrays of the
compute dtype: channels-first inputs are ``(N, 1, C, spatial)`` (the rows ``(N·G,
C/G·spatial)``), channels-last inputs ``(N, spatial, C, 1)`` (the strided per-(n, group)
pattern, read in place). Statistics are float64 ``(N, G)`` arrays.

The kernels are the grouped-statistics core of :mod:`._channels` (thread mapping: a fixed
grid of (n, chunk) work items with float64 partial sums merged in item order; element-wise
passes over chunks of rows; both run on the :mod:`._threads` pool).
"""
from ._channels import backward, fill, forward, normalize, stats  # noqa: F401  (entry points)
from ._channels import flat_rows_forward_serial, rows_forward_serial, small_rows  # noqa: F401  (small plain calls)
