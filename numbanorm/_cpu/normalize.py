"""Lp normalization CPU kernels: ``y = x / max(||x||_p, eps)``.

Two canonical layouts (DESIGN.md):

* rows ``(M, N)`` (the normalized axis is the last one): one norm per row. Thread mapping:
  a fixed number of row chunks run on a pool of threads (a function of M only, so results do
  not depend on the thread count). For p = 2 (and p = 1) the loop that writes row i also
  accumulates the norm of row i + 1, so memory is streamed once, like a copy. Outputs of
  at least ``FORWARD_STREAM_BYTES`` (backward: ``STREAM_BYTES``) are written with
  non-temporal vector stores (an llvmlite intrinsic, ``_stream_*``) that skip the
  read-for-ownership of the output lines, as ``np.copyto``'s memcpy does at that size.
* channels ``(outer, C, inner)`` (any other axis): one norm per ``(o, j)`` over the C
  values ``x[o, :, j]``. Work is split into tasks ``(o, block of B inner positions)``; a
  fixed number of chunks of consecutive tasks run on the threads, each chunk owning a
  float64 scratch row of B accumulators (allocated before the launch), so the inner
  loops run over contiguous ``j`` (flat arrays, unsigned offsets) and vectorise.

``pk`` selects the norm: 0 → p = 2, 1 → p = 1, 2 → p = inf, 3 → any other p (given as
``p``; for p < 0 a zero element makes the norm 0, as ``|0|**p = inf``), 4 → p = -inf
(min |x|, accumulated as the maximum of -|x|), 5 → p = 0 (the count of nonzeros, no
gradient through it), as ``torch.linalg.vector_norm``. Norms are accumulated in float64.
NaN propagates (also through the inf-norm's maximum); ``max(norm, eps)`` keeps NaN. Each kernel is a
serial chunk kernel compiled ``nogil=True`` that takes its chunks from a shared counter
(:mod:`._threads`): below ``SERIAL_THRESHOLD`` elements one call runs every chunk, above it
a pool of Python threads does, so small and large calls share compiled code.

Backward (matches torch autograd of ``x / norm(x).clamp_min(eps)``)::

    dx_j = dy_j / d - [n >= eps] * (sum_i dy_i x_i) / d**2 * dn/dx_j,   d = max(n, eps)

with ``dn/dx_j`` = ``x_j / n`` (p = 2), ``sign(x_j)`` (p = 1),
``sign(x_j) * [|x_j| == n] / #ties`` (p = ±inf), 0 (p = 0) and ``sign(x_j) |x_j|**(p-1) n**(1-p)``
otherwise, taken as 0 where ``x_j == 0`` or ``n == 0`` (torch's masks).
"""
import numba
import numpy as np
from numba import njit

from .. import _config
from . import _threads
from ._threads import first_chunk, later_chunk
from ._stream import FORWARD_STREAM_BYTES, STREAM_BYTES
from ._stream import stream_axpby as _stream_axpby
from ._stream import stream_axpby_next as _stream_axpby_next
from ._stream import stream_scale as _stream_scale
from ._stream import stream_scale_next as _stream_scale_next

P2, P1, PINF, PGEN, PNINF, P0 = 0, 1, 2, 3, 4, 5
INF = np.inf

_opts = _config.JIT_OPTIONS

#: unsigned index type (no negative-index wrap-around checks: the loops vectorise)
U = np.uintp


@njit(inline="always", **_opts)
def _init(pk):
    """The identity of a norm accumulator: -inf for p = -inf (a maximum of -|x|), else 0."""
    return -INF if pk == PNINF else np.float64(0.0)


@njit(inline="always", **_opts)
def _acc(v, a, pk, p):
    """Fold one element into a norm accumulator (sum of powers, or the max for p = inf)."""
    if pk == P2:
        return a + v * v
    if pk == P1:
        return a + abs(v)
    if pk == PINF:
        av = abs(v)
        if av > a or av != av:
            return av
        return a
    if pk == PNINF:  # the maximum of -|x| (NaN-propagating): min |x| = -max(-|x|)
        nv = -abs(v)
        if nv > a or nv != nv:
            return nv
        return a
    if pk == P0:  # the count of nonzeros (NaN counts, as NaN != 0)
        return a + (1.0 if v != 0.0 else 0.0)
    av = abs(v)
    if av == 0.0:
        return a if p > 0.0 else a + INF  # |0|**p = inf for p < 0: the norm is 0
    return a + av ** p


@njit(inline="always", **_opts)
def _finish(a, pk, p):
    """Norm from its accumulator."""
    if pk == P2:
        return np.sqrt(a)
    if pk == P1 or pk == PINF or pk == P0:
        return a
    if pk == PNINF:
        return -a
    return a ** (1.0 / p)


@njit(inline="always", **_opts)
def _row_acc(x, i, pk, p):
    """Norm accumulator of row ``i`` (sum of powers, or the max for p = inf)."""
    n = x.shape[1]
    a = np.float64(0.0)
    if pk == P2:
        for j in range(n):
            v = np.float64(x[i, j])
            a += v * v
    elif pk == P1:
        for j in range(n):
            a += abs(np.float64(x[i, j]))
    else:
        a = _init(pk)
        for j in range(n):
            a = _acc(np.float64(x[i, j]), a, pk, p)
    return a


@njit(inline="always", **_opts)
def _row_dot(g, x, i):
    n = x.shape[1]
    s = np.float64(0.0)
    for j in range(n):
        s += np.float64(g[i, j]) * np.float64(x[i, j])
    return s


@njit(inline="always", **_opts)
def _row_norm(x, i, pk, p):
    """The p-norm of row ``i``."""
    return _finish(_row_acc(x, i, pk, p), pk, p)


@njit(inline="always", **_opts)
def _clamp(nrm, eps):
    """max(nrm, eps), NaN-propagating."""
    return eps if nrm < eps else nrm


@njit(inline="always", **_opts)
def _dnorm(v, nrm, pk, p, cnt):
    """d||x||_p / dx for one element v (torch's masks: 0 where v == 0 or n == 0)."""
    if v == 0.0 or nrm == 0.0:
        return 0.0
    sg = 1.0 if v > 0.0 else -1.0
    if pk == P2:
        return v / nrm
    if pk == P1:
        return sg
    if pk == PINF or pk == PNINF:
        av = abs(v)
        if av == nrm:
            return sg / cnt
        return 0.0
    if pk == P0:
        return 0.0
    return sg * abs(v) ** (p - 1.0) * nrm ** (1.0 - p)


# ---------------------------------------------------------------- rows (M, N)


@njit(nogil=True, **_config.JIT_OPTIONS)
def _rows_forward(x, pk, p, eps, out, dbuf, nch, stream, counter):
    """Rows in ``nch`` fixed chunks (a function of M only: results do not depend on the
    thread count). For p = 2 and p = 1 the write loop of row i also accumulates the norm
    of row i + 1, so the read of the next row streams while this one is written (one
    pass over memory, like a copy). With ``stream`` (large outputs) the next row's norm
    is read first and the row is written with streaming stores."""
    m, n = x.shape
    xf = x.reshape(-1)
    of = out.reshape(-1)
    one = x.dtype.type(1.0)
    ch = first_chunk(counter, nch)
    while ch < nch:
        start = ch * m // nch
        stop = (ch + 1) * m // nch
        if start < stop:
            a = _row_acc(x, start, pk, p)
            for i in range(start, stop):
                dbuf[i] = _clamp(_finish(a, pk, p), eps)
                d = dbuf[i]  # data dtype: x / d like torch
                nxt = i + 1
                if stream and pk == P2 and nxt < stop:
                    a = _stream_scale_next(of, i * n, xf, i * n, one / d, n)
                elif stream:
                    if nxt < stop:
                        a = _row_acc(x, nxt, pk, p)
                    _stream_scale(of, i * n, xf, i * n, one / d, n)
                elif nxt < stop and pk == P2:
                    a = np.float64(0.0)
                    for j in range(n):
                        out[i, j] = x[i, j] / d
                        v = np.float64(x[nxt, j])
                        a += v * v
                elif nxt < stop and pk == P1:
                    a = np.float64(0.0)
                    for j in range(n):
                        out[i, j] = x[i, j] / d
                        a += abs(np.float64(x[nxt, j]))
                else:
                    for j in range(n):
                        out[i, j] = x[i, j] / d
                    if nxt < stop:
                        a = _row_acc(x, nxt, pk, p)
        ch = later_chunk(counter, nch)


@njit(nogil=True, **_config.JIT_OPTIONS)
def _rows_backward(grad_out, x, pk, p, eps, grad_x, nch, stream, counter):
    """Fixed row chunks as the forward; for p = 2 the write loop of row i accumulates the
    two sums (sum x², sum dy x) of row i + 1 (with ``stream``, large outputs: the sums of
    row i + 1 first, then row i with streaming stores). The p = 2 row is
    ``dy * (1/d) + x * (-c)`` in the data dtype."""
    m, n = x.shape
    xf = x.reshape(-1)
    gf = grad_out.reshape(-1)
    df = grad_x.reshape(-1)
    t = x.dtype.type
    ch = first_chunk(counter, nch)
    while ch < nch:
        start = ch * m // nch
        stop = (ch + 1) * m // nch
        if start < stop:
            a = _row_acc(x, start, pk, p)
            s = _row_dot(grad_out, x, start)
            for i in range(start, stop):
                nrm = _finish(a, pk, p)
                d = _clamp(nrm, eps)
                inv_d = 1.0 / d
                coef = s * inv_d * inv_d if nrm >= eps and pk != P0 else 0.0
                nxt = i + 1
                if pk == P2:
                    c2 = coef / nrm if nrm != 0.0 else coef * 0.0
                    inv_t = t(inv_d)
                    nc2_t = t(-c2)
                    if stream and nxt < stop:
                        a, s = _stream_axpby_next(df, i * n, gf, i * n, inv_t, xf, i * n, nc2_t, n)
                    elif stream:
                        _stream_axpby(df, i * n, gf, i * n, inv_t, xf, i * n, nc2_t, n)
                    elif nxt < stop:
                        a = np.float64(0.0)
                        s = np.float64(0.0)
                        for j in range(n):
                            grad_x[i, j] = grad_out[i, j] * inv_t + x[i, j] * nc2_t
                            v = np.float64(x[nxt, j])
                            a += v * v
                            s += np.float64(grad_out[nxt, j]) * v
                    else:
                        for j in range(n):
                            grad_x[i, j] = grad_out[i, j] * inv_t + x[i, j] * nc2_t
                    continue
                cnt = np.float64(0.0)
                if pk == PINF or pk == PNINF:
                    for j in range(n):
                        av = abs(np.float64(x[i, j]))
                        if av == nrm or av != av:
                            cnt += 1.0
                for j in range(n):
                    v = np.float64(x[i, j])
                    g = _dnorm(v, nrm, pk, p, cnt)
                    grad_x[i, j] = grad_out[i, j] * inv_d - coef * g
                if nxt < stop:
                    a = _row_acc(x, nxt, pk, p)
                    s = _row_dot(grad_out, x, nxt)
        ch = later_chunk(counter, nch)


# ------------------------------------------------------- channels (outer, C, inner)


@njit(nogil=True, **_config.JIT_OPTIONS)
def _chan_forward(x, pk, p, eps, out, acc, dbuf, bsize, counter):
    outer, c_len, inner = x.shape
    xf = x.reshape(-1)
    of = out.reshape(-1)
    nblk = (inner + bsize - 1) // bsize
    ntasks = outer * nblk
    nch = acc.shape[0]
    init = _init(pk)
    ch = first_chunk(counter, nch)
    while ch < nch:
        a = acc[ch]
        dt = dbuf[ch]
        for t in range(ch * ntasks // nch, (ch + 1) * ntasks // nch):
            o = t // nblk
            j0 = (t % nblk) * bsize
            nb = min(inner, j0 + bsize) - j0
            base = o * c_len * inner + j0
            for j in range(nb):
                a[j] = init
            for c in range(c_len):
                rb = base + c * inner
                if pk == P2:
                    for j in range(nb):
                        v = np.float64(xf[U(rb + j)])
                        a[j] += v * v
                elif pk == P1:
                    for j in range(nb):
                        a[j] += abs(np.float64(xf[U(rb + j)]))
                else:
                    for j in range(nb):
                        a[j] = _acc(np.float64(xf[U(rb + j)]), a[j], pk, p)
            for j in range(nb):
                dt[j] = _clamp(_finish(a[j], pk, p), eps)
            for c in range(c_len):
                rb = base + c * inner
                for j in range(nb):
                    of[U(rb + j)] = xf[U(rb + j)] / dt[j]
        ch = later_chunk(counter, nch)


@njit(nogil=True, **_config.JIT_OPTIONS)
def _chan_backward(grad_out, x, pk, p, eps, grad_x, acc, bsize, counter):
    """acc[ch] rows: 0 norm, 1 sum(dy*x), 2 1/d, 3 coef, 4 tie count (p = inf)."""
    outer, c_len, inner = x.shape
    xf = x.reshape(-1)
    gf = grad_out.reshape(-1)
    df = grad_x.reshape(-1)
    nblk = (inner + bsize - 1) // bsize
    ntasks = outer * nblk
    nch = acc.shape[0]
    init = _init(pk)
    ch = first_chunk(counter, nch)
    while ch < nch:
        a0 = acc[ch, 0]
        a1 = acc[ch, 1]
        a2 = acc[ch, 2]
        a3 = acc[ch, 3]
        a4 = acc[ch, 4]
        for t in range(ch * ntasks // nch, (ch + 1) * ntasks // nch):
            o = t // nblk
            j0 = (t % nblk) * bsize
            nb = min(inner, j0 + bsize) - j0
            base = o * c_len * inner + j0
            for j in range(nb):
                a0[j] = init
                a1[j] = 0.0
                a4[j] = 0.0
            for c in range(c_len):
                rb = base + c * inner
                if pk == P2:
                    for j in range(nb):
                        v = np.float64(xf[U(rb + j)])
                        a0[j] += v * v
                        a1[j] += np.float64(gf[U(rb + j)]) * v
                else:
                    for j in range(nb):
                        v = np.float64(xf[U(rb + j)])
                        a0[j] = _acc(v, a0[j], pk, p)
                        a1[j] += np.float64(gf[U(rb + j)]) * v
            for j in range(nb):
                nrm = _finish(a0[j], pk, p)
                d = _clamp(nrm, eps)
                a0[j] = nrm
                a2[j] = 1.0 / d
                a3[j] = a1[j] * a2[j] * a2[j] if nrm >= eps and pk != P0 else 0.0
            if pk == P2:
                for j in range(nb):  # a3 <- coef / n (the p = 2 factor of x)
                    a3[j] = a3[j] / a0[j] if a0[j] != 0.0 else a3[j] * 0.0
                for c in range(c_len):
                    rb = base + c * inner
                    for j in range(nb):
                        df[U(rb + j)] = gf[U(rb + j)] * a2[j] - a3[j] * xf[U(rb + j)]
                continue
            if pk == PINF or pk == PNINF:
                for c in range(c_len):
                    rb = base + c * inner
                    for j in range(nb):
                        av = abs(np.float64(xf[U(rb + j)]))
                        if av == a0[j] or av != av:
                            a4[j] += 1.0
            for c in range(c_len):
                rb = base + c * inner
                for j in range(nb):
                    v = np.float64(xf[U(rb + j)])
                    g = _dnorm(v, a0[j], pk, p, a4[j])
                    df[U(rb + j)] = gf[U(rb + j)] * a2[j] - a3[j] * g
        ch = later_chunk(counter, nch)


def _run(kernel, serial, nch, *args):
    """``kernel(*args, counter)``: in one call (``serial``), else on up to ``nch`` threads
    (:func:`._threads.run`); the kernel takes its ``nch`` chunks from ``counter`` (a fresh
    one: the serial call of a row kernel runs several chunks too)."""
    if serial:
        kernel(*args, np.zeros(1, np.int64))
    else:
        _threads.run(lambda counter: kernel(*args, counter), nch)


def _pkind(p):
    if p == 2.0:
        return P2
    if p == 1.0:
        return P1
    if p == np.inf:
        return PINF
    if p == -np.inf:
        return PNINF
    if p == 0.0:
        return P0
    return PGEN


def _blocking(x, serial):
    """(block size, number of chunks) for the channels view: a block of C x B values
    stays in L2 between the norm pass and the write pass."""
    outer, c_len, inner = x.shape
    bsize = max(16, min(inner, 131072 // max(1, c_len * x.itemsize)))
    bsize = min(bsize, inner)
    ntasks = outer * ((inner + bsize - 1) // bsize)
    nch = 1 if serial else max(1, min(ntasks, 8 * numba.get_num_threads()))
    return bsize, nch


#: rows are processed in this many fixed chunks (at most; a function of M only)
ROW_CHUNKS = 64


def forward_rows(x, p, eps, out):
    """``out[i] = x[i] / max(||x[i]||_p, eps)`` for each row of the (M, N) array ``x``."""
    dbuf = np.empty(x.shape[0], x.dtype)
    pk = _pkind(p)
    nch = max(1, min(ROW_CHUNKS, x.shape[0]))
    stream = out.nbytes >= FORWARD_STREAM_BYTES
    _run(_rows_forward, x.size < _config.SERIAL_THRESHOLD, nch, x, pk, p, eps, out, dbuf, nch, stream)


def backward_rows(grad_out, x, p, eps, grad_x):
    """Gradient of :func:`forward_rows` with respect to ``x`` into ``grad_x`` (M, N)."""
    pk = _pkind(p)
    nch = max(1, min(ROW_CHUNKS, x.shape[0]))
    stream = grad_x.nbytes >= STREAM_BYTES
    _run(_rows_backward, x.size < _config.SERIAL_THRESHOLD, nch, grad_out, x, pk, p, eps, grad_x, nch, stream)


def forward_channels(x, p, eps, out):
    """``out[o, :, j] = x[o, :, j] / max(||x[o, :, j]||_p, eps)`` on (outer, C, inner)."""
    serial = x.size < _config.SERIAL_THRESHOLD
    bsize, nch = _blocking(x, serial)
    acc = np.empty((nch, bsize))
    dbuf = np.empty((nch, bsize), x.dtype)
    pk = _pkind(p)
    _run(_chan_forward, serial, nch, x, pk, p, eps, out, acc, dbuf, bsize)


def backward_channels(grad_out, x, p, eps, grad_x):
    """Gradient of :func:`forward_channels` with respect to ``x`` into ``grad_x``."""
    serial = x.size < _config.SERIAL_THRESHOLD
    bsize, nch = _blocking(x, serial)
    acc = np.empty((nch, 5, bsize))
    pk = _pkind(p)
    _run(_chan_backward, serial, nch, grad_out, x, pk, p, eps, grad_x, acc, bsize)
