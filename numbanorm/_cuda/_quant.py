"""RMSNorm with dynamic per-row quantized outputs (int8, float8 e4m3fn), CUDA kernels
(twin of ``numbanorm/_cpu/_quant.py``, same layout, rules and launcher signatures).

One block per row (rows grid-strided): pass 1 sums the squares and takes max|x w| (a
NaN-propagating block maximum; max|y| = r max|x w|, the CPU rule; the fused add writes
``s`` here), pass 2 re-reads the row from L1/L2 and writes ``q``. ``q`` is int8, or uint8 holding e4m3fn bits.
"""
import functools

import numpy as np
from numba import cuda, float32, float64, int8, uint8, uint32

from ._bf16 import _f2i
from ._reduce import block_max, block_sum
from ._rows_lowp import BF16, F16, F32, F64, _f, _f16, _launch, _rsqrt, loader, storer

INT8, E4M3 = "int8", "e4m3"


@cuda.jit(device=True, inline="always")
def q_int8(v):
    """int8 of ``v`` clipped to [-127, 127], rounded half to even; NaN → 0."""
    if v != v:
        return int8(0)
    c = -127.0 if v < -127.0 else (127.0 if v > 127.0 else v)
    return int8(round(c))


@cuda.jit(device=True, inline="always")
def q_e4m3(v):
    """float8 e4m3fn bits of ``v`` clipped to [-448, 448] (round to nearest even; NaN → 0x7f)."""
    if v != v:
        return uint8(0x7F)
    c = float32(-448.0 if v < -448.0 else (448.0 if v > 448.0 else v))
    b = uint32(_f2i(c))
    sign = (b >> uint32(24)) & uint32(0x80)
    a = abs(c)
    if a >= float32(0.015625):  # normal: 3 mantissa bits, ties to even, rebias 127 -> 7
        ab = b & uint32(0x7FFFFFFF)
        code = ((ab + uint32(0x7FFFF) + ((ab >> uint32(20)) & uint32(1))) >> uint32(20)) - uint32(960)
    else:  # subnormal: steps of 2**-9
        code = uint32(round(a * float32(512.0)))
    return uint8(code | sign)


@functools.lru_cache(maxsize=None)
def quant_kernel(add, fx, fr, fs, fq):
    """``(x, res, w, eps, qmax, s, q, scale, rstd)``; without ``add`` ``res``/``s`` are ``x``."""
    ld_x, ld_r, ld_s = loader(fx), loader(fr), loader(fs)
    st_s = storer(fs)
    fp64 = fx == F64 or fs == F64
    quant = q_int8 if fq == INT8 else q_e4m3

    @cuda.jit(device=True, inline="always")
    def ld_src(x, s, i, j):
        if add:
            return ld_s(s, i, j)
        return ld_x(x, i, j)

    @cuda.jit
    def _rms_quant(x, res, w, eps, qmax, s, q, scale, rstd):
        m, n = x.shape
        tid = cuda.threadIdx.x
        nt = cuda.blockDim.x
        for i in range(cuda.blockIdx.x, m, cuda.gridDim.x):
            acc = float64(0.0) if fp64 else float32(0.0)
            a = float64(0.0)
            for j in range(tid, n, nt):
                if add:
                    v = st_s(s, i, j, ld_x(x, i, j) + ld_r(res, i, j))
                else:
                    v = ld_x(x, i, j)
                acc += v * v
                y = abs(float64(v * w[j]))
                a = y if (y > a or y != y) else a
            r = _rsqrt(block_sum(float64(acc)) / n, eps)
            rt = r if fp64 else float32(r)
            amax = float64(rt * (block_max(a) if fp64 else float32(block_max(a))))  # r max|x w|
            inv = qmax / amax if amax > 0.0 else 0.0  # 0 for zero and NaN rows: q = 0
            k = rt * (inv if fp64 else float32(inv))
            for j in range(tid, n, nt):
                q[i, j] = quant(ld_src(x, s, i, j) * k * w[j])
            if tid == 0:
                rstd[i] = r
                scale[i] = amax / qmax

    return _rms_quant


def _fq(q):
    return INT8 if q.dtype == np.int8 else E4M3


def rms_quant(x, weight, eps, qmax, q, scale, rstd):
    m, n = x.shape
    k = quant_kernel(False, _f(x), _f(x), _f(x), _fq(q))
    _launch(k, m, n, _f16(x), _f16(x), weight, eps, float(qmax), _f16(x), q, scale, rstd)


def add_rms_quant(x, res, weight, eps, qmax, s, q, scale, rstd):
    m, n = x.shape
    k = quant_kernel(True, _f(x), _f(res), _f(s), _fq(q))
    _launch(k, m, n, _f16(x), _f16(res), weight, eps, float(qmax), _f16(s), q, scale, rstd)


def _signatures():
    m2 = {BF16: "uint16[:, ::1]", F16: "float16[:, ::1]", F32: "float32[:, ::1]", F64: "float64[:, ::1]"}
    qt = {INT8: "int8[:, ::1]", E4M3: "uint8[:, ::1]"}
    sigs = []
    for fx in (F32, BF16, F16, F64):
        ct = "float64[::1]" if fx == F64 else "float32[::1]"
        for fq in (INT8, E4M3):
            for add in (False, True):
                k = quant_kernel(add, fx, fx, fx, fq)
                sigs.append((k, f"void({m2[fx]}, {m2[fx]}, {ct}, float64, float64, {m2[fx]}, {qt[fq]}, {ct}, {ct})"))
    return sigs


PTX_SIGNATURES = _signatures()
