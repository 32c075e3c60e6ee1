"""Element-wise passes of BatchNorm / GroupNorm / InstanceNorm on the CUDA device: the
normalization ``out = (x − mean)·rstd·weight + bias`` and the input gradient
``dx = alpha·dy + beta·(x − mean) + gamma`` (launched by :mod:`._channels`).

Layout: ``x``/``out``/``dy``/``dx`` are the C-contiguous ``(B, O, C, I)`` arrays passed
*flat*; statistics ``mean``/``rstd`` are float64 ``(B, G)``, ``alpha``/``beta``/``gamma``
float64 ``(B, C)``, ``weight``/``bias`` ``(C,)`` of the data dtype.

Thread mapping
--------------
* ``I > 1`` (``_apply_inner``, ``_grad_apply_inner``): rows are the ``(b, o, c)`` runs of
  I values; blocks ``(TX, TY)``, ``TX`` threads (whole warps, about I / ``VPT`` of them)
  stride over a row's I values, ``TY`` rows per block, grid-stride over rows. The row's
  coefficients are loaded and combined once per row (two divisions per row, none per
  element); elements are ``x[row * I + j]`` with unsigned flat indices.
* ``I = 1`` (``_apply_last``, ``_grad_apply_last``): thread ``x`` is a channel (coalesced
  along C) whose ``weight``/``bias`` are loaded once; ``y`` strides over the ``(b, o)``
  rows, one segment per sample ``b`` (coefficients loaded when ``b`` changes), the inner
  loop an unsigned address step.

Numerics: float32 data are computed in float32 with ``x − mean`` as ``(x − m_hi) − m_lo``
(the float64 mean split into two float32 values, so a large common offset cancels
exactly); the per-row factor ``rstd·weight`` is formed in float64 and rounded once.
float64 data stay in float64. No atomics; every output element is written once.
"""
import functools

from numba import cuda, float32, float64, uint64

from . import _layout

#: values per thread and row targeted by the ``I > 1`` launch (per-row work amortized)
VPT = 4


def _acc(fp64):
    return float64 if fp64 else float32


def _named(fn, name):
    fn.__name__ = fn.__qualname__ = name
    return cuda.jit(fn)


@cuda.jit(device=True, inline="always")
def _split(m, acc):
    """(hi, lo) of the float64 ``m`` in ``acc`` (lo = 0 in float64)."""
    mh = acc(m)
    return mh, acc(m - float64(mh))


@functools.lru_cache(maxsize=None)
def centered(fp64):
    """Device function ``(x, mh, ml) -> x − mean`` in the data dtype, the mean split by
    :func:`_split`: ``(x − m_hi) − m_lo`` for float32 data, ``x − m`` for float64 (also
    the gradient sums of :mod:`._channels`)."""
    def center(x, mh, ml):
        d = x - mh
        if not fp64:
            d = d - ml
        return d
    return cuda.jit(device=True, inline="always")(center)


@functools.lru_cache(maxsize=None)
def apply_kernel(inner, fp64, grad):
    """The element-wise kernel for one layout (``inner``: ``I > 1``), data dtype and pass.

    Forward ``(x, nrows, ni, nc, per_b, mean, rstd, weight, bias, out)``; gradient
    ``(dy, x, nrows, ni, nc, per_b, mean, alpha, beta, gamma, dx)`` (``ni`` = 1 for
    channels-last). ``per_b``: rows per sample b."""
    acc = _acc(fp64)
    center = centered(fp64)

    def elem(x, y, mh, ml, a, be, ga):
        d = center(x, mh, ml)
        if grad:
            return a * y + be * d + ga
        return d * a + be

    elem = cuda.jit(device=True, inline="always")(elem)

    def run(y, x, out, k, end, step, mh, ml, a, be, ga):
        """out[k] for k = k0, k0 + step, ... < end, two per iteration (unsigned)."""
        while k + step < end:
            k2 = k + step
            v1 = elem(x[k], y[k], mh, ml, a, be, ga)
            v2 = elem(x[k2], y[k2], mh, ml, a, be, ga)
            out[k] = v1
            out[k2] = v2
            k = k2 + step
        if k < end:
            out[k] = elem(x[k], y[k], mh, ml, a, be, ga)

    run = cuda.jit(device=True, inline="always")(run)

    def coefs(b, c, g, mean, p1, p2, p3, wc):
        """(m_hi, m_lo, a, be, ga) of sample b, channel c, group g."""
        mh, ml = _split(mean[b, g], acc)
        if grad:
            return mh, ml, acc(p1[b, c]), acc(p2[b, c]), acc(p3[b, c])
        return mh, ml, acc(p1[b, g] * wc), acc(0.0), acc(0.0)

    coefs = cuda.jit(device=True, inline="always")(coefs)

    def body_inner(y, x, nrows, ni, nc, per_b, mean, p1, p2, p3, bias, out):
        # divisors >= 1 known to the compiler: no zero-divisor versions of the loops
        upb = max(uint64(per_b), uint64(1))
        unc = max(uint64(nc), uint64(1))
        cg = max(unc // max(uint64(mean.shape[1]), uint64(1)), uint64(1))
        uni = uint64(ni)
        col0 = uint64(cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x)
        cstep = uint64(cuda.gridDim.x * cuda.blockDim.x)
        ur = uint64(cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y)
        rstep = uint64(cuda.gridDim.y * cuda.blockDim.y)
        while ur < uint64(nrows):
            b = ur // upb
            c = ur % unc
            if grad:
                mh, ml, a, be, ga = coefs(b, c, c // cg, mean, p1, p2, p3, float64(0.0))
            else:
                mh, ml, a, be, ga = coefs(b, c, c // cg, mean, p1, p2, p3, float64(p2[c]))
                be = bias[c]
            run(y, x, out, ur * uni + col0, ur * uni + uni, cstep, mh, ml, a, be, ga)
            ur += rstep

    def body_last(y, x, nrows, ni, nc, per_b, mean, p1, p2, p3, bias, out):
        upb = max(uint64(per_b), uint64(1))
        ucg = max(uint64(nc) // max(uint64(mean.shape[1]), uint64(1)), uint64(1))
        uc = uint64(nc)
        urows = uint64(nrows)
        r0 = uint64(cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y)
        ny = max(uint64(cuda.gridDim.y * cuda.blockDim.y), uint64(1))
        step = ny * uc
        c = uint64(cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x)
        cstep = uint64(cuda.gridDim.x * cuda.blockDim.x)
        while c < uc:
            g = c // ucg
            wc = float64(0.0)
            h = acc(0.0)
            if not grad:
                wc = float64(p2[c])
                h = bias[c]
            r = r0
            while r < urows:
                b = r // upb
                end = min((b + uint64(1)) * upb, urows)
                mh, ml, a, be, ga = coefs(b, c, g, mean, p1, p2, p3, wc)
                if not grad:
                    be = h
                cnt = (end - r + ny - uint64(1)) // ny
                addr = r * uc + c
                run(y, x, out, addr, addr + cnt * step, step, mh, ml, a, be, ga)
                r += cnt * ny
            c += cstep

    body = cuda.jit(device=True, inline="always")(body_inner if inner else body_last)
    suffix = "_inner" if inner else "_last"
    if grad:
        def _grad_apply(dy, x, nrows, ni, nc, per_b, mean, alpha, beta, gamma, dx):
            body(dy, x, nrows, ni, nc, per_b, mean, alpha, beta, gamma, alpha[0], dx)
        return _named(_grad_apply, "_grad_apply" + suffix)

    def _apply(x, nrows, ni, nc, per_b, mean, rstd, weight, bias, out):
        body(x, x, nrows, ni, nc, per_b, mean, rstd, weight, rstd, bias, out)
    return _named(_apply, "_apply" + suffix)


def launch_2d(nrows, ncols, inner):
    """(grid, block) of the element-wise kernels on the (rows, cols) view.

    ``inner``: ``TX`` = whole warps, about ``ncols / VPT`` threads (a power of two so it
    divides the block), rows in y; channels-last: ``TX`` over the channels, each thread
    about ``2 * VPT`` rows (per-sample coefficient loads amortized) while the grid keeps
    at least a quarter of ``max_blocks`` blocks where the rows allow."""
    s = _layout.settings()
    tpb = s["threads_per_block"]
    mb = s["max_blocks"]
    if inner:
        want = max(32, -(-ncols // VPT))
        tx = 32
        while tx < want and tx < tpb and tpb % (2 * tx) == 0:
            tx *= 2
    else:
        tx = min(tpb, 32 * -(-ncols // 32))
        while tpb % tx:
            tx -= 32
    ty = tpb // tx
    gx = max(1, min(-(-ncols // (tx * (VPT if inner else 1))), mb))
    rows = -(-nrows // ty)
    if inner:
        gy = rows
    else:
        gy = max(-(-rows // (2 * VPT)), -(-(mb // 4) // gx))
        gy = min(gy, rows)
    gy = max(1, min(gy, max(1, mb // gx), 65535))
    return (gx, gy), (tx, ty)


def _signatures():
    sigs = []
    i64 = "int64"
    f64_2 = "float64[:, ::1]"
    for t in ("float32", "float64"):
        a1 = f"{t}[::1]"
        fp64 = t == "float64"
        for inner in (True, False):
            sigs += [
                (apply_kernel(inner, fp64, False),
                 f"void({a1}, {i64}, {i64}, {i64}, {i64}, {f64_2}, {f64_2}, {a1}, {a1}, {a1})"),
                (apply_kernel(inner, fp64, True),
                 f"void({a1}, {a1}, {i64}, {i64}, {i64}, {i64}, {f64_2}, {f64_2}, {f64_2}, {f64_2}, {a1})"),
            ]
    return sigs


PTX_SIGNATURES = _signatures()
