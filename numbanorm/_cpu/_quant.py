"""RMSNorm with dynamic per-row quantized outputs (int8, float8 e4m3fn), CPU kernels.

Layout: ``x`` (and ``res``, ``s`` for the fused add) C-contiguous ``(M, N)`` arrays of
float32/float64 or 16-bit bits (:mod:`._bits`); ``weight`` ``(N,)`` of the compute dtype
(float64 for float64 data, else float32; the effective ``weight_offset + w``, ones
without a weight); ``q`` ``(M, N)`` int8 (int8 quantization) or uint8 (float8 e4m3fn
bits); ``scale`` and ``rstd`` ``(M,)`` of the compute dtype.

Per row, with the row in L1/L2 after its first read (one pass over memory, no
full-precision ``y`` written anywhere)::

    r = 1/sqrt(mean(x²) + eps),  a = r · max_j |x_j w_j|   # pass 1 (r > 0: max|y| = r max|xw|)
    scale = a / qmax                 # qmax = 127 (int8), 448 (e4m3fn)
    q_j = quant(x_j r w_j · qmax/a)  # pass 2, from cache

(the fused add writes ``s = round(x + res)`` in a pass of its own first, then reads ``s``).

``quant``: int8 = round half to even, clipped to [-127, 127]; e4m3fn = round to nearest
even of the value clipped to [-448, 448]. A row of zeros (a = 0) gets ``scale = 0`` and
``q = 0`` (no NaN). A row whose ``y`` has a NaN (NaN or inf in ``x``) gets ``scale =
NaN``, so it dequantizes to NaN; its codes are 0 in int8 (no NaN there) and NaN or 0 in
e4m3fn. max|y| is the maximum of the magnitudes' bit patterns (NaN above inf): an integer
reduction that vectorises and propagates NaN.
"""
import numpy as np
from numba import njit, types
from numba.extending import overload

from .. import _config
from ._bits import abs_max_bits, float_from_bits, load
from ._rows_lowp import QUANT, STAGE, _add_rows, launch, write_row
from ._stats import BLOCK, U
from ._stream import stream_fence, wide_vectors
from ._threads import first_chunk, later_chunk


def _zero_bits(w):
    """The integer 0 of the width of ``w``'s float dtype (the max|y| accumulator)."""


@overload(_zero_bits, jit_options=_config.JIT_OPTIONS)
def _zero_bits_impl(w):
    z = np.uint64(0) if w.dtype == types.float64 else np.uint32(0)
    return lambda w: z


@njit(inline="always", **_config.JIT_OPTIONS)
def _sq_amax(row, n, weight):
    """(Σ row², max_j |row_j w_j|) of a row: one pass, float64 total of the squares."""
    ss = np.float64(0.0)
    acc = _zero_bits(weight)
    for j0 in range(0, n, BLOCK):
        sb = weight.dtype.type(0.0)
        for j in range(U(j0), U(min(j0 + BLOCK, n))):
            v = load(row, j)
            sb += v * v
            acc = abs_max_bits(acc, v * weight[j])
        ss += sb
    return ss, float_from_bits(acc)


@njit(inline="always", **_config.JIT_OPTIONS)
def _quant_row(row, n, eps, weight, qmax, qf, base, stream, nxt, stage, pend, first, last):
    """Quantize one row into the row of the flat ``qf`` at ``base`` (streamed when
    ``stream``, prefetching ``nxt``, staging shared lines: :func:`._rows_lowp.write_row`);
    returns ``(rstd, scale, pend)`` (module doc; ``pend`` as ``write_row`` returns it).

    max|y| = r · max|x w| (r > 0 is common to the row), so the statistics pass also
    finds the maximum and the codes are written in the second pass, from cache."""
    t = weight.dtype.type
    ss, mxw = _sq_amax(row, n, weight)
    r = 1.0 / np.sqrt(ss / n + eps)
    r_t = t(r)
    amax = r_t * mxw  # NaN when y has a NaN
    inv = qmax / amax if amax > 0.0 else t(0.0)  # 0 for zero and NaN rows
    k = r_t * inv
    pend = write_row(QUANT, row, n, k, k, weight, weight, qf, base, stream, nxt, stage, pend, first, last)
    return r, amax / qmax, pend


@njit(nogil=True, **_config.JIT_OPTIONS)
def _rms_quant(x, weight, eps, qmax, q, scale, rstd, nchunks, stream, counter):
    wide_vectors()
    m, n = x.shape
    qf = q.reshape(-1)
    stage = np.empty(STAGE if stream else 0, q.dtype)
    c = first_chunk(counter, nchunks)
    while c < nchunks:
        start = c * m // nchunks
        stop = (c + 1) * m // nchunks
        pend = 0
        for i in range(start, stop):
            rstd[i], scale[i], pend = _quant_row(x[i], n, eps, weight, qmax, qf, i * n, stream, x[min(i + 1, stop - 1)],
                                                 stage, pend, i == start, i == stop - 1)
        if stream:  # order this chunk's streaming stores (see _stream.stream_fence)
            stream_fence()
        c = later_chunk(counter, nchunks)


@njit(nogil=True, **_config.JIT_OPTIONS)
def _add_rms_quant(x, res, weight, eps, qmax, s, q, scale, rstd, nchunks, stream, counter):
    wide_vectors()
    m, n = x.shape
    qf = q.reshape(-1)
    stage = np.empty(STAGE if stream else 0, q.dtype)
    c = first_chunk(counter, nchunks)
    while c < nchunks:
        start = c * m // nchunks
        stop = (c + 1) * m // nchunks
        pend = 0
        for i in range(start, stop):
            srow = s[i]
            _add_rows(x[i], res[i], srow, n)
            rstd[i], scale[i], pend = _quant_row(srow, n, eps, weight, qmax, qf, i * n, stream,
                                                 x[min(i + 1, stop - 1)], stage, pend, i == start, i == stop - 1)
        if stream:  # order this chunk's streaming stores (see _stream.stream_fence)
            stream_fence()
        c = later_chunk(counter, nchunks)


def rms_quant(x, weight, eps, qmax, q, scale, rstd):
    """Quantized RMSNorm of each row of ``x`` into ``q`` and ``scale``; fill ``rstd``."""
    launch(_rms_quant, x, q, (), x, weight, eps, weight.dtype.type(qmax), q, scale, rstd)


def add_rms_quant(x, res, weight, eps, qmax, s, q, scale, rstd):
    """``s = x + res`` (rounded to ``s``'s format) and the quantized RMSNorm of ``s``."""
    launch(_add_rms_quant, x, q, (res, s), x, res, weight, eps, weight.dtype.type(qmax), s, q, scale, rstd)
