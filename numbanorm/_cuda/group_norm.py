"""GroupNorm CUDA kernels on the ``(N, O, C, I)`` view (twin of
``numbanorm/_cpu/group_norm.py``, same entry points).

Layout: C-contiguous ``(N, O, C, I)`` device arrays (channels-first ``(N, 1, C, spatial)``,
channels-last ``(N, spatial, C, 1)`` read in place); statistics float64 ``(N, G)``.
The kernels are the grouped-statistics core of :mod:`._channels` (listed in its
``PTX_SIGNATURES``): per-(n, channel, chunk) block partials summed in chunk order by a
per-(n, group) kernel, element-wise passes grid-stride.
"""
from ._channels import backward, fill, forward, normalize, stats  # noqa: F401  (entry points)

#: GroupNorm defines no kernels of its own (see ``_channels.PTX_SIGNATURES``).
PTX_SIGNATURES = []
