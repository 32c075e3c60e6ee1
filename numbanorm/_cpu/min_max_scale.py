"""Min-max scaling CPU kernels on the channels view.

Layout: ``x`` and ``out`` are C-contiguous ``(O, C, I)`` arrays of the compute dtype
(float32 or float64): statistics per channel ``c`` over ``x[:, c, :]``
(``min_max_scale(x, axis=0)`` on ``(n, f)``: O = n, C = f, I = 1). ``mn``/``mx`` are
``(C,)`` float64 arrays.

:func:`extrema` fills the NaN-ignoring minimum and maximum of each channel; a channel
without any non-NaN value gets ``mn > mx`` (+inf, −inf) and the caller turns that into NaN.
Thread mapping as in :mod:`numbanorm._cpu.standardize`: chunks of (row chunk × column
tile) items when I == 1 (the inner loop runs over contiguous columns), over (piece ×
channel) items when I > 1; per-chunk partial extrema are combined afterwards (min/max
are exact, so the result never depends on scheduling). The transform pass is the shared
one of :mod:`numbanorm._cpu.standardize` (y = x · scale + min, optionally clipped).
Every kernel is a serial ``nogil`` chunk kernel run on threads by :func:`._threads.launch`
(one call below ``SERIAL_THRESHOLD`` elements: small and large calls share compiled code).
"""
import numpy as np
from numba import njit

from .. import _config
from ._threads import first_chunk, later_chunk, launch
from .standardize import row_plan, seg_plan, transform  # noqa: F401  (transform: shared pass)

#: unsigned index type (no wrap-around checks: the loops vectorise)
U = np.uintp

#: running minima/maxima per (piece, channel) item of the (I > 1) kernel (four AVX-512
#: float32 vectors' worth, eight of float64: (32, 64, 3136) float32 one thread 2.5 ms
#: with 16, 2.1 with 32, 2.0 with 64, 1.8 with 256, 2.4 with 1024, all under load)
LANES = 64


@njit(nogil=True, **_config.JIT_OPTIONS)
def _extrema_rows(x, pmn, pmx, ntiles, scratch, nch, counter):
    r, c = x.shape
    xf = x.reshape(-1)  # rows read with unsigned flat offsets (no wrap-around checks)
    p = pmn.shape[0]
    tile = scratch.shape[2]
    nitems = p * ntiles
    chunk = first_chunk(counter, nch)
    while chunk < nch:
        for t in range(chunk * nitems // nch, (chunk + 1) * nitems // nch):
            k = t // ntiles
            c0 = (t % ntiles) * tile
            c1 = min(c, c0 + tile)
            nc = c1 - c0
            lo = scratch[t, 0]  # in the data dtype: no conversion in the loop
            hi = scratch[t, 1]
            for j in range(U(nc)):
                lo[j] = np.inf
                hi[j] = -np.inf
            for i in range(k * r // p, (k + 1) * r // p):
                base = U(i * c + c0)
                for j in range(U(nc)):
                    v = xf[base + j]
                    # NaN compares false: skipped
                    lo[j] = v if v < lo[j] else lo[j]
                    hi[j] = v if v > hi[j] else hi[j]
            for j in range(U(nc)):
                pmn[k, U(c0) + j] = lo[j]
                pmx[k, U(c0) + j] = hi[j]
        chunk = later_chunk(counter, nch)


@njit(nogil=True, **_config.JIT_OPTIONS)
def _extrema_segs(x, pmn, pmx, scratch, nch, counter):
    """Per (piece, channel) item: the piece's contiguous runs ``x[o, ch, i0:i1]`` folded
    into ``LANES`` running minima and maxima (data dtype, ``scratch[t]``), lane j taking
    the elements ``≡ j`` mod ``LANES`` of each run: an elementwise loop that vectorises
    (a single running min/max is a floating-point select reduction, which LLVM does not
    vectorise without no-NaNs fast math), reduced over the lanes at the end."""
    o, c, ni = x.shape
    xf = x.reshape(-1)
    p = pmn.shape[0]
    total = o * ni
    nitems = p * c
    lanes = scratch.shape[2]
    chunk = first_chunk(counter, nch)
    while chunk < nch:
        for t in range(chunk * nitems // nch, (chunk + 1) * nitems // nch):
            k = t // c
            ch = t % c
            lo = scratch[t, 0]
            hi = scratch[t, 1]
            for j in range(U(lanes)):
                lo[j] = np.inf
                hi[j] = -np.inf
            pos = k * total // p
            stop = (k + 1) * total // p
            while pos < stop:
                oo = pos // ni
                i0 = pos % ni
                n = min(ni, i0 + (stop - pos)) - i0
                base = U((oo * c + ch) * ni + i0)
                full = U(n // lanes * lanes)
                for b in range(U(0), full, U(lanes)):
                    for j in range(U(lanes)):
                        v = xf[base + b + j]
                        # NaN compares false: skipped
                        lo[j] = v if v < lo[j] else lo[j]
                        hi[j] = v if v > hi[j] else hi[j]
                for j in range(U(n) - full):
                    v = xf[base + full + j]
                    lo[j] = v if v < lo[j] else lo[j]
                    hi[j] = v if v > hi[j] else hi[j]
                pos += n
            lo_v = np.inf
            hi_v = -np.inf
            for j in range(U(lanes)):
                lo_v = lo[j] if lo[j] < lo_v else lo_v
                hi_v = hi[j] if hi[j] > hi_v else hi_v
            pmn[k, ch] = lo_v
            pmx[k, ch] = hi_v
        chunk = later_chunk(counter, nch)


@njit(cache=True)
def _combine(pmn, pmx, mn, mx):
    p, c = pmn.shape
    for j in range(c):
        a = np.inf
        b = -np.inf
        for k in range(p):
            if pmn[k, j] < a:
                a = pmn[k, j]
            if pmx[k, j] > b:
                b = pmx[k, j]
        mn[j] = a
        mx[j] = b


_EXTREMA_ROWS = _extrema_rows
_EXTREMA_SEGS = _extrema_segs


def extrema(x, mn, mx):
    """Per-channel NaN-ignoring min and max of ``x`` (O, C, I) into float64 ``mn``, ``mx`` (C,)."""
    o, c, ni = x.shape
    size = x.size
    if ni == 1 and c == 1:
        x = x.reshape(1, 1, o)
        o, ni = 1, o
    if ni == 1:
        p, ntiles, tile = row_plan(o, c)
        pmn = np.empty((p, c))
        pmx = np.empty((p, c))
        scratch = np.empty((p * ntiles, 2, tile), x.dtype)
        args = (p * ntiles, x.reshape(o, c), pmn, pmx, ntiles, scratch)
        kern = _EXTREMA_ROWS
    else:
        p = seg_plan(o, ni)
        pmn = np.empty((p, c))
        pmx = np.empty((p, c))
        scratch = np.empty((p * c, 2, LANES), x.dtype)
        args = (p * c, x, pmn, pmx, scratch)
        kern = _EXTREMA_SEGS
    launch(kern, size, *args)
    _combine(pmn, pmx, mn, mx)
