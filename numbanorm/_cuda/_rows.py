"""Row kernels of LayerNorm and RMSNorm: the row in registers, one DRAM read and one write.

Layout: ``x``, ``out``, ``dy``, ``dx`` are the C-contiguous ``(m, n)`` rows view passed
*flat* (``(m * n,)``), so an element is ``x[base + j]`` with ``base = i * n`` computed once
per row and unsigned ``j`` (no per-element 2-D index math, no negative-index wraparound);
``weight``/``bias`` ``(n,)``; ``mean``/``rstd`` ``(m,)`` of the compute dtype.

Launch plans (:func:`numbanorm._cuda._plan.plan_rows`, from the shape and the SM count):

* ``warp`` / ``block`` modes: a team (one warp, or the whole block) per row; thread
  ``lane`` of the team holds the ``vpt`` values ``lane + k * team`` (k < vpt, compile-time
  constants, so the local arrays live in registers) and loads its weight/bias columns
  once, before the persistent grid-stride loop over rows. The forward reads each element
  once: shifted sum → mean, centred squares from registers → variance (two passes in
  registers, float32 element math, float64 reductions across lanes and warps), write.
  The backward reads ``dy`` and ``x`` once, writes ``dx`` and accumulates each team's
  ``grad_weight``/``grad_bias`` partials in registers over the rows it owns; one
  ``(teams, n)`` partial row per team, summed in team order by ``_reduce.sum_partials``
  (2R + 1W, plus the small partial buffer; no atomics).
* ``split`` mode (rows too long for one block, or too few rows to fill the device): one
  block per (chunk, row). Forward: per-chunk count / mean / M2 (float64) → a merge kernel
  per row (``Σ cᵢ μᵢ / n``, then ``Σ M2ᵢ + cᵢ (μᵢ − μ)²``: the exact two-level formula,
  summed in chunk order) → an apply kernel. Backward: per-chunk ``Σ w·dy`` and
  ``Σ w·dy·x̂`` → merge per row → a column kernel (one thread per column looping over the
  rows) that writes ``dx`` and the column's ``grad_weight``/``grad_bias`` directly.
  Split rows are read twice (the second read is an L2 hit while ``m·n`` fits in L2).

Numerics: LayerNorm shifts each row by its first element (``K``) before summing, so float32
data with a large offset keeps its precision (sums of ``x − K`` in float32 per thread, float64
across threads; the variance is ``(Σd² − (Σd)²/n)/n`` of ``d = x − K − float32(μ − K)``).
Results are bitwise repeatable for a given shape, launch settings and SM count.
"""
import functools
import math

import numpy as np
from numba import cuda, float32, float64, uint32, uint64

from . import _layout, _plan
from ._reduce import block_sum, block_sum2, sum_partials, warp_sum, warp_sum2

#: largest grid y (CUDA limit); split kernels grid-stride over rows beyond it
MAX_GRID_Y = 65535


def _acc(fp64):
    return float64 if fp64 else float32


def _named(fn, name):
    fn.__name__ = fn.__qualname__ = name
    return cuda.jit(fn)


def _tag(centered, team, vpt, even=False):
    return f"{'ln' if centered else 'rms'}_t{team}_v{vpt}{'_even' if even else ''}"


# ------------------------------------------------------------------ whole rows


@cuda.jit(device=True, inline="always")
def _rsqrt(var, eps, fp64):
    """1/sqrt(var + eps): float64 for float64 data, float32 (correctly rounded) else."""
    if fp64:
        return float64(1.0) / math.sqrt(var + eps)
    return float32(1.0) / math.sqrt(float32(var + eps))


@functools.lru_cache(maxsize=None)
def forward_rows(team, vpt, centered, fp64, even, write=True):
    """Forward kernel ``(x, w, b, eps, out, mean, rstd)`` of the warp/block modes.

    ``team`` threads (a multiple of 32) per row, ``vpt`` values per thread; ``even``:
    ``n == team * vpt`` (no bounds checks); ``write=False``: statistics only (``out``
    untouched; the same arithmetic, so recomputed statistics equal the forward's bits)."""
    T, V, WARP, acc = team, vpt, team == 32, _acc(fp64)

    def _forward_rows(x, w, b, eps, out, mean, rstd):
        n = uint32(w.shape[0])
        m = rstd.shape[0]
        inv_n = float64(1.0) / float64(n)
        t = uint32(cuda.threadIdx.x)
        lane = t % uint32(T)
        rpb = cuda.blockDim.x // T
        v = cuda.local.array(V, acc)
        for i0 in range(cuda.blockIdx.x * rpb, m, cuda.gridDim.x * rpb):
            i = i0 + t // uint32(T)
            active = i < m
            base = uint64(i) * uint64(n)
            row = base + uint64(lane)
            shift = acc(0)
            if centered and active:
                shift = x[base]
            s = acc(0)
            for k in range(V):
                v[k] = 0
                if active and (even or lane + uint32(k * T) < n):
                    d = x[row + uint32(k * T)] - shift
                    v[k] = d
                    s += d if centered else d * d
            tot = warp_sum(s) if WARP else block_sum(s)
            mu = float64(0.0)
            if centered:
                mu = tot * inv_n
                mua = acc(mu)
                q = acc(0)
                for k in range(V):
                    if even or lane + uint32(k * T) < n:
                        d = v[k] - mua
                        v[k] = d
                        q += d * d
                var = (warp_sum(q) if WARP else block_sum(q)) * inv_n
            else:
                var = tot * inv_n
            r = _rsqrt(var, eps, fp64)
            ra = acc(r)
            if active:
                if lane == 0:
                    if centered:
                        mean[i] = float64(shift) + mu
                    rstd[i] = r
                for k in range(V if write else 0):
                    j = lane + uint32(k * T)
                    if even or j < n:
                        if centered:
                            out[row + uint32(k * T)] = v[k] * ra * w[j] + b[j]
                        else:
                            out[row + uint32(k * T)] = v[k] * ra * w[j]

    return _named(_forward_rows, ("_forward_rows_" if write else "_stats_rows_") + _tag(centered, T, V, even))


@functools.lru_cache(maxsize=None)
def backward_rows(team, vpt, centered, fp64, even):
    """Backward kernel ``(dy, x, w, mean, rstd, dx, pw, pb)`` of the warp/block modes:
    ``dx`` per row, ``pw[team_id, j] = Σ dy·x̂``, ``pb[team_id, j] = Σ dy`` over the team's
    rows (``pb`` untouched for RMSNorm)."""
    T, V, WARP, acc = team, vpt, team == 32, _acc(fp64)

    def _backward_rows(dy, x, w, mean, rstd, dx, pw, pb):
        n = uint32(w.shape[0])
        m = rstd.shape[0]
        inv_n = float64(1.0) / float64(n)
        t = uint32(cuda.threadIdx.x)
        lane = t % uint32(T)
        rpb = cuda.blockDim.x // T
        team_id = cuda.blockIdx.x * rpb + t // uint32(T)
        aw = cuda.local.array(V, acc)
        ab = cuda.local.array(V, acc)
        u = cuda.local.array(V, acc)
        v = cuda.local.array(V, acc)
        for k in range(V):
            aw[k] = 0
            ab[k] = 0
        for i0 in range(cuda.blockIdx.x * rpb, m, cuda.gridDim.x * rpb):
            i = i0 + t // uint32(T)
            active = i < m
            row = uint64(i) * uint64(n) + uint64(lane)
            mu = acc(0)
            r = acc(0)
            if active:
                r = rstd[i]
                if centered:
                    mu = mean[i]
            a = acc(0)
            bb = acc(0)
            for k in range(V):
                j = lane + uint32(k * T)
                u[k] = 0
                v[k] = 0
                if active and (even or j < n):
                    g = dy[row + uint32(k * T)]
                    xh = (x[row + uint32(k * T)] - mu) * r
                    wdy = g * w[j]
                    u[k] = wdy
                    v[k] = xh
                    a += wdy
                    bb += wdy * xh
                    aw[k] += g * xh
                    ab[k] += g
            if centered:
                a2, b2 = warp_sum2(a, bb) if WARP else block_sum2(a, bb)
            else:
                a2 = float64(0.0)
                b2 = warp_sum(bb) if WARP else block_sum(bb)
            am = acc(a2 * inv_n)
            bm = acc(b2 * inv_n)
            if active:
                for k in range(V):
                    if even or lane + uint32(k * T) < n:
                        if centered:
                            dx[row + uint32(k * T)] = r * (u[k] - am - v[k] * bm)
                        else:
                            dx[row + uint32(k * T)] = r * (u[k] - v[k] * bm)
        for k in range(V):
            j = lane + uint32(k * T)
            if even or j < n:
                pw[team_id, j] = aw[k]
                if centered:
                    pb[team_id, j] = ab[k]

    return _named(_backward_rows, "_backward_rows_" + _tag(centered, T, V, even))


# ------------------------------------------------------------------ split rows


@functools.lru_cache(maxsize=None)
def split_stats(team, vpt, centered, fp64):
    """``(x, n, part, coef)``: ``part[i, c] = (count, mean − K, M2)`` of chunk ``c`` of row
    ``i`` and ``coef[i, 0] = K`` (LayerNorm), or ``part[i, c, 0] = Σ x²`` (RMSNorm); grid
    ``(chunks, rows)``."""
    T, V, CH, acc = team, vpt, team * vpt, _acc(fp64)

    def _split_stats(x, n_, part, coef):
        n = uint32(n_)
        m = part.shape[0]
        c = uint32(cuda.blockIdx.x)
        t = uint32(cuda.threadIdx.x)
        col0 = c * uint32(CH)
        cnt = min(n - col0, uint32(CH))
        v = cuda.local.array(V, acc)
        for i in range(cuda.blockIdx.y, m, cuda.gridDim.y):
            base = uint64(i) * uint64(n)
            shift = acc(0)
            if centered:
                shift = x[base]
                if c == 0 and t == 0:
                    coef[i, 0] = shift
            s = acc(0)
            for k in range(V):
                j = col0 + t + uint32(k * T)
                v[k] = 0
                if j < n:
                    d = x[base + j] - shift
                    v[k] = d
                    s += d if centered else d * d
            tot = block_sum(s)
            if centered:
                mu = tot / cnt
                mua = acc(mu)
                q = acc(0)
                e = acc(0)
                for k in range(V):
                    j = col0 + t + uint32(k * T)
                    if j < n:
                        d = v[k] - mua
                        q += d * d
                        e += d
                q2, e2 = block_sum2(q, e)
                if t == 0:
                    part[i, c, 0] = cnt
                    part[i, c, 1] = mu
                    part[i, c, 2] = q2 - e2 * e2 / cnt
            elif t == 0:
                part[i, c, 0] = tot

    return _named(_split_stats, "_split_stats_" + _tag(centered, T, V))


@cuda.jit
def _merge_moments(n, part, eps, coef, mean, rstd):
    """Row ``i`` (block ``i``): merge the chunk moments in chunk order; ``coef[i] =
    (μ − K, rstd)`` (``coef[i, 0]`` holds ``K`` on entry), ``mean[i]``, ``rstd[i]``."""
    nchunks = part.shape[1]
    t = cuda.threadIdx.x
    nt = cuda.blockDim.x
    for i in range(cuda.blockIdx.x, part.shape[0], cuda.gridDim.x):
        a = float64(0.0)
        for c in range(t, nchunks, nt):
            a += part[i, c, 0] * part[i, c, 1]
        mu = block_sum(a) / n
        b = float64(0.0)
        for c in range(t, nchunks, nt):
            d = part[i, c, 1] - mu
            b += part[i, c, 2] + part[i, c, 0] * d * d
        var = block_sum(b) / n
        if var < 0.0:
            var = float64(0.0)
        r = float64(1.0) / math.sqrt(var + eps)
        if t == 0:
            mean[i] = coef[i, 0] + mu
            coef[i, 0] = mu
            coef[i, 1] = r
            rstd[i] = r


@cuda.jit
def _merge_squares(n, part, eps, coef, rstd):
    """RMSNorm twin of ``_merge_moments``: ``rstd = 1/sqrt(Σ x² / n + eps)``."""
    nchunks = part.shape[1]
    t = cuda.threadIdx.x
    nt = cuda.blockDim.x
    for i in range(cuda.blockIdx.x, part.shape[0], cuda.gridDim.x):
        a = float64(0.0)
        for c in range(t, nchunks, nt):
            a += part[i, c, 0]
        r = float64(1.0) / math.sqrt(block_sum(a) / n + eps)
        if t == 0:
            coef[i, 0] = 0.0
            coef[i, 1] = r
            rstd[i] = r


@functools.lru_cache(maxsize=None)
def split_apply(team, vpt, centered, fp64):
    """``(x, w, b, coef, out)``: the write pass of a split forward; grid ``(chunks, rows)``."""
    T, V, CH, acc = team, vpt, team * vpt, _acc(fp64)

    def _split_apply(x, w, b, coef, out):
        n = uint32(w.shape[0])
        m = coef.shape[0]
        t = uint32(cuda.threadIdx.x)
        col0 = uint32(cuda.blockIdx.x) * uint32(CH)
        for i in range(cuda.blockIdx.y, m, cuda.gridDim.y):
            base = uint64(i) * uint64(n)
            mua = acc(coef[i, 0])
            ra = acc(coef[i, 1])
            shift = acc(0)
            if centered:
                shift = x[base]
            for k in range(V):
                j = col0 + t + uint32(k * T)
                if j < n:
                    if centered:
                        out[base + j] = ((x[base + j] - shift) - mua) * ra * w[j] + b[j]
                    else:
                        out[base + j] = x[base + j] * ra * w[j]

    return _named(_split_apply, "_split_apply_" + _tag(centered, T, V))


@functools.lru_cache(maxsize=None)
def split_backward(team, vpt, centered, fp64):
    """``(dy, x, w, mean, rstd, part)``: ``part[i, c] = (Σ w·dy, Σ w·dy·x̂)`` of chunk ``c``."""
    T, V, CH, acc = team, vpt, team * vpt, _acc(fp64)

    def _split_backward(dy, x, w, mean, rstd, part):
        n = uint32(w.shape[0])
        m = part.shape[0]
        c = uint32(cuda.blockIdx.x)
        t = uint32(cuda.threadIdx.x)
        col0 = c * uint32(CH)
        for i in range(cuda.blockIdx.y, m, cuda.gridDim.y):
            base = uint64(i) * uint64(n)
            r = acc(rstd[i])
            mu = acc(0)
            if centered:
                mu = mean[i]
            a = acc(0)
            bb = acc(0)
            for k in range(V):
                j = col0 + t + uint32(k * T)
                if j < n:
                    wdy = dy[base + j] * w[j]
                    a += wdy
                    bb += wdy * ((x[base + j] - mu) * r)
            a2, b2 = block_sum2(a, bb)
            if t == 0:
                part[i, c, 0] = a2
                part[i, c, 1] = b2

    return _named(_split_backward, "_split_backward_" + _tag(centered, T, V))


@cuda.jit
def _merge_grad(n, part, coef):
    """Row ``i``: ``coef[i] = (Σ_c part[i, c, 0] / n, Σ_c part[i, c, 1] / n)``."""
    nchunks = part.shape[1]
    t = cuda.threadIdx.x
    nt = cuda.blockDim.x
    for i in range(cuda.blockIdx.x, part.shape[0], cuda.gridDim.x):
        a = float64(0.0)
        b = float64(0.0)
        for c in range(t, nchunks, nt):
            a += part[i, c, 0]
            b += part[i, c, 1]
        a, b = block_sum2(a, b)
        if t == 0:
            coef[i, 0] = a / n
            coef[i, 1] = b / n


@functools.lru_cache(maxsize=None)
def split_columns(centered, fp64):
    """``(dy, x, w, mean, rstd, coef, dx, gw, gb)``: one thread per column ``j`` walks the
    rows: ``dx``, and ``gw[j] = Σ dy·x̂``, ``gb[j] = Σ dy`` written directly."""
    acc = _acc(fp64)

    def _split_columns(dy, x, w, mean, rstd, coef, dx, gw, gb):
        n = uint32(w.shape[0])
        m = rstd.shape[0]
        for j0 in range(cuda.grid(1), n, cuda.gridsize(1)):
            j = uint32(j0)
            wj = acc(w[j])
            sw = float64(0.0)
            sb = float64(0.0)
            idx = uint64(j)
            for i in range(m):
                r = acc(rstd[i])
                mu = acc(0)
                if centered:
                    mu = mean[i]
                g = dy[idx]
                xh = (x[idx] - mu) * r
                if centered:
                    dx[idx] = r * (g * wj - acc(coef[i, 0]) - xh * acc(coef[i, 1]))
                else:
                    dx[idx] = r * (g * wj - xh * acc(coef[i, 1]))
                sw += g * xh
                sb += g
                idx += uint64(n)
            gw[j] = sw
            if centered:
                gb[j] = sb

    return _named(_split_columns, f"_split_columns_{'ln' if centered else 'rms'}")


# ------------------------------------------------------------------ launchers


def _scratch(tag, shape, dtype):
    """A cached device buffer for per-call partials (no allocation per call), per thread
    and stream (``_layout.scratch``)."""
    return _layout.scratch("rows." + tag, shape, dtype)


def _flat(a):
    return a.reshape(a.shape[0] * a.shape[1])


def _small_threads(count):
    """Block size of the per-row merge kernels: enough warps for ``count`` chunks."""
    tpb = _layout.threads_per_block()
    return max(32, min(tpb, 32 * -(-count // 32)))


def forward(x, w, b, eps, out, mean, rstd, centered):
    """Normalize each row of ``x`` into ``out``; fill ``mean`` (LayerNorm) and ``rstd``."""
    m, n = x.shape
    p = _plan.rows(m, n)
    fp64 = x.dtype == np.float64
    xf, of = _flat(x), _flat(out)
    if p.mode != "split":
        forward_rows(p.team, p.vpt, centered, fp64, p.team * p.vpt == n)[p.grid, p.threads, _layout.stream()](xf, w, b, float(eps), of, mean, rstd)
        return
    coef = _stats_split(xf, m, n, p, eps, mean, rstd, centered, fp64)
    grid = (p.chunks, min(m, MAX_GRID_Y))
    split_apply(p.team, p.vpt, centered, fp64)[grid, p.threads, _layout.stream()](xf, w, b, coef, of)


def _stats_split(xf, m, n, p, eps, mean, rstd, centered, fp64):
    part = _scratch("part", (m, p.chunks, 3), np.float64)
    coef = _scratch("coef", (m, 2), np.float64)
    split_stats(p.team, p.vpt, centered, fp64)[(p.chunks, min(m, MAX_GRID_Y)), p.threads, _layout.stream()](xf, n, part, coef)
    blocks = min(m, _plan.sm_count() * 16)
    if centered:
        _merge_moments[blocks, _small_threads(p.chunks), _layout.stream()](n, part, float(eps), coef, mean, rstd)
    else:
        _merge_squares[blocks, _small_threads(p.chunks), _layout.stream()](n, part, float(eps), coef, rstd)
    return coef


def stats(x, eps, mean, rstd, centered):
    """Fill ``mean`` (LayerNorm) and ``rstd`` of each row (the forward's kernels without the
    write pass)."""
    m, n = x.shape
    p = _plan.rows(m, n)
    fp64 = x.dtype == np.float64
    if p.mode != "split":
        k = forward_rows(p.team, p.vpt, centered, fp64, p.team * p.vpt == n, False)
        k[p.grid, p.threads, _layout.stream()](_flat(x), x[0], x[0], float(eps), _flat(x), mean, rstd)
        return
    _stats_split(_flat(x), m, n, p, eps, mean, rstd, centered, fp64)


def backward(dy, x, w, mean, rstd, dx, gw, gb, centered):
    """Fill ``dx`` and ``gw`` (and ``gb`` for LayerNorm) from the saved statistics."""
    m, n = x.shape
    p = _plan.rows(m, n, backward=True)
    fp64 = x.dtype == np.float64
    dyf, xf, dxf = _flat(dy), _flat(x), _flat(dx)
    if p.mode != "split":
        teams = p.grid[0] * (p.threads // p.team)
        pw = _scratch("pw", (teams, n), x.dtype)
        pb = _scratch("pb", (teams, n), x.dtype) if centered else pw
        backward_rows(p.team, p.vpt, centered, fp64, p.team * p.vpt == n)[p.grid, p.threads, _layout.stream()](dyf, xf, w, mean, rstd, dxf, pw, pb)
        sum_partials(pw, gw)
        if centered:
            sum_partials(pb, gb)
        return
    part = _scratch("gpart", (m, p.chunks, 2), np.float64)
    coef = _scratch("coef", (m, 2), np.float64)
    split_backward(p.team, p.vpt, centered, fp64)[(p.chunks, min(m, MAX_GRID_Y)), p.threads, _layout.stream()](
        dyf, xf, w, mean, rstd, part)
    _merge_grad[min(m, _plan.sm_count() * 16), _small_threads(p.chunks), _layout.stream()](n, part, coef)
    blocks, team = _plan.plan_columns(n, _plan.sm_count())
    split_columns(centered, fp64)[blocks, team, _layout.stream()](dyf, xf, w, mean, rstd, coef, dxf, gw, gb)


# ------------------------------------------------------------------ PTX / SASS checks


def _signatures():
    sigs = []
    for t in ("float32", "float64"):
        fp64 = t == "float64"
        v = f"{t}[::1]"
        p = f"{t}[:, ::1]"
        fwd = f"void({v}, {v}, {v}, float64, {v}, {v}, {v})"
        bwd = f"void({v}, {v}, {v}, {v}, {v}, {v}, {p}, {p})"
        for centered in (True, False):
            sigs += [
                (forward_rows(256, 16, centered, fp64, True), fwd),
                (forward_rows(32, 8, centered, fp64, False), fwd),
                (forward_rows(256, 16, centered, fp64, True, False), fwd),
                (backward_rows(512, 8, centered, fp64, True), bwd),
                (backward_rows(32, 4, centered, fp64, False), bwd),
                (split_stats(256, 8, centered, fp64), f"void({v}, int64, float64[:, :, ::1], float64[:, ::1])"),
                (split_apply(256, 8, centered, fp64), f"void({v}, {v}, {v}, float64[:, ::1], {v})"),
                (split_backward(256, 4, centered, fp64), f"void({v}, {v}, {v}, {v}, {v}, float64[:, :, ::1])"),
                (split_columns(centered, fp64), f"void({v}, {v}, {v}, {v}, {v}, float64[:, ::1], {v}, {v}, {v})"),
            ]
        sigs.append((_merge_moments, f"void(int64, float64[:, :, ::1], float64, float64[:, ::1], {v}, {v})"))
        sigs.append((_merge_squares, f"void(int64, float64[:, :, ::1], float64, float64[:, ::1], {v})"))
    sigs.append((_merge_grad, "void(int64, float64[:, :, ::1], float64[:, ::1])"))
    return sigs


PTX_SIGNATURES = _signatures()
