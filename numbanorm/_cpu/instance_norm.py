"""InstanceNorm CPU kernels on the ``(N, O, C, I)`` view.

Layout as :mod:`.group_norm` with one channel per group (statistics float64 ``(N, C)``);
the normalize/backward kernels are the grouped-statistics core of :mod:`._channels`. This
module adds the running statistics: their per-sample broadcast for
``use_input_stats=False`` and PyTorch's update with the batch average of the per-instance
statistics. Small serial loops over ``(N, C)``.
"""
import numpy as np
from numba import njit

from .. import _config
from ._channels import backward, fill, forward, normalize, stats  # noqa: F401  (entry points)


@njit(**_config.JIT_OPTIONS)
def running_stats(running_mean, running_var, eps, mean, rstd):
    """``mean[n, c] = running_mean[c]``, ``rstd[n, c] = 1/sqrt(running_var[c] + eps)``."""
    nb, nc = mean.shape
    for c in range(nc):
        r = 1.0 / np.sqrt(running_var[c] + eps)
        for b in range(nb):
            mean[b, c] = running_mean[c]
            rstd[b, c] = r


@njit(**_config.JIT_OPTIONS)
def update_running(mean, var, count, factor, unbiased, running_mean, running_var):
    """running ← (1 − factor)·running + factor·(batch average of the per-instance statistic).

    ``mean``/``var``: per-instance mean and biased variance ``(N, C)`` over ``count`` values;
    the variance is made unbiased (``count/(count − 1)``) before averaging when ``unbiased``.
    """
    nb, nc = mean.shape
    corr = count / (count - 1.0) if unbiased else 1.0
    for c in range(nc):
        sm = np.float64(0.0)
        sv = np.float64(0.0)
        for b in range(nb):
            sm += mean[b, c]
            sv += var[b, c]
        running_mean[c] = (1.0 - factor) * running_mean[c] + factor * (sm / nb)
        running_var[c] = (1.0 - factor) * running_var[c] + factor * (sv / nb * corr)
