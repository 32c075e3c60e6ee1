"""Grouped channel statistics on the ``(B, O, C, I)`` view: the CUDA core of BatchNorm,
InstanceNorm and GroupNorm (twin of ``numbanorm/_cpu/_channels.py``, same entry points).

Layout: ``x``/``out``/``grad_out``/``grad_x`` are C-contiguous ``(B, O, C, I)`` device arrays
of the compute dtype; statistics per ``(b, g)`` over the ``O × I`` positions of the ``C/G``
channels of group ``g`` (BatchNorm: B = 1, G = C; InstanceNorm: B = N, G = C; GroupNorm:
B = N; channels-last inputs have I = 1). Statistics are float64 ``(B, G)`` device arrays.

Thread mapping
--------------
* Reductions (``_moments_*``, ``_grad_moments_*``), deterministic two-stage:
  each ``(b, c)`` slice of ``n = O·I`` values is cut into ``K`` chunks (``K`` from the shape
  and ``_layout``'s ``partial_blocks`` setting, never from the GPU), and one work item per
  ``(b, c, chunk)`` writes float64 partial sums into ``(B, K, C)`` buffers.

  - ``I > 1``: one block per work item (grid-stride over items), threads striding over the
    chunk's flat ``(o, i)`` range (coalesced along I), ``_reduce.block_sum2``.
  - ``I = 1`` (channels-last): 2-D blocks ``(32, threads/32)``; ``threadIdx.x`` is the
    channel inside a 32-channel tile (coalesced along C), ``threadIdx.y`` strides over the
    chunk's rows; the ``y`` partials are added in ``y`` order through shared memory.

  The second stage (``_group_stats`` / ``_grad_coefficients``: one block per ``(b, g)``,
  threads over the group's channels, block reductions;
  ``_grad_params``: one thread per channel) adds the partials in chunk order. No atomics.
* Element-wise passes (``_apply``, ``_grad_apply``): a 2-D view, rows = the ``(b, o, c)``
  runs of I values (coefficients per row) or, channels-last, the ``(b, o)`` positions with
  the channels as columns; 2-D blocks with 32·k threads along the (coalesced) columns,
  grid-stride over rows and columns, so the (b, c) index arithmetic is per row, not per
  element.

Numerics as on the CPU: float64 sums of values shifted by each slice's first element,
channels merged into groups with Chan's formula; element-wise passes in float64.
"""
import math

from numba import cuda, float64

from . import _layout
from ._reduce import block_sum, block_sum2


def _chunks(n, slices, threads):
    """Chunks per (b, c) slice of ``n`` values: about ``partial_blocks`` work items in all,
    each at least ``2 * threads`` values (two per thread: enough chunks that a
    ``(256, 1024)`` BatchNorm1d still gets 512 blocks)."""
    target = _layout.settings()["partial_blocks"]
    return max(1, min(-(-target // max(slices, 1)), n // (2 * threads)))


# --- stage 1: partial sums ---------------------------------------------------------------


@cuda.jit
def _moments_inner(x, nchunks, part1, part2):
    """part[b, k, c] = Σ (x − K), Σ (x − K)² over chunk k of slice (b, c); K = x[b, 0, c, 0]."""
    nb, no, nc, ni = x.shape
    n = no * ni
    t = cuda.threadIdx.x
    nt = cuda.blockDim.x
    for w in range(cuda.blockIdx.x, nb * nc * nchunks, cuda.gridDim.x):
        k = w % nchunks
        bc = w // nchunks
        c = bc % nc
        b = bc // nc
        sh = float64(x[b, 0, c, 0])
        s = float64(0.0)
        ss = float64(0.0)
        for f in range(k * n // nchunks + t, (k + 1) * n // nchunks, nt):
            o = f // ni
            v = x[b, o, c, f - o * ni] - sh
            s += v
            ss += v * v
        s, ss = block_sum2(s, ss)
        if t == 0:
            part1[b, k, c] = s
            part2[b, k, c] = ss


@cuda.jit
def _moments_last(x, nchunks, part1, part2):
    """As ``_moments_inner`` for the channels-last ``(B, O, C)`` view."""
    nb, no, nc = x.shape
    buf = cuda.shared.array((2, 32, 32), float64)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    ny = cuda.blockDim.y
    tiles = (nc + 31) // 32
    for w in range(cuda.blockIdx.x, nb * nchunks * tiles, cuda.gridDim.x):
        tile = w % tiles
        bk = w // tiles
        k = bk % nchunks
        b = bk // nchunks
        c = tile * 32 + tx
        s = float64(0.0)
        ss = float64(0.0)
        if c < nc:
            sh = float64(x[b, 0, c])
            for o in range(k * no // nchunks + ty, (k + 1) * no // nchunks, ny):
                v = x[b, o, c] - sh
                s += v
                ss += v * v
        buf[0, ty, tx] = s
        buf[1, ty, tx] = ss
        cuda.syncthreads()
        if ty == 0 and c < nc:
            for y in range(1, ny):
                s += buf[0, y, tx]
                ss += buf[1, y, tx]
            part1[b, k, c] = s
            part2[b, k, c] = ss
        cuda.syncthreads()


@cuda.jit
def _grad_moments_inner(dy, x, mean, nchunks, part1, part2):
    """part[b, k, c] = Σ dy, Σ dy·(x − mean[b, g]) over chunk k of slice (b, c)."""
    nb, no, nc, ni = x.shape
    n = no * ni
    cg = nc // mean.shape[1]
    t = cuda.threadIdx.x
    nt = cuda.blockDim.x
    for w in range(cuda.blockIdx.x, nb * nc * nchunks, cuda.gridDim.x):
        k = w % nchunks
        bc = w // nchunks
        c = bc % nc
        b = bc // nc
        m = mean[b, c // cg]
        s = float64(0.0)
        sx = float64(0.0)
        for f in range(k * n // nchunks + t, (k + 1) * n // nchunks, nt):
            o = f // ni
            i = f - o * ni
            g = float64(dy[b, o, c, i])
            s += g
            sx += g * (x[b, o, c, i] - m)
        s, sx = block_sum2(s, sx)
        if t == 0:
            part1[b, k, c] = s
            part2[b, k, c] = sx


@cuda.jit
def _grad_moments_last(dy, x, mean, nchunks, part1, part2):
    """As ``_grad_moments_inner`` for the channels-last ``(B, O, C)`` view."""
    nb, no, nc = x.shape
    cg = nc // mean.shape[1]
    buf = cuda.shared.array((2, 32, 32), float64)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    ny = cuda.blockDim.y
    tiles = (nc + 31) // 32
    for w in range(cuda.blockIdx.x, nb * nchunks * tiles, cuda.gridDim.x):
        tile = w % tiles
        bk = w // tiles
        k = bk % nchunks
        b = bk // nchunks
        c = tile * 32 + tx
        s = float64(0.0)
        sx = float64(0.0)
        if c < nc:
            m = mean[b, c // cg]
            for o in range(k * no // nchunks + ty, (k + 1) * no // nchunks, ny):
                g = float64(dy[b, o, c])
                s += g
                sx += g * (x[b, o, c] - m)
        buf[0, ty, tx] = s
        buf[1, ty, tx] = sx
        cuda.syncthreads()
        if ty == 0 and c < nc:
            for y in range(1, ny):
                s += buf[0, y, tx]
                sx += buf[1, y, tx]
            part1[b, k, c] = s
            part2[b, k, c] = sx
        cuda.syncthreads()


# --- stage 2: per-(b, g) and per-channel finishing ---------------------------------------


@cuda.jit
def _group_stats(shift, part1, part2, n_, eps, mean, var, rstd):
    """Per (b, g), one block: merge the chunk partials per channel (threads stride over the
    group's channels, chunks summed in order), channels into the group with Chan's
    formula through two block reductions. ``shift[b, c]`` is ``x[b, 0, c, 0]``."""
    nb, nk, nc = part1.shape
    groups = mean.shape[1]
    cg = nc // groups
    n = float64(n_)
    t = cuda.threadIdx.x
    nt = cuda.blockDim.x
    for w in range(cuda.blockIdx.x, nb * groups, cuda.gridDim.x):
        b = w // groups
        g = w - b * groups
        tot = float64(0.0)
        for c in range(g * cg + t, (g + 1) * cg, nt):
            s1 = float64(0.0)
            for k in range(nk):
                s1 += part1[b, k, c]
            tot += shift[b, c] + s1 / n
        mu = block_sum(tot) / cg
        m2 = float64(0.0)
        for c in range(g * cg + t, (g + 1) * cg, nt):
            s1 = float64(0.0)
            s2 = float64(0.0)
            for k in range(nk):
                s1 += part1[b, k, c]
                s2 += part2[b, k, c]
            d = (shift[b, c] + s1 / n) - mu
            m2 += (s2 - s1 * (s1 / n)) + n * d * d
        v = block_sum(m2) / (n * cg)
        if v < 0.0:
            v = float64(0.0)
        if t == 0:
            mean[b, g] = mu
            var[b, g] = v
            rstd[b, g] = float64(1.0) / math.sqrt(v + eps)


@cuda.jit
def _grad_coefficients(part1, part2, weight, rstd, count, training, alpha, beta, gamma, sum1, sum2):
    """Per (b, g), one block: dx = alpha·dy + beta·(x − μ) + gamma coefficients; per-(b, c)
    sums (threads stride over the group's channels; two block reductions)."""
    nb, nk, nc = part1.shape
    groups = rstd.shape[1]
    cg = nc // groups
    ng = float64(count) * cg
    t = cuda.threadIdx.x
    nt = cuda.blockDim.x
    for w in range(cuda.blockIdx.x, nb * groups, cuda.gridDim.x):
        b = w // groups
        g = w - b * groups
        r = rstd[b, g]
        sg = float64(0.0)
        sgx = float64(0.0)
        for c in range(g * cg + t, (g + 1) * cg, nt):
            s1 = float64(0.0)
            s2 = float64(0.0)
            for k in range(nk):
                s1 += part1[b, k, c]
                s2 += part2[b, k, c]
            sum1[b, c] = s1
            sum2[b, c] = s2
            sg += weight[c] * s1
            sgx += weight[c] * s2
        sg, sgx = block_sum2(sg, sgx)
        be = float64(0.0)
        ga = float64(0.0)
        if training:
            be = -r * r * r * sgx / ng
            ga = -r * sg / ng
        for c in range(g * cg + t, (g + 1) * cg, nt):
            alpha[b, c] = r * weight[c]
            beta[b, c] = be
            gamma[b, c] = ga


def _stage2_launch(nb, groups, cg):
    """(blocks, threads) of the stage-2 kernels: one block per (b, g), whole warps over the
    group's channels."""
    threads = max(32, min(_tpb(), 32 * -(-cg // 32)))
    return max(1, min(nb * groups, _layout.settings()["max_blocks"])), threads


@cuda.jit
def _grad_params(sum1, sum2, rstd, grad_weight, grad_bias):
    """grad_weight[c] = Σ_b rstd[b, g]·Σdy(x−μ), grad_bias[c] = Σ_b Σdy, in b order."""
    nb, nc = sum1.shape
    cg = nc // rstd.shape[1]
    for c in range(cuda.grid(1), nc, cuda.gridsize(1)):
        sw = float64(0.0)
        sb = float64(0.0)
        for b in range(nb):
            sw += rstd[b, c // cg] * sum2[b, c]
            sb += sum1[b, c]
        grad_weight[c] = sw
        grad_bias[c] = sb


# --- element-wise passes ------------------------------------------------------------------


@cuda.jit
def _apply(x, rows_per_b, inner, mean, rstd, weight, bias, out):
    """out = (x − mean[b, g])·rstd[b, g]·weight[c] + bias[c] on the 2-D (rows, L) view.

    ``I > 1``: rows are the (b, o, c) runs of I values (c = row % C, one coefficient per
    row); ``I = 1``: rows are the (b, o) positions, columns the C channels. Threads
    ``(x, y)`` of a ``(TX, TY)`` block: columns ``x`` (coalesced), rows ``y``, grid-stride.
    """
    nrows, ncols = x.shape
    nc = weight.shape[0]
    cg = nc // mean.shape[1]
    col0 = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    cstep = cuda.gridDim.x * cuda.blockDim.x
    for row in range(cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y, nrows, cuda.gridDim.y * cuda.blockDim.y):
        b = row // rows_per_b
        if inner:
            c = row % nc
            g = c // cg
            m = mean[b, g]
            s = rstd[b, g] * weight[c]
            h = bias[c]
            for j in range(col0, ncols, cstep):
                out[row, j] = (x[row, j] - m) * s + h
        else:
            for c in range(col0, ncols, cstep):
                g = c // cg
                out[row, c] = (x[row, c] - mean[b, g]) * (rstd[b, g] * weight[c]) + bias[c]


@cuda.jit
def _grad_apply(dy, x, rows_per_b, inner, mean, alpha, beta, gamma, dx):
    """dx = alpha[b, c]·dy + beta[b, c]·(x − mean[b, g]) + gamma[b, c] on the 2-D view of
    ``_apply`` (``inner``: rows are (b, o, c) runs; else rows (b, o), columns c)."""
    nrows, ncols = x.shape
    nc = alpha.shape[1]
    cg = nc // mean.shape[1]
    col0 = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    cstep = cuda.gridDim.x * cuda.blockDim.x
    for row in range(cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y, nrows, cuda.gridDim.y * cuda.blockDim.y):
        b = row // rows_per_b
        if inner:
            c = row % nc
            m = mean[b, c // cg]
            a = alpha[b, c]
            be = beta[b, c]
            ga = gamma[b, c]
            for j in range(col0, ncols, cstep):
                dx[row, j] = a * dy[row, j] + be * (x[row, j] - m) + ga
        else:
            for c in range(col0, ncols, cstep):
                dx[row, c] = alpha[b, c] * dy[row, c] + beta[b, c] * (x[row, c] - mean[b, c // cg]) + gamma[b, c]


# --- launchers (same names and signatures as the CPU entry points) -------------------------


def _tpb():
    return _layout.threads_per_block()


def _partial_sums(kernel_inner, kernel_last, x, extra):
    """Run a stage-1 kernel on ``x`` (B, O, C, I); returns the (B, K, C) float64 partials."""
    nb, no, nc, ni = x.shape
    tpb = _tpb()
    if ni == 1:
        ny = tpb // 32
        k = max(1, min(_chunks(no * 32, nb * ((nc + 31) // 32), tpb), no))
        items = nb * k * ((nc + 31) // 32)
        p1 = _layout.scratch("ch.p1", (nb, k, nc), "float64")
        p2 = _layout.scratch("ch.p2", (nb, k, nc), "float64")
        blocks = min(items, _layout.settings()["max_blocks"])
        args = tuple(a.reshape(nb, no, nc) if a.ndim == 4 else a for a in extra) + (k, p1, p2)
        kernel_last[blocks, (32, ny), _layout.stream()](*args)
    else:
        k = _chunks(no * ni, nb * nc, tpb)
        p1 = _layout.scratch("ch.p1", (nb, k, nc), "float64")
        p2 = _layout.scratch("ch.p2", (nb, k, nc), "float64")
        blocks = min(nb * nc * k, _layout.settings()["max_blocks"])
        kernel_inner[blocks, tpb, _layout.stream()](*(tuple(extra) + (k, p1, p2)))
    return p1, p2


def stats(x, groups, eps, mean, rstd, var):
    """Per-(b, g) float64 ``mean``, ``rstd`` and biased ``var`` ``(B, G)`` of ``x`` (B, O, C, I)."""
    nb = x.shape[0]
    p1, p2 = _partial_sums(_moments_inner, _moments_last, x, (x,))
    blocks, tpb = _stage2_launch(nb, groups, x.shape[2] // groups)
    _group_stats[blocks, tpb, _layout.stream()](x[:, 0, :, 0], p1, p2, x.shape[1] * x.shape[3], float(eps), mean, var, rstd)


def _rows_view(x):
    """(2-D shape, rows per sample, inner): the element-wise kernels' view of (B, O, C, I)."""
    nb, no, nc, ni = x.shape
    if ni == 1:
        return (nb * no, nc), no, False
    return (nb * no * nc, ni), no * nc, True


def _launch_2d(nrows, ncols):
    """(grid, block) of the 2-D element-wise kernels: 32·k threads along the columns."""
    s = _layout.settings()
    tpb = s["threads_per_block"]
    tx = min(tpb, 32 * -(-ncols // 32))
    while tpb % tx:
        tx -= 32
    ty = tpb // tx
    gx = max(1, min(-(-ncols // tx), s["max_blocks"]))
    gy = max(1, min(-(-nrows // ty), s["max_blocks"] // gx, 65535))
    return (gx, gy), (tx, ty)


def normalize(x, mean, rstd, weight, bias, out):
    """out = (x − mean)·rstd·weight + bias with per-(b, g) float64 ``mean``/``rstd``."""
    shape2, per_b, inner = _rows_view(x)
    grid, block = _launch_2d(*shape2)
    _apply[grid, block, _layout.stream()](x.reshape(shape2), per_b, inner, mean, rstd, weight, bias, out.reshape(shape2))


def forward(x, groups, eps, weight, bias, out, mean, rstd, var):
    """Statistics of ``x`` per (b, g) into ``mean``/``rstd``/``var``, then normalize into ``out``."""
    stats(x, groups, eps, mean, rstd, var)
    normalize(x, mean, rstd, weight, bias, out)


def backward(grad_out, x, weight, mean, rstd, training, grad_x, grad_weight, grad_bias):
    """``grad_x`` (B, O, C, I), ``grad_weight``/``grad_bias`` (C,) from per-(b, g) float64 stats."""
    nb, no, nc, ni = x.shape
    groups = mean.shape[1]
    p1, p2 = _partial_sums(_grad_moments_inner, _grad_moments_last, x, (grad_out, x, mean))
    coef = [_layout.scratch(f"ch.coef{i}", (nb, nc), "float64") for i in range(5)]
    blocks, tpb = _stage2_launch(nb, groups, nc // groups)
    _grad_coefficients[blocks, tpb, _layout.stream()](p1, p2, weight, rstd, no * ni, bool(training), *coef)
    alpha, beta, gamma, sum1, sum2 = coef
    blocks, tpb = _layout.launch_1d(nc)
    _grad_params[blocks, tpb, _layout.stream()](sum1, sum2, rstd, grad_weight, grad_bias)
    shape2, per_b, inner = _rows_view(x)
    grid, block = _launch_2d(*shape2)
    _grad_apply[grid, block, _layout.stream()](grad_out.reshape(shape2), x.reshape(shape2), per_b, inner, mean, alpha, beta, gamma,
                             grad_x.reshape(shape2))


def fill(a, value):
    """a[...] = value (statistics of empty slices)."""
    if a.size:
        blocks, tpb = _layout.launch_1d(a.size)
        _layout._fill[blocks, tpb, _layout.stream()](a.reshape(a.size), float(value))


def _signatures():
    sigs = []
    i64 = "int64"
    f64_2 = "float64[:, ::1]"
    f64_3 = "float64[:, :, ::1]"
    for t in ("float32", "float64"):
        a4 = f"{t}[:, :, :, ::1]"
        a3 = f"{t}[:, :, ::1]"
        a2 = f"{t}[:, ::1]"
        a1 = f"{t}[::1]"
        sigs += [
            (_moments_inner, f"void({a4}, {i64}, {f64_3}, {f64_3})"),
            (_moments_last, f"void({a3}, {i64}, {f64_3}, {f64_3})"),
            (_grad_moments_inner, f"void({a4}, {a4}, {f64_2}, {i64}, {f64_3}, {f64_3})"),
            (_grad_moments_last, f"void({a3}, {a3}, {f64_2}, {i64}, {f64_3}, {f64_3})"),
            (_group_stats, f"void({t}[:, :], {f64_3}, {f64_3}, {i64}, float64, {f64_2}, {f64_2}, {f64_2})"),
            (_grad_coefficients, f"void({f64_3}, {f64_3}, {a1}, {f64_2}, {i64}, boolean, "
                                 f"{f64_2}, {f64_2}, {f64_2}, {f64_2}, {f64_2})"),
            (_grad_params, f"void({f64_2}, {f64_2}, {f64_2}, {a1}, {a1})"),
            (_apply, f"void({a2}, {i64}, boolean, {f64_2}, {f64_2}, {a1}, {a1}, {a2})"),
            (_grad_apply, f"void({a2}, {a2}, {i64}, boolean, {f64_2}, {f64_2}, {f64_2}, {f64_2}, {a2})"),
        ]
    return sigs


PTX_SIGNATURES = _signatures()
