"""Window-sum building blocks of the local response normalization CPU kernels: the box
sums ``S`` of squares along the window axes of one task block, with their scratch layout.

* :func:`_load`: the squares of a block into the zero-padded stage-0 buffer;
* :func:`_window`: the window sums along the last axis (one flat tap sum, then
  :func:`_edge_fix` for the positions whose window crossed into the next run), then along
  axes nd-2 .. 0, each into the next stage buffer;
* :func:`_task` / :func:`_ntasks`: which block of the ``(outer, L, inner)`` view a task
  covers; :func:`_prefetch_task`: software prefetch of a task's strided rows.

The stage layout, the thread mapping and the forward/backward that use these helpers are
described in :mod:`.local_response_norm`, which holds the kernels and entry points.
"""
import numpy as np
from numba import njit

from .. import _config
from ._stream import prefetch as _prefetch

_opts = _config.JIT_OPTIONS

#: options of the helpers, which only compiled code calls: no CPython or C entry point
#: wrappers (~15 % of a first call's compile time went into building them for every helper)
_helper_opts = dict(_opts, no_cpython_wrapper=True, no_cfunc_wrapper=True)

#: unsigned index type: indexing with it skips Numba's negative-index wrap-around, which
#: lets LLVM vectorise loops over computed offsets
U = np.uintp


@njit(**_helper_opts)
def _tapsum(src, sbase, stride, w, n, dst, dbase):
    """dst[dbase + i] = sum_{d < w} src[sbase + d * stride + i] for i < n.

    Flat arrays with unsigned indices (no wrap-around checks, no slice objects to
    reference-count), so the loops vectorise."""
    s0 = sbase
    s1 = sbase + stride
    s2 = s1 + stride
    s3 = s2 + stride
    s4 = s3 + stride
    if w == 1:
        for i in range(n):
            dst[U(dbase + i)] = src[U(s0 + i)]
    elif w == 2:
        for i in range(n):
            dst[U(dbase + i)] = src[U(s0 + i)] + src[U(s1 + i)]
    elif w == 3:
        for i in range(n):
            dst[U(dbase + i)] = src[U(s0 + i)] + src[U(s1 + i)] + src[U(s2 + i)]
    elif w == 4:
        for i in range(n):
            dst[U(dbase + i)] = src[U(s0 + i)] + src[U(s1 + i)] + src[U(s2 + i)] + src[U(s3 + i)]
    else:
        for i in range(n):
            dst[U(dbase + i)] = (src[U(s0 + i)] + src[U(s1 + i)] + src[U(s2 + i)] + src[U(s3 + i)]
                                 + src[U(s4 + i)])
        for d in range(5, w):
            sd = sbase + d * stride
            for i in range(n):
                dst[U(dbase + i)] += src[U(sd + i)]


@njit(inline="always", **_helper_opts)
def _seg(sp, wa, off, r, p, cb, mg):
    """Stage-0 index of the first element of interior segment ``p`` of row ``r``.

    Stage 0 pads axes 0 .. nd-2 (interior at ``off``), keeps the last axis unpadded and
    has ``mg`` zero elements before and after; a segment is the contiguous interior run
    over the last two axes (over the last axis when nd == 1)."""
    nd = sp.shape[0]
    if nd == 1:
        return mg + r * sp[0] * cb
    div = 1
    for b in range(nd - 2):
        div *= sp[b]
    base = r
    for b in range(nd - 1):
        if b < nd - 2:
            div //= sp[b]
            digit = (p // div) % sp[b]
        else:
            digit = 0
        base = base * (sp[b] + wa[b] - 1) + digit + off[b]
    return mg + base * sp[nd - 1] * cb


@njit(**_helper_opts)
def _sq_block(xf, xo, xs, dst, do, ds, nl, n):
    """dst[do + l ds + i] = xf[xo + l xs + i] ** 2 for l < nl, i < n (one call per
    block: array arguments of called helpers are reference-counted per call)."""
    for l in range(nl):
        xb = xo + l * xs
        db = do + l * ds
        for i in range(n):
            v = xf[U(xb + i)]
            dst[U(db + i)] = v * v


@njit(inline="always", **_helper_opts)
def _load(xf, o0, nr, c0, nc, length, inner, sp, wa, off, cb, mg, buf, b0):
    """Squares of the block into the stage-0 buffer at ``buf[b0:]`` (interior at ``off``)."""
    nd = sp.shape[0]
    seglen = sp[nd - 1] if nd == 1 else sp[nd - 2] * sp[nd - 1]
    nps = length // seglen
    Z, I1 = np.int64(0), np.int64(1)  # not literals: one compiled helper for both call forms
    if cb == 1 and nd == 1:  # consecutive rows are one contiguous run
        _sq_block(xf, o0 * length, Z, buf, b0 + mg, Z, I1, nr * length)
        return
    for r in range(nr):
        for p in range(nps):
            b = b0 + _seg(sp, wa, off, r, p, cb, mg)
            pos = (o0 + r) * length + p * seglen
            if cb == 1:
                _sq_block(xf, pos, Z, buf, b, Z, I1, seglen)
            else:
                _sq_block(xf, pos * inner + c0, inner, buf, b, cb, seglen, nc)


@njit(**_helper_opts)
def _edge_sum(buf, src, dst, rb, l, last, cb, lo, hi):
    j0 = max(0, l - lo)
    j1 = min(last - 1, l + hi)
    o = dst + rb + l * cb
    if cb == 1:
        acc = buf[U(src + rb + j0)]
        for j in range(j0 + 1, j1 + 1):
            acc += buf[U(src + rb + j)]
        buf[U(o)] = acc
        return
    for q in range(cb):
        buf[U(o + q)] = buf[U(src + rb + j0 * cb + q)]
    for j in range(j0 + 1, j1 + 1):
        sj = src + rb + j * cb
        for q in range(cb):
            buf[U(o + q)] += buf[U(sj + q)]


@njit(inline="always", **_helper_opts)
def _edge_fix(buf, src, dst, nruns, last, cb, lo, hi):
    """Recompute the clipped last-axis window sums of the first ``lo`` and the last ``hi``
    positions of every run (the flat tap sum read across run boundaries there)."""
    e0 = min(lo, last)
    e1 = max(last - hi, e0)
    for run in range(nruns):
        rb = run * last * cb
        for l in range(e0):
            _edge_sum(buf, src, dst, rb, l, last, cb, lo, hi)
        for l in range(e1, last):
            _edge_sum(buf, src, dst, rb, l, last, cb, lo, hi)


@njit(inline="always", **_helper_opts)
def _window(buf, offs, first, sp, wa, lo, hi, nr, cb, mg):
    """Window sums of the stage-0 buffer ``first`` through the stage buffers
    first+1 .. first+nd of ``buf`` (last axis first, then axes nd-2 .. 0). ``lo``/``hi``:
    the last axis' reach (the other axes' offsets are in the stage-0 layout)."""
    nd = sp.shape[0]
    last = sp[nd - 1]
    wl = wa[nd - 1]
    src = offs[first]
    dst = offs[first + 1]
    runs = nr
    for b in range(nd - 1):
        runs *= sp[b] + wa[b] - 1
    tot = runs * last * cb
    _tapsum(buf, src + mg - lo * cb, cb, wl, tot, buf, dst + mg)
    _edge_fix(buf, src + mg, dst + mg, runs, last, cb, lo, hi)
    for a in range(nd - 2, -1, -1):
        pre = nr
        for b in range(a):
            pre *= sp[b] + wa[b] - 1
        post = cb
        for b in range(a + 1, nd):
            post *= sp[b]
        la_src = sp[a] + wa[a] - 1
        la_dst = sp[a]
        si = first + nd - a - 1
        src = offs[si] + (mg if si == first + 1 else 0)
        dst = offs[si + 1]
        for pr in range(pre):
            _tapsum(buf, src + pr * la_src * post, post, wa[a], la_dst * post, buf, dst + pr * la_dst * post)


@njit(inline="always", **_helper_opts)
def _task(t, outer, inner, rows, cb):
    """(o0, number of rows, c0, number of valid lanes) of task ``t``."""
    if inner == 1:
        o0 = t * rows
        return o0, min(rows, outer - o0), 0, 1
    nblk = (inner + cb - 1) // cb
    o0 = t // nblk
    c0 = (t % nblk) * cb
    return o0, 1, c0, min(cb, inner - c0)


@njit(**_helper_opts)
def _prefetch_task(xf, t, ntasks, outer, length, inner, rows, cb):
    """Prefetch the strided rows of task ``t`` (only for lanes blocks: cb > 1)."""
    if cb == 1 or t >= ntasks:
        return
    o0, nr, c0, nc = _task(t, outer, inner, rows, cb)
    step = max(1, 64 // xf.itemsize)
    for l in range(length):
        e = (o0 * length + l) * inner + c0
        for q in range(0, nc, step):
            _prefetch(xf, U(e + q))


def _ntasks(outer, inner, rows, cb):
    if inner == 1:
        return (outer + rows - 1) // rows
    return outer * ((inner + cb - 1) // cb)


_ntasks_nb = njit(inline="always", **_helper_opts)(_ntasks)

#: :func:`_prefetch_task` inlined (Numba IR level) into the forward kernel, its only call
#: site there; the backward kernel's three call sites share the called form
_prefetch_task_inline = njit(inline="always", **_helper_opts)(_prefetch_task.py_func)
