"""The generic forward of a channels-last ``(B, O, C, 1)`` input (BatchNorm of 2-D
``(N, C)`` and channels-last data: ``I = 1`` with fewer than ``SLAB_MIN_BATCH`` samples) in
one launch (CPU), for :mod:`._channels`.

Layout: ``x``/``out`` C-contiguous ``(B, O, C, 1)`` (the kernel works on their ``(B, O, C)``
view); partial sums ``p1``/``p2`` float64 ``(B, KO, C)``; statistics float64 ``(B, G)``.

Thread mapping, two phases in one dispatch of each thread:

1. chunks of the ``B·KO`` work items (``KO`` runs of rows per sample, the generic path's
   :func:`._channels.chunking`) from the shared counter: each item's per-channel shifted sums
   into its partial row, then :func:`._threads.arrive` (the count of finished chunks);
2. the thread that finishes the last chunk merges the partials in item order and computes
   the coefficients (:func:`._channels_forward._finish`'s steps), then raises the flag
   (:func:`._threads.release_flag`); every thread that ran chunks waits for it
   (:func:`._threads.wait_flag`) and normalizes **the rows of its own chunks**, which are
   still in its core's cache.

So the data is read from memory once, not twice, and there is one launch instead of two
with a dispatch between them; a helper that wakes after every chunk is taken has nothing
to wait for. The arithmetic is the generic path's (:func:`._channels_forward._moments_last`,
``_finish``, ``_apply_last``) step for step, so results are bitwise the same.
"""
import numpy as np
from numba import njit

from .. import _config
from ._channels_forward import _apply_rows, _expand_into, _group_stats_into, _slab_moments, _split
from ._threads import arrive, first_chunk, later_chunk, release_flag, wait_flag

_opts = _config.JIT_OPTIONS


@njit(**_opts, inline="always")
def _rows_of(it, ko, no):
    """(b, o0, o1): the sample and the rows of work item ``it`` (KO runs per sample)."""
    b, r = _split(it, ko)
    return b, r, r * no // ko, (r + 1) * no // ko


@njit(nogil=True, **_opts)
def _last_forward(x, ko, p1, p2, t1, t2, groups, eps, weight, bias, out, mean, var, rstd, coef, sync, nch,
                  counter):
    """Statistics, coefficients and normalize of ``x`` in two phases (module doc).

    ``t1``/``t2``: (B·KO, C) scratch of the data dtype; ``coef``: (3, B, C) of the data dtype
    (μ_hi, scale, shift); ``sync``: a zeroed int64 (2,) array (finished chunks, flag)."""
    nb, no, nc, _ = x.shape
    x3 = x.reshape(nb, no, nc)
    y3 = out.reshape(nb, no, nc)
    n = nb * ko
    mine = np.empty(nch, np.int64)  # the chunks this thread ran, normalized by it after
    k = 0
    ch = first_chunk(counter, nch)
    while ch < nch:
        for it in range(ch * n // nch, (ch + 1) * n // nch):
            b, r, o0, o1 = _rows_of(it, ko, no)
            _slab_moments(x3[b, o0:o1], 0, o1 - o0, x3[b, 0], p1[b, r], p2[b, r], t1[it], t2[it])
        mine[k] = ch
        k += 1
        if nch > 1 and arrive(sync) == nch - 1:  # the last chunk: every partial is written
            _group_stats_into(x, p1, p2, groups, eps, mean, var, rstd)
            _expand_into(mean, rstd, weight, bias, coef[0], coef[1], coef[2])
            release_flag(sync)
        ch = later_chunk(counter, nch)
    if nch == 1:
        _group_stats_into(x, p1, p2, groups, eps, mean, var, rstd)
        _expand_into(mean, rstd, weight, bias, coef[0], coef[1], coef[2])
    elif k:
        wait_flag(sync)
    for j in range(k):
        ch = mine[j]
        for it in range(ch * n // nch, (ch + 1) * n // nch):
            b, r, o0, o1 = _rows_of(it, ko, no)
            _apply_rows(x3[b, o0:o1], coef[0, b], coef[1, b], coef[2, b], y3[b, o0:o1])
