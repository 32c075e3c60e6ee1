"""Row-normalization backward for the fused and memory-saving paths (CPU).

One kernel serves ``add_layer_norm_backward``, ``add_rms_norm_backward`` and the
``y=`` (memory-saving) forms of ``layer_norm_backward`` / ``rms_norm_backward``:

* ``v`` is the saved forward *input* (``x``, or ``s = x + residual``) or the forward
  *output* ``y``; per row ``i`` and column ``j`` the normalized value is
  ``x̂ = (v − c_j − mean_i) · q_i · k_j``. From the input: ``c = 0, k = 1, q = rstd``;
  from the output: ``mean = 0, q = 1, c = bias, k = 1/w`` (0 where ``w = 0``).
* ``g = w · dy``; ``dx = rstd · (g − ḡ − x̂ · mean(g x̂)) + nanfix_j + gs`` (``ḡ`` only
  when ``centered``, i.e. LayerNorm); ``gs`` is the gradient of the residual output
  ``s`` (skipped when ``gs`` has no rows); ``nanfix`` is 0, or NaN on the columns whose
  ``x̂`` cannot be recovered from ``y`` (zero weight).
* ``dw = Σ_rows dy · x̂`` and ``db = Σ_rows dy`` from per-chunk data-dtype accumulator
  rows flushed every ``FLUSH`` rows into float64 partials, summed in chunk order
  (deterministic, no atomics), as the other row kernels do.

Layout: ``cols`` is ``(4, N)`` = (w, c, k, nanfix), ``rows`` is ``(3, M)`` =
(mean, q, rstd), all C-contiguous in the compute dtype; grad_x streamed for large outputs.
"""
import numpy as np
from numba import prange

from .. import _config
from . import _work
from ._stats import BLOCK, FLUSH, U, sum_chunks
from ._stream import STREAM_BYTES, stream_scale
from .layer_norm import _chunks, _scratch


def _backward(grad_out, v, cols, rows, gs, centered, grad_x, acc, part, scratch, stream):
    m, n = v.shape
    nchunks = part.shape[1]
    t = v.dtype.type
    one = t(1.0)
    has_gs = gs.shape[0] > 0
    w = cols[0]
    cc = cols[1]
    kk = cols[2]
    nanfix = cols[3]
    for c in prange(nchunks):
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
            a = np.float64(0.0)
            b = np.float64(0.0)
            for j0 in range(0, n, BLOCK):
                sa = t(0.0)
                sb = t(0.0)
                for j in range(U(j0), U(min(j0 + BLOCK, n))):
                    g = dy[j] * w[j]
                    sa += g
                    sb += g * ((row[j] - cc[j] - mu) * q * kk[j])
                a += sa
                b += sb
            a_t = t(a / n) if centered else t(0.0)
            b_t = t(b / n)
            dst = scratch[c] if stream else grad_x[i]
            if has_gs:
                gr = gs[i]
                for j in range(U(n)):
                    xhat = (row[j] - cc[j] - mu) * q * kk[j]
                    dst[j] = r * (dy[j] * w[j] - a_t - xhat * b_t) + nanfix[j] + gr[j]
                    aw[j] += dy[j] * xhat
                    ab[j] += dy[j]
            else:
                for j in range(U(n)):
                    xhat = (row[j] - cc[j] - mu) * q * kk[j]
                    dst[j] = r * (dy[j] * w[j] - a_t - xhat * b_t) + nanfix[j]
                    aw[j] += dy[j] * xhat
                    ab[j] += dy[j]
            if stream:
                stream_scale(grad_x, i * n, scratch, c * n, one, n)
            if (i - start) % FLUSH == FLUSH - 1 or i == stop - 1:
                for j in range(U(n)):
                    part[0, c, j] += aw[j]
                    part[1, c, j] += ab[j]
                    aw[j] = 0.0
                    ab[j] = 0.0


_BACKWARD = _config.twins(_backward)


def backward(grad_out, v, cols, rows, grad_s, centered, grad_x, grad_weight, grad_bias):
    """Fill ``grad_x`` (M, N), ``grad_weight`` and ``grad_bias`` (N,); see the module doc.

    ``grad_s`` is an ``(M, N)`` array or None; ``grad_weight`` gets ``+ nanfix``."""
    m, n = v.shape
    nchunks = _chunks(m)
    part = _work.zeros("rows_grad.part", (2, nchunks, n), np.float64)
    acc = _work.zeros("rows_grad.acc", (2, nchunks, n), v.dtype)
    stream = grad_x.nbytes >= STREAM_BYTES
    scratch = _scratch(nchunks, n, v.dtype, stream)

    gs = np.empty((0, n), v.dtype) if grad_s is None else grad_s
    _config.launch(_BACKWARD, v.size, grad_out, v, cols, rows, gs, centered, grad_x, acc, part, scratch, stream)
    sum_chunks(part[0], grad_weight)
    sum_chunks(part[1], grad_bias)
    grad_weight += cols[3]


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


def round_output(kind, buf, src, w, b, mean, rstd, half):
    """``casting`` 'llama' / 'none' for half-precision data: rewrite ``buf`` (the float32
    x̂ of each row) with the value the data dtype ``half`` gives (see ``_ops/_fused``)."""
    if kind == "llama":
        y = buf.astype(half) * w.astype(half)
    else:
        h = src.astype(half)
        if mean is not None:
            h = h - mean.astype(half)[:, None]
        y = (h * rstd.astype(half)[:, None]) * w.astype(half)
    if b is not None:
        y = y + b.astype(half)
    buf[...] = y


def round_to(a, dtype):
    """Round ``a`` in place to the nearest values of the narrower float ``dtype``."""
    a[...] = a.astype(dtype)
