"""Lp normalization CUDA channel kernels: ``(outer, C, inner)``, the norm along C.

Layout: C-contiguous, passed flat with ``outer, c_len, inner``; column ``(o, j)`` starts
at ``o * C * inner + j`` and steps by ``inner``. Thread mapping: one thread per column
``(o, j)``, grid-stride over the ``outer * inner`` columns; consecutive threads take
consecutive ``j`` (coalesced); each thread loops over C (norm, then write; the backward
adds the ``sum dy x`` loop). With too few columns to fill the device the forward cuts C
into chunks instead: per-chunk partials (``_chan_partial``, grid ``(column blocks,
chunks)``), merged in chunk order (``_chan_finish``), then the write pass on the same
grid (``_chan_apply``). The fixed kinds' fused backward (C < 64) addresses a column from
per-column pointers (``column_ptr``) with ``uint32`` offsets stepping by ``inner``
(columns that do not :func:`fits32` take the runtime kind). Launched by :mod:`.normalize`.
"""
import functools
import math

from numba import cuda, float32, float64, uint32, uint64

from ._normalize_terms import (
    FIXED, P1, PINF, PNINF, SUMS, _acc, _clamp, _factors, _finish, _init, _is_tie, _named, column_ptr, opaque, terms,
)


def fits32(c_len, inner):
    """Whether the fixed-kind thread-per-column kernels' ``uint32`` in-column offsets
    cannot wrap: they reach ``(C + 4) · inner`` at most (the four-element steps past the
    column's end); other columns take the runtime-kind kernels (64-bit offsets), as rows
    of >= ``ROW32`` elements do."""
    return (c_len + 4) * inner < 2**32


@functools.lru_cache(maxsize=None)
def channel_kernels(fixed, fp64=False):
    """The channel kernels of one p kind (``fixed`` in :data:`FIXED`, names ending
    ``_p2`` / ``_p1`` / ``_pinf``) or of the runtime kinds (``None``, which adds ``chan_apply``)."""
    K, tag, maxred, kind, scale, gterm, grad_run, dot_run, count_ties = terms(fixed, fp64)
    DT = float64 if fp64 else float32  # the data dtype

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

    def col_norm(xp, span, st):
        """The norm accumulator down one column (offsets as :func:`col_dot`), four per
        iteration (then one)."""
        a = _init(K)
        k = uint32(0)
        k2 = st
        k3 = uint32(k2 + st)
        k4 = uint32(k3 + st)
        while k4 < span:
            v1 = float64(xp[k])
            v2 = float64(xp[k2])
            v3 = float64(xp[k3])
            v4 = float64(xp[k4])
            a = _acc(v4, _acc(v3, _acc(v2, _acc(v1, a, K, 0.0), K, 0.0), K, 0.0), K, 0.0)
            k = uint32(k4 + st)
            k2 = uint32(k + st)
            k3 = uint32(k2 + st)
            k4 = uint32(k3 + st)
        while k < span:
            a = _acc(float64(xp[k]), a, K, 0.0)
            k = uint32(k + st)
        return a

    col_norm = cuda.jit(device=True, inline="always")(col_norm)

    def col_scale(xp, op, span, st, d):
        """``out = x / d`` down one column (as ``terms``' ``scale``: float32 data as
        ``float32(float64(x) · (1/d))``), four per iteration (then one)."""
        r = float64(1.0) / float64(d)
        k = uint32(0)
        k2 = st
        k3 = uint32(k2 + st)
        k4 = uint32(k3 + st)
        while k4 < span:
            if fp64:
                v1, v2, v3, v4 = xp[k] / d, xp[k2] / d, xp[k3] / d, xp[k4] / d
            else:
                v1 = float32(float64(xp[k]) * r)
                v2 = float32(float64(xp[k2]) * r)
                v3 = float32(float64(xp[k3]) * r)
                v4 = float32(float64(xp[k4]) * r)
            op[k] = v1
            op[k2] = v2
            op[k3] = v3
            op[k4] = v4
            k = uint32(k4 + st)
            k2 = uint32(k + st)
            k3 = uint32(k2 + st)
            k4 = uint32(k3 + st)
        while k < span:
            if fp64:
                op[k] = xp[k] / d
            else:
                op[k] = float32(float64(xp[k]) * r)
            k = uint32(k + st)

    col_scale = cuda.jit(device=True, inline="always")(col_scale)

    def chan_forward32(x, outer, c_len, inner, pk, p, eps, out):
        """Fixed kinds, columns that :func:`fits32`: thread per column (o, j), addressed
        as :func:`chan_backward32` does."""
        ui = uint64(inner)
        span = uint64(c_len) * ui
        s32 = uint32(span)
        st = uint32(inner)
        col = uint64(cuda.grid(1))
        gs = uint64(cuda.gridsize(1))
        o = col // ui
        j = col - o * ui
        go = gs // ui
        gj = gs - go * ui
        while o < uint64(outer):
            base = o * span + j
            xp = column_ptr(x, base)
            sc = opaque(s32)  # the same bound and step, not hoisted out of the column loop
            stc = opaque(st)
            d = out.dtype.type(_clamp(_finish(col_norm(xp, sc, stc), K, 0.0), eps))
            col_scale(xp, column_ptr(out, base), sc, stc, d)
            o += go
            j += gj
            if j >= ui:
                j -= ui
                o += uint64(1)

    def col_dot(gp, xp, span, st):
        """(norm accumulator, Σ dy·x) down one column: offsets 0, st, 2·st, ... < span
        (``uint32``) of the :func:`column_ptr` pointers, four per iteration (then one)."""
        a = _init(K)
        s = float64(0.0)
        k = uint32(0)
        k2 = st
        k3 = uint32(k2 + st)
        k4 = uint32(k3 + st)
        while k4 < span:
            v1 = float64(xp[k])
            v2 = float64(xp[k2])
            v3 = float64(xp[k3])
            v4 = float64(xp[k4])
            a = _acc(v4, _acc(v3, _acc(v2, _acc(v1, a, K, 0.0), K, 0.0), K, 0.0), K, 0.0)
            s += (float64(gp[k]) * v1 + float64(gp[k2]) * v2) + (float64(gp[k3]) * v3 + float64(gp[k4]) * v4)
            k = uint32(k4 + st)
            k2 = uint32(k + st)
            k3 = uint32(k2 + st)
            k4 = uint32(k3 + st)
        while k < span:
            v = float64(xp[k])
            a = _acc(v, a, K, 0.0)
            s += float64(gp[k]) * v
            k = uint32(k + st)
        return a, s

    col_dot = cuda.jit(device=True, inline="always")(col_dot)

    def col_ties(xp, span, st, nrm):
        """The number of ties ``|x| = nrm`` (or NaN) down one column (p = inf)."""
        cnt = float64(0.0)
        k = uint32(0)
        while k < span:
            if _is_tie(float64(xp[k]), nrm):
                cnt += 1.0
            k = uint32(k + st)
        return cnt

    col_ties = cuda.jit(device=True, inline="always")(col_ties)

    def cterm(v, coef, cr, nrm, rn, cnt):
        """``gterm`` of the data value ``v``; p = 1: ``coef · sign(v)`` with ``sign(0) = 0``
        (= ``cr``, ``coef · 0``) formed from ``v`` in its own dtype: no float64 conversion
        of ``x`` and no 64-bit selects of ``±coef``."""
        if K == P1:
            sg = DT(0.0) if v == 0 else math.copysign(DT(1.0), v)
            return coef * float64(sg)
        return gterm(float64(v), coef, cr, nrm, rn, K, 0.0, cnt)

    cterm = cuda.jit(device=True, inline="always")(cterm)

    def col_grad(gp, xp, gxp, span, st, s, nrm, eps, cnt):
        """``dx = dy · inv_d − gterm(x)`` down one column, four per iteration (then one);
        the float64 factors of ``_factors`` are formed once per column."""
        inv_d, coef, cr, rn = _factors(s, nrm, eps, K)
        if K == PINF:  # the tie share of the gradient, one division per column
            cr = coef / cnt if cnt > 0.0 else 0.0
        k = uint32(0)
        k2 = st
        k3 = uint32(k2 + st)
        k4 = uint32(k3 + st)
        while k4 < span:
            v1 = gp[k] * inv_d - cterm(xp[k], coef, cr, nrm, rn, cnt)
            v2 = gp[k2] * inv_d - cterm(xp[k2], coef, cr, nrm, rn, cnt)
            v3 = gp[k3] * inv_d - cterm(xp[k3], coef, cr, nrm, rn, cnt)
            v4 = gp[k4] * inv_d - cterm(xp[k4], coef, cr, nrm, rn, cnt)
            gxp[k] = v1
            gxp[k2] = v2
            gxp[k3] = v3
            gxp[k4] = v4
            k = uint32(k4 + st)
            k2 = uint32(k + st)
            k3 = uint32(k2 + st)
            k4 = uint32(k3 + st)
        while k < span:
            gxp[k] = gp[k] * inv_d - cterm(xp[k], coef, cr, nrm, rn, cnt)
            k = uint32(k + st)

    col_grad = cuda.jit(device=True, inline="always")(col_grad)

    def chan_backward32(grad_out, x, outer, c_len, inner, pk, p, eps, grad_x):
        """Fixed kinds, columns that :func:`fits32`: thread per column (o, j); the
        column's arrays are addressed from :func:`column_ptr` pointers with ``uint32``
        offsets stepping by ``inner`` (one instruction per access, see ``column_ptr``)."""
        ui = uint64(inner)
        span = uint64(c_len) * ui
        s32 = uint32(span)
        st = uint32(inner)
        # the column (o, j) of col = o * inner + j, stepped by the grid size without a
        # 64-bit division per column (one per thread)
        col = uint64(cuda.grid(1))
        gs = uint64(cuda.gridsize(1))
        o = col // ui
        j = col - o * ui
        go = gs // ui
        gj = gs - go * ui
        while o < uint64(outer):
            base = o * span + j
            gp = column_ptr(grad_out, base)
            xp = column_ptr(x, base)
            sc = opaque(s32)  # the same bound and step, not hoisted out of the column loop
            stc = opaque(st)
            a, s = col_dot(gp, xp, sc, stc)
            nrm = _finish(a, K, 0.0)
            cnt = float64(0.0)
            if maxred:
                cnt = col_ties(xp, sc, stc, nrm)
            col_grad(gp, xp, column_ptr(grad_x, base), sc, stc, s, nrm, eps, cnt)
            o += go
            j += gj
            if j >= ui:
                j -= ui
                o += uint64(1)

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
            c0, c1 = _chunk(kk, c_len, nchunks)
            col = uint64(cuda.grid(1))
            while col < uint64(outer) * ui:
                base = column(col, ui, span)
                a = _init(pk)
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
        c0, c1 = _chunk(kk, c_len, nchunks)
        col = uint64(cuda.grid(1))
        while col < uint64(outer) * ui:
            base = column(col, ui, span)
            d = out.dtype.type(den[col])
            scale(x, out, base + c0 * ui, base + c1 * ui, ui, d)
            col += uint64(cuda.gridsize(1))

    def chan_grad_partial(grad_out, x, outer, c_len, inner, pk, p, part):
        """Backward, long C (fixed kinds): ``part[0, k, col]``, ``part[1, k, col]`` = the
        norm accumulator and ``Σ dy·x`` of column ``col = o * inner + j`` over chunk ``k`` of
        C; grid ``(column blocks, chunks)`` and chunks as :func:`chan_partial`."""
        pk = kind(pk)
        nchunks = part.shape[1]
        ui = uint64(inner)
        span = uint64(c_len) * ui
        for kk in range(cuda.blockIdx.y, nchunks, cuda.gridDim.y):
            c0, c1 = _chunk(kk, c_len, nchunks)
            col = uint64(cuda.grid(1))
            while col < uint64(outer) * ui:
                base = column(col, ui, span)
                a, s = dot_run(grad_out, x, base + c0 * ui, base + c1 * ui, ui, float64(0.0), float64(0.0), pk, p)
                part[0, kk, col] = a
                part[1, kk, col] = s
                col += uint64(cuda.gridsize(1))

    def chan_grad_apply(grad_out, x, outer, c_len, inner, fac, grad_x):
        """Backward write pass over the (column block, chunk) grid of ``chan_grad_partial``:
        ``grad_x = dy · inv_d − gterm(x)`` with column ``col``'s float64 factors
        ``fac[:, col]`` = ``(inv_d, coef, cr)`` of ``_factors`` (``_chan_grad_finish``), two
        elements per iteration."""
        nchunks = cuda.gridDim.y
        kk = cuda.blockIdx.y
        ui = uint64(inner)
        span = uint64(c_len) * ui
        c0, c1 = _chunk(kk, c_len, nchunks)
        col = uint64(cuda.grid(1))
        zero = float64(0.0)
        while col < uint64(outer) * ui:
            base = column(col, ui, span)
            inv_d, coef, cr = fac[0, col], fac[1, col], fac[2, col]
            k = base + c0 * ui
            end = base + c1 * ui
            while k + ui < end:
                k2 = k + ui
                v1 = grad_out[k] * inv_d - gterm(float64(x[k]), coef, cr, zero, zero, K, zero, zero)
                v2 = grad_out[k2] * inv_d - gterm(float64(x[k2]), coef, cr, zero, zero, K, zero, zero)
                grad_x[k] = v1
                grad_x[k2] = v2
                k = k2 + ui
            if k < end:
                grad_x[k] = grad_out[k] * inv_d - gterm(float64(x[k]), coef, cr, zero, zero, K, zero, zero)
            col += uint64(cuda.gridsize(1))

    chan_forward.__name__ = "_chan_forward"
    chan_backward.__name__ = "_chan_backward"
    chan_partial.__name__ = "_chan_partial"
    out = {
        "chan_forward": _named(chan_forward if fixed is None else chan_forward32, "_chan_forward" + tag),
        "chan_backward": _named(chan_backward if fixed is None else chan_backward32, "_chan_backward" + tag),
        "chan_partial": _named(chan_partial, "_chan_partial" + tag),
    }
    if fixed is None:
        out["chan_apply"] = _named(chan_apply, "_chan_apply")
    elif fixed in SUMS:  # the split backward sums partials: p = 2, 1 only (no max reductions, no ties)
        out["chan_grad_partial"] = _named(chan_grad_partial, "_chan_grad_partial" + tag)
        out["chan_grad_apply"] = _named(chan_grad_apply, "_chan_grad_apply" + tag)
    return out


@cuda.jit(device=True, inline="always")
def _chunk(kk, c_len, nchunks):
    """The C range ``[c0, c1)`` of chunk ``kk`` of ``nchunks`` (the split kernels' grid y)."""
    return uint64(kk * c_len // nchunks), uint64((kk + 1) * c_len // nchunks)


@cuda.jit(device=True, inline="always")
def _merge(a, b, pk):
    """Combine two partial accumulators (sums add; p = ±inf: NaN-propagating max, of |x|
    or of -|x|)."""
    if pk == PINF or pk == PNINF:
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


@cuda.jit
def _chan_grad_finish(part, pk, p, eps, fac):
    """``fac[:, col]`` = the float64 factors ``(inv_d, coef, cr)`` of ``_factors`` for column
    ``col`` from the chunk partials of ``chan_grad_partial`` (norm accumulator, ``Σ dy·x``),
    summed in chunk order (p = 2 or 1)."""
    nchunks = part.shape[1]
    ncols = part.shape[2]
    for col in range(cuda.grid(1), ncols, cuda.gridsize(1)):
        a = part[0, 0, col]
        s = part[1, 0, col]
        for k in range(1, nchunks):
            a += part[0, k, col]
            s += part[1, k, col]
        inv_d, coef, cr, _ = _factors(s, _finish(a, pk, p), eps, pk)
        fac[0, col] = inv_d
        fac[1, col] = coef
        fac[2, col] = cr


def _signatures():
    sigs = []
    sc = "int64, float64, float64"
    for t in ("float32", "float64"):
        a1 = f"{t}[::1]"
        for fixed in FIXED + (None,):
            ks = channel_kernels(fixed, t == "float64")
            sigs += [
                (ks["chan_forward"], f"void({a1}, int64, int64, int64, {sc}, {a1})"),
                (ks["chan_backward"], f"void({a1}, {a1}, int64, int64, int64, {sc}, {a1})"),
                (ks["chan_partial"], f"void({a1}, int64, int64, int64, int64, float64, float64[:, ::1])"),
            ]
            if fixed in SUMS:
                sigs += [
                    (ks["chan_grad_partial"], f"void({a1}, {a1}, int64, int64, int64, int64, float64, float64[:, :, ::1])"),
                    (ks["chan_grad_apply"],
                     f"void({a1}, {a1}, int64, int64, int64, float64[:, ::1], {a1})"),
                ]
        sigs.append((channel_kernels(None, t == "float64")["chan_apply"], f"void({a1}, int64, int64, int64, float64[::1], {a1})"))
    return sigs


PTX_SIGNATURES = _signatures() + [
    (_chan_finish, "void(float64[:, ::1], int64, float64, float64, float64[::1])"),
    (_chan_grad_finish, "void(float64[:, :, ::1], int64, float64, float64, float64[:, ::1])"),
]
