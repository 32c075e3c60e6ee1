"""Row statistics and deterministic column sums shared by the CPU kernels.

Layout: ``x`` is a C-contiguous ``(M, N)`` array ("rows" view, DESIGN.md); statistics
are per row.

Precision: element arithmetic runs in the data dtype (float32 vectorises twice as wide as
float64), but every sum is taken over blocks of :data:`BLOCK` elements whose totals are
added in float64, and the data are shifted first so the block sums never see a large
common offset:

* mean: Σ (x − x₀) with x₀ the row's first element (exact differences for offset data);
* variance: Σ (x − m)² about m = the mean rounded to the data dtype, corrected exactly in
  float64 by Σ(x − μ)² = Σ(x − m)² − n (μ − m)².

So float32 rows around 1e4 with unit spread get statistics accurate to float32 precision
of the spread, not of the offset. NaN/inf anywhere in a row make its statistics NaN.
"""
import numpy as np
from numba import njit

from .._config import JIT_OPTIONS

#: elements summed in the data dtype before the block total is added in float64
BLOCK = 1024

#: rows accumulated in a data-dtype partial row before it is flushed into float64
FLUSH = 64


@njit(inline="always", **JIT_OPTIONS)
def row_sum_shifted(x, i, shift):
    """Σ_j (x[i, j] − shift) as float64 (blocked, element math in the data dtype)."""
    n = x.shape[1]
    zero = x.dtype.type(0.0)
    tot = np.float64(0.0)
    for j0 in range(0, n, BLOCK):
        s = zero
        for j in range(j0, min(j0 + BLOCK, n)):
            s += x[i, j] - shift
        tot += s
    return tot


@njit(inline="always", **JIT_OPTIONS)
def row_sum_sq_dev(x, i, center):
    """Σ_j (x[i, j] − center)² as float64 (blocked, element math in the data dtype)."""
    n = x.shape[1]
    zero = x.dtype.type(0.0)
    tot = np.float64(0.0)
    for j0 in range(0, n, BLOCK):
        s = zero
        for j in range(j0, min(j0 + BLOCK, n)):
            d = x[i, j] - center
            s += d * d
        tot += s
    return tot


@njit(inline="always", **JIT_OPTIONS)
def row_mean_var(x, i):
    """(mean, biased variance) of row ``i`` as float64, and the mean in the data dtype."""
    n = x.shape[1]
    x0 = x[i, 0]
    mu = x0 + row_sum_shifted(x, i, x0) / n
    mu_t = x.dtype.type(mu)
    dm = mu - mu_t
    var = row_sum_sq_dev(x, i, mu_t) / n - dm * dm
    return mu, max(var, 0.0) if var == var else var, mu_t


@njit(inline="always", **JIT_OPTIONS)
def row_mean_square(x, i):
    """Mean of the squares of row ``i`` of ``x``, as float64."""
    return row_sum_sq_dev(x, i, x.dtype.type(0.0)) / x.shape[1]


@njit(**JIT_OPTIONS)
def sum_chunks(part, out):
    """out[j] = Σ_c part[c, j], summed in chunk order (deterministic)."""
    nchunks, n = part.shape
    for j in range(n):
        s = np.float64(0.0)
        for c in range(nchunks):
            s += part[c, j]
        out[j] = s
