"""RMSNorm CPU kernels on the rows view.

Layout: ``x``, ``out``, ``grad_out``, ``grad_x`` are C-contiguous ``(M, N)`` arrays of the
compute dtype; ``weight`` is ``(N,)`` (ones when the caller gave none); ``rstd`` is
``(M,)`` = 1/sqrt(mean(x²) + eps).

Thread mapping as in :mod:`numbanorm._cpu.layer_norm`: serial ``nogil`` chunk kernels over a
fixed number of row chunks (:func:`.layer_norm.run_chunks`), each row read once, large outputs written with non-temporal stores (forward: straight from the
row loop; backward: from the chunk's scratch row), grad_weight from per-chunk accumulator rows flushed to float64
partials summed in chunk order (deterministic).
"""
import numpy as np
from numba import njit

from .. import _config
from . import _work
from ._stats import BLOCK, FLUSH, U, mean_square, sum_chunks
from ._stream import (EDGE, FORWARD_STREAM_BYTES, FORWARD_STREAM_ROW_BYTES, PREFETCH_BLOCK,
                      STREAM_BYTES, flush_edge, line_span, nt_store, overlaps, prefetch_run, stream_fence,
                      stream_scale)
from ._threads import SERIAL_COUNTER, first_chunk, launch, later_chunk
from .layer_norm import _NO_SCRATCH, _ONE_CHUNK, QUAD, _chunks, run_chunks


@njit(nogil=True, **_config.JIT_OPTIONS)
def _forward(x, weight, eps, out, rstd, scratch, stream, counter):
    """Streamed outputs: :func:`._stream.nt_store` runs with prefetches of the next row,
    as layer_norm's forward (bitwise the same values as ordinary stores); the lines a row
    shares with its chunk neighbours go through ``edge`` (:func:`._stream.line_span`)."""
    m, n = x.shape
    nchunks = scratch.shape[0]
    of = out.reshape(-1)
    edge = np.empty(EDGE, x.dtype)
    c = first_chunk(counter, nchunks)
    while c < nchunks:
        start = c * m // nchunks
        stop = (c + 1) * m // nchunks
        pend = 0
        for i in range(start, stop):
            row = x[i]
            r = 1.0 / np.sqrt(mean_square(row) + eps)
            rstd[i] = r
            r_t = x.dtype.type(r)
            dst = out[i]
            if stream:
                nxt = x[min(i + 1, stop - 1)]
                base = i * n
                h, e, lined = line_span(of, base, n)
                if lined and i > start:  # the line shared with row i - 1, whole
                    for j in range(U(h)):  # unsigned indices: no wrap-around gathers/scatters
                        edge[U(pend) + j] = row[j] * r_t * weight[j]
                    flush_edge(of, base - pend, edge, pend + h)
                else:
                    for j in range(U(h)):
                        dst[j] = row[j] * r_t * weight[j]
                for j0 in range(h, e, PREFETCH_BLOCK):
                    j1 = min(j0 + PREFETCH_BLOCK, e)
                    prefetch_run(nxt, j0, j1)
                    for j in range(U(j0), U(j1)):
                        nt_store(of, base + j, row[j] * r_t * weight[j])
                if lined and i < stop - 1:  # staged until row i + 1's head is known
                    for j in range(U(e), U(n)):
                        edge[j - U(e)] = row[j] * r_t * weight[j]
                    pend = n - e
                else:
                    for j in range(U(e), U(n)):
                        dst[j] = row[j] * r_t * weight[j]
            else:
                for j in range(U(n)):
                    dst[j] = row[j] * r_t * weight[j]
        if stream:
            stream_fence()
        c = later_chunk(counter, nchunks)


@njit(nogil=True, **_config.JIT_OPTIONS)
def _stats(x, eps, rstd, nch, counter):
    """Row statistics; chunks of consecutive rows from ``counter`` (:func:`._threads.launch`)."""
    m = x.shape[0]
    c = first_chunk(counter, nch)
    while c < nch:
        for i in range(c * m // nch, (c + 1) * m // nch):
            rstd[i] = 1.0 / np.sqrt(mean_square(x[i]) + eps)
        c = later_chunk(counter, nch)


@njit(inline="always", **_config.JIT_OPTIONS)
def _row_b(dy, row, weight, r, n):
    """mean(w·dy·x̂) of a row (blocked into float64), in the data dtype."""
    t = row.dtype.type
    b = np.float64(0.0)
    for j0 in range(0, n, BLOCK):
        sb = t(0.0)
        for j in range(U(j0), U(min(j0 + BLOCK, n))):
            sb += dy[j] * weight[j] * (row[j] * r)
        b += sb
    return t(b / n)


@njit(inline="always", **_config.JIT_OPTIONS)
def _quad_rows(grad_out, x, weight, rstd, i, aw, d0, d1, d2, d3):
    """grad_x of rows ``i .. i + 3`` into ``d0 .. d3`` (the one-row loop's expression,
    bitwise) and their dy·x̂ added into ``aw`` with one load and store per element."""
    n = x.shape[1]
    r0, r1, r2, r3 = rstd[i], rstd[i + 1], rstd[i + 2], rstd[i + 3]
    g0, g1, g2, g3 = grad_out[i], grad_out[i + 1], grad_out[i + 2], grad_out[i + 3]
    x0, x1, x2, x3 = x[i], x[i + 1], x[i + 2], x[i + 3]
    b0 = _row_b(g0, x0, weight, r0, n)
    b1 = _row_b(g1, x1, weight, r1, n)
    b2 = _row_b(g2, x2, weight, r2, n)
    b3 = _row_b(g3, x3, weight, r3, n)
    for j in range(U(n)):
        w = weight[j]
        h0 = x0[j] * r0
        h1 = x1[j] * r1
        h2 = x2[j] * r2
        h3 = x3[j] * r3
        d0[j] = r0 * (g0[j] * w - h0 * b0)
        d1[j] = r1 * (g1[j] * w - h1 * b1)
        d2[j] = r2 * (g2[j] * w - h2 * b2)
        d3[j] = r3 * (g3[j] * w - h3 * b3)
        aw[j] += (g0[j] * h0 + g1[j] * h1) + (g2[j] * h2 + g3[j] * h3)


@njit(nogil=True, **_config.JIT_OPTIONS)
def _backward(grad_out, x, weight, rstd, grad_x, acc_w, part_w, scratch, stream, counter):
    """grad_x = rstd * (w·dy − x̂ · mean(w·dy·x̂)), x̂ = x·rstd; Σdy·x̂ per chunk.

    Rows go four at a time (:data:`.layer_norm.QUAD`; the chunk's last rows one by one):
    their reduction loops (blocked into float64), then one elementwise loop writing their
    grad_x (into the chunk's scratch rows when streaming, then streamed out) and adding
    their dy·x̂ into the chunk's data-dtype row, flushed into the float64 partial row
    every ``FLUSH`` rows. The loops vectorise.
    """
    m, n = x.shape
    nchunks = part_w.shape[0]
    t = x.dtype.type
    one = t(1.0)
    c = first_chunk(counter, nchunks)
    while c < nchunks:
        start = c * m // nchunks
        stop = (c + 1) * m // nchunks
        aw = acc_w[c]
        i = start
        while i < stop:
            if i + QUAD <= stop:
                d = scratch[c] if stream else grad_x[i:i + QUAD]  # one inlined _quad_rows, not two
                _quad_rows(grad_out, x, weight, rstd, i, aw, d[0], d[1], d[2], d[3])
                if stream:
                    for k in range(QUAD):
                        stream_scale(grad_x, (i + k) * n, scratch, (c * QUAD + k) * n, one, n)
                i += QUAD
            else:
                r = rstd[i]
                dy = grad_out[i]
                row = x[i]
                b_t = _row_b(dy, row, weight, r, n)
                dst = scratch[c, 0] if stream else grad_x[i]
                for j in range(U(n)):
                    xhat = row[j] * r
                    dst[j] = r * (dy[j] * weight[j] - xhat * b_t)
                    aw[j] += dy[j] * xhat
                if stream:
                    stream_scale(grad_x, i * n, scratch, c * QUAD * n, one, n)
                i += 1
            if (i - start) % FLUSH == 0 or i == stop:
                for j in range(U(n)):
                    part_w[c, j] += aw[j]
                    aw[j] = 0.0
        c = later_chunk(counter, nchunks)


def forward(x, weight, eps, out, rstd):
    """RMS-normalize each row of ``x`` into ``out``; fill ``rstd``."""
    if x.size < _config.SERIAL_THRESHOLD:  # small call: serial twin, one chunk, no streaming
        _forward(x, weight, eps, out, rstd, _ONE_CHUNK[x.dtype], False, SERIAL_COUNTER)
        return
    stream = (out.nbytes >= FORWARD_STREAM_BYTES and x.shape[1] * out.itemsize >= FORWARD_STREAM_ROW_BYTES
              and not overlaps(out, x))
    nchunks = _chunks(x.shape[0])
    run_chunks(_forward, x.size, nchunks, x, weight, eps, out, rstd, _NO_SCRATCH[x.dtype][:nchunks], stream)


def stats(x, eps, rstd):
    """Fill ``rstd = 1/sqrt(mean(x²) + eps)`` of each row of ``x``."""
    launch(_stats, x.size, x.shape[0], x, eps, rstd)


def backward(grad_out, x, weight, rstd, grad_x, grad_weight):
    """Fill ``grad_x`` (M, N) and ``grad_weight`` (N,) from the saved ``rstd``."""
    m, n = x.shape
    nchunks = _chunks(m)
    part_w = _work.zeros("rows.part_w", (nchunks, n), np.float64)
    acc_w = _work.zeros("rows.acc_w", (nchunks, n), x.dtype)
    stream = grad_x.nbytes >= STREAM_BYTES
    scratch = _work.empty("rows.scratch", (nchunks, QUAD, n if stream else 0), x.dtype)
    run_chunks(_backward, x.size, nchunks, grad_out, x, weight, rstd, grad_x, acc_w, part_w, scratch, stream)
    sum_chunks(part_w, grad_weight)
