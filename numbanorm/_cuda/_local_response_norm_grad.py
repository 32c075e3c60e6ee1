"""LRN backward CUDA kernels (split from ``local_response_norm.py``; launched from there).

Notation as in ``local_response_norm.py``: the data are the ``(A, L, B)`` view of one window
axis, the forward's window of position ``j`` is ``[j - lo, j + hi]``, ``S_j`` the window sum
of ``x²``, ``base_j = k + alpha S_j``, ``p_j = base_j ** -beta``, ``t_j = dy_j x_j p_j / base_j``
and ``dx_l = dy_l p_l + c2 x_l u_l`` with ``u_l`` the sum of ``t`` over the transposed window
``[l - hi, l + lo]`` and ``c2 = -2 alpha beta``.

Power kinds are compile-time constants (:data:`K75` for the common ``beta = 0.75``,
:data:`KGEN` the generic ``pow``): one kernel per kind, no per-element switch. Element math
(``base``, ``p``, ``t``, ``dx``) runs in the data dtype, as the CPU kernels' does (float32
data: float32 math); the window sums run in float64 from shared memory.

* ``_bwd_fused_<kind>`` (one window axis: across channels, or one spatial axis): a 1-D block
  owns a tile of ``tl`` rows along ``L`` times ``ti`` columns along ``B`` and loads ``x`` over
  the tile plus a double halo (``2 (lo + hi)`` rows) and ``dy`` over the tile plus one halo
  into shared memory, forms ``t`` and ``dy p`` for the tile plus the transposed halo there,
  then writes ``dx`` of the tile: ``x`` and ``dy`` are read from DRAM once (halo rows are a
  neighbour tile's rows, L2 hits), ``dx`` written once, nothing else: 2R + 1W.
* ``_bwd_fused2_<kind>`` (within channel over two axes ``(H, W)``, nothing after them): the
  same on a 2-D tile of one plane, the window sums separable in shared memory: 2R + 1W.
* ``_grad_tp_<kind>`` (the other cases): element-wise ``p`` and ``t`` from the sums.

The 2-D tiling helpers :func:`fit2`, :func:`load_plane` and :func:`wsum_rows` are shared
with the fused 2-D forward ``_fwd_fused2_<kind>`` in ``local_response_norm.py``.
"""
import functools
import math

from numba import cuda, float32, float64, uint64
from numba import config
from numba.cuda import libdevice

if config.ENABLE_CUDASIM:  # the simulator has no libdevice: the same value, correctly rounded
    import numpy as np

    def rsqrtf(v):
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.float32(1.0) / np.sqrt(np.float32(v))  # NaN below 0, as rsqrt.approx
else:
    rsqrtf = libdevice.rsqrtf

K75, KGEN = 0, 1
KIND_NAMES = {K75: "p75", KGEN: "pgen"}


def kind_of(beta):
    """The compile-time power kind of ``beta``."""
    return K75 if float(beta) == 0.75 else KGEN


@cuda.jit(device=True, inline="always")
def pneg(base, kind, bneg, one, f32):
    """``(base ** -beta, base ** -beta / base)`` in ``base``'s dtype (``bneg = -beta``,
    ``one`` = 1 in that dtype). 0.75: ``r = 1/sqrt(base)``, ``p = r² / sqrt(r)``... formed as
    ``p = r r rsqrt(r)``, ``p / base = p r r``; float32 (``f32``, compile-time) takes the
    hardware ``rsqrt.approx.f32`` (relative error ≤ 2⁻²², NaN for negative or NaN bases),
    float64 one division and two square roots. Generic: ``pow`` and one division."""
    if kind == K75:
        if f32:
            r = rsqrtf(base)
            p = r * r * rsqrtf(r)
        else:
            r = one / math.sqrt(base)
            p = r * math.sqrt(r)
        return p, p * r * r
    p = base ** bneg
    return p, p / base


@functools.lru_cache(maxsize=None)
def grad_tp(kind, f32):
    """``_grad_tp_<kind>``: ``p`` and ``t`` from the window sums ``s`` (flat, grid-stride);
    ``f32``: compiled for float32 data (see :func:`pneg`)."""
    KIND = kind
    F32 = f32

    def _grad_tp(s, x, g, k, alpha, beta, pb, tb):
        """pb = (k + alpha s) ** -beta, tb = dy x pb / (k + alpha s), in the data dtype."""
        f = pb.dtype.type
        kf, af, bf, one = f(k), f(alpha), f(-beta), f(1.0)
        n = uint64(s.shape[0])
        step = uint64(cuda.gridsize(1))
        i = uint64(cuda.grid(1))
        while i < n:  # unsigned flat index: no negative-index wraparound per access
            p, q = pneg(kf + af * f(s[i]), KIND, bf, one, F32)
            pb[i] = p
            tb[i] = f(g[i]) * f(x[i]) * q
            i += step

    _grad_tp.__name__ = _grad_tp.__qualname__ = f"_grad_tp_{KIND_NAMES[kind]}"
    return cuda.jit(_grad_tp)


def tile(nt, nb, halo, shared):
    """(tl, ti) of the fused backward's tile (``3 tl + 4 halo`` rows of ``ti`` float64 in
    ``shared`` values), or None when the halo is too wide."""
    ti = min(nb, 32)
    while ti >= 1:
        tl = min(max(1, nt // ti), (shared // ti - 4 * halo) // 3)
        if tl >= 1:
            return tl, ti
        ti //= 2
    return None


@functools.lru_cache(maxsize=None)
def bwd_fused(kind, shared, f32):
    """``_bwd_fused_<kind>``: the whole backward of one window axis (see the module
    docstring), ``shared`` float64 values of shared memory per block, ``f32`` as in
    :func:`grad_tp`."""
    KIND = kind
    F32 = f32
    SH = shared
    DT = float32 if f32 else float64  # shared values in the data dtype (exact for x)

    def _bwd_fused(x, gf, dxf, lo, hi, k, alpha, beta, c2, tl, ti, xf):
        """Thread ``t`` owns tile column ``q = t % ti`` and rows ``t // ti + j (nt // ti)``.

        Shared layout (rows of ``ti``): ``x`` rows ``[l0 - h, l0 + tl + h)`` (``h = lo + hi``),
        then ``t`` and ``dy p`` rows ``[l0 - hi, l0 + tl + lo)``. ``xf``, ``gf``, ``dxf`` are
        the flat views of x, dy, dx (unsigned flat offsets stepped per row)."""
        na, length, nb = x.shape
        f = dxf.dtype.type
        kf, af, bf, cf, one = f(k), f(alpha), f(-beta), f(c2), f(1.0)
        sh = cuda.shared.array(SH, DT)
        t = cuda.threadIdx.x
        nt = cuda.blockDim.x
        h = lo + hi
        r1 = tl + 2 * h
        r2 = tl + h
        ts0 = r1 * ti  # t rows
        qs0 = ts0 + r2 * ti  # dy p rows
        ntl = (length + tl - 1) // tl
        ntb = (nb + ti - 1) // ti
        per_a = ntl * ntb
        q = t % ti
        r0 = t // ti
        rstep = nt // ti
        for tile_ in range(cuda.blockIdx.x, na * per_a, cuda.gridDim.x):
            a = tile_ // per_a
            rem = tile_ - a * per_a
            lt = rem // ntb
            l0 = lt * tl
            b = (rem - lt * ntb) * ti + q
            # x over the tile and the double halo (zeros outside)
            l = l0 - h + r0
            off = (a * length + l) * nb + b
            si = r0 * ti + q
            while si < r1 * ti:
                v = f(0.0)
                if l >= 0 and l < length and b < nb:
                    v = f(xf[uint64(off)])
                sh[si] = v
                l += rstep
                off += rstep * nb
                si += rstep * ti
            cuda.syncthreads()
            # t and dy p over the tile and the transposed halo
            j = l0 - hi + r0
            off = (a * length + j) * nb + b
            r = r0
            while r < r2:
                tv = f(0.0)
                qv = f(0.0)
                if j >= 0 and j < length and b < nb:
                    acc = float64(0.0)
                    for d in range(h + 1):
                        v = float64(sh[(r + d) * ti + q])
                        acc += v * v
                    p, pq = pneg(kf + af * f(acc), KIND, bf, one, F32)
                    dy = f(gf[uint64(off)])
                    tv = dy * sh[(r + lo) * ti + q] * pq
                    qv = dy * p
                sh[ts0 + r * ti + q] = tv
                sh[qs0 + r * ti + q] = qv
                j += rstep
                off += rstep * nb
                r += rstep
            cuda.syncthreads()
            if b < nb:  # dx of the tile
                l = l0 + r0
                off = (a * length + l) * nb + b
                r = r0
                while r < tl:
                    if l < length:
                        u = float64(0.0)
                        for d in range(h + 1):
                            u += float64(sh[ts0 + (r + d) * ti + q])
                        dxf[uint64(off)] = f(sh[qs0 + (r + hi) * ti + q]) + cf * f(sh[(r + h) * ti + q]) * f(u)
                    l += rstep
                    off += rstep * nb
                    r += rstep
            cuda.syncthreads()

    _bwd_fused.__name__ = _bwd_fused.__qualname__ = f"_bwd_fused_{KIND_NAMES[kind]}"
    return cuda.jit(_bwd_fused)


def fit2(nt, height, width, need, shared):
    """(th, tw) of a 2-D plane tile for ``nt`` threads (``tw = min(width, 32)`` halved, ``th``
    from ``nt // tw`` down) whose shared regions, ``need(th, tw)`` values, fit in ``shared``,
    or None when the halo is too wide."""
    tw = min(width, 32)
    while tw >= 1:
        th = min(max(1, nt // tw), height)
        while th >= 1:
            if need(th, tw) <= shared:
                return th, tw
            th -= 1
        tw //= 2
    return None


def tile2(nt, height, width, h0, h1, shared):
    """(th, tw) of the 2-D fused backward's tile (:func:`bwd_fused2`; its four shared regions
    within ``shared`` values), or None when the halo is too wide."""
    return fit2(nt, height, width, lambda th, tw: ((th + 2 * h0) * (tw + 2 * h1) + (th + 2 * h0) * (tw + h1)
                                                    + (th + h0) * (tw + h1) + th * tw), shared)


@cuda.jit(device=True, inline="always")
def tile_of(tile_, per_a, ntw, th, tw):
    """``(a, i0, w0)``: the plane and the top-left element of 2-D tile ``tile_`` (tiles of
    ``th x tw``, ``ntw`` per row of tiles, ``per_a`` per plane)."""
    a = tile_ // per_a
    rem = tile_ - a * per_a
    ti_ = rem // ntw
    return a, ti_ * th, (rem - ti_ * ntw) * tw


@cuda.jit(device=True, inline="always")
def load_plane(sh, xf, a, height, width, rb, cb, nr, nc, q, r0, rstep, tw):
    """``sh[r nc + c] = x[a, rb + r, cb + c]`` for ``r < nr``, ``c < nc`` (zeros outside the
    ``(height, width)`` plane; ``xf`` the flat x): the calling thread fills columns
    ``q, q + tw, ...`` of rows ``r0, r0 + rstep, ...``, with an unsigned flat offset stepped
    along the row (no trip-count division)."""
    f = sh.dtype.type
    r = r0
    while r < nr:
        ih = rb + r
        inrow = ih >= 0 and ih < height
        iw = cb + q
        off = (a * height + ih) * width + iw
        si = r * nc + q
        se = r * nc + nc
        while si < se:
            v = f(0.0)
            if inrow and iw >= 0 and iw < width:
                v = f(xf[uint64(off)])
            sh[uint64(si)] = v  # si >= 0: no negative-index wraparound
            iw += tw
            off += tw
            si += tw
        r += rstep


@cuda.jit(device=True, inline="always")
def wsum_rows(sh, s0, sc, d0, dc, nr, nc, w, q, r0, rstep, tw, square):
    """Window sums along a row in shared memory, in float64: ``sh[d0 + r dc + c] =
    sum_{d < w} v(sh[s0 + r sc + c + d])`` for ``r < nr``, ``c < nc`` (``v`` squares when
    ``square``: a literal, folded once inlined); thread mapping as :func:`load_plane`'s."""
    f = sh.dtype.type
    r = r0
    while r < nr:
        c = q
        while c < nc:
            acc = float64(0.0)
            for d in range(w):
                v = float64(sh[s0 + r * sc + c + d])
                if square:
                    acc += v * v
                else:
                    acc += v
            sh[d0 + r * dc + c] = f(acc)
            c += tw
        r += rstep


@functools.lru_cache(maxsize=None)
def bwd_fused2(kind, shared, f32):
    """``_bwd_fused2_<kind>``: the whole backward of a within-channel window over two axes
    ``(H, W)`` with nothing after them (the ``(A, H, W)`` view, W contiguous), arguments as
    :func:`bwd_fused`'s with per-axis reaches ``lo0, hi0`` (H) and ``lo1, hi1`` (W)."""
    KIND = kind
    F32 = f32
    SH = shared
    DT = float32 if f32 else float64

    def _bwd_fused2(x, gf, dxf, lo0, hi0, lo1, hi1, k, alpha, beta, c2, th, tw, xf):
        """A block owns a ``th × tw`` tile of one ``(H, W)`` plane; thread ``t`` owns column
        ``q = t % tw`` (and ``q + tw``, ... of the wider halo regions) and rows
        ``t // tw + j (nt // tw)``. Shared regions (row-major):

        * X: x over rows ``[i0 - h0, i0 + th + h0)``, columns ``[w0 - h1, w0 + tw + h1)``;
        * R: sums of x² along W for X's rows and the t columns ``[w0 - hi1, w0 + tw + lo1)``,
          later U: sums of t along W for the t rows and the tile columns;
        * T: t over rows ``[i0 - hi0, i0 + th + lo0)`` and the t columns;
        * Q: ``dy p`` of the tile.
        """
        na, height, width = x.shape
        f = dxf.dtype.type
        kf, af, bf, cf, one = f(k), f(alpha), f(-beta), f(c2), f(1.0)
        sh = cuda.shared.array(SH, DT)
        t = cuda.threadIdx.x
        nt = cuda.blockDim.x
        h0 = lo0 + hi0
        h1 = lo1 + hi1
        xr, xc = th + 2 * h0, tw + 2 * h1  # X rows, columns
        tr, tc = th + h0, tw + h1  # T rows, columns (R: xr x tc; U: tr x tw)
        r_0 = xr * xc
        t_0 = r_0 + xr * tc
        q_0 = t_0 + tr * tc
        nth = (height + th - 1) // th
        ntw = (width + tw - 1) // tw
        per_a = nth * ntw
        q = t % tw
        r0 = t // tw
        rstep = nt // tw
        active = r0 < rstep  # threads past rstep * tw idle
        for tile_ in range(cuda.blockIdx.x, na * per_a, cuda.gridDim.x):
            a, i0, w0 = tile_of(tile_, per_a, ntw, th, tw)
            if active:  # X (zeros outside the plane)
                load_plane(sh, xf, a, height, width, i0 - h0, w0 - h1, xr, xc, q, r0, rstep, tw)
            cuda.syncthreads()
            if active:  # R: sums of x² along W
                wsum_rows(sh, 0, xc, r_0, tc, xr, tc, h1 + 1, q, r0, rstep, tw, True)
            cuda.syncthreads()
            if active:  # T, Q
                r = r0
                while r < tr:
                    jh = i0 - hi0 + r
                    inrow = jh >= 0 and jh < height
                    row = (a * height + jh) * width
                    c = q
                    while c < tc:
                        jw = w0 - hi1 + c
                        tv = f(0.0)
                        if inrow and jw >= 0 and jw < width:
                            acc = float64(0.0)
                            for d in range(h0 + 1):
                                acc += float64(sh[r_0 + (r + d) * tc + c])
                            p, pq = pneg(kf + af * f(acc), KIND, bf, one, F32)
                            dy = f(gf[uint64(row + jw)])
                            tv = dy * f(sh[(r + lo0) * xc + c + lo1]) * pq
                            if r >= hi0 and r < hi0 + th and c >= hi1 and c < hi1 + tw:
                                sh[q_0 + (r - hi0) * tw + c - hi1] = dy * p
                        sh[t_0 + r * tc + c] = tv
                        c += tw
                    r += rstep
            cuda.syncthreads()
            if active:  # U: sums of t along W (over R)
                wsum_rows(sh, t_0, tc, r_0, tw, tr, tw, h1 + 1, q, r0, rstep, tw, False)
            cuda.syncthreads()
            if active and w0 + q < width:  # dx of the tile
                r = r0
                off = (a * height + i0 + r0) * width + w0 + q
                while r < th and i0 + r < height:
                    u = float64(0.0)
                    for d in range(h0 + 1):
                        u += float64(sh[r_0 + (r + d) * tw + q])
                    dxf[uint64(off)] = f(sh[q_0 + r * tw + q]) + cf * f(sh[(r + h0) * xc + q + h1]) * f(u)
                    r += rstep
                    off += rstep * width
            cuda.syncthreads()

    _bwd_fused2.__name__ = _bwd_fused2.__qualname__ = f"_bwd_fused2_{KIND_NAMES[kind]}"
    return cuda.jit(_bwd_fused2)
