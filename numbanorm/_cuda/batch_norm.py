"""BatchNorm CUDA kernels on the channels view ``(1, O, C, I)`` (twin of
``numbanorm/_cpu/batch_norm.py``, same entry points).

Layout: ``x``/``out``/``grad_out``/``grad_x`` are C-contiguous ``(1, O, C, I)`` device arrays
(NCHW: O = N, I = H·W; channels-last: O = N·H·W, I = 1); statistics float64 ``(1, C)``;
running statistics float64 ``(C,)`` device arrays.

``stats``, ``normalize``, ``forward`` and ``backward`` are the grouped-statistics kernels of
:mod:`._channels` with one group per channel (per-block float64 partials over fixed chunks,
summed in chunk order by a second kernel: deterministic, no atomics). This module adds the
running statistics, one thread per channel (grid-stride).
"""
import math

from numba import cuda

from . import _layout
from ._channels import backward, fill, forward, normalize, stats  # noqa: F401  (entry points)


@cuda.jit
def _running_stats(running_mean, running_var, eps, mean, rstd):
    for c in range(cuda.grid(1), running_mean.shape[0], cuda.gridsize(1)):
        mean[0, c] = running_mean[c]
        rstd[0, c] = 1.0 / math.sqrt(running_var[c] + eps)


@cuda.jit
def _update_running(mean, var, corr, factor, running_mean, running_var):
    for c in range(cuda.grid(1), running_mean.shape[0], cuda.gridsize(1)):
        running_mean[c] = (1.0 - factor) * running_mean[c] + factor * mean[0, c]
        running_var[c] = (1.0 - factor) * running_var[c] + factor * (var[0, c] * corr)


@cuda.jit
def _update_running_dev(mean, var, corr, factor, running_mean, running_var):
    """:func:`_update_running` with the factor read from a device array (``momentum=None``
    with a device ``num_batches_tracked``: ``factor[0] = 1 / (count + 1)``)."""
    f = factor[0]
    for c in range(cuda.grid(1), running_mean.shape[0], cuda.gridsize(1)):
        running_mean[c] = (1.0 - f) * running_mean[c] + f * mean[0, c]
        running_var[c] = (1.0 - f) * running_var[c] + f * (var[0, c] * corr)


def running_stats(running_mean, running_var, eps, mean, rstd):
    """Eval-mode statistics: ``mean = running_mean``, ``rstd = 1/sqrt(running_var + eps)`` (1, C)."""
    blocks, tpb = _layout.launch_1d(running_mean.shape[0])
    _running_stats[blocks, tpb, _layout.stream()](running_mean, running_var, float(eps), mean, rstd)


def update_running(mean, var, count, factor, unbiased, running_mean, running_var):
    """running ← (1 − factor)·running + factor·batch per channel, in place (see the CPU twin).

    ``factor``: a float, or a 1-element float64 device array (``_counter.cumulative_factor``)."""
    corr = count / (count - 1.0) if unbiased else 1.0
    blocks, tpb = _layout.launch_1d(running_mean.shape[0])
    if hasattr(factor, "shape"):
        _update_running_dev[blocks, tpb, _layout.stream()](mean, var, float(corr), factor, running_mean, running_var)
        return
    _update_running[blocks, tpb, _layout.stream()](mean, var, float(corr), float(factor), running_mean, running_var)


PTX_SIGNATURES = [
    (_running_stats, "void(float64[::1], float64[::1], float64, float64[:, ::1], float64[:, ::1])"),
    (_update_running, "void(float64[:, ::1], float64[:, ::1], float64, float64, float64[::1], float64[::1])"),
    (_update_running_dev,
     "void(float64[:, ::1], float64[:, ::1], float64, float64[::1], float64[::1], float64[::1])"),
]
