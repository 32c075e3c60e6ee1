"""Row statistics and deterministic column sums shared by the CPU kernels.

Layout: ``x`` is a C-contiguous ``(M, N)`` array ("rows" view, DESIGN.md); statistics
are per row. Accumulators are float64 whatever the data dtype, and the variance is the
two-pass form Σ(x − mean)² / N over a row that is still in cache, so float32 data with a
large common offset keeps its precision.
"""
import numpy as np
from numba import njit

from .._config import JIT_OPTIONS


@njit(inline="always", **JIT_OPTIONS)
def row_mean_var(x, i):
    """(mean, biased variance) of row ``i`` of ``x``, as float64."""
    n = x.shape[1]
    s = np.float64(0.0)
    for j in range(n):
        s += x[i, j]
    mu = s / n
    ss = np.float64(0.0)
    for j in range(n):
        d = x[i, j] - mu
        ss += d * d
    return mu, ss / n


@njit(inline="always", **JIT_OPTIONS)
def row_mean_square(x, i):
    """Mean of the squares of row ``i`` of ``x``, as float64."""
    n = x.shape[1]
    ss = np.float64(0.0)
    for j in range(n):
        v = np.float64(x[i, j])
        ss += v * v
    return ss / n



@njit(**JIT_OPTIONS)
def sum_chunks(part, out):
    """out[j] = Σ_c part[c, j], summed in chunk order (deterministic)."""
    nchunks, n = part.shape
    for j in range(n):
        s = np.float64(0.0)
        for c in range(nchunks):
            s += part[c, j]
        out[j] = s
