"""The scaling transform of the channels view, shared by standardize, min_max_scale and
the scalers: ``y = ((x − sub) · mul) / div + add`` per channel, optionally clipped.

Layout: ``x`` and ``out`` C-contiguous ``(O, C, I)`` arrays of the compute dtype, read and
written through their flat views with unsigned offsets (``U``: no wrap-around checks, the
loops vectorise; 3-D indexing compiled to gathers and scatters). Parameters are ``(C,)``
float64 arrays; ``mul`` or ``div`` of all ones are passed as None and their operation is
pruned at compile time (bitwise the same result).

Thread mapping: chunks of row blocks (I == 1, parameters tiled along a run of whole rows)
or of (o, c, piece of I) runs (I > 1), serial ``nogil`` chunk kernels run on threads by
:func:`._threads.launch`. Outputs of at least :data:`._stream.STREAM_BYTES` not sharing
memory with ``x`` are written with non-temporal stores (:func:`._stream.nt_store`).
Compiled without fastmath, so the rounding is exactly scikit-learn's sequence of in-place
operations (no contraction into FMA, no reciprocal).
"""
import numpy as np
from numba import njit

from ._stream import STREAM_BYTES, nt_store, overlaps, row_span, stream_fence
from ._threads import first_chunk, later_chunk, launch

#: options of the chunk kernels *without* fastmath (elementwise kernels whose rounding must
#: be exactly NumPy's)
EXACT = dict(cache=True, error_model="numpy", nogil=True)

#: unsigned index type (no wrap-around checks: the loops vectorise)
U = np.uintp


@njit(**EXACT)
def _at(a, j):
    """``a[j]``, or None when ``a`` is None (an identity factor: pruned at compile time)."""
    if a is None:
        return None
    return a[j]


@njit(**EXACT)
def _scaled(v, a, m, dv, b, lo, hi, clip):
    """((v − a) · m) / dv + b in float64, the product/quotient left out where ``m``/``dv``
    is None (an all-ones factor: bitwise the same result), clipped to [lo, hi] if ``clip``."""
    y = np.float64(v) - a
    if m is not None:
        y = y * m
    if dv is not None:
        y = y / dv
    y = y + b
    if clip:
        if y < lo:
            y = lo
        if y > hi:
            y = hi
    return y


#: elements per run of the (I == 1) transform (a multiple of ``._stream.STREAM_RUN``)
TILE = 1024


@njit(**EXACT)
def _transform_rows(xf, sub, mul, div, add, lo, hi, clip, of, c, nblocks, stream, nch, counter):
    """Flat (R·C) data; the parameters tiled to ``TILE + C`` entries (whole rows of C).
    Chunks of row blocks, each a contiguous range of three parts: head, streamed span
    (non-temporal stores, :func:`._stream.row_span`: one per block, so a cache line
    never takes both kinds of store) and tail, each written in runs of at most ``TILE``
    elements whose parameter index is ``q0 +`` the position in the run (no modulo in the
    loop). Runs of the span start at its aligned start plus multiples of ``TILE``, so
    every non-temporal vector store is aligned."""
    r = xf.shape[0] // c
    chunk = first_chunk(counter, nch)
    while chunk < nch:
        for b in range(chunk * nblocks // nch, (chunk + 1) * nblocks // nch):
            e0 = (b * r // nblocks) * c
            e1 = ((b + 1) * r // nblocks) * c
            h, e = row_span(of, e0, e1 - e0, stream)
            for part in range(3):
                p0 = e0 if part == 0 else (e0 + h if part == 1 else e0 + e)
                p1 = e0 + h if part == 0 else (e0 + e if part == 1 else e1)
                for ts in range(p0, p1, TILE):
                    n = min(p1 - ts, TILE)
                    q0 = (ts - e0) % c
                    if part == 1:
                        for j in range(U(n)):
                            k = U(ts) + j
                            q = U(q0) + j
                            nt_store(of, k, _scaled(xf[k], sub[q], _at(mul, q), _at(div, q), add[q], lo, hi, clip))
                    else:
                        for j in range(U(n)):
                            k = U(ts) + j
                            q = U(q0) + j
                            of[k] = _scaled(xf[k], sub[q], _at(mul, q), _at(div, q), add[q], lo, hi, clip)
        chunk = later_chunk(counter, nch)
    if stream:
        stream_fence()


@njit(**EXACT)
def _transform_segs(xf, sub, mul, div, add, lo, hi, clip, of, c, ni, nsplit, stream, nch, counter):
    """Flat (O·C·I) data: chunks of (o, c, piece of I) runs, the run's parameters
    broadcast; a streamed run's span (:func:`._stream.row_span`) takes non-temporal stores."""
    nitems = (xf.shape[0] // ni) * nsplit
    chunk = first_chunk(counter, nch)
    while chunk < nch:
        for t in range(chunk * nitems // nch, (chunk + 1) * nitems // nch):
            s = t % nsplit
            oc = t // nsplit
            ch = oc % c
            i0 = s * ni // nsplit
            n = (s + 1) * ni // nsplit - i0
            base = U(oc * ni + i0)
            a = sub[ch]
            m = _at(mul, ch)
            dv = _at(div, ch)
            bb = add[ch]
            h, e = row_span(of, base, n, stream)
            for i in range(U(h)):
                of[base + i] = _scaled(xf[base + i], a, m, dv, bb, lo, hi, clip)
            for i in range(U(h), U(e)):
                nt_store(of, base + i, _scaled(xf[base + i], a, m, dv, bb, lo, hi, clip))
            for i in range(U(e), U(n)):
                of[base + i] = _scaled(xf[base + i], a, m, dv, bb, lo, hi, clip)
        chunk = later_chunk(counter, nch)
    if stream:
        stream_fence()


# No fastmath: the transform is elementwise (vectorises without it) and its rounding must be
# exactly that of ``X -= mean; X /= scale`` (no contraction into FMA, no reciprocal).
_TRANSFORM_ROWS = _transform_rows
_TRANSFORM_SEGS = _transform_segs

#: elements per parallel work item of the transform.
TRANSFORM_BLOCK = 16384



def _factor(a):
    """``a``, or None when every entry is 1 (the kernels then skip that product/quotient)."""
    return None if np.all(a == 1.0) else a


def transform(x, sub, mul, div, add, lo, hi, clip, out):
    """out[o, c, i] = ((x − sub[c]) · mul[c]) / div[c] + add[c], clipped to [lo, hi] if ``clip``.

    Computed in float64 and stored in ``out``'s dtype. ``out`` may be ``x``. NaN stays NaN
    (also when clipping). A ``mul`` or ``div`` of all ones is left out (bitwise the same
    result, one operation less per element); outputs of at least
    :data:`._stream.STREAM_BYTES` not sharing memory with ``x`` are written with
    non-temporal stores.
    """
    o, c, ni = x.shape
    if ni == 1 and c == 1:
        x = x.reshape(1, 1, o)
        out = out.reshape(1, 1, o)
        o, ni = 1, o
    lo = float(lo)
    hi = float(hi)
    clip = bool(clip)
    mul, div = _factor(mul), _factor(div)
    stream = out.nbytes >= STREAM_BYTES and not overlaps(out, x)
    xf, of = x.reshape(-1), out.reshape(-1)
    if ni == 1:
        reps = -(-(TILE + c) // c)  # q0 + j < c + TILE
        params = [None if a is None else np.tile(a, reps) for a in (sub, mul, div, add)]
        nblocks = max(1, min(o, x.size // TRANSFORM_BLOCK))
        launch(_TRANSFORM_ROWS, x.size, nblocks, xf, params[0], params[1], params[2], params[3], lo, hi, clip,
               of, c, nblocks, stream)
    else:
        nsplit = max(1, ni // TRANSFORM_BLOCK)
        launch(_TRANSFORM_SEGS, x.size, o * c * nsplit, xf, sub, mul, div, add, lo, hi, clip, of, c, ni, nsplit,
               stream)
