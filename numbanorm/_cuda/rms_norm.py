"""RMSNorm CUDA kernels on the rows view (twin of ``numbanorm/_cpu/rms_norm.py``).

Layout: ``x``, ``out``, ``grad_out``, ``grad_x`` are C-contiguous ``(M, N)`` device arrays
of the compute dtype; ``weight`` is ``(N,)`` (ones when the caller gave none); ``rstd`` is
``(M,)`` = 1/sqrt(mean(x²) + eps). Launchers have the CPU entry points' names and
signatures.

Thread mapping as in ``layer_norm.py`` (``_layout.launch_rows``): one warp per row for
short rows (lane ``l`` takes columns ``l, l+32, ...``), one block per row for long rows;
grid-stride loops; float64 sums of squares reduced with ``_reduce.warp_sum`` /
``block_sum``. Backward: ``grad_x`` per row, ``grad_weight`` from per-block float64
partials ``(chunks, N)`` summed in chunk order by ``_reduce.sum_partials``
(deterministic, no atomics).
"""
import math

from numba import cuda, float64

from . import _layout
from ._reduce import block_sum, sum_partials, warp_sum


@cuda.jit
def _forward_warp(x, weight, eps, out, rstd):
    m, n = x.shape
    t = cuda.threadIdx.x
    lane = t & 31
    rpb = cuda.blockDim.x >> 5
    for base in range(cuda.blockIdx.x * rpb, m, cuda.gridDim.x * rpb):
        i = base + (t >> 5)
        active = i < m
        ss = float64(0.0)
        if active:
            for j in range(lane, n, 32):
                v = float64(x[i, j])
                ss += v * v
        r = float64(1.0) / math.sqrt(warp_sum(ss) / n + eps)
        if active:
            if lane == 0:
                rstd[i] = r
            r_t = out.dtype.type(r)  # the write pass runs in the data dtype
            for j in range(lane, n, 32):
                out[i, j] = x[i, j] * r_t * weight[j]


@cuda.jit
def _forward_block(x, weight, eps, out, rstd):
    m, n = x.shape
    t = cuda.threadIdx.x
    nt = cuda.blockDim.x
    for i in range(cuda.blockIdx.x, m, cuda.gridDim.x):
        ss = float64(0.0)
        for j in range(t, n, nt):
            v = float64(x[i, j])
            ss += v * v
        r = float64(1.0) / math.sqrt(block_sum(ss) / n + eps)
        if t == 0:
            rstd[i] = r
        r_t = out.dtype.type(r)
        for j in range(t, n, nt):
            out[i, j] = x[i, j] * r_t * weight[j]


@cuda.jit
def _stats_warp(x, eps, rstd):
    m, n = x.shape
    t = cuda.threadIdx.x
    lane = t & 31
    rpb = cuda.blockDim.x >> 5
    for base in range(cuda.blockIdx.x * rpb, m, cuda.gridDim.x * rpb):
        i = base + (t >> 5)
        active = i < m
        ss = float64(0.0)
        if active:
            for j in range(lane, n, 32):
                v = float64(x[i, j])
                ss += v * v
        ss = warp_sum(ss)
        if active and lane == 0:
            rstd[i] = float64(1.0) / math.sqrt(ss / n + eps)


@cuda.jit
def _stats_block(x, eps, rstd):
    m, n = x.shape
    t = cuda.threadIdx.x
    nt = cuda.blockDim.x
    for i in range(cuda.blockIdx.x, m, cuda.gridDim.x):
        ss = float64(0.0)
        for j in range(t, n, nt):
            v = float64(x[i, j])
            ss += v * v
        ss = block_sum(ss)
        if t == 0:
            rstd[i] = float64(1.0) / math.sqrt(ss / n + eps)


@cuda.jit
def _grad_x_warp(grad_out, x, weight, rstd, grad_x):
    """grad_x = rstd * (w·dy − x̂ · mean(w·dy·x̂)), x̂ = x·rstd; one warp per row."""
    m, n = x.shape
    t = cuda.threadIdx.x
    lane = t & 31
    rpb = cuda.blockDim.x >> 5
    for base in range(cuda.blockIdx.x * rpb, m, cuda.gridDim.x * rpb):
        i = base + (t >> 5)
        active = i < m
        b = float64(0.0)
        r = float64(0.0)
        if active:
            r = float64(rstd[i])
            for j in range(lane, n, 32):
                b += float64(grad_out[i, j]) * weight[j] * (x[i, j] * r)
        b = warp_sum(b) / n
        if active:
            for j in range(lane, n, 32):
                grad_x[i, j] = r * (grad_out[i, j] * weight[j] - (x[i, j] * r) * b)


@cuda.jit
def _grad_x_block(grad_out, x, weight, rstd, grad_x):
    m, n = x.shape
    t = cuda.threadIdx.x
    nt = cuda.blockDim.x
    for i in range(cuda.blockIdx.x, m, cuda.gridDim.x):
        r = float64(rstd[i])
        b = float64(0.0)
        for j in range(t, n, nt):
            b += float64(grad_out[i, j]) * weight[j] * (x[i, j] * r)
        b = block_sum(b) / n
        for j in range(t, n, nt):
            grad_x[i, j] = r * (grad_out[i, j] * weight[j] - (x[i, j] * r) * b)


@cuda.jit
def _partials(grad_out, x, rstd, part_w):
    """part_w[c, j] = Σ_{i in chunk c} dy·x̂ (float64, row order)."""
    m, n = x.shape
    nchunks = part_w.shape[0]
    for c in range(cuda.blockIdx.y, nchunks, cuda.gridDim.y):
        start = c * m // nchunks
        stop = (c + 1) * m // nchunks
        for j in range(cuda.grid(1), n, cuda.gridsize(1)):
            sw = float64(0.0)
            for i in range(start, stop):
                sw += float64(grad_out[i, j]) * (x[i, j] * float64(rstd[i]))
            part_w[c, j] = sw


def forward(x, weight, eps, out, rstd):
    """RMS-normalize each row of ``x`` into ``out``; fill ``rstd``."""
    m, n = x.shape
    if m == 0 or n == 0:
        return
    warp, blocks, threads = _layout.launch_rows(m, n)
    k = _forward_warp if warp else _forward_block
    k[blocks, threads](x, weight, float(eps), out, rstd)


def stats(x, eps, rstd):
    """Fill ``rstd = 1/sqrt(mean(x²) + eps)`` of each row of ``x``."""
    m, n = x.shape
    if m == 0 or n == 0:
        return
    warp, blocks, threads = _layout.launch_rows(m, n)
    k = _stats_warp if warp else _stats_block
    k[blocks, threads](x, float(eps), rstd)


def backward(grad_out, x, weight, rstd, grad_x, grad_weight):
    """Fill ``grad_x`` (M, N) and ``grad_weight`` (N,) from the saved ``rstd``."""
    m, n = x.shape
    if m == 0 or n == 0:
        return
    warp, blocks, threads = _layout.launch_rows(m, n)
    k = _grad_x_warp if warp else _grad_x_block
    k[blocks, threads](grad_out, x, weight, rstd, grad_x)
    grid, threads, chunks = _layout.launch_partials(m, n)
    part_w = _layout.empty((chunks, n), "float64")
    _partials[grid, threads](grad_out, x, rstd, part_w)
    sum_partials(part_w, grad_weight)


def _signatures():
    sigs = []
    for t in ("float32", "float64"):
        m2 = f"{t}[:, ::1]"
        v = f"{t}[::1]"
        fwd = f"void({m2}, {v}, float64, {m2}, {v})"
        st = f"void({m2}, float64, {v})"
        gx = f"void({m2}, {m2}, {v}, {v}, {m2})"
        pt = f"void({m2}, {m2}, {v}, float64[:, ::1])"
        sigs += [
            (_forward_warp, fwd), (_forward_block, fwd),
            (_stats_warp, st), (_stats_block, st),
            (_grad_x_warp, gx), (_grad_x_block, gx),
            (_partials, pt),
        ]
    return sigs


PTX_SIGNATURES = _signatures()
