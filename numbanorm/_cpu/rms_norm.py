"""RMSNorm CPU kernels on the rows view.

Layout: ``x``, ``out``, ``grad_out``, ``grad_x`` are C-contiguous ``(M, N)`` arrays of the
compute dtype; ``weight`` is ``(N,)`` (ones when the caller gave none); ``rstd`` is
``(M,)`` = 1/sqrt(mean(x²) + eps).

Thread mapping: one ``prange`` over rows (forward); over a fixed number of row chunks in
the backward, each owning a float64 partial row of grad_weight summed in chunk order
(deterministic). Serial twins below ``SERIAL_THRESHOLD`` elements.
"""
import numpy as np
from numba import njit, prange

from .. import _config
from .._config import REDUCE_CHUNKS
from ._stats import row_mean_square, sum_chunks


def _forward(x, weight, eps, out, rstd):
    m, n = x.shape
    for i in prange(m):
        rstd[i] = 1.0 / np.sqrt(row_mean_square(x, i) + eps)
        r_t = rstd[i]  # data dtype
        for j in range(n):
            out[i, j] = x[i, j] * r_t * weight[j]


def _stats(x, eps, rstd):
    for i in prange(x.shape[0]):
        rstd[i] = 1.0 / np.sqrt(row_mean_square(x, i) + eps)


def _backward(grad_out, x, weight, rstd, grad_x, part_w):
    """grad_x = rstd * (w·dy − x̂ · mean(w·dy·x̂)), x̂ = x·rstd; partial Σdy·x̂ per chunk."""
    m, n = x.shape
    nchunks = part_w.shape[0]
    for c in prange(nchunks):
        start = c * m // nchunks
        stop = (c + 1) * m // nchunks
        for i in range(start, stop):
            r = np.float64(rstd[i])
            b = np.float64(0.0)
            for j in range(n):
                dy = np.float64(grad_out[i, j])
                xhat = x[i, j] * r
                b += dy * weight[j] * xhat
                part_w[c, j] += dy * xhat
            b /= n
            for j in range(n):
                xhat = x[i, j] * r
                grad_x[i, j] = r * (grad_out[i, j] * weight[j] - xhat * b)


_opts = _config.JIT_OPTIONS
_forward_par = njit(parallel=True, **_opts)(_forward)
_forward_ser = njit(**_opts)(_forward)
_stats_par = njit(parallel=True, **_opts)(_stats)
_stats_ser = njit(**_opts)(_stats)
_backward_par = njit(parallel=True, **_opts)(_backward)
_backward_ser = njit(**_opts)(_backward)


def forward(x, weight, eps, out, rstd):
    """RMS-normalize each row of ``x`` into ``out``; fill ``rstd``."""
    if x.size < _config.SERIAL_THRESHOLD:
        _forward_ser(x, weight, eps, out, rstd)
    else:
        with _config.KERNEL_LOCK:
            _forward_par(x, weight, eps, out, rstd)


def stats(x, eps, rstd):
    """Fill ``rstd = 1/sqrt(mean(x²) + eps)`` of each row of ``x``."""
    if x.size < _config.SERIAL_THRESHOLD:
        _stats_ser(x, eps, rstd)
    else:
        with _config.KERNEL_LOCK:
            _stats_par(x, eps, rstd)


def backward(grad_out, x, weight, rstd, grad_x, grad_weight):
    """Fill ``grad_x`` (M, N) and ``grad_weight`` (N,) from the saved ``rstd``."""
    m, n = x.shape
    nchunks = max(1, min(REDUCE_CHUNKS, m))
    part_w = np.zeros((nchunks, n))
    if x.size < _config.SERIAL_THRESHOLD:
        _backward_ser(grad_out, x, weight, rstd, grad_x, part_w)
    else:
        with _config.KERNEL_LOCK:
            _backward_par(grad_out, x, weight, rstd, grad_x, part_w)
    sum_chunks(part_w, grad_weight)
