"""Weight standardization CUDA kernels on the rows view (twin of
``numbanorm/_cpu/weight_standardize.py``).

Layout: ``w``, ``out``, ``grad_out``, ``grad_w`` are C-contiguous ``(M, N)`` device arrays
of the compute dtype (M output filters, N = product of the other weight dims). Launchers
``forward``/``backward`` have the CPU entry points' names and signatures.

Thread mapping (``_layout.launch_rows``, as layer_norm): one warp per filter for
``N <= warp_row_max``, one block per filter above (one contiguous row segment per warp);
grid-stride over filters. Row sums are float64 (``warp_sum2``/``block_sum2``); see
:func:`kernels` for the per-dtype passes.
Deterministic (fixed reduction order), no atomics.
"""
import functools
import math

from numba import cuda, float32, float64, uint32, uint64

from . import _layout
from ._reduce import block_sum, block_sum2, warp_sum, warp_sum2

#: rows of at least this many elements take the 64-bit in-row index kernels
ROW32 = 2**31


def _named(fn, name):
    fn.__name__ = fn.__qualname__ = name
    return cuda.jit(fn)


@functools.lru_cache(maxsize=None)
def kernels(fp64, wide=False):
    """``(forward_warp, forward_block, backward_warp, backward_block)`` for float64 data
    (``fp64``) or float32, with 64-bit (``wide``) or 32-bit in-row bounds.

    Arrays are passed flat with ``(m, n)``; each row is a view from its start. A warp
    walks its row (warp kernels) or its contiguous segment of the row (block kernels,
    one segment per warp, a multiple of 32 long) with the constant step 32, so the
    compiler turns the addresses into pointer increments. float32 data: the forward
    writes ``((w − m_hi) − m_lo) · r`` in float32 (the float64 mean split in two
    float32 values, so a large offset cancels exactly), the backward
    ``c1·dy + c2·w + c3`` with float64 per-row factors."""
    ity = uint64 if wide else uint32

    def team(warp, n):
        """(row offset in the block, rows per block, first index, end) of this lane."""
        t = cuda.threadIdx.x
        un = ity(n)
        lane = ity(t & 31)
        if warp:
            return t >> 5, cuda.blockDim.x >> 5, lane, un
        nw = ity(cuda.blockDim.x >> 5)
        seg = ity(ity(ity(un + nw - ity(1)) // max(nw, ity(1)) + ity(31)) & ~ity(31))
        first = min(ity(ity(t >> 5) * seg), un)
        return 0, 1, ity(first + lane), ity(min(first + seg, un))

    team = cuda.jit(device=True, inline="always")(team)

    def reduce(v, warp):
        return warp_sum(v) if warp else block_sum(v)

    reduce = cuda.jit(device=True, inline="always")(reduce)

    def shifted(x, dy, k, end, warp, n, grad):
        """One pass over the row view ``x`` (and ``dy`` if ``grad``): (mean, variance,
        Σ dy, Σ dy·(x − mean)) from float64 sums shifted by K = ``x[0]``."""
        kk = float64(x[0]) if n > 0 else float64(0.0)
        s1 = float64(0.0)
        s2 = float64(0.0)
        a = float64(0.0)
        b = float64(0.0)
        j = k
        while j < end:
            d = float64(x[j]) - kk
            s1 += d
            s2 += d * d
            if grad:
                g = float64(dy[j])
                a += g
                b += g * d
            j += ity(32)
        s1, s2 = warp_sum2(s1, s2) if warp else block_sum2(s1, s2)
        if grad:
            a, b = warp_sum2(a, b) if warp else block_sum2(a, b)
        m1 = s1 / n
        return kk + m1, max(s2 / n - m1 * m1, 0.0), a, b - m1 * a

    shifted = cuda.jit(device=True, inline="always")(shifted)

    def moments(x, k, end, warp, n):
        """(mean, biased variance) of the row view ``x``, float64. float64 data: two passes
        (mean, then centred squares). float32 data: one pass of ``Σ(x − K)``, ``Σ(x − K)²``
        with K = the row's first value (float64 sums of float32 values: the shifted form's
        relative error is at most ~n·2⁻⁵³, as (mean − K)² <= n·var)."""
        if not fp64:
            return shifted(x, x, k, end, warp, n, False)[:2]
        s = float64(0.0)
        j = k
        while j < end:
            s += float64(x[j])
            j += ity(32)
        mu = reduce(s, warp) / n
        ss = float64(0.0)
        j = k
        while j < end:
            d = float64(x[j]) - mu
            ss += d * d
            j += ity(32)
        return mu, reduce(ss, warp) / n

    moments = cuda.jit(device=True, inline="always")(moments)

    def row(i, m, n, k0, stop):
        """(flat offset of row ``i``, the end of this lane's walk: ``k0`` if no such row)."""
        active = i < m
        return (uint64(i) * uint64(n) if active else uint64(0)), (stop if active else k0)

    row = cuda.jit(device=True, inline="always")(row)

    def forward(warp):
        def k(w, m, n, eps, out):
            sub, rpb, k0, stop = team(warp, n)
            un = uint64(n)
            i0 = cuda.blockIdx.x * rpb
            while i0 < m:
                base, end = row(i0 + sub, m, n, k0, stop)
                wr = w[base:base + un]
                orow = out[base:base + un]
                mu, var = moments(wr, k0, end, warp, n)
                r = float64(1.0) / math.sqrt(var + eps)
                mh = out.dtype.type(mu)
                ml = out.dtype.type(mu - float64(mh))
                rr = out.dtype.type(r)
                j = k0
                while j < end:
                    if fp64:
                        orow[j] = (wr[j] - mu) * r
                    else:
                        orow[j] = ((wr[j] - mh) - ml) * rr
                    j += ity(32)
                i0 += cuda.gridDim.x * rpb

        return _named(k, "_forward_warp" if warp else "_forward_block")

    def backward(warp):
        def k(grad_out, w, m, n, eps, grad_w):
            """grad_w = r (dy - mean(dy) - ŵ mean(dy ŵ)) = c1·dy + c2·w + c3."""
            sub, rpb, k0, stop = team(warp, n)
            i0 = cuda.blockIdx.x * rpb
            while i0 < m:
                base, end = row(i0 + sub, m, n, k0, stop)
                wr = w[base:base + uint64(n)]
                gr = grad_out[base:base + uint64(n)]
                gwr = grad_w[base:base + uint64(n)]
                if fp64:
                    mu, var = moments(wr, k0, end, warp, n)
                    a = float64(0.0)
                    b = float64(0.0)
                    j = k0
                    while j < end:
                        dy = float64(gr[j])
                        a += dy
                        b += dy * (float64(wr[j]) - mu)
                        j += ity(32)
                    a, b = warp_sum2(a, b) if warp else block_sum2(a, b)
                else:
                    mu, var, a, b = shifted(wr, gr, k0, end, warp, n, True)
                r = float64(1.0) / math.sqrt(var + eps)
                a /= n
                b = b * r / n
                c2 = -(r * r * b)
                c3 = -(r * a) - c2 * mu
                j = k0
                while j < end:
                    gwr[j] = r * float64(gr[j]) + (c2 * float64(wr[j]) + c3)
                    j += ity(32)
                i0 += cuda.gridDim.x * rpb

        return _named(k, "_backward_warp" if warp else "_backward_block")

    return forward(True), forward(False), backward(True), backward(False)


def forward(w, eps, out):
    """``out[i] = (w[i] - mean(w[i])) / sqrt(var(w[i]) + eps)`` for each filter row."""
    m, n = w.shape
    if m == 0 or n == 0:
        return
    warp, blocks, threads = _layout.launch_rows(m, n)
    k = kernels(w.dtype == "float64", n >= ROW32)[0 if warp else 1]
    k[blocks, threads, _layout.stream()](_flat(w), m, n, float(eps), _flat(out))


def backward(grad_out, w, eps, grad_w):
    """Gradient of :func:`forward` with respect to ``w`` into ``grad_w`` (M, N)."""
    m, n = w.shape
    if m == 0 or n == 0:
        return
    warp, blocks, threads = _layout.launch_rows(m, n)
    k = kernels(w.dtype == "float64", n >= ROW32)[2 if warp else 3]
    k[blocks, threads, _layout.stream()](_flat(grad_out), _flat(w), m, n, float(eps), _flat(grad_w))


def _flat(a):
    return a.reshape(a.size)


def _signatures():
    sigs = []
    for t in ("float32", "float64"):
        a1 = f"{t}[::1]"
        for wide in (False, True):
            fw, fb, bw, bb = kernels(t == "float64", wide)
            sigs += [
                (fw, f"void({a1}, int64, int64, float64, {a1})"),
                (fb, f"void({a1}, int64, int64, float64, {a1})"),
                (bw, f"void({a1}, {a1}, int64, int64, float64, {a1})"),
                (bb, f"void({a1}, {a1}, int64, int64, float64, {a1})"),
            ]
    return sigs


PTX_SIGNATURES = _signatures()
