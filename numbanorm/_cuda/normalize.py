"""Lp normalization CUDA kernels (twin of ``numbanorm/_cpu/normalize.py``).

Launchers ``forward_rows``, ``backward_rows``, ``forward_channels``, ``backward_channels``
have the CPU entry points' names and signatures and take Numba device arrays.

Thread mapping:

* rows ``(M, N)`` (``_layout.launch_rows``): one warp per row for ``N <= warp_row_max``
  (lane ``l`` handles columns ``l, l+32, ...``, coalesced), one block per row above;
  grid-stride over rows. The norm is reduced in float64 with ``_reduce.warp_sum`` /
  ``block_sum`` (``warp_max`` / ``block_max`` for p = inf, NaN-propagating); the write
  pass re-reads the row (L1/L2).
* channels ``(outer, C, inner)``: one thread per column ``(o, j)``, grid-stride over the
  ``outer * inner`` columns; consecutive threads take consecutive ``j`` (coalesced); each
  thread loops over C (norm, then write; the backward adds the ``sum dy x`` loop). With
  too few columns to fill the device (fewer than ``2 * SM`` blocks, e.g. ``(1_000_000, 64)``
  along axis 0) the forward cuts C into chunks instead: per-chunk partials
  (``_chan_partial``, grid ``(column blocks, chunks)``), merged in chunk order
  (``_chan_finish``), then the write pass on the same grid (``_chan_apply``).

``pk``: 0 → p = 2, 1 → p = 1, 2 → p = inf, 3 → other p (p < 0 included), 4 → p = -inf
(the maximum of -|x|, reduced with the max reductions), 5 → p = 0 (count of nonzeros). The backward is torch's
autograd of ``x / norm(x).clamp_min(eps)`` (see the CPU module). Deterministic: the
reductions' order depends only on the launch shape; no atomics.
"""
import functools
import math

from numba import cuda, float32, float64, uint32, uint64

from . import _layout, _plan
from ._reduce import block_max, block_sum, block_sum2, warp_max, warp_sum, warp_sum2

P2, P1, PINF, PGEN, PNINF, P0 = 0, 1, 2, 3, 4, 5
INF = math.inf


@cuda.jit(device=True, inline="always")
def _init(pk):
    # identity of a norm accumulator: -inf for p = -inf (a maximum of -|x|), else 0
    return -INF if pk == PNINF else float64(0.0)


@cuda.jit(device=True, inline="always")
def _acc(v, a, pk, p):
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


@cuda.jit(device=True, inline="always")
def _finish(a, pk, p):
    if pk == P2:
        return math.sqrt(a)
    if pk == P1 or pk == PINF or pk == P0:
        return a
    if pk == PNINF:
        return -a
    return a ** (1.0 / p)


@cuda.jit(device=True, inline="always")
def _clamp(nrm, eps):
    return eps if nrm < eps else nrm


@cuda.jit(device=True, inline="always")
def _dnorm(v, nrm, rn, pk, p, cnt):
    """d nrm / d v; ``rn`` = 1 / nrm (0 where nrm = 0)."""
    if pk == P2:
        return v * rn  # 0 for v = 0 or nrm = 0 (rn = 0; v is finite when nrm = 0)
    if v == 0.0 or nrm == 0.0:
        return 0.0
    sg = 1.0 if v > 0.0 else -1.0
    if pk == P1:
        return sg
    if pk == PINF or pk == PNINF:
        if abs(v) == nrm:
            return sg / cnt
        return 0.0
    if pk == P0:
        return 0.0
    return sg * abs(v) ** (p - 1.0) * nrm ** (1.0 - p)


@cuda.jit(device=True, inline="always")
def _factors(s, nrm, eps, pk):
    """Per-row float64 factors of the gradient ``dy · inv_d − coef · d nrm / d x``:
    ``(inv_d, coef, cr, rn)``; ``rn`` = 1 / nrm (0 where nrm = 0), ``cr`` = ``coef · rn``
    (p = 1: ``coef · 0``)."""
    inv_d = 1.0 / _clamp(nrm, eps)
    coef = s * inv_d * inv_d if nrm >= eps and pk != P0 else 0.0
    rn = 1.0 / nrm if nrm != 0.0 else 0.0
    cr = coef * (0.0 if pk == P1 else rn)
    return inv_d, coef, cr, rn


@cuda.jit(device=True, inline="always")
def _is_tie(v, nrm):
    av = abs(v)
    return av == nrm or av != av


# ------------------------------------------------------------------- kernels


def _named(fn, name):
    fn.__name__ = fn.__qualname__ = name
    return cuda.jit(fn)


#: p kinds with kernels of their own (p a compile-time constant); others share the
#: ``None`` kernels, which take the kind at run time
FIXED = (P2, P1)


@functools.lru_cache(maxsize=None)
def kernels(fixed, fp64=False):
    """Every normalize kernel for one p kind (``fixed`` in :data:`FIXED`, names ending
    ``_p2`` / ``_p1``) or for all the others (``None``: the kind is the ``pk`` argument).

    Data arrays are passed flat with their dims; elements are addressed with unsigned
    indices from row / column base offsets; reductions are float64, element-wise outputs
    in the data dtype.

    ``fp64=False`` (float32 data): ``x / d`` is computed as ``float32(float64(x) · (1/d))``
    with ``1/d`` in float64 once per row: the float64 product is within 2⁻⁵² of the exact
    quotient, closer than any float32 rounding boundary (≥ 2⁻⁴⁹ away for 24-bit
    operands), so it rounds to the same bits as the float32 division, at 3 instructions
    instead of ~12."""
    K = -1 if fixed is None else fixed
    tag = "" if fixed is None else ("_p2" if fixed == P2 else "_p1")
    maxred = fixed is None  # only the runtime kinds include p = ±inf (max reductions)

    def kind(pk):
        return pk if K < 0 else K

    kind = cuda.jit(device=True, inline="always")(kind)

    def scale(x, out, k, end, step, d):
        """out[j] = x[j] / d for j = k, k + step, ... < end (unsigned), two per iteration."""
        r = float64(1.0) / float64(d)
        while k + step < end:
            k2 = k + step
            if fp64:
                v1 = x[k] / d
                v2 = x[k2] / d
            else:
                v1 = float32(float64(x[k]) * r)
                v2 = float32(float64(x[k2]) * r)
            out[k] = v1
            out[k2] = v2
            k = k2 + step
        if k < end:
            if fp64:
                out[k] = x[k] / d
            else:
                out[k] = float32(float64(x[k]) * r)

    scale = cuda.jit(device=True, inline="always")(scale)

    def gterm(v, coef, cr, nrm, rn, pk, p, cnt):
        """``coef · d nrm / d v``; ``cr`` from :func:`_factors`. Compile-time p = 2: ``v · cr``
        (one multiplication per element); p = 1: ``±coef`` (``cr`` = ``coef · 0`` at v = 0).
        The runtime kinds keep the generic form (the shortcuts cost them registers)."""
        if K == P2:
            return v * cr
        if K == P1:
            if v == 0.0:
                return cr
            return coef if v > 0.0 else -coef
        return coef * _dnorm(v, nrm, rn, pk, p, cnt)

    gterm = cuda.jit(device=True, inline="always")(gterm)

    def grad_run(grad_out, x, grad_x, k, end, step, s, nrm, eps, pk, p, cnt):
        """grad_x[j] for j = k, k + step, ... < end (unsigned), two per iteration; the
        float64 factors of :func:`_factors` are formed here, once per row."""
        inv_d, coef, cr, rn = _factors(s, nrm, eps, pk)
        while k + step < end:
            k2 = k + step
            v1 = grad_out[k] * inv_d - gterm(float64(x[k]), coef, cr, nrm, rn, pk, p, cnt)
            v2 = grad_out[k2] * inv_d - gterm(float64(x[k2]), coef, cr, nrm, rn, pk, p, cnt)
            grad_x[k] = v1
            grad_x[k2] = v2
            k = k2 + step
        if k < end:
            grad_x[k] = grad_out[k] * inv_d - gterm(float64(x[k]), coef, cr, nrm, rn, pk, p, cnt)

    grad_run = cuda.jit(device=True, inline="always")(grad_run)

    def dot_run(grad_out, x, k, end, step, a, s, pk, p):
        """(norm accumulator, Σ dy·x) over j = k, k + step, ... < end, two per iteration."""
        while k + step < end:
            k2 = k + step
            v1 = float64(x[k])
            v2 = float64(x[k2])
            g1 = float64(grad_out[k])
            g2 = float64(grad_out[k2])
            a = _acc(v2, _acc(v1, a, pk, p), pk, p)
            s += g1 * v1 + g2 * v2
            k = k2 + step
        if k < end:
            v = float64(x[k])
            a = _acc(v, a, pk, p)
            s += float64(grad_out[k]) * v
        return a, s

    dot_run = cuda.jit(device=True, inline="always")(dot_run)

    def count_ties(x, k, end, step, nrm):
        cnt = float64(0.0)
        while k < end:
            if _is_tie(float64(x[k]), nrm):
                cnt += 1.0
            k += step
        return cnt

    count_ties = cuda.jit(device=True, inline="always")(count_ties)

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
        ity = uint64 if fixed is None else uint32
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
        ity = uint64 if fixed is None else uint32
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

    def column(col, ui, span):
        """Flat offset of column ``col = o * inner + j``'s first element."""
        o = col // ui
        return o * span + (col - o * ui)

    column = cuda.jit(device=True, inline="always")(column)

    def chan_forward(x, outer, c_len, inner, pk, p, eps, out):
        """Thread per column (o, j), looping over C with an unsigned address step."""
        pk = kind(pk)
        ui = uint64(inner)
        span = uint64(c_len) * ui
        col = uint64(cuda.grid(1))
        while col < uint64(outer) * ui:
            base = column(col, ui, span)
            end = base + span
            a = _init(pk)
            k = base
            while k < end:
                a = _acc(float64(x[k]), a, pk, p)
                k += ui
            d = out.dtype.type(_clamp(_finish(a, pk, p), eps))
            scale(x, out, base, end, ui, d)
            col += uint64(cuda.gridsize(1))

    def chan_backward(grad_out, x, outer, c_len, inner, pk, p, eps, grad_x):
        pk = kind(pk)
        ui = uint64(inner)
        span = uint64(c_len) * ui
        col = uint64(cuda.grid(1))
        while col < uint64(outer) * ui:
            base = column(col, ui, span)
            end = base + span
            a, s = dot_run(grad_out, x, base, end, ui, _init(pk), float64(0.0), pk, p)
            nrm = _finish(a, pk, p)
            cnt = float64(0.0)
            if maxred and (pk == PINF or pk == PNINF):
                cnt = count_ties(x, base, end, ui, nrm)
            grad_run(grad_out, x, grad_x, base, end, ui, s, nrm, eps, pk, p, cnt)
            col += uint64(cuda.gridsize(1))

    def chan_partial(x, outer, c_len, inner, pk, p, part):
        """Few columns, long C: ``part[k, col]`` = the accumulator of column ``col = o * inner + j``
        over chunk ``k`` of C (grid ``(column blocks, chunks)``, chunk ``k`` =
        ``k * C // chunks .. (k + 1) * C // chunks``)."""
        pk = kind(pk)
        nchunks = part.shape[0]
        ui = uint64(inner)
        span = uint64(c_len) * ui
        for kk in range(cuda.blockIdx.y, nchunks, cuda.gridDim.y):
            c0 = uint64(kk * c_len // nchunks)
            c1 = uint64((kk + 1) * c_len // nchunks)
            col = uint64(cuda.grid(1))
            while col < uint64(outer) * ui:
                base = column(col, ui, span)
                a = float64(0.0)
                k = base + c0 * ui
                end = base + c1 * ui
                while k < end:
                    a = _acc(float64(x[k]), a, pk, p)
                    k += ui
                part[kk, col] = a
                col += uint64(cuda.gridsize(1))

    def chan_apply(x, outer, c_len, inner, den, out):
        """``out = x / den[column]`` over the same (column block, chunk) grid as ``_chan_partial``."""
        nchunks = cuda.gridDim.y
        kk = cuda.blockIdx.y
        ui = uint64(inner)
        span = uint64(c_len) * ui
        c0 = uint64(kk * c_len // nchunks)
        c1 = uint64((kk + 1) * c_len // nchunks)
        col = uint64(cuda.grid(1))
        while col < uint64(outer) * ui:
            base = column(col, ui, span)
            d = out.dtype.type(den[col])
            scale(x, out, base + c0 * ui, base + c1 * ui, ui, d)
            col += uint64(cuda.gridsize(1))

    chan_forward.__name__ = "_chan_forward"
    chan_backward.__name__ = "_chan_backward"
    chan_partial.__name__ = "_chan_partial"
    out = {
        "rows_forward_warp": rows_forward(True), "rows_forward_block": rows_forward(False),
        "rows_backward_warp": rows_backward(True), "rows_backward_block": rows_backward(False),
        "chan_forward": _named(chan_forward, "_chan_forward" + tag),
        "chan_backward": _named(chan_backward, "_chan_backward" + tag),
        "chan_partial": _named(chan_partial, "_chan_partial" + tag),
    }
    if fixed is None:
        out["chan_apply"] = _named(chan_apply, "_chan_apply")
    return out


#: rows of at least this many elements take the runtime-kind kernels (64-bit in-row
#: bounds) whatever p is
ROW32 = 2**31


def _kernels(pk, dtype, n=0):
    return kernels(pk if pk in FIXED and n < ROW32 else None, dtype == "float64")


@cuda.jit(device=True, inline="always")
def _merge(a, b, pk):
    """Combine two partial accumulators (sums add; p = inf: NaN-propagating max)."""
    if pk == PINF:
        if b > a or b != b:
            return b
        return a
    return a + b


@cuda.jit
def _chan_finish(part, pk, p, eps, den):
    """``den[col] = max(||x[o, :, j]||_p, eps)`` from the chunk partials, in chunk order."""
    nchunks, ncols = part.shape
    for col in range(cuda.grid(1), ncols, cuda.gridsize(1)):
        a = part[0, col]
        for k in range(1, nchunks):
            a = _merge(a, part[k, col], pk)
        den[col] = _clamp(_finish(a, pk, p), eps)


# ------------------------------------------------------------------- launchers


def _pkind(p):
    if p == 2.0:
        return P2
    if p == 1.0:
        return P1
    if p == math.inf:
        return PINF
    if p == -math.inf:
        return PNINF
    if p == 0.0:
        return P0
    return PGEN


def _flat(a):
    return a.reshape(a.size)


def _row_kernel(which, p, dtype, m, n):
    """The launch-configured rows ``which`` kernel ("forward" / "backward"); rows of
    >= ROW32 elements take the runtime-kind kernels (64-bit in-row bounds)."""
    warp, blocks, threads = _layout.launch_rows(m, n)
    k = _kernels(_pkind(p), dtype, n)[f"rows_{which}_{'warp' if warp else 'block'}"]
    return k[blocks, threads, _layout.stream()]


def forward_rows(x, p, eps, out):
    """``out[i] = x[i] / max(||x[i]||_p, eps)`` for each row of the (M, N) array ``x``."""
    m, n = x.shape
    if m == 0 or n == 0:
        return
    _row_kernel("forward", p, x.dtype, m, n)(_flat(x), m, n, _pkind(p), float(p), float(eps), _flat(out))


def backward_rows(grad_out, x, p, eps, grad_x):
    """Gradient of :func:`forward_rows` with respect to ``x`` into ``grad_x`` (M, N)."""
    m, n = x.shape
    if m == 0 or n == 0:
        return
    _row_kernel("backward", p, x.dtype, m, n)(_flat(grad_out), _flat(x), m, n, _pkind(p), float(p), float(eps),
                                              _flat(grad_x))


def forward_channels(x, p, eps, out):
    """``out[o, :, j] = x[o, :, j] / max(||x[o, :, j]||_p, eps)`` on (outer, C, inner)."""
    outer, _, inner = x.shape
    if x.size == 0:
        return
    blocks, threads = _layout.launch_1d(outer * inner)
    c_len = x.shape[1]
    if blocks < 2 * _plan.sm_count() and c_len >= 64:
        _forward_channels_split(x, p, eps, out)
        return
    _kernels(_pkind(p), x.dtype)["chan_forward"][blocks, threads, _layout.stream()](
        _flat(x), *x.shape, _pkind(p), float(p), float(eps), _flat(out))


def _forward_channels_split(x, p, eps, out):
    """Few columns (e.g. ``(1_000_000, 64)`` along axis 0): C is cut into chunks so that
    about ``partial_blocks`` blocks share the reduction (a serial walk over C per thread
    would run on one block); partials merged in chunk order, then a parallel write pass."""
    outer, c_len, inner = x.shape
    grid, threads, chunks = _layout.launch_partials(c_len, outer * inner)
    part = _layout.scratch("nz.part", (chunks, outer * inner), "float64")
    den = _layout.scratch("nz.den", (outer * inner,), "float64")
    _kernels(_pkind(p), x.dtype)["chan_partial"][grid, threads, _layout.stream()](_flat(x), *x.shape, _pkind(p), float(p), part)
    blocks, tpb = _layout.launch_1d(outer * inner)
    _chan_finish[blocks, tpb, _layout.stream()](part, _pkind(p), float(p), float(eps), den)
    kernels(None, x.dtype == "float64")["chan_apply"][grid, threads, _layout.stream()](_flat(x), *x.shape, den, _flat(out))


def backward_channels(grad_out, x, p, eps, grad_x):
    """Gradient of :func:`forward_channels` with respect to ``x`` into ``grad_x``."""
    outer, c_len, inner = x.shape
    if x.size == 0:
        return
    blocks, threads = _layout.launch_1d(outer * inner)
    _kernels(_pkind(p), x.dtype)["chan_backward"][blocks, threads, _layout.stream()](
        _flat(grad_out), _flat(x), *x.shape, _pkind(p), float(p), float(eps), _flat(grad_x))


def _signatures():
    sigs = []
    sc = "int64, float64, float64"
    for t in ("float32", "float64"):
        a1 = f"{t}[::1]"
        for fixed in FIXED + (None,):
            ks = kernels(fixed, t == "float64")
            sigs += [
                (ks["rows_forward_warp"], f"void({a1}, int64, int64, {sc}, {a1})"),
                (ks["rows_forward_block"], f"void({a1}, int64, int64, {sc}, {a1})"),
                (ks["rows_backward_warp"], f"void({a1}, {a1}, int64, int64, {sc}, {a1})"),
                (ks["rows_backward_block"], f"void({a1}, {a1}, int64, int64, {sc}, {a1})"),
                (ks["chan_forward"], f"void({a1}, int64, int64, int64, {sc}, {a1})"),
                (ks["chan_backward"], f"void({a1}, {a1}, int64, int64, int64, {sc}, {a1})"),
                (ks["chan_partial"], f"void({a1}, int64, int64, int64, int64, float64, float64[:, ::1])"),
            ]
        sigs.append((kernels(None, t == "float64")["chan_apply"], f"void({a1}, int64, int64, int64, float64[::1], {a1})"))
    return sigs


PTX_SIGNATURES = _signatures() + [(_chan_finish, "void(float64[:, ::1], int64, float64, float64, float64[::1])")]
