"""InstanceNorm CUDA kernels on the ``(N, O, C, I)`` view (twin of
``numbanorm/_cpu/instance_norm.py``, same entry points).

Layout as :mod:`.group_norm` with one channel per group (statistics float64 ``(N, C)``
device arrays); normalize/backward are the grouped-statistics kernels of :mod:`._channels`.
This module adds the running statistics: their per-sample broadcast (one thread per
``(n, c)``) and PyTorch's update with the batch average of the per-instance statistics (one
thread per channel, summing over the batch in order: deterministic).
"""
import math

from numba import cuda, float64

from . import _layout
from ._channels import backward, fill, forward, normalize, stats  # noqa: F401  (entry points)


@cuda.jit
def _running_stats(running_mean, running_var, eps, mean, rstd):
    nb, nc = mean.shape
    for f in range(cuda.grid(1), nb * nc, cuda.gridsize(1)):
        b = f // nc
        c = f - b * nc
        mean[b, c] = running_mean[c]
        rstd[b, c] = 1.0 / math.sqrt(running_var[c] + eps)


@cuda.jit(device=True, inline="always")
def _update_channels(mean, var, corr, factor, running_mean, running_var):
    nb, nc = mean.shape
    for c in range(cuda.grid(1), nc, cuda.gridsize(1)):
        sm = float64(0.0)
        sv = float64(0.0)
        for b in range(nb):
            sm += mean[b, c]
            sv += var[b, c]
        running_mean[c] = (1.0 - factor) * running_mean[c] + factor * (sm / nb)
        running_var[c] = (1.0 - factor) * running_var[c] + factor * (sv / nb * corr)


@cuda.jit
def _update_running(mean, var, corr, factor, running_mean, running_var):
    _update_channels(mean, var, corr, factor, running_mean, running_var)


@cuda.jit
def _update_running_dev(mean, var, corr, factor, running_mean, running_var):
    """The factor from a device array (``momentum=None`` with a device counter)."""
    _update_channels(mean, var, corr, factor[0], running_mean, running_var)


def running_stats(running_mean, running_var, eps, mean, rstd):
    """``mean[n, c] = running_mean[c]``, ``rstd[n, c] = 1/sqrt(running_var[c] + eps)``."""
    blocks, tpb = _layout.launch_1d(mean.size)
    _running_stats[blocks, tpb, _layout.stream()](running_mean, running_var, float(eps), mean, rstd)


def update_running(mean, var, count, factor, unbiased, running_mean, running_var):
    """running ← (1 − factor)·running + factor·(batch average of the per-instance statistic)."""
    corr = count / (count - 1.0) if unbiased else 1.0
    blocks, tpb = _layout.launch_1d(running_mean.shape[0])
    if hasattr(factor, "shape"):  # a 1-element device array (_counter.cumulative_factor)
        _update_running_dev[blocks, tpb, _layout.stream()](mean, var, float(corr), factor, running_mean,
                                                           running_var)
        return
    _update_running[blocks, tpb, _layout.stream()](mean, var, float(corr), float(factor), running_mean, running_var)


PTX_SIGNATURES = [
    (_running_stats, "void(float64[::1], float64[::1], float64, float64[:, ::1], float64[:, ::1])"),
    (_update_running, "void(float64[:, ::1], float64[:, ::1], float64, float64, float64[::1], float64[::1])"),
    (_update_running_dev,
     "void(float64[:, ::1], float64[:, ::1], float64, float64[::1], float64[::1], float64[::1])"),
]
