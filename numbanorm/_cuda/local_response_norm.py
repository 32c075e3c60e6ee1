"""Local response normalization CUDA kernels (twin of ``numbanorm/_cpu/local_response_norm.py``).

Launchers ``forward``/``backward`` have the CPU entry points' names and signatures and
take Numba device arrays: ``x`` is the canonical C-contiguous ``(outer, L, inner)`` view,
``sp`` the window axes' lengths (their product is L), ``lo``/``hi`` the window's reach.

The window sum is separable, so every mode is a sequence of 1-D window passes, one per
window axis ``a``, each over the ``(A, La, B)`` view of the data with
``A = outer * prod(sp[:a])``, ``La = sp[a]``, ``B = prod(sp[a+1:]) * inner``
(across channels: one pass along C; within channel: one pass per spatial axis).

Window pass ``_wpass`` (tile + halo in shared memory): a 1-D block owns a tile of ``tl``
positions along ``La`` times ``ti`` positions along ``B`` (``ti = min(B, 32)``, so the
loads are coalesced along ``B``; for ``B == 1`` the tile runs along the contiguous ``La``).
The block loads the tile plus its ``lo``/``hi`` halo rows into shared memory once —
every input it needs is read from global memory exactly once per block, zeros outside the
valid range — synchronises, and each thread sums the ``w = lo + hi + 1`` window values of
its outputs from shared memory in float64. Grid-stride over tiles. ``mode`` selects what
a pass writes:

* 0: the window sum (``square`` = sum the squares of the loaded values);
* 1: ``y = x / (k + alpha * sum) ** beta`` (the last forward pass; with ``square`` the
  centre value comes from the tile itself);
* 2: ``dx = dy * p + c2 * x * sum`` (the last backward pass over ``t``).

Forward within channel over two axes with nothing after them (NCHW, the ``(A, H, W)``
view): the fused ``_fwd_fused2_<kind>`` — a block loads x over a ``th × tw`` tile of one
plane plus its halo into shared memory, sums x² along W there, then along H per output,
and writes y once (1R + 1W instead of the passes' 3R + 2W); the tile load and the row sums
are the backward's helpers (``load_plane``, ``wsum_rows``). ``FUSED_2D = False`` selects the
passes.

Backward with one window axis (across channels; within channel on 1-D data): the fused
``_bwd_fused_<kind>`` (``_local_response_norm_grad.py``) reads x and dy once and writes dx.
Several window axes: window sums ``s`` of ``x²``, then ``_grad_tp_<kind>`` (element-wise,
grid-stride) writes ``p = (k + alpha s) ** -beta`` and ``t = dy x p / (k + alpha s)``, then
the transposed window (``lo``/``hi`` swapped) over ``t`` ends in mode 2. Power kinds are
compile-time (``_p75`` for beta = 0.75, ``_pgen`` for the rest) and the element math runs
in the data dtype. Windows too wide for the shared tile (more than ``SHARED - 1`` halo
positions) use ``_wpass_direct_m<mode>[_sq]``, which reads the window from global memory (and the
fused kernels fall back to the passes). A forward with ``out`` aliasing ``x`` and a
single window axis writes a temporary first (a block's halo is another block's tile); so
does the fused backward when ``grad_x`` overlaps ``x`` or ``dy``.
Intermediate sums are stored in the compute dtype, as the CPU kernels' scratch.
"""
import functools
import math

from numba import cuda, float32, float64, uint64

from . import _layout
from ._local_response_norm_grad import (K75, KGEN, KIND_NAMES, bwd_fused, bwd_fused2, fit2, grad_tp, kind_of,
                                        load_plane, pneg, tile as bwd_tile, tile2 as bwd_tile2, tile_of, wsum_rows)

#: float64 values per block in the shared tile (16 KiB)
SHARED = 2048

#: within-channel forward and backward over two axes (channels first) in one fused 2-D kernel
#: each (forward 1R + 1W, backward 2R + 1W, but the backward at 80-90 registers: 25-38 %
#: occupancy, see docs/gpu.md; neither yet timed on a GPU), else the separable passes
#: (forward 3R + 2W, backward 10R + 6W at 50-100 %); a switch so a GPU run can time both
FUSED_2D = True

PW75, PW50, PW100, PW25, PW0, PWGEN = 0, 1, 2, 3, 4, 5


def pow_kind(beta):
    return {0.75: PW75, 0.5: PW50, 1.0: PW100, 0.25: PW25, 0.0: PW0}.get(float(beta), PWGEN)


@cuda.jit(device=True, inline="always")
def _bpow(b, pk, beta):
    """b ** beta in float64."""
    if pk == PW75:
        t = math.sqrt(b)
        return t * math.sqrt(t)
    if pk == PW50:
        return math.sqrt(b)
    if pk == PW100:
        return b
    if pk == PW25:
        return math.sqrt(math.sqrt(b))
    if pk == PW0:
        return 1.0
    return b ** beta


@cuda.jit(device=True, inline="always")
def _emit(dst, x, g, pb, a, l, b, acc, xc, mode, k, alpha, beta, pk, c2):
    if mode == 0:
        dst[a, l, b] = acc
    elif mode == 1:
        dst[a, l, b] = xc / _bpow(k + alpha * acc, pk, beta)
    else:
        dst[a, l, b] = float64(g[a, l, b]) * float64(pb[a, l, b]) + c2 * float64(x[a, l, b]) * acc


@functools.lru_cache(maxsize=None)
def wpass(mode, kind=KGEN, f32=False):
    """``_wpass_m<mode>`` (``_wpass_m1_<kind>`` for mode 1): the window pass with ``mode``
    (what it writes, see the module docstring) a compile-time constant (fewer registers: the
    mode-0 sums carry no power / gradient code), and for mode 1 the power kind too
    (``y = x p`` with ``p = base ** -beta`` in the data dtype, :func:`pneg`)."""
    MODE = mode
    KIND = kind
    F32 = f32

    def _wpass(src, x, g, pb, dst, lo, hi, square, mode, k, alpha, beta, pk, c2, tl, ti, flat):
        """One window pass along the middle axis of (A, La, B) with a shared tile + halo.

        Thread ``t`` owns tile column ``q = t % ti`` and rows ``t // ti + j · (nt // ti)``
        (threads past ``(nt // ti) · ti`` idle), so neither the tile load nor the window sums
        divide per element; the loads use unsigned flat offsets into ``flat`` (``src`` flat)."""
        mode = MODE
        na, length, nb = src.shape
        sh = cuda.shared.array(SHARED, float64)
        t = cuda.threadIdx.x
        nt = cuda.blockDim.x
        w = lo + hi + 1
        rows = tl + lo + hi
        ntl = (length + tl - 1) // tl
        ntb = (nb + ti - 1) // ti
        per_a = ntl * ntb
        q = t % ti
        r0 = t // ti
        rstep = nt // ti
        for tile in range(cuda.blockIdx.x, na * per_a, cuda.gridDim.x):
            a = tile // per_a
            rem = tile - a * per_a
            lt = rem // ntb
            l0 = lt * tl
            b = (rem - lt * ntb) * ti + q
            if r0 < rows:  # r0 >= rows: an idle thread (t >= rstep * ti)
                # row l of the tile (may start in the halo below 0); flat offset of (a, l, b),
                # advanced by a step: no per-element multiply or division
                l = l0 - lo + r0
                off = (a * length + l) * nb + b
                si = r0 * ti + q
                while si < rows * ti:
                    v = float64(0.0)
                    if l >= 0 and l < length and b < nb:
                        v = float64(flat[uint64(off)])
                    sh[si] = v
                    l += rstep
                    off += rstep * nb
                    si += rstep * ti
            cuda.syncthreads()
            if b < nb and r0 < rows:
                r = r0
                while r < tl:
                    l = l0 + r
                    if l < length:
                        acc = float64(0.0)
                        if square:
                            for d in range(w):
                                v = sh[(r + d) * ti + q]
                                acc += v * v
                        else:
                            for d in range(w):
                                acc += sh[(r + d) * ti + q]
                        xc = float64(0.0)
                        if mode == 1:
                            if square:
                                xc = sh[(r + lo) * ti + q]
                            else:
                                xc = float64(x[a, l, b])
                        if mode == 1:
                            f = dst.dtype.type
                            p, _ = pneg(f(k) + f(alpha) * f(acc), KIND, f(-beta), f(1.0), F32)
                            dst[a, l, b] = f(xc) * p
                        else:
                            _emit(dst, x, g, pb, a, l, b, acc, xc, mode, k, alpha, beta, pk, c2)
                    r += rstep
            cuda.syncthreads()

    name = f"_wpass_m{mode}" + (f"_{KIND_NAMES[kind]}" if mode == 1 else "")
    _wpass.__name__ = _wpass.__qualname__ = name
    return cuda.jit(_wpass)


@cuda.jit(device=True, inline="always")
def _digits(i, length, nb):
    """(a, l, b) of flat index ``i`` of an (A, length, nb) array."""
    a = i // (length * nb)
    rem = i - a * length * nb
    l = rem // nb
    return a, l, rem - l * nb


@functools.lru_cache(maxsize=None)
def wpass_direct(mode, square):
    """``_wpass_direct_m<mode>[_sq]``: the window pass for windows wider than the shared
    tile, with ``mode`` and ``square`` compile-time constants (one copy of the window loop:
    a runtime ``square`` made the compiler unswitch it into two, both hot)."""
    MODE = mode
    SQUARE = square

    def _wpass_direct(src, x, g, pb, dst, lo, hi, square, mode, k, alpha, beta, pk, c2, flat):
        """One thread per output ``(a, l, b)`` of the (A, La, B) view, grid-stride; its
        window ``src[a, j0:j1, b]`` is read from global memory (L1/L2) through the unsigned
        flat offset ``(a La + j) B + b`` of ``flat`` (``src`` flat), advanced by the constant
        step ``B``: no per-element index multiply or negative-index wraparound."""
        mode = MODE
        square = SQUARE
        na, length, nb = src.shape
        # (a, l, b) of the thread's first output and of the grid size, stepped as mixed-radix
        # digits with carries: no division per output (its fast/slow paths duplicated the loop)
        a, l, b = _digits(cuda.grid(1), length, nb)
        ga, gl, gb = _digits(cuda.gridsize(1), length, nb)
        while a < na:
            j0 = max(0, l - lo)
            j1 = min(length, l + hi + 1)
            off = uint64((a * length + j0) * nb + b)
            end = off + uint64((j1 - j0) * nb)
            acc = float64(0.0)
            while off < end:
                v = float64(flat[off])
                if square:
                    acc += v * v
                else:
                    acc += v
                off += uint64(nb)
            xc = float64(0.0)
            if mode == 1:
                xc = float64(x[a, l, b])
            _emit(dst, x, g, pb, a, l, b, acc, xc, mode, k, alpha, beta, pk, c2)
            b += gb
            l += gl
            a += ga
            if b >= nb:
                b -= nb
                l += 1
            if l >= length:
                l -= length
                a += 1

    name = f"_wpass_direct_m{mode}" + ("_sq" if square else "")
    _wpass_direct.__name__ = _wpass_direct.__qualname__ = name
    return cuda.jit(_wpass_direct)


#: (mode, square) of the direct passes: a direction's first pass sums squares, later ones sums
DIRECT_VARIANTS = ((0, True), (0, False), (1, True), (1, False), (2, False))


def _f32(a):
    return a.dtype.itemsize == 4


def _tile(nt, nb, halo):
    """(tl, ti) of a shared tile for ``nt`` threads, or None when the halo is too wide."""
    ti = min(nb, 32)
    while ti >= 1:
        tl = min(max(1, nt // ti), SHARED // ti - halo)
        if tl >= 1:
            return tl, ti
        ti //= 2
    return None


def _pass(src, x, g, pb, dst, shape3, lo, hi, square, mode, k, alpha, beta, pk, c2):
    na, length, nb = shape3
    lo = min(lo, length - 1)
    hi = min(hi, length - 1)
    views = [a.reshape(shape3) for a in (src, x, g, pb, dst)]
    args = (lo, hi, int(square), mode, float(k), float(alpha), float(beta), pk, float(c2))
    nt = _layout.threads_per_block()
    tile = _tile(nt, nb, lo + hi)
    if tile is None:
        blocks, threads = _layout.launch_1d(na * length * nb)
        wpass_direct(mode, bool(square))[blocks, threads, _layout.stream()](*views, *args, src.reshape(src.size))
        return
    tl, ti = tile
    tl = min(tl, length)
    ntiles = na * -(-length // tl) * -(-nb // ti)
    blocks = max(1, min(_layout.settings()["max_blocks"], ntiles))
    wpass(mode, kind_of(beta) if mode == 1 else KGEN, mode == 1 and _f32(dst))[blocks, nt, _layout.stream()](*views, *args, tl, ti, src.reshape(src.size))


def _views(x, sp):
    """(A, La, B) of each window axis of the (outer, L, inner) array ``x``."""
    outer, _, inner = x.shape
    out = []
    for a in range(len(sp)):
        pre = outer
        for b in range(a):
            pre *= sp[b]
        post = inner
        for b in range(a + 1, len(sp)):
            post *= sp[b]
        out.append((pre, sp[a], post))
    return out


def _ptr_range(a):
    if hasattr(a, "device_ctypes_pointer"):
        p = a.device_ctypes_pointer.value or 0
    else:  # simulator
        p = a._ary.__array_interface__["data"][0]
    return p, p + a.size * a.dtype.itemsize


def _overlap(a, b):
    pa, ea = _ptr_range(a)
    pb, eb = _ptr_range(b)
    return pa < eb and pb < ea


@functools.lru_cache(maxsize=None)
def fwd_fused2(kind, shared, f32):
    """``_fwd_fused2_<kind>``: the whole forward of a within-channel window over two axes
    ``(H, W)`` with nothing after them (the ``(A, H, W)`` view, W contiguous; reaches ``lo0,
    hi0`` along H, ``lo1, hi1`` along W), ``shared`` values of shared memory per block in the
    data dtype, ``kind`` / ``f32`` as :func:`~._local_response_norm_grad.bwd_fused2`'s."""
    KIND = kind
    F32 = f32
    SH = shared
    DT = float32 if f32 else float64  # shared values in the data dtype (exact for x)

    def _fwd_fused2(x, yf, lo0, hi0, lo1, hi1, k, alpha, beta, th, tw, xf):
        """A block owns a ``th × tw`` tile of one ``(H, W)`` plane; thread ``t`` owns column
        ``q = t % tw`` (and ``q + tw``, ... of the wider X rows) and rows ``t // tw + j
        (nt // tw)``. Shared regions (row-major): X, x over rows ``[i0 - lo0, i0 + th + hi0)``
        and columns ``[w0 - lo1, w0 + tw + hi1)``; R, the sums of x² along W for X's rows and
        the tile's columns. y of the tile = x times the power of the sums of R along H."""
        na, height, width = x.shape
        f = yf.dtype.type
        kf, af, bf, one = f(k), f(alpha), f(-beta), f(1.0)
        sh = cuda.shared.array(SH, DT)
        t = cuda.threadIdx.x
        nt = cuda.blockDim.x
        h0 = lo0 + hi0
        h1 = lo1 + hi1
        xr, xc = th + h0, tw + h1  # X rows, columns (R: xr x tw)
        r_0 = xr * xc
        nth = (height + th - 1) // th
        ntw = (width + tw - 1) // tw
        per_a = nth * ntw
        q = t % tw
        r0 = t // tw
        rstep = nt // tw
        active = r0 < rstep  # threads past rstep * tw idle
        for tile_ in range(cuda.blockIdx.x, na * per_a, cuda.gridDim.x):
            a, i0, w0 = tile_of(tile_, per_a, ntw, th, tw)
            if active:
                load_plane(sh, xf, a, height, width, i0 - lo0, w0 - lo1, xr, xc, q, r0, rstep, tw)
            cuda.syncthreads()
            if active:
                wsum_rows(sh, 0, xc, r_0, tw, xr, tw, h1 + 1, q, r0, rstep, tw, True)
            cuda.syncthreads()
            if active and w0 + q < width:  # y of the tile
                r = r0
                off = (a * height + i0 + r0) * width + w0 + q
                while r < th and i0 + r < height:
                    acc = float64(0.0)
                    for d in range(h0 + 1):
                        acc += float64(sh[r_0 + (r + d) * tw + q])
                    p, _ = pneg(kf + af * f(acc), KIND, bf, one, F32)
                    yf[uint64(off)] = f(sh[(r + lo0) * xc + q + lo1]) * p
                    r += rstep
                    off += rstep * width
            cuda.syncthreads()

    _fwd_fused2.__name__ = _fwd_fused2.__qualname__ = f"_fwd_fused2_{KIND_NAMES[kind]}"
    return cuda.jit(_fwd_fused2)


def _forward_fused2(x, sp, lo, hi, alpha, k, beta, out):
    """Two window axes with nothing after them (within channel, channels first): the 2-D
    fused forward, or False when the window is too wide for its shared tile."""
    height, width = sp
    view = (x.shape[0], height, width)
    lo0, hi0 = min(lo, height - 1), min(hi, height - 1)
    lo1, hi1 = min(lo, width - 1), min(hi, width - 1)
    h0, h1 = lo0 + hi0, lo1 + hi1
    t = fit2(_layout.threads_per_block(), height, width,
             lambda th, tw: (th + h0) * (tw + h1) + (th + h0) * tw, SHARED)
    if t is None:
        return False
    th, tw = t
    dst = _layout.empty(x.shape, x.dtype) if _overlap(x, out) else out  # a block's halo is another's tile
    ntiles = view[0] * -(-height // th) * -(-width // tw)
    blocks = max(1, min(_layout.settings()["max_blocks"], ntiles))
    fwd_fused2(kind_of(beta), SHARED, _f32(x))[blocks, _layout.threads_per_block(), _layout.stream()](
        x.reshape(view), dst.reshape(-1), lo0, hi0, lo1, hi1, float(k), float(alpha), float(beta), th, tw,
        x.reshape(-1))
    if dst is not out:
        _layout.copyto(out, dst)
    return True


def forward(x, sp, lo, hi, alpha, k, beta, out):
    """``out = x / (k + alpha * S) ** beta`` with S the window sums of x² along ``sp``."""
    if x.size == 0:
        return
    sp = tuple(int(s) for s in sp)
    views = _views(x, sp)
    pk = pow_kind(beta)
    nd = len(sp)
    if nd == 1:
        dst = _layout.empty(x.shape, x.dtype) if _overlap(x, out) else out
        _pass(x, x, x, x, dst, views[0], lo, hi, True, 1, k, alpha, beta, pk, 0.0)
        if dst is not out:
            _layout.copyto(out, dst)
        return
    if FUSED_2D and nd == 2 and x.shape[2] == 1 and _forward_fused2(x, sp, lo, hi, alpha, k, beta, out):
        return
    bufs = [_layout.empty(x.shape, x.dtype), _layout.empty(x.shape, x.dtype) if nd > 2 else None]
    src = x
    for a in range(nd):
        last = a == nd - 1
        dst = out if last else bufs[a % 2]
        _pass(src, x, x, x, dst, views[a], lo, hi, a == 0, 1 if last else 0, k, alpha, beta, pk, 0.0)
        src = dst


def _backward_fused(grad_out, x, view, lo, hi, alpha, k, beta, grad_x):
    """One window axis: the fused kernel (x, dy read once, dx written once), or False when
    the window is too wide for its shared tile."""
    na, length, nb = view
    lo = min(lo, length - 1)
    hi = min(hi, length - 1)
    nt = _layout.threads_per_block()
    t = bwd_tile(nt, nb, lo + hi, SHARED)
    if t is None:
        return False
    tl, ti = t
    tl = min(tl, length)
    dst = grad_x
    if _overlap(grad_x, x) or _overlap(grad_x, grad_out):  # a block's halo is another's tile
        dst = _layout.empty(x.shape, x.dtype)
    ntiles = na * -(-length // tl) * -(-nb // ti)
    blocks = max(1, min(_layout.settings()["max_blocks"], ntiles))
    bwd_fused(kind_of(beta), SHARED, _f32(x))[blocks, nt, _layout.stream()](
        x.reshape(view), grad_out.reshape(-1), dst.reshape(-1), lo, hi, float(k), float(alpha), float(beta),
        -2.0 * alpha * beta, tl, ti, x.reshape(-1))
    if dst is not grad_x:
        _layout.copyto(grad_x, dst)
    return True


def _backward_fused2(grad_out, x, sp, lo, hi, alpha, k, beta, grad_x):
    """Two window axes with nothing after them (within channel, channels first): the 2-D
    fused kernel, or False when the window is too wide for its shared tile."""
    height, width = sp
    view = (x.shape[0], height, width)
    lo0, hi0 = min(lo, height - 1), min(hi, height - 1)
    lo1, hi1 = min(lo, width - 1), min(hi, width - 1)
    nt = _layout.threads_per_block()
    t = bwd_tile2(nt, height, width, lo0 + hi0, lo1 + hi1, SHARED)
    if t is None:
        return False
    th, tw = t
    dst = grad_x
    if _overlap(grad_x, x) or _overlap(grad_x, grad_out):
        dst = _layout.empty(x.shape, x.dtype)
    ntiles = view[0] * -(-height // th) * -(-width // tw)
    blocks = max(1, min(_layout.settings()["max_blocks"], ntiles))
    bwd_fused2(kind_of(beta), SHARED, _f32(x))[blocks, nt, _layout.stream()](
        x.reshape(view), grad_out.reshape(-1), dst.reshape(-1), lo0, hi0, lo1, hi1, float(k), float(alpha),
        float(beta), -2.0 * alpha * beta, th, tw, x.reshape(-1))
    if dst is not grad_x:
        _layout.copyto(grad_x, dst)
    return True


def backward(grad_out, x, sp, lo, hi, alpha, k, beta, grad_x):
    """Gradient of :func:`forward` with respect to ``x`` into ``grad_x``."""
    if x.size == 0:
        return
    sp = tuple(int(s) for s in sp)
    views = _views(x, sp)
    pk = pow_kind(beta)
    nd = len(sp)
    if nd == 1 and _backward_fused(grad_out, x, views[0], lo, hi, alpha, k, beta, grad_x):
        return
    if FUSED_2D and nd == 2 and x.shape[2] == 1 and _backward_fused2(grad_out, x, sp, lo, hi, alpha, k, beta, grad_x):
        return
    bufs = [_layout.empty(x.shape, x.dtype) for _ in range(3 if nd > 1 else 2)]
    # window sums of x² into bufs[0] (ping-pong through bufs[1])
    src = x
    for a in range(nd):
        dst = bufs[(nd - 1 - a) % 2]
        _pass(src, x, x, x, dst, views[a], lo, hi, a == 0, 0, k, alpha, beta, pk, 0.0)
        src = dst
    s = bufs[0]
    pbuf = _layout.empty(x.shape, x.dtype)
    tbuf = bufs[1]
    blocks, threads = _layout.launch_1d(x.size)
    grad_tp(kind_of(beta), _f32(x))[blocks, threads, _layout.stream()](
        s.reshape(-1), x.reshape(-1), grad_out.reshape(-1), float(k), float(alpha), float(beta),
        pbuf.reshape(-1), tbuf.reshape(-1))
    c2 = -2.0 * alpha * beta
    src = tbuf
    spare = [s, bufs[2] if nd > 1 else None]
    for a in range(nd):
        last = a == nd - 1
        dst = grad_x if last else spare[a % 2]
        _pass(src, x, grad_out, pbuf, dst, views[a], hi, lo, False, 2 if last else 0, k, alpha, beta, pk, c2)
        src = dst


def _signatures():
    sigs = []
    for t in ("float32", "float64"):
        f32 = t == "float32"
        a3 = f"{t}[:, :, ::1]"
        a1 = f"{t}[::1]"
        arrs = ", ".join([a3] * 5)
        common = "int64, int64, int64, int64, float64, float64, float64, int64, float64"
        sigs += [
            *[(wpass(m, kd, f32 and m == 1), f"void({arrs}, {common}, int64, int64, {a1})")
              for m, kd in ((0, KGEN), (1, K75), (1, KGEN), (2, KGEN))],
            *[(wpass_direct(m, sq), f"void({arrs}, {common}, {a1})") for m, sq in DIRECT_VARIANTS],
            *[(grad_tp(kd, f32), f"void({a1}, {a1}, {a1}, float64, float64, float64, {a1}, {a1})") for kd in (K75, KGEN)],
            *[(bwd_fused(kd, SHARED, f32), f"void({a3}, {a1}, {a1}, int64, int64, float64, float64, float64, float64, "
               f"int64, int64, {a1})") for kd in (K75, KGEN)],
            *[(bwd_fused2(kd, SHARED, f32), f"void({a3}, {a1}, {a1}, int64, int64, int64, int64, float64, float64, "
               f"float64, float64, int64, int64, {a1})") for kd in (K75, KGEN)],
            *[(fwd_fused2(kd, SHARED, f32), f"void({a3}, {a1}, int64, int64, int64, int64, float64, float64, float64, "
               f"int64, int64, {a1})") for kd in (K75, KGEN)],
        ]
    return sigs


PTX_SIGNATURES = _signatures()
