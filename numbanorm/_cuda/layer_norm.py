"""LayerNorm CUDA kernels on the rows view (twin of ``numbanorm/_cpu/layer_norm.py``).

Layout: ``x``, ``out``, ``grad_out``, ``grad_x`` are C-contiguous ``(M, N)`` device arrays
of the compute dtype (float32 or float64); ``weight``/``bias`` contiguous ``(N,)``;
``mean``/``rstd`` ``(M,)`` of the compute dtype. Launchers have the CPU entry points'
names and signatures and take Numba device arrays.

Thread mapping (``_layout.launch_rows``):

* short rows (``N <= warp_row_max``, default 1024): one warp per row, ``threads // 32``
  rows per block, grid-stride over row groups; lane ``l`` handles columns ``l, l+32, ...``
  (coalesced), so a row is re-read from L1 by the lanes that loaded it.
* long rows: one block per row, grid-stride over rows; thread ``t`` handles columns
  ``t, t+threads, ...`` (coalesced), the row re-read from L1/L2.

Statistics: float64 per-thread partials, reduced by ``_reduce.warp_sum``/``block_sum``;
two passes (mean, then centered squares), so float32 data with a large offset keeps its
precision. The write pass centres and scales in float64 (``(x - mean) * rstd``, as the CPU
kernel does, so large offsets keep their precision) and applies weight/bias in the data
dtype.

Backward: ``grad_x`` per row (same mapping, two float64 sums per row); ``grad_weight`` /
``grad_bias`` deterministically: ``_partials`` gives each block a column tile and a fixed
chunk of rows and writes float64 partial sums into ``(chunks, N)`` buffers, then
``_reduce.sum_partials`` adds the chunks in order. No atomics: results are bitwise
reproducible for a given shape and launch setting.
"""
import math

from numba import cuda, float64

from . import _layout
from ._reduce import block_sum, block_sum2, warp_sum, warp_sum2, sum_partials


@cuda.jit(device=True, inline="always")
def _warp_row_moments(x, i, active, lane, n):
    """(mean, biased variance) of row ``i`` by one warp, float64, on every lane."""
    s = float64(0.0)
    if active:
        for j in range(lane, n, 32):
            s += x[i, j]
    mu = warp_sum(s) / n
    ss = float64(0.0)
    if active:
        for j in range(lane, n, 32):
            d = x[i, j] - mu
            ss += d * d
    return mu, warp_sum(ss) / n


@cuda.jit(device=True, inline="always")
def _block_row_moments(x, i, t, nt, n):
    """(mean, biased variance) of row ``i`` by the whole block, float64."""
    s = float64(0.0)
    for j in range(t, n, nt):
        s += x[i, j]
    mu = block_sum(s) / n
    ss = float64(0.0)
    for j in range(t, n, nt):
        d = x[i, j] - mu
        ss += d * d
    return mu, block_sum(ss) / n


@cuda.jit
def _forward_warp(x, weight, bias, eps, out, mean, rstd):
    m, n = x.shape
    t = cuda.threadIdx.x
    lane = t & 31
    rpb = cuda.blockDim.x >> 5
    for base in range(cuda.blockIdx.x * rpb, m, cuda.gridDim.x * rpb):
        i = base + (t >> 5)
        active = i < m
        mu, var = _warp_row_moments(x, i, active, lane, n)
        r = float64(1.0) / math.sqrt(var + eps)
        if active:
            if lane == 0:
                mean[i] = mu
                rstd[i] = r
            for j in range(lane, n, 32):
                out[i, j] = out.dtype.type((x[i, j] - mu) * r) * weight[j] + bias[j]


@cuda.jit
def _forward_block(x, weight, bias, eps, out, mean, rstd):
    m, n = x.shape
    t = cuda.threadIdx.x
    nt = cuda.blockDim.x
    for i in range(cuda.blockIdx.x, m, cuda.gridDim.x):
        mu, var = _block_row_moments(x, i, t, nt, n)
        r = float64(1.0) / math.sqrt(var + eps)
        if t == 0:
            mean[i] = mu
            rstd[i] = r
        for j in range(t, n, nt):
            out[i, j] = out.dtype.type((x[i, j] - mu) * r) * weight[j] + bias[j]


@cuda.jit
def _stats_warp(x, eps, mean, rstd):
    m, n = x.shape
    t = cuda.threadIdx.x
    lane = t & 31
    rpb = cuda.blockDim.x >> 5
    for base in range(cuda.blockIdx.x * rpb, m, cuda.gridDim.x * rpb):
        i = base + (t >> 5)
        active = i < m
        mu, var = _warp_row_moments(x, i, active, lane, n)
        if active and lane == 0:
            mean[i] = mu
            rstd[i] = float64(1.0) / math.sqrt(var + eps)


@cuda.jit
def _stats_block(x, eps, mean, rstd):
    m, n = x.shape
    t = cuda.threadIdx.x
    nt = cuda.blockDim.x
    for i in range(cuda.blockIdx.x, m, cuda.gridDim.x):
        mu, var = _block_row_moments(x, i, t, nt, n)
        if t == 0:
            mean[i] = mu
            rstd[i] = float64(1.0) / math.sqrt(var + eps)


@cuda.jit
def _grad_x_warp(grad_out, x, weight, mean, rstd, grad_x):
    """grad_x = rstd * (w·dy − mean(w·dy) − x̂ · mean(w·dy·x̂)), one warp per row."""
    m, n = x.shape
    t = cuda.threadIdx.x
    lane = t & 31
    rpb = cuda.blockDim.x >> 5
    for base in range(cuda.blockIdx.x * rpb, m, cuda.gridDim.x * rpb):
        i = base + (t >> 5)
        active = i < m
        a = float64(0.0)
        b = float64(0.0)
        mu = float64(0.0)
        r = float64(0.0)
        if active:
            mu = float64(mean[i])
            r = float64(rstd[i])
            for j in range(lane, n, 32):
                wdy = float64(grad_out[i, j]) * weight[j]
                a += wdy
                b += wdy * ((x[i, j] - mu) * r)
        a, b = warp_sum2(a, b)
        a /= n
        b /= n
        if active:
            for j in range(lane, n, 32):
                xhat = (x[i, j] - mu) * r
                grad_x[i, j] = r * (grad_out[i, j] * weight[j] - a - xhat * b)


@cuda.jit
def _grad_x_block(grad_out, x, weight, mean, rstd, grad_x):
    """grad_x as in ``_grad_x_warp``, one block per row."""
    m, n = x.shape
    t = cuda.threadIdx.x
    nt = cuda.blockDim.x
    for i in range(cuda.blockIdx.x, m, cuda.gridDim.x):
        mu = float64(mean[i])
        r = float64(rstd[i])
        a = float64(0.0)
        b = float64(0.0)
        for j in range(t, n, nt):
            wdy = float64(grad_out[i, j]) * weight[j]
            a += wdy
            b += wdy * ((x[i, j] - mu) * r)
        a, b = block_sum2(a, b)
        a /= n
        b /= n
        for j in range(t, n, nt):
            xhat = (x[i, j] - mu) * r
            grad_x[i, j] = r * (grad_out[i, j] * weight[j] - a - xhat * b)


@cuda.jit
def _partials(grad_out, x, mean, rstd, part_w, part_b):
    """part_w[c, j] = Σ_{i in chunk c} dy·x̂, part_b[c, j] = Σ dy (float64, row order)."""
    m, n = x.shape
    nchunks = part_w.shape[0]
    for c in range(cuda.blockIdx.y, nchunks, cuda.gridDim.y):
        start = c * m // nchunks
        stop = (c + 1) * m // nchunks
        for j in range(cuda.grid(1), n, cuda.gridsize(1)):
            sw = float64(0.0)
            sb = float64(0.0)
            for i in range(start, stop):
                dy = float64(grad_out[i, j])
                sw += dy * ((x[i, j] - float64(mean[i])) * float64(rstd[i]))
                sb += dy
            part_w[c, j] = sw
            part_b[c, j] = sb


def forward(x, weight, bias, eps, out, mean, rstd):
    """Normalize each row of ``x`` into ``out``; fill ``mean`` and ``rstd``."""
    m, n = x.shape
    if m == 0 or n == 0:
        return
    warp, blocks, threads = _layout.launch_rows(m, n)
    k = _forward_warp if warp else _forward_block
    k[blocks, threads](x, weight, bias, float(eps), out, mean, rstd)


def stats(x, eps, mean, rstd):
    """Fill ``mean`` and ``rstd = 1/sqrt(var + eps)`` of each row of ``x``."""
    m, n = x.shape
    if m == 0 or n == 0:
        return
    warp, blocks, threads = _layout.launch_rows(m, n)
    k = _stats_warp if warp else _stats_block
    k[blocks, threads](x, float(eps), mean, rstd)


def backward(grad_out, x, weight, mean, rstd, grad_x, grad_weight, grad_bias):
    """Fill ``grad_x`` (M, N), ``grad_weight`` and ``grad_bias`` (N,) from saved stats."""
    m, n = x.shape
    if m == 0 or n == 0:
        return
    warp, blocks, threads = _layout.launch_rows(m, n)
    k = _grad_x_warp if warp else _grad_x_block
    k[blocks, threads](grad_out, x, weight, mean, rstd, grad_x)
    grid, threads, chunks = _layout.launch_partials(m, n)
    part_w = _layout.empty((chunks, n), "float64")
    part_b = _layout.empty((chunks, n), "float64")
    _partials[grid, threads](grad_out, x, mean, rstd, part_w, part_b)
    sum_partials(part_w, grad_weight)
    sum_partials(part_b, grad_bias)


def _signatures():
    sigs = []
    for t in ("float32", "float64"):
        m2 = f"{t}[:, ::1]"
        v = f"{t}[::1]"
        fwd = f"void({m2}, {v}, {v}, float64, {m2}, {v}, {v})"
        st = f"void({m2}, float64, {v}, {v})"
        gx = f"void({m2}, {m2}, {v}, {v}, {v}, {m2})"
        pt = f"void({m2}, {m2}, {v}, {v}, float64[:, ::1], float64[:, ::1])"
        sigs += [
            (_forward_warp, fwd), (_forward_block, fwd),
            (_stats_warp, st), (_stats_block, st),
            (_grad_x_warp, gx), (_grad_x_block, gx),
            (_partials, pt),
        ]
    return sigs


PTX_SIGNATURES = _signatures()
