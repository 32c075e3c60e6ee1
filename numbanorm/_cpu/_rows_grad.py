"""Row-normalization backward for the fused and memory-saving paths (CPU).

One kernel serves ``add_layer_norm_backward``, ``add_rms_norm_backward`` and the
``y=`` (memory-saving) forms of ``layer_norm_backward`` / ``rms_norm_backward``:

* ``v`` is the saved forward *input* (``x``, or ``s = x + residual``) or the forward
  *output* ``y``; per row ``i`` and column ``j`` the normalized value is
  ``x̂ = (v − c_j − mean_i) · q_i · k_j``. From the input: ``c = 0, k = 1, q = rstd``;
  from the output: ``mean = 0, q = 1, c = bias, k = 1/w`` (0 where ``w = 0``).
* ``g = w · dy``; ``dx = rstd · (g − ḡ − x̂ · mean(g x̂)) + nanfix_j + gs`` (``ḡ`` only
  when ``centered``, i.e. LayerNorm); ``gs`` is the gradient of the residual output
  ``s`` (added when ``has_gs``; otherwise ``gs`` is one zero row, read and not added);
  ``nanfix`` is 0, or NaN on the columns whose
  ``x̂`` cannot be recovered from ``y`` (zero weight).
* ``dw = Σ_rows dy · x̂`` and ``db = Σ_rows dy`` from per-chunk data-dtype accumulator
  rows flushed every ``FLUSH`` rows into float64 partials, summed in chunk order
  (deterministic, no atomics), as the other row kernels do.

Layout: ``cols`` is ``(4, N)`` = (w, c, k, nanfix), ``rows`` is ``(3, M)`` =
(mean, q, rstd), all C-contiguous in the compute dtype; ``grad_out``, ``v``, ``gs`` and
``grad_x`` of the compute dtype or 16-bit bit views (no float32 copy of bfloat16/float16
data). Per row: the two row sums, then one pass over the cached row writing grad_x and
adding dy·x̂ and dy into the accumulator rows (a separate accumulating pass cost 4-11 %
of add_layer_norm_backward (4096, 1024) and (8192, 4096)); grad_x is written with
streaming stores straight from the loop for large outputs (as the forwards,
:func:`._stream.row_span`; 16-bit values packed in pairs).

Thread mapping: a serial ``nogil`` chunk kernel (:mod:`._threads`, run by
:func:`.layer_norm.run_chunks`): ``nchunks`` fixed chunks of consecutive rows
(:func:`.layer_norm._chunks`), one thread below ``SERIAL_THRESHOLD`` elements, else the
pool's threads taking chunks from a shared counter; results depend on the shape only.

No array argument of an ``inline="always"`` helper may be used only under a branch (as
``gs`` in :func:`_dx` once was): Numba increfs the inlined parameter at every call and
decrefs it on each path, its reference-count pruning cannot pair the two across the
branch, so the loop made two atomic ``NRT_incref``/``NRT_decref`` calls per element and
did not vectorise (13 ns an element, ~15x the whole kernel serially, worse in threads
sharing the count's cache line). A ``prange`` body hid it: its gufunc has no refcounts.
"""
import numpy as np
from numba import njit
from numba.extending import overload

from .. import _config
from . import _work
from ._bits import add, code, load, mul, put
from ._stats import BLOCK, FLUSH, U, sum_chunks
from ._stream import STREAM_BYTES, nt_store, nt_store2, overlaps, row_span, stream_fence
from ._threads import first_chunk, later_chunk
from .layer_norm import _chunks, run_chunks

#: the backward reads and writes 16-bit data as bit views (``_ops/_lowp.rows_backward``)
LOWP = True


@njit(inline="always", **_config.JIT_OPTIONS)
def _xhat(row, cc, kk, mu, q, j):
    return (load(row, j) - cc[j] - mu) * q * kk[j]


@njit(inline="always", **_config.JIT_OPTIONS)
def _dx(dy, row, gr, has_gs, w, cc, kk, nanfix, mu, q, r, a_t, b_t, aw, ab, j):
    """``grad_x[i, j]`` before rounding (module doc), in this order of IEEE operations
    (:func:`._bits.mul`): the cached, streamed and packed loops round it the same. Adds
    ``dy · x̂`` and ``dy`` into the accumulator rows ``aw``/``ab`` (the row's only pass
    over them: no separate accumulating pass re-reading dy and the row)."""
    dyj = load(dy, j)
    xh = mul(mul(add(add(load(row, j), -cc[j]), -mu), q), kk[j])
    aw[j] = add(aw[j], mul(dyj, xh))  # strict: the same sums from every loop and CPU
    ab[j] += dyj
    d = add(mul(r, add(add(mul(dyj, w[j]), -a_t), -mul(xh, b_t))), nanfix[j])
    gv = load(gr, j)  # unconditional: an array used only under a branch costs a refcount pair per element
    if has_gs:
        d = add(d, gv)
    return d


def _stream_dx(dy, row, gr, has_gs, w, cc, kk, nanfix, mu, q, r, a_t, b_t, aw, ab, gf, base, j0, j1):
    """Elements ``[j0, j1)`` of a stream span of grad_x with streaming stores (16-bit:
    pairs packed into 32 bits, see :func:`._stream.nt_store2`)."""


@overload(_stream_dx, inline="always", jit_options=_config.JIT_OPTIONS)
def _stream_dx_impl(dy, row, gr, has_gs, w, cc, kk, nanfix, mu, q, r, a_t, b_t, aw, ab, gf, base, j0, j1):
    if gf.dtype.bitwidth == 16:
        def pairs(dy, row, gr, has_gs, w, cc, kk, nanfix, mu, q, r, a_t, b_t, aw, ab, gf, base, j0, j1):
            for k in range(U((j1 - j0) // 2)):
                j = U(j0) + U(2) * k
                nt_store2(gf, base + j, code(gf, _dx(dy, row, gr, has_gs, w, cc, kk, nanfix, mu, q, r, a_t, b_t, aw, ab, j)),
                          code(gf, _dx(dy, row, gr, has_gs, w, cc, kk, nanfix, mu, q, r, a_t, b_t, aw, ab, j + U(1))))
        return pairs

    def singles(dy, row, gr, has_gs, w, cc, kk, nanfix, mu, q, r, a_t, b_t, aw, ab, gf, base, j0, j1):
        for j in range(U(j0), U(j1)):
            nt_store(gf, base + j, code(gf, _dx(dy, row, gr, has_gs, w, cc, kk, nanfix, mu, q, r, a_t, b_t, aw, ab, j)))
    return singles


@njit(nogil=True, **_config.JIT_OPTIONS)
def _backward(grad_out, v, cols, rows, gs, has_gs, centered, grad_x, acc, part, nchunks, stream, counter):
    """Arrays of the compute dtype (``cols``'s), or 16-bit bits for the data (``grad_out``,
    ``v``, ``gs``) and ``grad_x`` (:mod:`._bits`): loaded as float32, grad_x rounded once.
    ``gs`` is ``(M, N)`` with ``has_gs``, else a zero ``(1, N)`` row; chunks ``c`` of
    ``nchunks`` come from ``counter`` (:func:`._threads.first_chunk`)."""
    m, n = v.shape
    t = cols.dtype.type
    w = cols[0]
    cc = cols[1]
    kk = cols[2]
    nanfix = cols[3]
    gf = grad_x.reshape(-1)
    c = first_chunk(counter, nchunks)
    while c < nchunks:
        start = c * m // nchunks
        stop = (c + 1) * m // nchunks
        aw = acc[0, c]
        ab = acc[1, c]
        for i in range(start, stop):
            mu = t(rows[0, i])
            q = rows[1, i]
            r = rows[2, i]
            dy = grad_out[i]
            row = v[i]
            gr = gs[i if has_gs else 0]  # without gs: the zero row (read, never added)
            a = np.float64(0.0)
            b = np.float64(0.0)
            for j0 in range(0, n, BLOCK):
                sa = t(0.0)
                sb = t(0.0)
                for j in range(U(j0), U(min(j0 + BLOCK, n))):
                    g = load(dy, j) * w[j]
                    sa += g
                    sb += g * _xhat(row, cc, kk, mu, q, j)
                a += sa
                b += sb
            a_t = t(a / n) if centered else t(0.0)
            b_t = t(b / n)
            dst = grad_x[i]
            base = i * n
            h, e = row_span(gf, base, n, stream)
            _stream_dx(dy, row, gr, has_gs, w, cc, kk, nanfix, mu, q, r, a_t, b_t, aw, ab, gf, base, h, e)
            lo = U(0)
            hi = U(h)
            for _ in range(2):  # ordinary stores: [0, h) then [e, n); one inlined _dx, not two
                for j in range(lo, hi):
                    put(dst, j, _dx(dy, row, gr, has_gs, w, cc, kk, nanfix, mu, q, r, a_t, b_t, aw, ab, j))
                lo = U(e)
                hi = U(n)
            if (i - start) % FLUSH == FLUSH - 1 or i == stop - 1:
                for j in range(U(n)):
                    part[0, c, j] += aw[j]
                    part[1, c, j] += ab[j]
                    aw[j] = 0.0
                    ab[j] = 0.0
        if stream:  # order this chunk's streaming stores (see _stream.stream_fence)
            stream_fence()
        c = later_chunk(counter, nchunks)


def backward(grad_out, v, cols, rows, grad_s, centered, grad_x, grad_weight, grad_bias):
    """Fill ``grad_x`` (M, N), ``grad_weight`` and ``grad_bias`` (N,); see the module doc.

    ``grad_s`` is an ``(M, N)`` array or None; ``grad_weight`` gets ``+ nanfix``. The data
    arrays may be 16-bit bit views (bfloat16 ``uint16``, float16 ``int16``), ``grad_x``
    too: read and written without a float32 copy."""
    m, n = v.shape
    nchunks = _chunks(m)
    part = _work.zeros("rows_grad.part", (2, nchunks, n), np.float64)
    acc = _work.zeros("rows_grad.acc", (2, nchunks, n), cols.dtype)
    gs = _work.zeros("rows_grad.no_gs", (1, n), cols.dtype) if grad_s is None else grad_s
    stream = grad_x.nbytes >= STREAM_BYTES and not overlaps(grad_x, grad_out, v, gs)
    run_chunks(_backward, v.size, nchunks, grad_out, v, cols, rows, gs, grad_s is not None, centered, grad_x, acc, part, nchunks, stream)
    sum_chunks(part[0], grad_weight)
    sum_chunks(part[1], grad_bias)
    grad_weight += cols[3]


def stats(v, centered, eps, mean, rstd):
    """Fill ``rstd`` (and ``mean`` when ``centered``) of the rows of ``v`` (16-bit bits or
    a float array) for a backward called without saved statistics."""
    if v.dtype.itemsize == 2:
        from . import _rows_lowp

        if centered:
            _rows_lowp.ln_stats(v, eps, mean, rstd)
        else:
            _rows_lowp.rms_stats(v, eps, rstd)
    else:
        from . import layer_norm, rms_norm

        if centered:
            layer_norm.stats(v, eps, mean, rstd)
        else:
            rms_norm.stats(v, eps, rstd)


# ---------------------------------------------------------------- small host-side helpers
# (the CUDA twin module has the same functions on device arrays)


def offset_weight(w, offset):
    """The effective weight ``offset + w`` as a new array."""
    return w + w.dtype.type(offset)


def columns(w, bias, from_output):
    """The kernel's ``(4, N)`` columns (w, c, k, nanfix); see the module doc."""
    n = w.shape[0]
    cols = np.zeros((4, n), w.dtype)
    cols[0] = w
    if from_output:
        zero = w == 0
        with np.errstate(divide="ignore"):
            cols[2] = np.where(zero, 0.0, 1.0 / np.where(zero, 1.0, w))
        cols[3] = np.where(zero, np.nan, 0.0)
        if bias is not None:
            cols[1] = bias
    else:
        cols[2] = 1.0
    return cols


def row_stats(mean, rstd, from_output):
    """The kernel's ``(3, M)`` rows (mean, q, rstd)."""
    rows = np.empty((3, rstd.shape[0]), rstd.dtype)
    rows[0] = 0.0 if from_output or mean is None else mean
    rows[1] = 1.0 if from_output else rstd
    rows[2] = rstd
    return rows


def round_to(a, dtype):
    """Round ``a`` in place to the nearest values of the narrower float ``dtype``."""
    a[...] = a.astype(dtype)
