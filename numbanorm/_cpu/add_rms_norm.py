"""Fused residual add + RMSNorm CPU kernels on the rows view.

Layout: ``x``, ``res`` (the residual), ``s`` (= x + res, the new residual stream) and
``out`` are C-contiguous ``(M, N)`` arrays of the compute dtype; ``weight`` is ``(N,)``
(the effective weight ``weight_offset + w``, ones when the caller gave none); ``rstd`` is
``(M,)`` = 1/sqrt(mean(s²) + eps).

One pass over memory, as :mod:`numbanorm._cpu.rms_norm`'s forward: each row of ``x`` and
``res`` is read once; the sum ``s`` is written into the chunk's scratch row (it stays in
L1/L2) while its squares are summed (blocked, float64 block totals), then the normalized
row is computed from that cached copy, and ``s`` copied out of it in a loop of its own
(writing ``s`` in the summing loop makes LLVM's runtime alias check fall back to a scalar
loop when ``s`` is ``res``; writing ``s`` and ``y`` in one loop made the (32, 768) call
2.2x slower). Outputs of at least ``FORWARD_STREAM_BYTES`` (not in place) are written with
non-temporal stores (:func:`._stream.nt_store`, no read-for-ownership; the cache lines
rows share streamed whole, :func:`._stream.line_span`); no software prefetch (the hardware
prefetcher streams the reads, see :func:`_write_row`). So a call moves 2 reads + 2 writes
per element, against 1 + 1 for ``np.copyto``.

A row is read completely before any of its outputs is written, so ``s`` may be ``res`` or
``x`` and ``out`` may be ``x`` (the in-place residual update of FlashInfer's
``fused_add_rmsnorm``). Backward: :mod:`._rows_grad` (the gradient of ``s`` is added there).
"""
import numpy as np
from numba import njit, types
from numba.extending import overload

from .. import _config
from . import _work
from ._stats import BLOCK, U
from ._stream import EDGE, FORWARD_STREAM_BYTES, flush_edge, line_span, nt_store, overlaps, stream_fence
from ._threads import SERIAL_COUNTER, first_chunk, later_chunk
from .layer_norm import _chunks, run_chunks


def _y(srow, mu_t, r_t, weight, bias, j):
    """Output element ``j`` of a normalized row: ``srow·r·w`` (``bias`` None: RMSNorm) or
    ``(srow − mu)·r·w + bias`` (LayerNorm)."""


@overload(_y, inline="always", jit_options=_config.JIT_OPTIONS)
def _y_impl(srow, mu_t, r_t, weight, bias, j):
    if isinstance(bias, types.NoneType):
        return lambda srow, mu_t, r_t, weight, bias, j: srow[j] * r_t * weight[j]
    return lambda srow, mu_t, r_t, weight, bias, j: (srow[j] - mu_t) * r_t * weight[j] + bias[j]


@njit(inline="always", **_config.JIT_OPTIONS)
def _write_row(srow, i, start, stop, mu_t, r_t, weight, bias, out, s, of, sf, stream, edge, pend):
    """Row ``i`` of ``out`` (:func:`_y` of the cached sum ``srow``) and of ``s`` (a copy of
    ``srow``), with streaming stores per ``stream`` (``start``, ``stop``: the chunk's rows).
    No software prefetch of the next rows of ``x`` and ``res``: with two rows read and two
    streamed per row it cost (8192, 4096) float32 ~8-10 % in an A/B on the 2-core EPYC, and a
    pure read-2-write-2 row loop 2.0-2.2 x a stream copy without it, 4.5-6 x with it. Streamed rows
    stage the cache lines they share with the chunk's next row in ``edge[0]`` (out) and
    ``edge[1]`` (s), ``pend`` elements each, and stream them whole once the next row's
    head is in (:func:`._stream.line_span`)."""
    n = srow.shape[0]
    dst = out[i]
    base = i * n
    if stream & STREAM_OUT:
        eo = edge[0]
        h, e, lined = line_span(of, base, n)
        if lined and i > start:
            p = pend[0]
            for j in range(U(h)):  # unsigned indices: no wrap-around gathers/scatters
                eo[U(p) + j] = _y(srow, mu_t, r_t, weight, bias, j)
            flush_edge(of, base - p, eo, p + h)
        else:
            for j in range(U(h)):
                dst[j] = _y(srow, mu_t, r_t, weight, bias, j)
        for j in range(U(h), U(e)):
            nt_store(of, base + j, _y(srow, mu_t, r_t, weight, bias, j))
        if lined and i < stop - 1:
            for j in range(U(e), U(n)):
                eo[j - U(e)] = _y(srow, mu_t, r_t, weight, bias, j)
            pend[0] = n - e
        else:
            for j in range(U(e), U(n)):
                dst[j] = _y(srow, mu_t, r_t, weight, bias, j)
    else:
        for j in range(U(n)):
            dst[j] = _y(srow, mu_t, r_t, weight, bias, j)
    sdst = s[i]
    if stream & STREAM_S:
        es = edge[1]
        h, e, lined = line_span(sf, base, n)
        if lined and i > start:
            p = pend[1]
            for j in range(U(h)):
                es[U(p) + j] = srow[j]
            flush_edge(sf, base - p, es, p + h)
        else:
            for j in range(U(h)):
                sdst[j] = srow[j]
        for j in range(U(h), U(e)):
            nt_store(sf, base + j, srow[j])
        if lined and i < stop - 1:
            for j in range(U(e), U(n)):
                es[j - U(e)] = srow[j]
            pend[1] = n - e
        else:
            for j in range(U(e), U(n)):
                sdst[j] = srow[j]
    else:
        for j in range(U(n)):  # a separate loop: one store stream per loop vectorises
            sdst[j] = srow[j]


@njit(nogil=True, **_config.JIT_OPTIONS)
def _forward(x, res, weight, eps, s, out, rstd, scratch, stream, counter):
    m, n = x.shape
    nchunks = scratch.shape[0]
    t = x.dtype.type
    of = out.reshape(-1)
    sf = s.reshape(-1)
    edge = np.empty((2, EDGE), x.dtype)
    pend = np.zeros(2, np.int64)
    c = first_chunk(counter, nchunks)
    while c < nchunks:
        start = c * m // nchunks
        stop = (c + 1) * m // nchunks
        for i in range(start, stop):
            xr = x[i]
            rr = res[i]
            srow = scratch[c, 0]
            ss = np.float64(0.0)
            for j0 in range(0, n, BLOCK):
                sb = t(0.0)
                for j in range(U(j0), U(min(j0 + BLOCK, n))):
                    v = xr[j] + rr[j]
                    srow[j] = v
                    sb += v * v
                ss += sb
            r = 1.0 / np.sqrt(ss / n + eps)
            rstd[i] = r
            r_t = t(r)
            _write_row(srow, i, start, stop, t(0.0), r_t, weight, None, out, s, of, sf, stream, edge, pend)
        if stream:
            stream_fence()
        c = later_chunk(counter, nchunks)


#: bits of the kernels' ``stream`` argument: write ``out`` / ``s`` with streaming stores
STREAM_OUT = 1
STREAM_S = 2


def stream_flags(out, s, x, res):
    """The ``stream`` argument: outputs of at least ``FORWARD_STREAM_BYTES`` that are not in
    place (``s`` may be ``res`` — FlashInfer's in-place update — and ``out`` may be ``x``)."""
    if out.nbytes < FORWARD_STREAM_BYTES:
        return 0
    return (0 if overlaps(out, x, res) else STREAM_OUT) | (0 if overlaps(s, x, res) else STREAM_S)


def scratch_rows(nchunks, n, dtype):
    """Per chunk: the sum's row."""
    return _work.empty("add_norm.scratch", (nchunks, 1, n), dtype)


def forward(x, res, weight, eps, s, out, rstd):
    """``s = x + res`` and ``out = s / sqrt(mean(s²) + eps) * weight`` per row; fill ``rstd``."""
    if x.size < _config.SERIAL_THRESHOLD:  # small call: serial twin, one chunk, no streaming
        _forward(x, res, weight, eps, s, out, rstd, scratch_rows(1, x.shape[1], x.dtype), 0, SERIAL_COUNTER)
        return
    m, n = x.shape
    stream = stream_flags(out, s, x, res)
    nchunks = _chunks(m)
    run_chunks(_forward, x.size, nchunks, x, res, weight, eps, s, out, rstd, scratch_rows(nchunks, n, x.dtype), stream)
