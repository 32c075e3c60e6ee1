"""Row-normalization forwards on 16-bit data (bfloat16, float16) without a float32 copy.

Layout: ``x``, ``res`` and the outputs are C-contiguous ``(M, N)`` arrays of *bits*: a
bfloat16 array is seen as ``uint16``, a float16 array as ``int16`` (:mod:`._bits`); the
residual stream ``s`` of the fused kernels and ``res`` may also be float32 (a float32
residual stream under 16-bit activations). ``weight``/``bias`` are float32 ``(N,)`` (ones /
zeros when the caller gave none; the effective ``weight_offset + w``); the statistics
``mean``/``rstd`` are float32 ``(M,)``.

Each element is converted to float32 as it is loaded and rounded (nearest even) as it is
stored; all arithmetic is float32, every sum is blocked (float32 blocks of ``BLOCK``,
float64 totals) as in :mod:`._stats`. A row (8 KiB for N = 4096) is read from memory once:
the statistics pass pulls it into L1/L2 and the write pass re-reads it from there. The
fused ``add_*`` kernels round ``s = x + res`` to ``s``'s format first and normalize the
rounded ``s`` read back from its (cached) output row: ``y`` is the norm of ``s`` as
returned, as on the float32 copy path. Every row is read before it is written, element
by element, so ``out`` may be ``x`` and ``s`` may be ``x`` or ``res``.

Thread mapping: serial ``nogil`` chunk kernels over the fixed row chunks of
:func:`.layer_norm._chunks` (one chunk below ``SERIAL_THRESHOLD`` elements), run on the
thread pool by :func:`.layer_norm.run_chunks`. Outputs of at least ``STREAM_BYTES`` that
overlap no input are written from the row loop with non-temporal stores of their bits
(:func:`write_row`: each block converted into a cached staging buffer, then copied out
with ``vmovntdq`` over each row's :func:`._stream.line_span`, the lines shared by two rows
streamed whole, prefetching the next row), as the float32 kernels stream theirs: one
expression for streamed and cached elements, bitwise equal. :func:`write_row` is shared
with the quantized kernels (:mod:`._quant`). The kernels use 512-bit vectors where the
CPU has them (:func:`._stream.wide_vectors`: their conversions, not memory, bound them).
"""
import numpy as np
from numba import njit

from .. import _config
from ._bits import add, code, load, mul, narrow32, put, qcode
from ._stats import BLOCK, U
from ._stream import (EDGE, PREFETCH_BLOCK, STREAM_BYTES, line_span, nt_copy, overlaps, prefetch_run, stream_fence,
                      wide_vectors)
from ._threads import first_chunk, later_chunk
from ._threads import launch as launch_rows
from .layer_norm import _chunks, run_chunks
from .normalize import P0, P2, PINF, PNINF, _acc, _clamp, _dnorm, _finish, _init, _pkind


@njit(inline="always", **_config.JIT_OPTIONS)
def _row_sq(row, n):
    """Σ row² (float64 total of float32 blocks) of a 16-bit/float32 row."""
    ss = np.float64(0.0)
    for j0 in range(0, n, BLOCK):
        sb = np.float32(0.0)
        for j in range(U(j0), U(min(j0 + BLOCK, n))):
            v = load(row, j)
            sb += v * v
        ss += sb
    return ss


@njit(inline="always", **_config.JIT_OPTIONS)
def _row_mean_var(row, n):
    """(mean, biased variance) as float64: a sum, then squares about the float32 mean
    corrected exactly (two passes over the cached row, see ``_stats.mean_var_two_pass``)."""
    s1 = np.float64(0.0)
    for j0 in range(0, n, BLOCK):
        sb = np.float32(0.0)
        for j in range(U(j0), U(min(j0 + BLOCK, n))):
            sb += load(row, j)
        s1 += sb
    mu = s1 / n
    mu_t = np.float32(mu)
    s2 = np.float64(0.0)
    for j0 in range(0, n, BLOCK):
        sb = np.float32(0.0)
        for j in range(U(j0), U(min(j0 + BLOCK, n))):
            d = load(row, j) - mu_t
            sb += d * d
        s2 += sb
    dm = mu - mu_t
    var = s2 / n - dm * dm
    return mu, (max(var, 0.0) if var == var else var)


#: what :func:`write_row` writes (a constant of each kernel, folded away after inlining)
SCALE, AFFINE, DIVIDE, QUANT = 0, 1, 2, 3


@njit(inline="always", **_config.JIT_OPTIONS)
def _value(kind, src, j, a, b, weight, bias):
    """Element ``j`` of a row before rounding: ``(src·a)·w`` (SCALE, QUANT: ``a`` folds in
    the quantization step), ``((src·a) + b)·w + bias`` (AFFINE), ``src / a`` (DIVIDE), in
    this order with IEEE float32 operations (:func:`._bits.mul`: not reassociated or
    fused, so every loop rounds an element the same)."""
    if kind == AFFINE:
        return add(mul(add(mul(load(src, j), a), b), weight[j]), bias[j])
    if kind == DIVIDE:
        return load(src, j) / a
    return mul(mul(load(src, j), a), weight[j])


@njit(inline="always", **_config.JIT_OPTIONS)
def _code(kind, dst, v):
    return qcode(dst, v) if kind == QUANT else code(dst, v)


#: elements of a kernel's :func:`write_row` staging buffer: a shared-line edge, then a block
STAGE = EDGE + PREFETCH_BLOCK


@njit(inline="always", **_config.JIT_OPTIONS)
def write_row(kind, src, n, a, b, weight, bias, of, base, stream, nxt, stage, pend, first, last):
    """Write row ``base // n`` of the flat output ``of`` from the row ``src`` (element
    :func:`_value` rounded to ``of``'s format, or quantized); returns how many elements of
    its tail wait in ``stage`` for the next row (below).

    Not ``stream``: ordinary stores. ``stream``: the row's :func:`._stream.line_span` run
    is converted block by block (:data:`PREFETCH_BLOCK` elements, prefetching the same
    block of the next row ``nxt``) into ``stage[EDGE:]`` with ordinary contiguous stores
    and copied out with :func:`._stream.nt_copy`; the cache lines the row shares with its
    neighbours are streamed whole through ``stage[:EDGE]``: ``pend`` elements of the
    previous row's tail wait there unless ``first`` (a chunk's first row: its head takes
    ordinary stores), and this row's tail is left there unless ``last``. One expression
    for every element, so streamed and cached bits are equal. ``stage`` is a
    :data:`STAGE`-element array of ``of``'s dtype (any, when not ``stream``)."""
    ub = U(base)  # unsigned: a signed ``base + j`` would index with wrap-around, which
    # LLVM vectorised as 8 scattered 16-bit stores (a cached bf16 row 3x slower than float32)
    if not stream:
        for j in range(U(n)):
            of[ub + j] = _code(kind, of, _value(kind, src, j, a, b, weight, bias))
        return 0
    h, e, lined = line_span(of, base, n)
    if lined and not first:  # the line shared with the previous row, whole
        for j in range(U(h)):
            stage[U(pend) + j] = _code(kind, of, _value(kind, src, j, a, b, weight, bias))
        nt_copy(of, base - pend, stage, 0, pend + h)
    else:
        for j in range(U(h)):
            of[ub + j] = _code(kind, of, _value(kind, src, j, a, b, weight, bias))
    for j0 in range(h, e, PREFETCH_BLOCK):
        j1 = min(j0 + PREFETCH_BLOCK, e)
        prefetch_run(nxt, j0, j1)
        for k in range(U(j1 - j0)):
            stage[U(EDGE) + k] = _code(kind, of, _value(kind, src, U(j0) + k, a, b, weight, bias))
        nt_copy(of, base + j0, stage, EDGE, j1 - j0)
    if lined and not last:  # staged until the next row's head is known
        for j in range(U(e), U(n)):
            stage[j - U(e)] = _code(kind, of, _value(kind, src, j, a, b, weight, bias))
        return n - e
    for j in range(U(e), U(n)):
        of[ub + j] = _code(kind, of, _value(kind, src, j, a, b, weight, bias))
    return 0


@njit(nogil=True, **_config.JIT_OPTIONS)
def _rms_forward(x, weight, eps, out, rstd, nchunks, stream, counter):
    """Streamed outputs prefetch the next row run by run, as ``rms_norm``'s forward."""
    wide_vectors()
    m, n = x.shape
    of = out.reshape(-1)
    stage = np.empty(STAGE if stream else 0, out.dtype)
    c = first_chunk(counter, nchunks)
    while c < nchunks:
        start = c * m // nchunks
        stop = (c + 1) * m // nchunks
        pend = 0
        for i in range(start, stop):
            row = x[i]
            r = 1.0 / np.sqrt(_row_sq(row, n) / n + eps)
            rstd[i] = r
            pend = write_row(SCALE, row, n, np.float32(r), np.float32(0.0), weight, weight, of, i * n, stream,
                             x[min(i + 1, stop - 1)], stage, pend, i == start, i == stop - 1)
        if stream:  # order this chunk's streaming stores (see _stream.stream_fence)
            stream_fence()
        c = later_chunk(counter, nchunks)


@njit(nogil=True, **_config.JIT_OPTIONS)
def _ln_forward(x, weight, bias, eps, out, mean, rstd, nchunks, stream, counter):
    wide_vectors()
    m, n = x.shape
    of = out.reshape(-1)
    stage = np.empty(STAGE if stream else 0, out.dtype)
    c = first_chunk(counter, nchunks)
    while c < nchunks:
        start = c * m // nchunks
        stop = (c + 1) * m // nchunks
        pend = 0
        for i in range(start, stop):
            row = x[i]
            mu, var = _row_mean_var(row, n)
            r = 1.0 / np.sqrt(var + eps)
            mean[i] = mu
            rstd[i] = r
            pend = write_row(AFFINE, row, n, np.float32(r), np.float32(-mu * r), weight, bias, of, i * n, stream,
                             x[min(i + 1, stop - 1)], stage, pend, i == start, i == stop - 1)
        if stream:  # order this chunk's streaming stores (see _stream.stream_fence)
            stream_fence()
        c = later_chunk(counter, nchunks)


@njit(inline="always", **_config.JIT_OPTIONS)
def _add_rows(xr, rr, sr, n):
    """``s = round(x + res)`` written to ``sr``."""
    for j in range(U(n)):
        put(sr, j, load(xr, j) + load(rr, j))


@njit(nogil=True, **_config.JIT_OPTIONS)
def _add_rms_forward(x, res, weight, eps, s, out, rstd, nchunks, stream, counter):
    wide_vectors()
    m, n = x.shape
    of = out.reshape(-1)
    stage = np.empty(STAGE if stream else 0, out.dtype)
    c = first_chunk(counter, nchunks)
    while c < nchunks:
        start = c * m // nchunks
        stop = (c + 1) * m // nchunks
        pend = 0
        for i in range(start, stop):
            srow = s[i]
            _add_rows(x[i], res[i], srow, n)
            r = 1.0 / np.sqrt(_row_sq(srow, n) / n + eps)
            rstd[i] = r
            pend = write_row(SCALE, srow, n, np.float32(r), np.float32(0.0), weight, weight, of, i * n, stream,
                             x[min(i + 1, stop - 1)], stage, pend, i == start, i == stop - 1)
        if stream:  # order this chunk's streaming stores (see _stream.stream_fence)
            stream_fence()
        c = later_chunk(counter, nchunks)


@njit(nogil=True, **_config.JIT_OPTIONS)
def _add_ln_forward(x, res, weight, bias, eps, s, out, mean, rstd, nchunks, stream, counter):
    wide_vectors()
    m, n = x.shape
    of = out.reshape(-1)
    stage = np.empty(STAGE if stream else 0, out.dtype)
    c = first_chunk(counter, nchunks)
    while c < nchunks:
        start = c * m // nchunks
        stop = (c + 1) * m // nchunks
        pend = 0
        for i in range(start, stop):
            srow = s[i]
            _add_rows(x[i], res[i], srow, n)
            mu, var = _row_mean_var(srow, n)
            r = 1.0 / np.sqrt(var + eps)
            mean[i] = mu
            rstd[i] = r
            pend = write_row(AFFINE, srow, n, np.float32(r), np.float32(-mu * r), weight, bias, of, i * n, stream,
                             x[min(i + 1, stop - 1)], stage, pend, i == start, i == stop - 1)
        if stream:  # order this chunk's streaming stores (see _stream.stream_fence)
            stream_fence()
        c = later_chunk(counter, nchunks)


@njit(nogil=True, **_config.JIT_OPTIONS)
def _normalize_forward(x, pk, p, eps, out, nchunks, stream, counter):
    """Lp normalize each row: ``y = x / max(||x||_p, eps)`` (norm accumulated in float64,
    the division in float32 as torch's float32 composition does)."""
    wide_vectors()
    m, n = x.shape
    of = out.reshape(-1)
    no_w = np.empty(0, np.float32)  # DIVIDE reads no weight
    stage = np.empty(STAGE if stream else 0, out.dtype)
    c = first_chunk(counter, nchunks)
    while c < nchunks:
        start = c * m // nchunks
        stop = (c + 1) * m // nchunks
        pend = 0
        for i in range(start, stop):
            row = x[i]
            a = _init(pk)
            for j in range(n):
                a = _acc(np.float64(load(row, j)), a, pk, p)
            d = np.float32(_clamp(_finish(a, pk, p), eps))
            pend = write_row(DIVIDE, row, n, d, d, no_w, no_w, of, i * n, stream, x[min(i + 1, stop - 1)], stage,
                             pend, i == start, i == stop - 1)
        if stream:  # order this chunk's streaming stores (see _stream.stream_fence)
            stream_fence()
        c = later_chunk(counter, nchunks)


@njit(nogil=True, **_config.JIT_OPTIONS)
def _normalize_backward(grad_out, x, pk, p, eps, grad_x, nchunks, counter):
    """Gradient of :func:`_normalize_forward` per row, the math of the float32 rows kernel
    (``normalize._rows_backward``): float64 norm and Σ dy·x, then p = 2 as
    ``dy·f32(1/d) + x·f32(−c/n)`` in float32, other p in float64; each element of
    ``grad_x`` rounded once to its format (float64 values via :func:`._bits.narrow32`).
    A row is read from memory once (the write pass re-reads it from cache) and every
    element is read before it is written."""
    m, n = x.shape
    c = first_chunk(counter, nchunks)
    while c < nchunks:
        for i in range(c * m // nchunks, (c + 1) * m // nchunks):
            row = x[i]
            dy = grad_out[i]
            dst = grad_x[i]
            a = _init(pk)
            s = np.float64(0.0)
            for j in range(n):
                v = np.float64(load(row, j))
                a = _acc(v, a, pk, p)
                s += np.float64(load(dy, j)) * v
            nrm = _finish(a, pk, p)
            inv_d = 1.0 / _clamp(nrm, eps)
            coef = s * inv_d * inv_d if nrm >= eps and pk != P0 else 0.0
            if pk == P2:
                c2 = coef / nrm if nrm != 0.0 else coef * 0.0
                inv_t = np.float32(inv_d)
                nc2_t = np.float32(-c2)
                for j in range(U(n)):
                    dst[j] = code(dst, load(dy, j) * inv_t + load(row, j) * nc2_t)
                continue
            cnt = np.float64(0.0)
            if pk == PINF or pk == PNINF:
                for j in range(n):
                    av = abs(np.float64(load(row, j)))
                    if av == nrm or av != av:
                        cnt += 1.0
            for j in range(n):
                g = _dnorm(np.float64(load(row, j)), nrm, pk, p, cnt)
                dst[j] = code(dst, narrow32(np.float64(load(dy, j)) * inv_d - coef * g))
        c = later_chunk(counter, nchunks)


@njit(nogil=True, **_config.JIT_OPTIONS)
def _ln_stats(x, eps, mean, rstd, nch, counter):
    """Row statistics; chunks of consecutive rows from ``counter`` (:func:`._threads.launch`)."""
    m = x.shape[0]
    c = first_chunk(counter, nch)
    while c < nch:
        for i in range(c * m // nch, (c + 1) * m // nch):
            mu, var = _row_mean_var(x[i], x.shape[1])
            mean[i] = mu
            rstd[i] = 1.0 / np.sqrt(var + eps)
        c = later_chunk(counter, nch)


@njit(nogil=True, **_config.JIT_OPTIONS)
def _rms_stats(x, eps, rstd, nch, counter):
    """As :func:`_ln_stats`, ``rstd`` only."""
    m = x.shape[0]
    c = first_chunk(counter, nch)
    while c < nch:
        for i in range(c * m // nch, (c + 1) * m // nch):
            rstd[i] = 1.0 / np.sqrt(_row_sq(x[i], x.shape[1]) / x.shape[1] + eps)
        c = later_chunk(counter, nch)


def plan(x, out, *inputs):
    """``(chunks, stream)`` of a row kernel writing ``out`` from ``x`` (and ``inputs``): one
    chunk below ``SERIAL_THRESHOLD`` elements; ``stream`` for calls whose input or output
    is at least ``STREAM_BYTES`` (the int8 codes of a 128 MiB input are 32 MiB, still far
    beyond the caches) and whose output overlaps no input (in-place outputs are in cache)."""
    nchunks = 1 if x.size < _config.SERIAL_THRESHOLD else _chunks(x.shape[0])
    stream = max(out.nbytes, x.nbytes) >= STREAM_BYTES and not overlaps(out, x, *inputs)
    return nchunks, stream


def launch(kernel, x, out, inputs, *args):
    """Run the row chunk kernel ``kernel`` on ``args`` + :func:`plan` ``(x, out, *inputs)``
    (:func:`.layer_norm.run_chunks`)."""
    nchunks, stream = plan(x, out, *inputs)
    run_chunks(kernel, x.size, nchunks, *args, nchunks, stream)


def rms_forward(x, weight, eps, out, rstd):
    """RMS-normalize the 16-bit rows of ``x`` into ``out`` (16-bit); fill ``rstd``."""
    launch(_rms_forward, x, out, (), x, weight, eps, out, rstd)


def ln_forward(x, weight, bias, eps, out, mean, rstd):
    """Layer-normalize the 16-bit rows of ``x`` into ``out``; fill ``mean``/``rstd``."""
    launch(_ln_forward, x, out, (), x, weight, bias, eps, out, mean, rstd)


def add_rms_forward(x, res, weight, eps, s, out, rstd):
    """``s = x + res`` (rounded to ``s``'s format), ``out = rms_norm(s)``; fill ``rstd``."""
    launch(_add_rms_forward, x, out, (res, s), x, res, weight, eps, s, out, rstd)


def add_ln_forward(x, res, weight, bias, eps, s, out, mean, rstd):
    """``s = x + res`` (rounded to ``s``'s format), ``out = layer_norm(s)``."""
    launch(_add_ln_forward, x, out, (res, s), x, res, weight, bias, eps, s, out, mean, rstd)


def normalize_forward(x, p, eps, out):
    """Lp-normalize the 16-bit rows of ``x`` into ``out``."""
    launch(_normalize_forward, x, out, (), x, _pkind(p), float(p), eps, out)


def normalize_backward(grad_out, x, p, eps, grad_x):
    """Gradient of :func:`normalize_forward` (16-bit ``x``; ``grad_out`` 16-bit or float32)
    into the 16-bit ``grad_x``; no float32 copy."""
    nchunks = 1 if x.size < _config.SERIAL_THRESHOLD else _chunks(x.shape[0])
    run_chunks(_normalize_backward, x.size, nchunks, grad_out, x, _pkind(p), float(p), eps, grad_x, nchunks)


def ln_stats(x, eps, mean, rstd):
    """``mean`` and ``rstd = 1/sqrt(var + eps)`` of each 16-bit row of ``x``."""
    launch_rows(_ln_stats, x.size, x.shape[0], x, eps, mean, rstd)


def rms_stats(x, eps, rstd):
    """``rstd = 1/sqrt(mean(x²) + eps)`` of each 16-bit row of ``x``."""
    launch_rows(_rms_stats, x.size, x.shape[0], x, eps, rstd)
