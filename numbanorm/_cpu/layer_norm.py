"""LayerNorm CPU kernels on the rows view.

Layout: ``x``, ``out``, ``grad_out``, ``grad_x`` are C-contiguous ``(M, N)`` arrays of the
compute dtype (float32 or float64): M rows = the leading dims, N = prod(normalized_shape).
``weight``/``bias`` are contiguous ``(N,)`` arrays (ones/zeros when the caller gave none);
``mean``/``rstd`` are ``(M,)`` arrays of the compute dtype.

Thread mapping: a fixed number of chunks of consecutive rows (at most ``REDUCE_CHUNKS``,
:func:`_chunks`, so the work split and every sum order depend on the shape only: results
are bitwise the same on any thread count). The kernels are serial ``nogil`` chunk kernels
(:mod:`._threads`): :func:`run_chunks` runs them on one thread below ``SERIAL_THRESHOLD``
elements, else on the thread pool, each thread taking chunks from a shared counter, so a
small and a large call run the same compiled code (no ``prange`` twin: a parfor recompiles
the inlined row loop into four more LLVM modules, most of a large call's first-call time).
Every chunk fences its streaming stores (:func:`._stream.stream_fence`) before the next.
A row is read from memory once: its statistics and its output are computed while it sits
in L1/L2. Forward outputs of at least ``._stream.FORWARD_STREAM_BYTES`` (backward:
``STREAM_BYTES``) are written with non-temporal stores straight from the row loop
(:func:`._stream.nt_store`: no read-for-ownership of the output, as ``np.copyto`` does); the backward's go through the
chunk's scratch row(s) and :func:`._stream.stream_scale`. The backward gives each chunk a
data-dtype accumulator row for grad_weight/grad_bias (filled in column tiles over groups
of rows, see :func:`_backward`), flushed every ``FLUSH`` rows into a float64 partial row;
partials are summed in chunk order afterwards (no atomics). Partial and scratch rows are
the calling thread's reusable work buffers (:mod:`._work`), not fresh arrays.
"""
import numpy as np
from numba import njit

from .. import _config
from .._config import REDUCE_CHUNKS
from . import _work
from ._stats import BLOCK, FLUSH, U, mean_var, sum_chunks
from ._stream import (EDGE, FORWARD_STREAM_BYTES, FORWARD_STREAM_ROW_BYTES, PREFETCH_BLOCK,
                      STREAM_BYTES, flush_edge, line_span, nt_store, overlaps, prefetch_run, stream_fence,
                      stream_scale)
from ._threads import SERIAL_COUNTER, first_chunk, launch, later_chunk, run


@njit(nogil=True, **_config.JIT_OPTIONS)
def _forward(x, weight, bias, eps, out, mean, rstd, scratch, stream, counter):
    """Large (streamed) outputs: each row is written straight from registers with
    :func:`._stream.nt_store` over its :func:`._stream.line_span` (ordinary stores for
    the few head/tail elements), in ``PREFETCH_BLOCK`` runs, each preceded by a prefetch
    of the same run of the next row. The element expression is the same in every loop,
    so streamed and ordinary outputs are bitwise equal. The cache lines a row shares with
    its neighbours in the chunk are staged in ``edge`` and streamed whole
    (:func:`._stream.line_span`). ``scratch`` only gives the chunk count (its rows are empty)."""
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
            mu, var, mu_t = mean_var(row)
            r = 1.0 / np.sqrt(var + eps)
            mean[i] = mu
            rstd[i] = r
            r_t = x.dtype.type(r)
            dst = out[i]
            if stream:
                nxt = x[min(i + 1, stop - 1)]
                base = i * n
                h, e, lined = line_span(of, base, n)
                if lined and i > start:  # the line shared with row i - 1, whole
                    for j in range(U(h)):  # unsigned indices: no wrap-around gathers/scatters
                        edge[U(pend) + j] = (row[j] - mu_t) * r_t * weight[j] + bias[j]
                    flush_edge(of, base - pend, edge, pend + h)
                else:
                    for j in range(U(h)):
                        dst[j] = (row[j] - mu_t) * r_t * weight[j] + bias[j]
                for j0 in range(h, e, PREFETCH_BLOCK):
                    j1 = min(j0 + PREFETCH_BLOCK, e)
                    prefetch_run(nxt, j0, j1)
                    for j in range(U(j0), U(j1)):
                        nt_store(of, base + j, (row[j] - mu_t) * r_t * weight[j] + bias[j])
                if lined and i < stop - 1:  # staged until row i + 1's head is known
                    for j in range(U(e), U(n)):
                        edge[j - U(e)] = (row[j] - mu_t) * r_t * weight[j] + bias[j]
                    pend = n - e
                else:
                    for j in range(U(e), U(n)):
                        dst[j] = (row[j] - mu_t) * r_t * weight[j] + bias[j]
            else:
                for j in range(U(n)):
                    dst[j] = (row[j] - mu_t) * r_t * weight[j] + bias[j]
        if stream:
            stream_fence()
        c = later_chunk(counter, nchunks)


@njit(nogil=True, **_config.JIT_OPTIONS)
def _stats(x, eps, mean, rstd, nch, counter):
    """Row statistics; chunks of consecutive rows from ``counter`` (:func:`._threads.launch`)."""
    m = x.shape[0]
    c = first_chunk(counter, nch)
    while c < nch:
        for i in range(c * m // nch, (c + 1) * m // nch):
            mu, var, _ = mean_var(x[i])
            mean[i] = mu
            rstd[i] = 1.0 / np.sqrt(var + eps)
        c = later_chunk(counter, nch)


#: rows per group of the backward: their dx coefficients are computed first, then the
#: elementwise pass runs over column tiles of all of them, so the chunk's grad_weight and
#: grad_bias accumulator tiles stay in L1 across the group (divides ``FLUSH``). Only for
#: rows whose two accumulator rows exceed :data:`GROUP_BYTES`; shorter rows go in groups
#: of :data:`QUAD` (their accumulators stay in L1 anyway, and so do the rows between passes).
GROUP = 8
GROUP_BYTES = 16 << 10

#: columns per tile of the backward's elementwise pass
TILE = 512

#: rows whose element-wise backward pass runs in one loop (:func:`_quad_tile`; also the
#: rms_norm backward's): one load and store of each accumulator element per four rows
#: instead of per row, 8-11 % off layer_norm/rms_norm backward (4096, 1024)
QUAD = 4


@njit(inline="always", **_config.JIT_OPTIONS)
def _quad_tile(grad_out, x, weight, mean, rstd, cf, k, i, aw, ab, j0, j1, d0, d1, d2, d3):
    """Columns ``j0:j1`` of the element-wise backward of rows ``i .. i + 3`` (group rows
    ``k .. k + 3``, coefficients ``cf``): each row's grad_x into ``d0 .. d3`` (the one-row
    loop's expression, bitwise), and the four rows' dy·x̂ and dy added into ``aw``/``ab``
    with one load and store of each accumulator element."""
    m0, m1, m2, m3 = mean[i], mean[i + 1], mean[i + 2], mean[i + 3]
    r0, r1, r2, r3 = rstd[i], rstd[i + 1], rstd[i + 2], rstd[i + 3]
    a0, a1, a2, a3 = cf[0, k], cf[0, k + 1], cf[0, k + 2], cf[0, k + 3]
    b0, b1, b2, b3 = cf[1, k], cf[1, k + 1], cf[1, k + 2], cf[1, k + 3]
    g0, g1, g2, g3 = grad_out[i], grad_out[i + 1], grad_out[i + 2], grad_out[i + 3]
    x0, x1, x2, x3 = x[i], x[i + 1], x[i + 2], x[i + 3]
    for j in range(U(j0), U(j1)):
        w = weight[j]
        h0 = (x0[j] - m0) * r0
        h1 = (x1[j] - m1) * r1
        h2 = (x2[j] - m2) * r2
        h3 = (x3[j] - m3) * r3
        d0[j] = r0 * (g0[j] * w - a0 - h0 * b0)
        d1[j] = r1 * (g1[j] * w - a1 - h1 * b1)
        d2[j] = r2 * (g2[j] * w - a2 - h2 * b2)
        d3[j] = r3 * (g3[j] * w - a3 - h3 * b3)
        aw[j] += (g0[j] * h0 + g1[j] * h1) + (g2[j] * h2 + g3[j] * h3)
        ab[j] += (g0[j] + g1[j]) + (g2[j] + g3[j])


@njit(nogil=True, **_config.JIT_OPTIONS)
def _backward(grad_out, x, weight, mean, rstd, grad_x, acc_w, acc_b, part_w, part_b, coef, scratch, stream, counter):
    """grad_x = rstd * (w·dy − mean(w·dy) − x̂ · mean(w·dy·x̂)); Σdy·x̂ and Σdy per chunk.

    Rows go in groups of ``coef.shape[2]`` (``GROUP`` or ``QUAD``). First each row's
    reduction loop (the two row sums, blocked into float64; the row comes from memory and
    stays in L2), then the elementwise loop in ``TILE``-column tiles, each over all rows of
    the group, four rows per loop (:func:`_quad_tile`; a chunk's last rows one by one): it
    writes grad_x (to the chunk's scratch rows when streaming) and adds dy·x̂ and dy into
    the chunk's data-dtype accumulator rows, whose tile stays in L1 for the group
    (accumulating row by row over 16 KiB rows cost a third of the kernel); they are flushed
    into the float64 partial rows every ``FLUSH`` rows. The loops vectorise.
    """
    m, n = x.shape
    nchunks = part_w.shape[0]
    group = coef.shape[2]
    t = x.dtype.type
    one = t(1.0)
    c = first_chunk(counter, nchunks)
    while c < nchunks:
        start = c * m // nchunks
        stop = (c + 1) * m // nchunks
        aw = acc_w[c]
        ab = acc_b[c]
        for g0 in range(start, stop, group):
            g1 = min(g0 + group, stop)
            for k in range(g1 - g0):
                i = g0 + k
                mu = mean[i]
                r = rstd[i]
                dy = grad_out[i]
                row = x[i]
                a = np.float64(0.0)
                b = np.float64(0.0)
                for j0 in range(0, n, BLOCK):
                    sa = t(0.0)
                    sb = t(0.0)
                    for j in range(U(j0), U(min(j0 + BLOCK, n))):
                        wdy = dy[j] * weight[j]
                        sa += wdy
                        sb += wdy * ((row[j] - mu) * r)
                    a += sa
                    b += sb
                coef[c, 0, k] = t(a / n)
                coef[c, 1, k] = t(b / n)
            for j0 in range(0, n, TILE):
                j1 = min(j0 + TILE, n)
                k = 0
                while k + QUAD <= g1 - g0:  # four rows per accumulator load and store
                    i = g0 + k
                    _quad_tile(grad_out, x, weight, mean, rstd, coef[c], k, i, aw, ab, j0, j1,
                               scratch[c, k] if stream else grad_x[i], scratch[c, k + 1] if stream else grad_x[i + 1],
                               scratch[c, k + 2] if stream else grad_x[i + 2],
                               scratch[c, k + 3] if stream else grad_x[i + 3])
                    k += QUAD
                while k < g1 - g0:
                    i = g0 + k
                    mu = mean[i]
                    r = rstd[i]
                    a_t = coef[c, 0, k]
                    b_t = coef[c, 1, k]
                    dy = grad_out[i]
                    row = x[i]
                    dst = scratch[c, k] if stream else grad_x[i]
                    for j in range(U(j0), U(j1)):
                        xhat = (row[j] - mu) * r
                        dst[j] = r * (dy[j] * weight[j] - a_t - xhat * b_t)
                        aw[j] += dy[j] * xhat
                        ab[j] += dy[j]
                    k += 1
            if stream:
                for k in range(g1 - g0):
                    stream_scale(grad_x, (g0 + k) * n, scratch, (c * group + k) * n, one, n)
            if (g1 - start) % FLUSH == 0 or g1 == stop:
                for j in range(U(n)):
                    part_w[c, j] += aw[j]
                    part_b[c, j] += ab[j]
                    aw[j] = 0.0
                    ab[j] = 0.0
        c = later_chunk(counter, nchunks)


def run_chunks(kernel, size, nchunks, *args):
    """``kernel(*args, counter)``, a chunk kernel of ``nchunks`` fixed row chunks (the
    chunk count comes from its arrays; results depend on it, never on the threads): one
    thread below ``SERIAL_THRESHOLD`` elements (a fresh ``counter`` unless one chunk),
    else the threads of :func:`._threads.run`, each taking chunks until none are left."""
    if nchunks <= 1:
        kernel(*args, SERIAL_COUNTER)
    elif size < _config.SERIAL_THRESHOLD:
        kernel(*args, np.zeros(1, np.int64))
    else:
        run(lambda counter: kernel(*args, counter), nchunks)


def _chunks(m):
    """Row chunks of a kernel: at most REDUCE_CHUNKS, at least ~16 rows each (the backward
    zeroes two partial rows per chunk). Depends on the shape only (deterministic)."""
    return max(1, min(REDUCE_CHUNKS, m // 16))


_NO_SCRATCH = {np.dtype(t): np.empty((REDUCE_CHUNKS, 0), t) for t in (np.float32, np.float64)}
_ONE_CHUNK = {t: a[:1] for t, a in _NO_SCRATCH.items()}  # the small calls' serial kernels


def forward(x, weight, bias, eps, out, mean, rstd):
    """Normalize each row of ``x`` into ``out``; fill ``mean`` and ``rstd``."""
    if x.size < _config.SERIAL_THRESHOLD:  # small call: serial twin, one chunk, no streaming
        _forward(x, weight, bias, eps, out, mean, rstd, _ONE_CHUNK[x.dtype], False, SERIAL_COUNTER)
        return
    stream = (out.nbytes >= FORWARD_STREAM_BYTES and x.shape[1] * out.itemsize >= FORWARD_STREAM_ROW_BYTES
              and not overlaps(out, x))
    nchunks = _chunks(x.shape[0])
    run_chunks(_forward, x.size, nchunks, x, weight, bias, eps, out, mean, rstd, _NO_SCRATCH[x.dtype][:nchunks], stream)


def stats(x, eps, mean, rstd):
    """Fill ``mean`` and ``rstd = 1/sqrt(var + eps)`` of each row of ``x``."""
    launch(_stats, x.size, x.shape[0], x, eps, mean, rstd)


def backward(grad_out, x, weight, mean, rstd, grad_x, grad_weight, grad_bias):
    """Fill ``grad_x`` (M, N), ``grad_weight`` and ``grad_bias`` (N,) from saved stats."""
    m, n = x.shape
    nchunks = _chunks(m)
    part_w = _work.zeros("rows.part_w", (nchunks, n), np.float64)
    part_b = _work.zeros("rows.part_b", (nchunks, n), np.float64)
    acc_w = _work.zeros("rows.acc_w", (nchunks, n), x.dtype)
    acc_b = _work.zeros("rows.acc_b", (nchunks, n), x.dtype)
    group = GROUP if 2 * n * x.itemsize > GROUP_BYTES else QUAD
    coef = _work.empty("rows.coef", (nchunks, 2, group), x.dtype)
    stream = grad_x.nbytes >= STREAM_BYTES
    scratch = _work.empty("rows.scratch", (nchunks, group, n if stream else 0), x.dtype)
    run_chunks(_backward, x.size, nchunks, grad_out, x, weight, mean, rstd, grad_x, acc_w, acc_b, part_w, part_b,
               coef, scratch, stream)
    sum_chunks(part_w, grad_weight)
    sum_chunks(part_b, grad_bias)
