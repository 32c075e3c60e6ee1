"""BatchNorm CPU kernels on the channels view ``(1, O, C, I)``.

Layout: ``x``/``out``/``grad_out``/``grad_x`` are C-contiguous ``(1, O, C, I)`` arrays of the
compute dtype (NCHW: O = N, I = H·W; channels-last: O = N·H·W, I = 1); statistics are
float64 ``(1, C)`` arrays; running statistics float64 ``(C,)`` arrays.

BatchNorm is the grouped-statistics core of :mod:`._channels` with B = 1 and one group per
channel: ``stats``, ``normalize``, ``forward`` and ``backward`` are those kernels (their
thread mapping: a fixed grid of chunks of O and I, float64 partial sums per chunk merged in
chunk order; element-wise passes in one ``prange``). This module adds the running
statistics: the eval-mode ``rstd`` and PyTorch's in-place update.
"""
import numpy as np
from numba import njit

from .. import _config
from ._channels import backward, fill, forward, normalize, stats  # noqa: F401  (entry points)


@njit(**_config.JIT_OPTIONS)
def running_stats(running_mean, running_var, eps, mean, rstd):
    """Eval-mode statistics: ``mean = running_mean``, ``rstd = 1/sqrt(running_var + eps)`` (1, C)."""
    for c in range(running_mean.shape[0]):
        mean[0, c] = running_mean[c]
        rstd[0, c] = 1.0 / np.sqrt(running_var[c] + eps)


@njit(**_config.JIT_OPTIONS)
def update_running(mean, var, count, factor, unbiased, running_mean, running_var):
    """running ← (1 − factor)·running + factor·batch, per channel, in place.

    ``mean``/``var`` are the batch mean and biased variance ``(1, C)`` over ``count`` values;
    the running variance takes the unbiased ``var · count/(count − 1)`` when ``unbiased``.
    """
    corr = count / (count - 1.0) if unbiased else 1.0
    for c in range(running_mean.shape[0]):
        running_mean[c] = (1.0 - factor) * running_mean[c] + factor * mean[0, c]
        running_var[c] = (1.0 - factor) * running_var[c] + factor * (var[0, c] * corr)
