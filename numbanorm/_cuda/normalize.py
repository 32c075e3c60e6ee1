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
import math

from numba import cuda, float64

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
def _dnorm(v, nrm, pk, p, cnt):
    if v == 0.0 or nrm == 0.0:
        return 0.0
    sg = 1.0 if v > 0.0 else -1.0
    if pk == P2:
        return v / nrm
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
def _is_tie(v, nrm):
    av = abs(v)
    return av == nrm or av != av


# ------------------------------------------------------------------- rows (M, N)


@cuda.jit
def _rows_forward_warp(x, pk, p, eps, out):
    m, n = x.shape
    t = cuda.threadIdx.x
    lane = t & 31
    rpb = cuda.blockDim.x >> 5
    for base in range(cuda.blockIdx.x * rpb, m, cuda.gridDim.x * rpb):
        i = base + (t >> 5)
        active = i < m
        a = _init(pk)
        if active:
            for j in range(lane, n, 32):
                a = _acc(float64(x[i, j]), a, pk, p)
        if pk == PINF or pk == PNINF:
            a = warp_max(a)
        else:
            a = warp_sum(a)
        d = out.dtype.type(_clamp(_finish(a, pk, p), eps))
        if active:
            for j in range(lane, n, 32):
                out[i, j] = x[i, j] / d


@cuda.jit
def _rows_forward_block(x, pk, p, eps, out):
    m, n = x.shape
    t = cuda.threadIdx.x
    nt = cuda.blockDim.x
    for i in range(cuda.blockIdx.x, m, cuda.gridDim.x):
        a = _init(pk)
        for j in range(t, n, nt):
            a = _acc(float64(x[i, j]), a, pk, p)
        if pk == PINF or pk == PNINF:
            a = block_max(a)
        else:
            a = block_sum(a)
        d = out.dtype.type(_clamp(_finish(a, pk, p), eps))
        for j in range(t, n, nt):
            out[i, j] = x[i, j] / d


@cuda.jit
def _rows_backward_warp(grad_out, x, pk, p, eps, grad_x):
    m, n = x.shape
    t = cuda.threadIdx.x
    lane = t & 31
    rpb = cuda.blockDim.x >> 5
    for base in range(cuda.blockIdx.x * rpb, m, cuda.gridDim.x * rpb):
        i = base + (t >> 5)
        active = i < m
        a = _init(pk)
        s = float64(0.0)
        if active:
            for j in range(lane, n, 32):
                v = float64(x[i, j])
                a = _acc(v, a, pk, p)
                s += float64(grad_out[i, j]) * v
        if pk == PINF or pk == PNINF:
            a = warp_max(a)
            s = warp_sum(s)
        else:
            a, s = warp_sum2(a, s)
        nrm = _finish(a, pk, p)
        cnt = float64(0.0)
        if pk == PINF or pk == PNINF:
            if active:
                for j in range(lane, n, 32):
                    if _is_tie(float64(x[i, j]), nrm):
                        cnt += 1.0
            cnt = warp_sum(cnt)
        inv_d = 1.0 / _clamp(nrm, eps)
        coef = s * inv_d * inv_d if nrm >= eps and pk != P0 else 0.0
        if active:
            for j in range(lane, n, 32):
                v = float64(x[i, j])
                grad_x[i, j] = grad_out[i, j] * inv_d - coef * _dnorm(v, nrm, pk, p, cnt)


@cuda.jit
def _rows_backward_block(grad_out, x, pk, p, eps, grad_x):
    m, n = x.shape
    t = cuda.threadIdx.x
    nt = cuda.blockDim.x
    for i in range(cuda.blockIdx.x, m, cuda.gridDim.x):
        a = _init(pk)
        s = float64(0.0)
        for j in range(t, n, nt):
            v = float64(x[i, j])
            a = _acc(v, a, pk, p)
            s += float64(grad_out[i, j]) * v
        if pk == PINF or pk == PNINF:
            a = block_max(a)
            s = block_sum(s)
        else:
            a, s = block_sum2(a, s)
        nrm = _finish(a, pk, p)
        cnt = float64(0.0)
        if pk == PINF or pk == PNINF:
            for j in range(t, n, nt):
                if _is_tie(float64(x[i, j]), nrm):
                    cnt += 1.0
            cnt = block_sum(cnt)
        inv_d = 1.0 / _clamp(nrm, eps)
        coef = s * inv_d * inv_d if nrm >= eps and pk != P0 else 0.0
        for j in range(t, n, nt):
            v = float64(x[i, j])
            grad_x[i, j] = grad_out[i, j] * inv_d - coef * _dnorm(v, nrm, pk, p, cnt)


# ------------------------------------------------------ channels (outer, C, inner)


@cuda.jit
def _chan_forward(x, pk, p, eps, out):
    outer, c_len, inner = x.shape
    for col in range(cuda.grid(1), outer * inner, cuda.gridsize(1)):
        o = col // inner
        j = col - o * inner
        a = _init(pk)
        for c in range(c_len):
            a = _acc(float64(x[o, c, j]), a, pk, p)
        d = out.dtype.type(_clamp(_finish(a, pk, p), eps))
        for c in range(c_len):
            out[o, c, j] = x[o, c, j] / d


@cuda.jit
def _chan_backward(grad_out, x, pk, p, eps, grad_x):
    outer, c_len, inner = x.shape
    for col in range(cuda.grid(1), outer * inner, cuda.gridsize(1)):
        o = col // inner
        j = col - o * inner
        a = _init(pk)
        s = float64(0.0)
        for c in range(c_len):
            v = float64(x[o, c, j])
            a = _acc(v, a, pk, p)
            s += float64(grad_out[o, c, j]) * v
        nrm = _finish(a, pk, p)
        cnt = float64(0.0)
        if pk == PINF or pk == PNINF:
            for c in range(c_len):
                if _is_tie(float64(x[o, c, j]), nrm):
                    cnt += 1.0
        inv_d = 1.0 / _clamp(nrm, eps)
        coef = s * inv_d * inv_d if nrm >= eps and pk != P0 else 0.0
        for c in range(c_len):
            v = float64(x[o, c, j])
            grad_x[o, c, j] = grad_out[o, c, j] * inv_d - coef * _dnorm(v, nrm, pk, p, cnt)


@cuda.jit(device=True, inline="always")
def _merge(a, b, pk):
    """Combine two partial accumulators (sums add; p = inf: NaN-propagating max)."""
    if pk == PINF:
        if b > a or b != b:
            return b
        return a
    return a + b


@cuda.jit
def _chan_partial(x, pk, p, part):
    """Few columns, long C: ``part[k, col]`` = the accumulator of column ``col = o * inner + j``
    over chunk ``k`` of C (grid ``(column blocks, chunks)``, chunk ``k`` =
    ``k * C // chunks .. (k + 1) * C // chunks``)."""
    outer, c_len, inner = x.shape
    nchunks = part.shape[0]
    for k in range(cuda.blockIdx.y, nchunks, cuda.gridDim.y):
        c0 = k * c_len // nchunks
        c1 = (k + 1) * c_len // nchunks
        for col in range(cuda.grid(1), outer * inner, cuda.gridsize(1)):
            o = col // inner
            j = col - o * inner
            a = float64(0.0)
            for c in range(c0, c1):
                a = _acc(float64(x[o, c, j]), a, pk, p)
            part[k, col] = a


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
def _chan_apply(x, den, out):
    """``out = x / den[column]`` over the same (column block, chunk) grid as ``_chan_partial``."""
    outer, c_len, inner = x.shape
    nchunks = cuda.gridDim.y
    k = cuda.blockIdx.y
    c0 = k * c_len // nchunks
    c1 = (k + 1) * c_len // nchunks
    for col in range(cuda.grid(1), outer * inner, cuda.gridsize(1)):
        o = col // inner
        j = col - o * inner
        d = out.dtype.type(den[col])
        for c in range(c0, c1):
            out[o, c, j] = x[o, c, j] / d


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


def forward_rows(x, p, eps, out):
    """``out[i] = x[i] / max(||x[i]||_p, eps)`` for each row of the (M, N) array ``x``."""
    m, n = x.shape
    if m == 0 or n == 0:
        return
    warp, blocks, threads = _layout.launch_rows(m, n)
    k = _rows_forward_warp if warp else _rows_forward_block
    k[blocks, threads, _layout.stream()](x, _pkind(p), float(p), float(eps), out)


def backward_rows(grad_out, x, p, eps, grad_x):
    """Gradient of :func:`forward_rows` with respect to ``x`` into ``grad_x`` (M, N)."""
    m, n = x.shape
    if m == 0 or n == 0:
        return
    warp, blocks, threads = _layout.launch_rows(m, n)
    k = _rows_backward_warp if warp else _rows_backward_block
    k[blocks, threads, _layout.stream()](grad_out, x, _pkind(p), float(p), float(eps), grad_x)


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
    _chan_forward[blocks, threads, _layout.stream()](x, _pkind(p), float(p), float(eps), out)


def _forward_channels_split(x, p, eps, out):
    """Few columns (e.g. ``(1_000_000, 64)`` along axis 0): C is cut into chunks so that
    about ``partial_blocks`` blocks share the reduction (a serial walk over C per thread
    would run on one block); partials merged in chunk order, then a parallel write pass."""
    outer, c_len, inner = x.shape
    grid, threads, chunks = _layout.launch_partials(c_len, outer * inner)
    part = _layout.scratch("nz.part", (chunks, outer * inner), "float64")
    den = _layout.scratch("nz.den", (outer * inner,), "float64")
    _chan_partial[grid, threads, _layout.stream()](x, _pkind(p), float(p), part)
    blocks, tpb = _layout.launch_1d(outer * inner)
    _chan_finish[blocks, tpb, _layout.stream()](part, _pkind(p), float(p), float(eps), den)
    _chan_apply[grid, threads, _layout.stream()](x, den, out)


def backward_channels(grad_out, x, p, eps, grad_x):
    """Gradient of :func:`forward_channels` with respect to ``x`` into ``grad_x``."""
    outer, _, inner = x.shape
    if x.size == 0:
        return
    blocks, threads = _layout.launch_1d(outer * inner)
    _chan_backward[blocks, threads, _layout.stream()](grad_out, x, _pkind(p), float(p), float(eps), grad_x)


def _signatures():
    sigs = []
    for t in ("float32", "float64"):
        m2 = f"{t}[:, ::1]"
        m3 = f"{t}[:, :, ::1]"
        sigs += [
            (_rows_forward_warp, f"void({m2}, int64, float64, float64, {m2})"),
            (_rows_forward_block, f"void({m2}, int64, float64, float64, {m2})"),
            (_rows_backward_warp, f"void({m2}, {m2}, int64, float64, float64, {m2})"),
            (_rows_backward_block, f"void({m2}, {m2}, int64, float64, float64, {m2})"),
            (_chan_forward, f"void({m3}, int64, float64, float64, {m3})"),
            (_chan_backward, f"void({m3}, {m3}, int64, float64, float64, {m3})"),
            (_chan_partial, f"void({m3}, int64, float64, float64[:, ::1])"),
            (_chan_apply, f"void({m3}, float64[::1], {m3})"),
        ]
    return sigs


PTX_SIGNATURES = _signatures() + [(_chan_finish, "void(float64[:, ::1], int64, float64, float64, float64[::1])")]
