"""LayerNorm CPU kernels on the rows view.

Layout: ``x``, ``out``, ``grad_out``, ``grad_x`` are C-contiguous ``(M, N)`` arrays of the
compute dtype (float32 or float64): M rows = the leading dims, N = prod(normalized_shape).
``weight``/``bias`` are contiguous ``(N,)`` arrays (ones/zeros when the caller gave none);
``mean``/``rstd`` are ``(M,)`` arrays of the compute dtype.

Thread mapping: one ``prange`` over rows (forward) or over a fixed number of row chunks
(backward, each chunk owning a float64 partial row of grad_weight/grad_bias that is summed
in chunk order afterwards: deterministic, no atomics). Each kernel has a serial twin,
used below ``SERIAL_THRESHOLD`` elements where a parallel launch costs more than it saves.
"""
import numpy as np
from numba import njit, prange

from .. import _config
from .._config import REDUCE_CHUNKS
from ._stats import row_mean_var, sum_chunks


def _forward(x, weight, bias, eps, out, mean, rstd):
    m, n = x.shape
    for i in prange(m):
        mu, var = row_mean_var(x, i)
        r = 1.0 / np.sqrt(var + eps)
        mean[i] = mu
        rstd[i] = r
        # x - mean in float64: float32 data with a large offset keeps its few significant bits
        for j in range(n):
            out[i, j] = (x[i, j] - mu) * r * weight[j] + bias[j]


def _stats(x, eps, mean, rstd):
    m = x.shape[0]
    for i in prange(m):
        mu, var = row_mean_var(x, i)
        mean[i] = mu
        rstd[i] = 1.0 / np.sqrt(var + eps)


def _backward(grad_out, x, weight, mean, rstd, grad_x, part_w, part_b):
    """grad_x = rstd * (w·dy − mean(w·dy) − x̂ · mean(w·dy·x̂)); partial Σdy·x̂, Σdy per chunk."""
    m, n = x.shape
    nchunks = part_w.shape[0]
    for c in prange(nchunks):
        start = c * m // nchunks
        stop = (c + 1) * m // nchunks
        for i in range(start, stop):
            mu = np.float64(mean[i])
            r = np.float64(rstd[i])
            a = np.float64(0.0)
            b = np.float64(0.0)
            for j in range(n):
                dy = np.float64(grad_out[i, j])
                xhat = (x[i, j] - mu) * r
                wdy = dy * weight[j]
                a += wdy
                b += wdy * xhat
                part_w[c, j] += dy * xhat
                part_b[c, j] += dy
            a /= n
            b /= n
            for j in range(n):
                xhat = (x[i, j] - mu) * r
                grad_x[i, j] = r * (grad_out[i, j] * weight[j] - a - xhat * b)


_opts = _config.JIT_OPTIONS
_forward_par = njit(parallel=True, **_opts)(_forward)
_forward_ser = njit(**_opts)(_forward)
_stats_par = njit(parallel=True, **_opts)(_stats)
_stats_ser = njit(**_opts)(_stats)
_backward_par = njit(parallel=True, **_opts)(_backward)
_backward_ser = njit(**_opts)(_backward)


def forward(x, weight, bias, eps, out, mean, rstd):
    """Normalize each row of ``x`` into ``out``; fill ``mean`` and ``rstd``."""
    if x.size < _config.SERIAL_THRESHOLD:
        _forward_ser(x, weight, bias, eps, out, mean, rstd)
    else:
        with _config.KERNEL_LOCK:
            _forward_par(x, weight, bias, eps, out, mean, rstd)


def stats(x, eps, mean, rstd):
    """Fill ``mean`` and ``rstd = 1/sqrt(var + eps)`` of each row of ``x``."""
    if x.size < _config.SERIAL_THRESHOLD:
        _stats_ser(x, eps, mean, rstd)
    else:
        with _config.KERNEL_LOCK:
            _stats_par(x, eps, mean, rstd)


def backward(grad_out, x, weight, mean, rstd, grad_x, grad_weight, grad_bias):
    """Fill ``grad_x`` (M, N), ``grad_weight`` and ``grad_bias`` (N,) from saved stats."""
    m, n = x.shape
    nchunks = max(1, min(REDUCE_CHUNKS, m))
    part_w = np.zeros((nchunks, n))
    part_b = np.zeros((nchunks, n))
    if x.size < _config.SERIAL_THRESHOLD:
        _backward_ser(grad_out, x, weight, mean, rstd, grad_x, part_w, part_b)
    else:
        with _config.KERNEL_LOCK:
            _backward_par(grad_out, x, weight, mean, rstd, grad_x, part_w, part_b)
    sum_chunks(part_w, grad_weight)
    sum_chunks(part_b, grad_bias)
