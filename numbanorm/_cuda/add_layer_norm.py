"""Fused residual add + LayerNorm CUDA kernels (twin of ``numbanorm/_cpu/add_layer_norm.py``).

Mapping as ``add_rms_norm.py``. Pass 1 reads ``x`` and ``res`` once, writes ``s`` and sums
it; pass 2 sums the centred squares of the thread's own ``s`` elements (two-pass
statistics as ``layer_norm.py``, float64); pass 3 writes ``y`` (centring and scaling in
float64, weight and bias in the data dtype). Passes 2 and 3 re-read ``s`` from L1/L2.
"""
import math

from numba import cuda, float64

from . import _layout
from ._reduce import block_sum, warp_sum
from .add_rms_norm import add_rows, signatures


@cuda.jit
def _forward_warp(x, res, weight, bias, eps, s, out, mean, rstd):
    m, n = x.shape
    t = cuda.threadIdx.x
    lane = t & 31
    rpb = cuda.blockDim.x >> 5
    for base in range(cuda.blockIdx.x * rpb, m, cuda.gridDim.x * rpb):
        i = base + (t >> 5)
        active = i < m
        acc = float64(0.0)
        if active:
            acc = add_rows(x, res, s, i, lane, 32)[0]
        mu = warp_sum(acc) / n
        acc = float64(0.0)
        if active:
            for j in range(lane, n, 32):
                d = s[i, j] - mu
                acc += d * d
        r = float64(1.0) / math.sqrt(warp_sum(acc) / n + eps)
        if active:
            if lane == 0:
                mean[i] = mu
                rstd[i] = r
            for j in range(lane, n, 32):
                out[i, j] = out.dtype.type((s[i, j] - mu) * r) * weight[j] + bias[j]


@cuda.jit
def _forward_block(x, res, weight, bias, eps, s, out, mean, rstd):
    m, n = x.shape
    t = cuda.threadIdx.x
    nt = cuda.blockDim.x
    for i in range(cuda.blockIdx.x, m, cuda.gridDim.x):
        acc = add_rows(x, res, s, i, t, nt)[0]
        mu = block_sum(acc) / n
        acc = float64(0.0)
        for j in range(t, n, nt):
            d = s[i, j] - mu
            acc += d * d
        r = float64(1.0) / math.sqrt(block_sum(acc) / n + eps)
        if t == 0:
            mean[i] = mu
            rstd[i] = r
        for j in range(t, n, nt):
            out[i, j] = out.dtype.type((s[i, j] - mu) * r) * weight[j] + bias[j]


def forward(x, res, weight, bias, eps, s, out, mean, rstd):
    """``s = x + res`` and ``out = (s − mean) * rstd * weight + bias`` per row; fill the stats."""
    m, n = x.shape
    if m == 0 or n == 0:
        return
    warp, blocks, threads = _layout.launch_rows(m, n)
    k = _forward_warp if warp else _forward_block
    k[blocks, threads, _layout.stream()](x, res, weight, bias, float(eps), s, out, mean, rstd)


PTX_SIGNATURES = signatures((_forward_warp, _forward_block), "{m2}, {m2}, {v}, {v}, float64, {m2}, {m2}, {v}, {v}")
