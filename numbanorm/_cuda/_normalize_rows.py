"""Lp normalization CUDA row kernels: ``(M, N)`` rows, the norm along the last axis.

Layout: C-contiguous rows passed flat with ``m, n``; row ``i`` starts at ``i * n``.
Thread mapping (``_layout.launch_rows``): one warp per row for ``N <= warp_row_max``
(lane ``l`` handles columns ``l, l+32, ...``, coalesced), one block per row above (each
warp a contiguous segment, a multiple of 32 long, stepped by 32); grid-stride over rows.
The norm is reduced in float64 with ``_reduce.warp_sum`` / ``block_sum`` (``warp_max`` /
``block_max`` for p = inf, NaN-propagating); the write pass re-reads the row (L1/L2).
Launched by :mod:`.normalize`.
"""
import functools

from numba import cuda, float64, uint32, uint64

from ._normalize_terms import FIXED, PINF, PNINF, _acc, _clamp, _finish, _init, _named, terms
from ._reduce import block_max, block_sum, block_sum2, warp_max, warp_sum, warp_sum2


@functools.lru_cache(maxsize=None)
def row_kernels(fixed, fp64=False):
    """The four row kernels (forward/backward × warp/block) of one p kind (``fixed`` in
    :data:`FIXED`, names ending ``_p2`` / ``_p1`` / ``_pinf``) or of the runtime kinds (``None``)."""
    K, tag, maxred, kind, scale, gterm, grad_run, dot_run, count_ties = terms(fixed, fp64)

    def make_team(ity):
        """``team(warp, n)`` with in-row bounds of type ``ity``: (row offset of this thread
        in the block, rows per block, first index, end of its segment, step); a lane walks
        ``first, first + step, ... < end``. Warp kernels: a warp per row, the whole row.
        Block kernels: a block per row cut into one contiguous segment per warp (a
        multiple of 32 long), so every row kernel steps by the constant 32: with 32-bit
        bounds the compiler turns the addresses into pointer increments (a runtime step,
        or 64-bit bounds, cost ~4 instructions per array and element). The runtime-kind
        block kernels keep a block-wide stride (their register count is the limit)."""

        def team(warp, n):
            t = cuda.threadIdx.x
            un = ity(n)
            lane = ity(t & 31)
            if warp:
                return t >> 5, cuda.blockDim.x >> 5, lane, un, ity(32)
            if fixed is None:  # the block strides over the row (fewer registers here)
                return 0, 1, ity(t), un, ity(cuda.blockDim.x)
            nw = ity(cuda.blockDim.x >> 5)
            seg = ity(ity(ity(un + nw - ity(1)) // max(nw, ity(1)) + ity(31)) & ~ity(31))
            first = min(ity(ity(t >> 5) * seg), un)
            return 0, 1, ity(first + lane), ity(min(first + seg, un)), ity(32)

        return cuda.jit(device=True, inline="always")(team)

    # in-row bounds of the row kernels: 32-bit for the fixed kinds, which take rows of
    # < ROW32 elements; the runtime kinds take all (launcher: _row_kernel)
    team32, team64 = make_team(uint32), make_team(uint64)

    def row(x, i, m, n):
        """(row ``i`` exists, its flat offset, its array): fixed kinds index a view of the
        row from its start; the runtime kinds index the flat array (fewer registers)."""
        active = i < m
        base = uint64(i) * uint64(n) if active else uint64(0)
        if fixed is None:
            return active, base, x
        return active, base, x[base:base + uint64(n)]

    row = cuda.jit(device=True, inline="always")(row)

    def bounds(lane, stop, base):
        """A lane's (first, end) index in the array :func:`row` returned."""
        if fixed is None:
            return uint64(lane) + base, uint64(stop) + base
        return lane, stop

    bounds = cuda.jit(device=True, inline="always")(bounds)

    def rows_forward(warp):
        team = team64 if fixed is None else team32

        def k(x, m, n, pk, p, eps, out):
            pk = kind(pk)
            sub, rpb, lane, stop, ut = team(warp, n)
            i0 = cuda.blockIdx.x * rpb
            while i0 < m:
                active, base, xr = row(x, i0 + sub, m, n)
                lo, hi = bounds(lane, stop, base)
                a = _init(pk)
                if active:
                    j = lo
                    while j < hi:
                        a = _acc(float64(xr[j]), a, pk, p)
                        j += ut
                if maxred and (pk == PINF or pk == PNINF):
                    a = warp_max(a) if warp else block_max(a)
                else:
                    a = warp_sum(a) if warp else block_sum(a)
                d = out.dtype.type(_clamp(_finish(a, pk, p), eps))
                if active:
                    _, _, orow = row(out, i0 + sub, m, n)
                    scale(xr, orow, lo, hi, ut, d)
                i0 += cuda.gridDim.x * rpb

        return _named(k, f"_rows_forward_{'warp' if warp else 'block'}{tag}")

    def rows_backward(warp):
        team = team64 if fixed is None else team32

        def k(grad_out, x, m, n, pk, p, eps, grad_x):
            pk = kind(pk)
            sub, rpb, lane, stop, ut = team(warp, n)
            i0 = cuda.blockIdx.x * rpb
            while i0 < m:
                active, base, xr = row(x, i0 + sub, m, n)
                _, _, gr = row(grad_out, i0 + sub, m, n)
                lo, hi = bounds(lane, stop, base)
                a = _init(pk)
                s = float64(0.0)
                if active:
                    a, s = dot_run(gr, xr, lo, hi, ut, a, s, pk, p)
                if maxred and (pk == PINF or pk == PNINF):
                    a = warp_max(a) if warp else block_max(a)
                    s = warp_sum(s) if warp else block_sum(s)
                else:
                    a, s = warp_sum2(a, s) if warp else block_sum2(a, s)
                nrm = _finish(a, pk, p)
                cnt = float64(0.0)
                if maxred and (pk == PINF or pk == PNINF):
                    if active:
                        cnt = count_ties(xr, lo, hi, ut, nrm)
                    cnt = warp_sum(cnt) if warp else block_sum(cnt)
                if active:
                    _, _, gxr = row(grad_x, i0 + sub, m, n)
                    grad_run(gr, xr, gxr, lo, hi, ut, s, nrm, eps, pk, p, cnt)
                i0 += cuda.gridDim.x * rpb

        return _named(k, f"_rows_backward_{'warp' if warp else 'block'}{tag}")

    return {
        "rows_forward_warp": rows_forward(True), "rows_forward_block": rows_forward(False),
        "rows_backward_warp": rows_backward(True), "rows_backward_block": rows_backward(False),
    }


def _signatures():
    sigs = []
    sc = "int64, float64, float64"
    for t in ("float32", "float64"):
        a1 = f"{t}[::1]"
        for fixed in FIXED + (None,):
            ks = row_kernels(fixed, t == "float64")
            sigs += [
                (ks["rows_forward_warp"], f"void({a1}, int64, int64, {sc}, {a1})"),
                (ks["rows_forward_block"], f"void({a1}, int64, int64, {sc}, {a1})"),
                (ks["rows_backward_warp"], f"void({a1}, {a1}, int64, int64, {sc}, {a1})"),
                (ks["rows_backward_block"], f"void({a1}, {a1}, int64, int64, {sc}, {a1})"),
            ]
    return sigs


PTX_SIGNATURES = _signatures()
