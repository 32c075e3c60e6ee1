"""Standardization (z-score) CPU kernels on the channels view, plus the shared scaling transform.

Layout: ``x`` and ``out`` are C-contiguous ``(O, C, I)`` arrays of the compute dtype
(float32 or float64) — the "channels" view of DESIGN.md: statistics per channel ``c`` over
the ``O × I`` elements ``x[:, c, :]`` (``standardize(x, axis=0)`` on ``(n, f)``: O = n,
C = f, I = 1). Statistics and transform parameters are ``(C,)`` float64 arrays; ``weight``
is None or an ``(O,)`` float64 array of per-sample weights (the scalers' ``sample_weight``).

Statistics (:func:`moments`): count, mean and M2 = Σ w·(x − mean)² of the non-NaN values.
NaNs are skipped. Each block of data that fits in L1/L2 is processed with the corrected
two-pass algorithm (mean, then Σd and Σd² of the deviations: exact for a constant block)
and merged into a per-chunk partial with Chan, Golub & LeVeque's pairwise update; the fixed
number of chunk partials is then merged in chunk order. Accumulators are float64, so
float32 data with a large common offset keeps its precision, and the result depends only
on the shape (never on the thread count or scheduling).

Thread mapping:
- I == 1 (features in the fast dimension): chunks of (row chunk × column tile) items;
  a row chunk has >= ``ROW_BLOCK`` rows (at most ``REDUCE_CHUNKS`` chunks), a tile is
  ``COL_TILE`` columns; the inner loop runs over contiguous columns (vectorised). A
  block of ``ROW_BLOCK`` rows whose plain sums are all finite holds no NaN or inf and
  takes loops without per-element tests (the same sums); other blocks are summed again
  by the NaN-skipping loops.
- I > 1: chunks of (piece × channel) items, a piece being a contiguous range of the
  flattened ``O × I`` positions of one channel; inner loops over contiguous ``I`` runs of at
  most ``SEG_BLOCK`` values, each two-pass, with plain (vectorised) sums and a careful
  NaN-skipping loop only for runs whose sum shows a NaN or inf.
- :func:`transform` (y = ((x − sub) · mul) / div + add, optionally clipped) lives in
  :mod:`._transform` (re-exported here): flat vectorised runs, non-temporal stores for
  large outputs, no fastmath (scikit-learn's rounding).

Every kernel is a serial chunk kernel compiled ``nogil=True``, run on a pool of threads by
:func:`._threads.launch` (one call, one chunk, below ``SERIAL_THRESHOLD`` elements), so a
small and a large call share their compiled code.
"""
import numpy as np
from numba import njit

from .. import _config
from .._config import FASTMATH, REDUCE_CHUNKS
from ._threads import first_chunk, later_chunk, launch
from ._transform import EXACT, transform  # noqa: F401  (the shared scaling pass, re-exported)

#: unsigned index type (no wrap-around checks: the column loops vectorise)
U = np.uintp


#: rows of an (I == 1) block processed twice while in cache.
ROW_BLOCK = 128
#: columns per tile in the (I == 1) kernels.
COL_TILE = 512
#: contiguous run length of one two-pass block in the (I > 1) kernels.
SEG_BLOCK = 2048
#: minimum flattened positions per piece in the (I > 1) statistics kernels.
MIN_PIECE = 8192


# --------------------------------------------------------------------------- helpers


@njit(fastmath=FASTMATH, error_model="numpy", cache=True, inline="always")
def _chan(na, ma, qa, nb, mb, qb):
    """Merge (count, mean, M2) of two disjoint sets (Chan, Golub & LeVeque 1979)."""
    if nb == 0.0:
        return na, ma, qa
    if na == 0.0:
        return nb, mb, qb
    n = na + nb
    d = mb - ma
    return n, ma + d * (nb / n), qa + qb + d * d * (na * (nb / n))


@njit(cache=True)
def first_valid(x):
    """Per channel of ``x`` (O, C, I): its first non-NaN value (0 when there is none).

    Used as a common shift K: the statistics are accumulated on x − K, whose block means are
    of the order of the spread, not of the offset, so merging partial statistics loses
    nothing even for data like 1e6 + N(0, 1).
    """
    o, c, ni = x.shape
    shift = np.zeros(c)
    for ch in range(c):
        found = False
        for oo in range(o):
            for i in range(ni):
                v = np.float64(x[oo, ch, i])
                if v == v and np.abs(v) != np.inf:
                    shift[ch] = v
                    found = True
                    break
            if found:
                break
    return shift


@njit(fastmath=FASTMATH, error_model="numpy", cache=True)
def merge_partials(pc, pm, pq, shift, count, mean, m2):
    """Merge the (P, C) chunk partials (of x − shift) in chunk order into (C,) results;
    True when every mean and M2 is finite."""
    p, c = pc.shape
    finite = 0.0
    for j in range(c):
        n = np.float64(0.0)
        m = np.float64(0.0)
        q = np.float64(0.0)
        for k in range(p):
            n, m, q = _chan(n, m, q, pc[k, j], pm[k, j], pq[k, j])
        count[j] = n
        mean[j] = shift[j] + m if n > 0 else np.nan
        m2[j] = q if n > 0 else np.nan
        finite += (mean[j] + m2[j]) * 0.0  # NaN iff either is NaN or inf
    return finite == 0.0


def row_plan(r, c):
    """(chunks, tiles, tile width) for an (R, C) statistics kernel: depends on the shape only."""
    p = max(1, min(REDUCE_CHUNKS, -(-r // ROW_BLOCK)))
    tile = max(1, min(COL_TILE, c))
    return p, -(-c // tile), tile


def seg_plan(o, i):
    """Pieces per channel for an (O, C, I) statistics kernel."""
    return max(1, min(REDUCE_CHUNKS, (o * i) // MIN_PIECE))


# --------------------------------------------------------------------------- moments


@njit(nogil=True, **_config.JIT_OPTIONS)
def _moments_rows(x, shift, w, pc, pm, pq, scratch, nch, counter):
    """Partial (count, mean, M2) per (row chunk, column) of the (R, C) ``x``; ``w``: None
    (unweighted: the weighted loops are pruned at compile time) or (R,) sample weights.
    Rows are read through the flat array with unsigned offsets (``U``) so every
    column loop vectorises (sliced 2-D rows did not)."""
    r, c = x.shape
    xf = x.reshape(-1)
    p = pc.shape[0]
    tile = scratch.shape[2]
    ntiles = (c + tile - 1) // tile
    nitems = p * ntiles
    chunk = first_chunk(counter, nch)
    while chunk < nch:
        for t in range(chunk * nitems // nch, (chunk + 1) * nitems // nch):
            k = t // ntiles
            c0 = (t % ntiles) * tile
            c1 = min(c, c0 + tile)
            nc = U(c1 - c0)
            r0 = k * r // p
            r1 = (k + 1) * r // p
            bm = scratch[t, 0]
            bn = scratch[t, 1]
            bd = scratch[t, 2]
            bq = scratch[t, 3]
            sh = scratch[t, 4]
            for j in range(U(nc)):
                sh[j] = shift[U(c0) + j]
            for b0 in range(r0, r1, ROW_BLOCK):
                b1 = min(r1, b0 + ROW_BLOCK)
                for j in range(U(nc)):
                    bm[j] = 0.0
                    bn[j] = 0.0
                    bd[j] = 0.0
                    bq[j] = 0.0
                # Unweighted, first one pass about the block's first row K (Σ d, Σ d² of
                # d = x − K, no per-element test): kept when every sum is finite (no NaN or
                # inf in the block) and K is within four standard deviations of the block
                # mean ((mean − K)² <= 16 var, i.e. 17 (Σd)² <= 16 n Σd²: Σd² − (Σd)²/n then
                # loses at most ~17 ulps, far below the tests' 1e-12; random data fails it for
                # ~6e-5 of its columns); any other block takes the two passes below.
                fast = False
                if w is None:
                    k0 = U(b0 * c + c0)
                    for j in range(U(nc)):
                        bm[j] = np.float64(xf[k0 + j])
                    for i in range(b0, b1):
                        base = U(i * c + c0)
                        for j in range(U(nc)):
                            d = np.float64(xf[base + j]) - bm[j]
                            bd[j] += d
                            bq[j] += d * d
                    nrow = np.float64(b1 - b0)
                    probe = 0.0
                    far = 0.0
                    for j in range(U(nc)):
                        probe += (bm[j] + bq[j]) * 0.0  # NaN iff K or Σd² is NaN or inf
                        far += 1.0 if 17.0 * bd[j] * bd[j] > 16.0 * nrow * bq[j] else 0.0
                    fast = probe == 0.0 and far == 0.0
                    for j in range(U(nc)):
                        if fast:
                            bn[j] = nrow
                            bm[j] = bm[j] - sh[j]  # K relative to the channel shift
                        else:
                            bm[j] = 0.0
                            bd[j] = 0.0
                            bq[j] = 0.0
                # pass 1: (weighted) sums and counts of the non-NaN values; the weighted and
                # unweighted loops are written out separately so both vectorise over columns
                if w is not None:
                    for i in range(b0, b1):
                        base = U(i * c + c0)
                        wi = w[i]
                        for j in range(U(nc)):
                            v = np.float64(xf[base + j]) - sh[j]
                            ok = v == v
                            bm[j] += wi * v if ok else 0.0
                            bn[j] += wi if ok else 0.0
                elif not fast:
                    for i in range(b0, b1):
                        base = U(i * c + c0)
                        for j in range(U(nc)):
                            v = np.float64(xf[base + j]) - sh[j]
                            ok = v == v
                            bm[j] += v if ok else 0.0
                            bn[j] += 1.0 if ok else 0.0
                if not fast:
                    for j in range(U(nc)):
                        bm[j] = bm[j] / bn[j] if bn[j] != 0.0 else 0.0
                # pass 2 (the block is still in cache): Σ w·d and Σ w·d² of the deviations
                if fast:
                    pass
                elif w is not None:
                    for i in range(b0, b1):
                        base = U(i * c + c0)
                        wi = w[i]
                        for j in range(U(nc)):
                            v = np.float64(xf[base + j]) - sh[j]
                            ok = v == v
                            d = v - bm[j]
                            bd[j] += wi * d if ok else 0.0
                            bq[j] += wi * d * d if ok else 0.0
                else:
                    for i in range(b0, b1):
                        base = U(i * c + c0)
                        for j in range(U(nc)):
                            v = np.float64(xf[base + j]) - sh[j]
                            ok = v == v
                            d = v - bm[j]
                            bd[j] += d if ok else 0.0
                            bq[j] += d * d if ok else 0.0
                pck = pc[k]
                pmk = pm[k]
                pqk = pq[k]
                if fast:  # nb > 0 everywhere: _chan's update, as selects (the loop vectorises)
                    for j in range(U(nc)):
                        nb = bn[j]
                        mb = bm[j] + bd[j] / nb
                        qb = bq[j] - bd[j] * (bd[j] / nb)
                        q_ = U(c0) + j
                        na = pck[q_]
                        ma = pmk[q_]
                        n = na + nb
                        d = mb - ma
                        f = nb / n
                        pmk[q_] = mb if na == 0.0 else ma + d * f
                        pqk[q_] = qb if na == 0.0 else pqk[q_] + qb + d * d * (na * f)
                        pck[q_] = n
                    continue
                for j in range(U(nc)):
                    nb = bn[j]
                    if nb != 0.0:
                        mb = bm[j] + bd[j] / nb
                        qb = bq[j] - bd[j] * (bd[j] / nb)
                        q_ = U(c0) + j
                        n, m, q = _chan(pck[q_], pmk[q_], pqk[q_], nb, mb, qb)
                        pck[q_] = n
                        pmk[q_] = m
                        pqk[q_] = q
        chunk = later_chunk(counter, nch)


@njit(nogil=True, **_config.JIT_OPTIONS)
def _moments_segs(x, shift, pc, pm, pq, nch, counter):
    o, c, ni = x.shape
    p = pc.shape[0]
    total = o * ni
    nitems = p * c
    chunk = first_chunk(counter, nch)
    while chunk < nch:
        for t in range(chunk * nitems // nch, (chunk + 1) * nitems // nch):
            k = t // c
            ch = t % c
            sh = shift[ch]
            pos = k * total // p
            stop = (k + 1) * total // p
            n = np.float64(0.0)
            m = np.float64(0.0)
            q = np.float64(0.0)
            while pos < stop:
                oo = pos // ni
                i0 = pos % ni
                i1 = min(ni, i0 + SEG_BLOCK, i0 + (stop - pos))
                xr = x[oo, ch, i0:i1]
                # fast path: plain sums (a conditional inside a reduction would stop LLVM from
                # vectorising it); a NaN or inf shows up in the sum and sends the run through
                # the careful loop below
                s = np.float64(0.0)
                for i in range(xr.shape[0]):
                    s += np.float64(xr[i]) - sh
                nb = np.float64(i1 - i0)
                if not np.abs(s) < np.inf:
                    s = np.float64(0.0)
                    nb = np.float64(0.0)
                    for i in range(xr.shape[0]):
                        v = np.float64(xr[i]) - sh
                        if v == v:
                            s += v
                            nb += 1.0
                if nb != 0.0:
                    mb = s / nb
                    sd = np.float64(0.0)
                    sq = np.float64(0.0)
                    for i in range(xr.shape[0]):
                        d = (np.float64(xr[i]) - sh) - mb
                        sd += d
                        sq += d * d
                    if not np.abs(sq) < np.inf:
                        sd = np.float64(0.0)
                        sq = np.float64(0.0)
                        for i in range(xr.shape[0]):
                            v = np.float64(xr[i]) - sh
                            if v == v:
                                d = v - mb
                                sd += d
                                sq += d * d
                    n, m, q = _chan(n, m, q, nb, mb + sd / nb, sq - sd * (sd / nb))
                pos += i1 - i0
            pc[k, ch] = n
            pm[k, ch] = m
            pq[k, ch] = q
        chunk = later_chunk(counter, nch)


_MOMENTS_ROWS = _moments_rows
_MOMENTS_SEGS = _moments_segs

def moments(x, weight, count, mean, m2, shift=None):
    """Per-channel (count, mean, M2) of the non-NaN values of ``x`` (O, C, I).

    ``weight``: None or (O,) float64 per-sample weights (count = Σ w, M2 = Σ w·(x − mean)²).
    Channels without values get count 0 and NaN mean/M2.

    ``shift`` (the statistics' per-channel shift, :func:`first_valid`'s) is first taken as
    the first row ``x[0, :, 0]``: when that is finite it *is* first_valid's, so
    first_valid is called (and compiled) only when some result is not finite and the
    first row is not either; the call is then redone with its shift.
    """
    o, c, ni = x.shape
    size = x.size
    row0 = shift is None
    if row0:
        shift = x[0, :, 0].astype(np.float64)
    if ni == 1 and c == 1 and weight is None:
        x = x.reshape(1, 1, o)  # one long run: the piecewise kernel splits it
        o, ni = 1, o
    if ni == 1:
        x2 = x.reshape(o, c)
        p, ntiles, tile = row_plan(o, c)
        pc = np.zeros((p, c))
        pm = np.zeros((p, c))
        pq = np.zeros((p, c))
        scratch = np.empty((p * ntiles, 5, tile))
        launch(_MOMENTS_ROWS, size, p * ntiles, x2, shift, weight, pc, pm, pq, scratch)
    elif weight is not None:
        # per-outer weights on a (O, C, I) layout: weight each (o, c) run separately
        x2 = np.ascontiguousarray(np.moveaxis(x, 1, 2)).reshape(o * ni, c)
        moments(x2.reshape(o * ni, c, 1), np.repeat(weight, ni), count, mean, m2, None if row0 else shift)
        return
    else:
        p = seg_plan(o, ni)
        pc = np.empty((p, c))
        pm = np.empty((p, c))
        pq = np.empty((p, c))
        launch(_MOMENTS_SEGS, size, p * c, x, shift, pc, pm, pq)
    if not merge_partials(pc, pm, pq, shift, count, mean, m2) and row0 and not np.isfinite(shift).all():
        moments(x, weight, count, mean, m2, first_valid(x))


# --------------------------------------------------------------------------- checks


@njit(**EXACT)
def _count_inf(x, parts, nch, counter):
    n = x.shape[0]
    p = parts.shape[0]
    nitems = p
    chunk = first_chunk(counter, nch)
    while chunk < nch:
        for k in range(chunk * nitems // nch, (chunk + 1) * nitems // nch):
            s = 0
            for i in range(k * n // p, (k + 1) * n // p):
                s += 1 if np.abs(x[i]) == np.inf else 0
            parts[k] = s
        chunk = later_chunk(counter, nch)


_COUNT_INF = _count_inf


def count_inf(x):
    """Number of +inf/-inf values in the contiguous array ``x`` (any shape)."""
    flat = x.reshape(-1)
    parts = np.zeros(REDUCE_CHUNKS, np.int64)
    launch(_COUNT_INF, flat.size, REDUCE_CHUNKS, flat, parts)
    return int(parts.sum())
