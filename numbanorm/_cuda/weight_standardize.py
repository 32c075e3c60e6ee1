"""Weight standardization CUDA kernels on the rows view (twin of
``numbanorm/_cpu/weight_standardize.py``).

Layout: ``w``, ``out``, ``grad_out``, ``grad_w`` are C-contiguous ``(M, N)`` device arrays
of the compute dtype (M output filters, N = product of the other weight dims). Launchers
``forward``/``backward`` have the CPU entry points' names and signatures.

Thread mapping (``_layout.launch_rows``, as layer_norm): one warp per filter for
``N <= warp_row_max``, one block per filter above; grid-stride over filters. The row
moments are layer_norm's device functions (float64, two passes: mean, then centred
squares); the backward adds two float64 row sums (``warp_sum2``/``block_sum2``).
Deterministic (fixed reduction order), no atomics.
"""
import math

from numba import cuda, float64

from . import _layout
from ._reduce import block_sum, block_sum2, warp_sum, warp_sum2


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
def _forward_warp(w, eps, out):
    m, n = w.shape
    t = cuda.threadIdx.x
    lane = t & 31
    rpb = cuda.blockDim.x >> 5
    for base in range(cuda.blockIdx.x * rpb, m, cuda.gridDim.x * rpb):
        i = base + (t >> 5)
        active = i < m
        mu, var = _warp_row_moments(w, i, active, lane, n)
        r = float64(1.0) / math.sqrt(var + eps)
        if active:
            for j in range(lane, n, 32):
                out[i, j] = (w[i, j] - mu) * r


@cuda.jit
def _forward_block(w, eps, out):
    m, n = w.shape
    t = cuda.threadIdx.x
    nt = cuda.blockDim.x
    for i in range(cuda.blockIdx.x, m, cuda.gridDim.x):
        mu, var = _block_row_moments(w, i, t, nt, n)
        r = float64(1.0) / math.sqrt(var + eps)
        for j in range(t, n, nt):
            out[i, j] = (w[i, j] - mu) * r


@cuda.jit
def _backward_warp(grad_out, w, eps, grad_w):
    """grad_w = r (dy - mean(dy) - ŵ mean(dy ŵ)), one warp per filter."""
    m, n = w.shape
    t = cuda.threadIdx.x
    lane = t & 31
    rpb = cuda.blockDim.x >> 5
    for base in range(cuda.blockIdx.x * rpb, m, cuda.gridDim.x * rpb):
        i = base + (t >> 5)
        active = i < m
        mu, var = _warp_row_moments(w, i, active, lane, n)
        r = float64(1.0) / math.sqrt(var + eps)
        a = float64(0.0)
        b = float64(0.0)
        if active:
            for j in range(lane, n, 32):
                dy = float64(grad_out[i, j])
                a += dy
                b += dy * ((w[i, j] - mu) * r)
        a, b = warp_sum2(a, b)
        a /= n
        b /= n
        if active:
            for j in range(lane, n, 32):
                grad_w[i, j] = r * (grad_out[i, j] - a - (w[i, j] - mu) * r * b)


@cuda.jit
def _backward_block(grad_out, w, eps, grad_w):
    m, n = w.shape
    t = cuda.threadIdx.x
    nt = cuda.blockDim.x
    for i in range(cuda.blockIdx.x, m, cuda.gridDim.x):
        mu, var = _block_row_moments(w, i, t, nt, n)
        r = float64(1.0) / math.sqrt(var + eps)
        a = float64(0.0)
        b = float64(0.0)
        for j in range(t, n, nt):
            dy = float64(grad_out[i, j])
            a += dy
            b += dy * ((w[i, j] - mu) * r)
        a, b = block_sum2(a, b)
        a /= n
        b /= n
        for j in range(t, n, nt):
            grad_w[i, j] = r * (grad_out[i, j] - a - (w[i, j] - mu) * r * b)


def forward(w, eps, out):
    """``out[i] = (w[i] - mean(w[i])) / sqrt(var(w[i]) + eps)`` for each filter row."""
    m, n = w.shape
    if m == 0 or n == 0:
        return
    warp, blocks, threads = _layout.launch_rows(m, n)
    k = _forward_warp if warp else _forward_block
    k[blocks, threads, _layout.stream()](w, float(eps), out)


def backward(grad_out, w, eps, grad_w):
    """Gradient of :func:`forward` with respect to ``w`` into ``grad_w`` (M, N)."""
    m, n = w.shape
    if m == 0 or n == 0:
        return
    warp, blocks, threads = _layout.launch_rows(m, n)
    k = _backward_warp if warp else _backward_block
    k[blocks, threads, _layout.stream()](grad_out, w, float(eps), grad_w)


def _signatures():
    sigs = []
    for t in ("float32", "float64"):
        m2 = f"{t}[:, ::1]"
        sigs += [
            (_forward_warp, f"void({m2}, float64, {m2})"),
            (_forward_block, f"void({m2}, float64, {m2})"),
            (_backward_warp, f"void({m2}, {m2}, float64, {m2})"),
            (_backward_block, f"void({m2}, {m2}, float64, {m2})"),
        ]
    return sigs


PTX_SIGNATURES = _signatures()
