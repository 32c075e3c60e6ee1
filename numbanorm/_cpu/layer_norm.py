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
from numba import prange

from .. import _config
from .._config import REDUCE_CHUNKS
from ._stats import BLOCK, FLUSH, row_mean_var, sum_chunks


def _forward(x, weight, bias, eps, out, mean, rstd):
    m, n = x.shape
    for i in prange(m):
        mu, var, mu_t = row_mean_var(x, i)
        r = 1.0 / np.sqrt(var + eps)
        mean[i] = mu
        rstd[i] = r
        r_t = x.dtype.type(r)
        for j in range(n):
            out[i, j] = (x[i, j] - mu_t) * r_t * weight[j] + bias[j]


def _stats(x, eps, mean, rstd):
    m = x.shape[0]
    for i in prange(m):
        mu, var, _ = row_mean_var(x, i)
        mean[i] = mu
        rstd[i] = 1.0 / np.sqrt(var + eps)


def _backward(grad_out, x, weight, mean, rstd, grad_x, acc_w, acc_b, part_w, part_b):
    """grad_x = rstd * (w·dy − mean(w·dy) − x̂ · mean(w·dy·x̂)); Σdy·x̂ and Σdy per chunk.

    Per row: one reduction loop (the two row sums, blocked into float64), then one
    elementwise loop writing grad_x and adding dy·x̂ and dy into the chunk's data-dtype
    accumulator rows ``acc_w[c]``/``acc_b[c]``, which are flushed into the float64
    partial rows ``part_w[c]``/``part_b[c]`` every ``FLUSH`` rows. Both loops vectorise.
    """
    m, n = x.shape
    nchunks = part_w.shape[0]
    t = x.dtype.type
    for c in prange(nchunks):
        start = c * m // nchunks
        stop = (c + 1) * m // nchunks
        aw = acc_w[c]
        ab = acc_b[c]
        for i in range(start, stop):
            mu = mean[i]
            r = rstd[i]
            a = np.float64(0.0)
            b = np.float64(0.0)
            for j0 in range(0, n, BLOCK):
                sa = t(0.0)
                sb = t(0.0)
                for j in range(j0, min(j0 + BLOCK, n)):
                    wdy = grad_out[i, j] * weight[j]
                    sa += wdy
                    sb += wdy * ((x[i, j] - mu) * r)
                a += sa
                b += sb
            a_t = t(a / n)
            b_t = t(b / n)
            for j in range(n):
                dy = grad_out[i, j]
                xhat = (x[i, j] - mu) * r
                grad_x[i, j] = r * (dy * weight[j] - a_t - xhat * b_t)
                aw[j] += dy * xhat
                ab[j] += dy
            if (i - start) % FLUSH == FLUSH - 1 or i == stop - 1:
                for j in range(n):
                    part_w[c, j] += aw[j]
                    part_b[c, j] += ab[j]
                    aw[j] = 0.0
                    ab[j] = 0.0


_FORWARD = _config.twins(_forward)
_STATS = _config.twins(_stats)
_BACKWARD = _config.twins(_backward)


def forward(x, weight, bias, eps, out, mean, rstd):
    """Normalize each row of ``x`` into ``out``; fill ``mean`` and ``rstd``."""
    _config.launch(_FORWARD, x.size, x, weight, bias, eps, out, mean, rstd)


def stats(x, eps, mean, rstd):
    """Fill ``mean`` and ``rstd = 1/sqrt(var + eps)`` of each row of ``x``."""
    _config.launch(_STATS, x.size, x, eps, mean, rstd)


def backward(grad_out, x, weight, mean, rstd, grad_x, grad_weight, grad_bias):
    """Fill ``grad_x`` (M, N), ``grad_weight`` and ``grad_bias`` (N,) from saved stats."""
    m, n = x.shape
    nchunks = max(1, min(REDUCE_CHUNKS, m))
    part_w = np.zeros((nchunks, n))
    part_b = np.zeros((nchunks, n))
    acc_w = np.zeros((nchunks, n), x.dtype)
    acc_b = np.zeros((nchunks, n), x.dtype)
    args = (grad_out, x, weight, mean, rstd, grad_x, acc_w, acc_b, part_w, part_b)
    _config.launch(_BACKWARD, x.size, *args)
    sum_chunks(part_w, grad_weight)
    sum_chunks(part_b, grad_bias)
