"""Fused residual add + RMSNorm CUDA kernels (twin of ``numbanorm/_cpu/add_rms_norm.py``).

Layout and launcher signature as the CPU module. Thread mapping as ``rms_norm.py``
(``_layout.launch_rows``): a warp per short row, a block per long row, grid-stride. Pass 1
reads ``x`` and ``res`` once, writes ``s = x + res`` and sums its squares (float64); pass
2 re-reads the thread's own ``s`` elements (written by the same thread at the same
indices, so ``s`` may alias ``x`` or ``res``; L1/L2 hits) and writes ``y``. One DRAM read
of ``x`` and ``res`` and one write of ``s`` and ``y`` per element.
"""
import math

from numba import cuda, float64

from . import _layout
from ._reduce import block_sum, warp_sum


@cuda.jit(device=True, inline="always")
def add_rows(x, res, s, i, j0, step):
    """``s[i, j] = x[i, j] + res[i, j]`` for j = j0, j0 + step, … < n (the calling thread's
    elements of row ``i``); returns (Σs, Σs²) of them in float64 (a kernel that uses one
    of the two leaves the other unused, and the compiler drops it)."""
    acc = float64(0.0)
    ss = float64(0.0)
    for j in range(j0, x.shape[1], step):
        v = x[i, j] + res[i, j]
        s[i, j] = v
        acc += v
        ss += float64(v) * v
    return acc, ss


@cuda.jit
def _forward_warp(x, res, weight, eps, s, out, rstd):
    m, n = x.shape
    t = cuda.threadIdx.x
    lane = t & 31
    rpb = cuda.blockDim.x >> 5
    for base in range(cuda.blockIdx.x * rpb, m, cuda.gridDim.x * rpb):
        i = base + (t >> 5)
        active = i < m
        ss = float64(0.0)
        if active:
            ss = add_rows(x, res, s, i, lane, 32)[1]
        r = float64(1.0) / math.sqrt(warp_sum(ss) / n + eps)
        if active:
            if lane == 0:
                rstd[i] = r
            r_t = out.dtype.type(r)
            for j in range(lane, n, 32):
                out[i, j] = s[i, j] * r_t * weight[j]


@cuda.jit
def _forward_block(x, res, weight, eps, s, out, rstd):
    m, n = x.shape
    t = cuda.threadIdx.x
    nt = cuda.blockDim.x
    for i in range(cuda.blockIdx.x, m, cuda.gridDim.x):
        ss = add_rows(x, res, s, i, t, nt)[1]
        r = float64(1.0) / math.sqrt(block_sum(ss) / n + eps)
        if t == 0:
            rstd[i] = r
        r_t = out.dtype.type(r)
        for j in range(t, n, nt):
            out[i, j] = s[i, j] * r_t * weight[j]


def forward(x, res, weight, eps, s, out, rstd):
    """``s = x + res`` and ``out = s / sqrt(mean(s²) + eps) * weight`` per row; fill ``rstd``."""
    m, n = x.shape
    if m == 0 or n == 0:
        return
    warp, blocks, threads = _layout.launch_rows(m, n)
    k = _forward_warp if warp else _forward_block
    k[blocks, threads, _layout.stream()](x, res, weight, float(eps), s, out, rstd)


def signatures(kernels, args):
    """(kernel, signature) of each kernel for float32 and float64 data; ``args`` spells the
    arguments with ``{m2}`` for an (M, N) array and ``{v}`` for a vector of the data dtype."""
    sigs = []
    for t in ("float32", "float64"):
        sig = "void(" + args.format(m2=f"{t}[:, ::1]", v=f"{t}[::1]") + ")"
        sigs += [(k, sig) for k in kernels]
    return sigs


PTX_SIGNATURES = signatures((_forward_warp, _forward_block), "{m2}, {m2}, {v}, float64, {m2}, {m2}, {v}")
