"""RMSNorm CPU kernels on the rows view.

Layout: ``x``, ``out``, ``grad_out``, ``grad_x`` are C-contiguous ``(M, N)`` arrays of the
compute dtype; ``weight`` is ``(N,)`` (ones when the caller gave none); ``rstd`` is
``(M,)`` = 1/sqrt(mean(x²) + eps).

Thread mapping: one ``prange`` over rows (forward); over a fixed number of row chunks in
the backward, each owning a float64 partial row of grad_weight summed in chunk order
(deterministic). Serial twins below ``SERIAL_THRESHOLD`` elements.
"""
import numpy as np
from numba import prange

from .. import _config
from .._config import REDUCE_CHUNKS
from ._stats import BLOCK, FLUSH, row_mean_square, sum_chunks


def _forward(x, weight, eps, out, rstd):
    m, n = x.shape
    for i in prange(m):
        r = 1.0 / np.sqrt(row_mean_square(x, i) + eps)
        rstd[i] = r
        r_t = x.dtype.type(r)
        for j in range(n):
            out[i, j] = x[i, j] * r_t * weight[j]


def _stats(x, eps, rstd):
    for i in prange(x.shape[0]):
        rstd[i] = 1.0 / np.sqrt(row_mean_square(x, i) + eps)


def _backward(grad_out, x, weight, rstd, grad_x, acc_w, part_w):
    """grad_x = rstd * (w·dy − x̂ · mean(w·dy·x̂)), x̂ = x·rstd; Σdy·x̂ per chunk.

    Per row: a reduction loop (blocked into float64), then an elementwise loop writing
    grad_x and adding dy·x̂ into the chunk's data-dtype row ``acc_w[c]``, flushed into the
    float64 partial row ``part_w[c]`` every ``FLUSH`` rows. Both loops vectorise.
    """
    m, n = x.shape
    nchunks = part_w.shape[0]
    t = x.dtype.type
    for c in prange(nchunks):
        start = c * m // nchunks
        stop = (c + 1) * m // nchunks
        aw = acc_w[c]
        for i in range(start, stop):
            r = rstd[i]
            b = np.float64(0.0)
            for j0 in range(0, n, BLOCK):
                sb = t(0.0)
                for j in range(j0, min(j0 + BLOCK, n)):
                    sb += grad_out[i, j] * weight[j] * (x[i, j] * r)
                b += sb
            b_t = t(b / n)
            for j in range(n):
                dy = grad_out[i, j]
                xhat = x[i, j] * r
                grad_x[i, j] = r * (dy * weight[j] - xhat * b_t)
                aw[j] += dy * xhat
            if (i - start) % FLUSH == FLUSH - 1 or i == stop - 1:
                for j in range(n):
                    part_w[c, j] += aw[j]
                    aw[j] = 0.0


_FORWARD = _config.twins(_forward)
_STATS = _config.twins(_stats)
_BACKWARD = _config.twins(_backward)


def forward(x, weight, eps, out, rstd):
    """RMS-normalize each row of ``x`` into ``out``; fill ``rstd``."""
    _config.launch(_FORWARD, x.size, x, weight, eps, out, rstd)


def stats(x, eps, rstd):
    """Fill ``rstd = 1/sqrt(mean(x²) + eps)`` of each row of ``x``."""
    _config.launch(_STATS, x.size, x, eps, rstd)


def backward(grad_out, x, weight, rstd, grad_x, grad_weight):
    """Fill ``grad_x`` (M, N) and ``grad_weight`` (N,) from the saved ``rstd``."""
    m, n = x.shape
    nchunks = max(1, min(REDUCE_CHUNKS, m))
    part_w = np.zeros((nchunks, n))
    acc_w = np.zeros((nchunks, n), x.dtype)
    args = (grad_out, x, weight, rstd, grad_x, acc_w, part_w)
    _config.launch(_BACKWARD, x.size, *args)
    sum_chunks(part_w, grad_weight)
