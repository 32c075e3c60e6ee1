"""Row-normalization backward for the fused, memory-saving and 16-bit paths (CUDA twin of
``numbanorm/_cpu/_rows_grad.py``: same formulas, layouts and launcher signatures; the
kernels are built per combination of array formats, 16-bit data loaded and grad_x stored
as ``_rows_lowp`` does, no float32 copy).

``grad_x`` per row (``_layout.launch_rows``: a warp per short row, a block per long row;
two float64 row sums); ``grad_weight``/``grad_bias`` from per-block float64 column
partials over fixed row chunks (``_layout.launch_partials``), summed in chunk order by
``_reduce.sum_partials``: no atomics, reproducible. The small helpers (effective weight,
the ``(4, N)`` columns and ``(3, M)`` row statistics) are elementwise kernels.
"""
import functools
import math

from numba import cuda, float32, float64
from numba.core.types import float16

from . import _layout
from ._bf16 import bf16_bits, bf16_value
from ._reduce import block_sum, block_sum2, sum_partials, warp_sum2
from ._rows_lowp import F32, F64, _f, _f16, loader, row_launch, storer


#: whether the public backwards send 16-bit data (bfloat16 bits, float16) to these kernels
#: directly (no float32 copy). Stop 19 had it off: the RMS statistics kernel, launched
#: with ``rstd`` as its ``mean`` argument too, wrote ``mean[i] = 0`` after ``rstd[i]``,
#: so recomputed-statistics RMS backwards gave zeros (fixed: ``mean`` only when centered).
LOWP = True


@functools.lru_cache(maxsize=None)
def grad_kernels(fg, fv, fs, fx):
    """``(grad_x per warp, grad_x per block, column partials)`` for ``grad_out``, ``v``,
    ``gs`` and ``grad_x`` of the formats ``fg``, ``fv``, ``fs``, ``fx`` (``_rows_lowp``:
    bfloat16 bits, float16, float32, float64; loaded as float32 — float64 for F64 — and
    ``grad_x`` rounded once on store)."""
    ld_g, ld_v, ld_s = loader(fg), loader(fv), loader(fs)
    st_x = storer(fx)

    @cuda.jit(device=True, inline="always")
    def xhat(v, cols, rows, i, j):
        return (ld_v(v, i, j) - cols[1, j] - rows[0, i]) * rows[1, i] * cols[2, j]

    @cuda.jit(device=True, inline="always")
    def write(grad_out, v, cols, rows, gs, i, j, a, b, grad_x):
        g = ld_g(grad_out, i, j) * cols[0, j]
        d = rows[2, i] * (g - a - xhat(v, cols, rows, i, j) * b) + cols[3, j]
        if gs.shape[0] > 0:
            d += ld_s(gs, i, j)
        st_x(grad_x, i, j, d)

    @cuda.jit
    def grad_x_warp(grad_out, v, cols, rows, gs, centered, grad_x):
        m, n = v.shape
        t = cuda.threadIdx.x
        lane = t & 31
        rpb = cuda.blockDim.x >> 5
        for base in range(cuda.blockIdx.x * rpb, m, cuda.gridDim.x * rpb):
            i = base + (t >> 5)
            active = i < m
            a = float64(0.0)
            b = float64(0.0)
            if active:
                for j in range(lane, n, 32):
                    g = float64(ld_g(grad_out, i, j)) * cols[0, j]
                    a += g
                    b += g * xhat(v, cols, rows, i, j)
            a, b = warp_sum2(a, b)
            a = a / n if centered else float64(0.0)
            b = b / n
            if active:
                for j in range(lane, n, 32):
                    write(grad_out, v, cols, rows, gs, i, j, a, b, grad_x)

    @cuda.jit
    def grad_x_block(grad_out, v, cols, rows, gs, centered, grad_x):
        m, n = v.shape
        t = cuda.threadIdx.x
        nt = cuda.blockDim.x
        for i in range(cuda.blockIdx.x, m, cuda.gridDim.x):
            a = float64(0.0)
            b = float64(0.0)
            for j in range(t, n, nt):
                g = float64(ld_g(grad_out, i, j)) * cols[0, j]
                a += g
                b += g * xhat(v, cols, rows, i, j)
            a, b = block_sum2(a, b)
            a = a / n if centered else float64(0.0)
            b = b / n
            for j in range(t, n, nt):
                write(grad_out, v, cols, rows, gs, i, j, a, b, grad_x)

    @cuda.jit
    def partials(grad_out, v, cols, rows, part):
        """part[0, c, j] = Σ_{i in chunk c} dy·x̂, part[1, c, j] = Σ dy (float64, row order)."""
        m, n = v.shape
        nchunks = part.shape[1]
        for c in range(cuda.blockIdx.y, nchunks, cuda.gridDim.y):
            start = c * m // nchunks
            stop = (c + 1) * m // nchunks
            for j in range(cuda.grid(1), n, cuda.gridsize(1)):
                sw = float64(0.0)
                sb = float64(0.0)
                for i in range(start, stop):
                    dy = float64(ld_g(grad_out, i, j))
                    sw += dy * xhat(v, cols, rows, i, j)
                    sb += dy
                part[0, c, j] = sw
                part[1, c, j] = sb

    return grad_x_warp, grad_x_block, partials


@functools.lru_cache(maxsize=None)
def stats_kernel(centered, fv):
    """Row ``mean``/``rstd`` of ``v`` (format ``fv``) for a backward without saved
    statistics: a block per row, float32 elements, float64 block sums (the forward's)."""
    ld = loader(fv)

    @cuda.jit
    def row_stats(v, eps, mean, rstd):
        m, n = v.shape
        tid = cuda.threadIdx.x
        nt = cuda.blockDim.x
        for i in range(cuda.blockIdx.x, m, cuda.gridDim.x):
            acc = float32(0.0)
            for j in range(tid, n, nt):
                x = float32(ld(v, i, j))
                acc += x if centered else x * x
            tot = block_sum(float64(acc)) / n
            mu = float64(0.0)
            if centered:
                mu = tot
                mu32 = float32(mu)
                acc2 = float32(0.0)
                for j in range(tid, n, nt):
                    d = float32(ld(v, i, j)) - mu32
                    acc2 += d * d
                dm = mu - mu32
                var = block_sum(float64(acc2)) / n - dm * dm
                tot = var if var > 0.0 else 0.0 * var  # NaN kept
            if tid == 0:
                if centered:  # RMS launches pass rstd as mean too: never write it there
                    mean[i] = mu
                rstd[i] = 1.0 / math.sqrt(tot + eps)

    return row_stats


@cuda.jit
def _add_nanfix(cols, grad_weight):
    for j in range(cuda.grid(1), grad_weight.shape[0], cuda.gridsize(1)):
        grad_weight[j] += cols[3, j]


@cuda.jit
def _offset(w, offset, out):
    for j in range(cuda.grid(1), w.shape[0], cuda.gridsize(1)):
        out[j] = w[j] + offset


@cuda.jit
def _columns(w, bias, has_bias, from_output, cols):
    for j in range(cuda.grid(1), w.shape[0], cuda.gridsize(1)):
        wj = w[j]
        cols[0, j] = wj
        cols[1, j] = bias[j] if from_output and has_bias else 0.0
        if from_output:
            cols[2, j] = 0.0 if wj == 0 else 1.0 / wj
            cols[3, j] = math.nan if wj == 0 else 0.0
        else:
            cols[2, j] = 1.0
            cols[3, j] = 0.0


@cuda.jit
def _row_stats(mean, has_mean, rstd, from_output, rows):
    for i in range(cuda.grid(1), rstd.shape[0], cuda.gridsize(1)):
        rows[0, i] = mean[i] if has_mean and not from_output else 0.0
        rows[1, i] = 1.0 if from_output else rstd[i]
        rows[2, i] = rstd[i]


@cuda.jit
def _round_half(a):
    for i in range(cuda.grid(1), a.shape[0], cuda.gridsize(1)):
        a[i] = float32(float16(a[i]))


@cuda.jit
def _round_half_d(a):
    for i in range(cuda.grid(1), a.shape[0], cuda.gridsize(1)):
        a[i] = float64(float16(float32(a[i])))


@cuda.jit
def _round_bf16(a):
    for i in range(cuda.grid(1), a.shape[0], cuda.gridsize(1)):
        a[i] = bf16_value(bf16_bits(a[i]))


@cuda.jit
def _round_single(a):
    for i in range(cuda.grid(1), a.shape[0], cuda.gridsize(1)):
        a[i] = float64(float32(a[i]))


def round_to(a, dtype):
    """Round the device array ``a`` in place to the nearest values of the narrower float
    ``dtype`` (float16 or bfloat16 under float32, float32 or float16 under float64)."""
    flat = a.reshape(a.size)
    blocks, tpb = _layout.launch_1d(flat.shape[0])
    if str(dtype) == "float32":
        _round_single[blocks, tpb, _layout.stream()](flat)
    elif str(dtype) == "bfloat16":  # a bfloat16 stream under float32 compute (float64 has none)
        _round_bf16[blocks, tpb, _layout.stream()](flat)
    elif str(a.dtype) == "float32":
        _round_half[blocks, tpb, _layout.stream()](flat)
    else:  # float16 stream under float64 compute: via float32 (exact: float16 ⊂ float32)
        _round_single[blocks, tpb, _layout.stream()](flat)
        _round_half_d[blocks, tpb, _layout.stream()](flat)


def offset_weight(w, offset):
    """The effective weight ``offset + w`` as a new device array."""
    out = _layout.empty(w.shape, w.dtype)
    blocks, tpb = _layout.launch_1d(w.shape[0])
    _offset[blocks, tpb, _layout.stream()](w, float(offset), out)
    return out


def columns(w, bias, from_output):
    """The kernel's ``(4, N)`` columns (w, c, k, nanfix)."""
    n = w.shape[0]
    cols = _layout.scratch("rg.cols", (4, n), w.dtype)
    blocks, tpb = _layout.launch_1d(n)
    _columns[blocks, tpb, _layout.stream()](w, w if bias is None else bias, bias is not None, bool(from_output), cols)
    return cols


def row_stats(mean, rstd, from_output):
    """The kernel's ``(3, M)`` rows (mean, q, rstd)."""
    m = rstd.shape[0]
    rows = _layout.scratch("rg.rows", (3, m), rstd.dtype)
    blocks, tpb = _layout.launch_1d(m)
    _row_stats[blocks, tpb, _layout.stream()](rstd if mean is None else mean, mean is not None, rstd, bool(from_output), rows)
    return rows


def backward(grad_out, v, cols, rows, grad_s, centered, grad_x, grad_weight, grad_bias):
    """Fill ``grad_x`` (M, N), ``grad_weight`` and ``grad_bias`` (N,); see the CPU twin.
    ``grad_out``, ``v``, ``grad_s`` and ``grad_x`` may be 16-bit (bfloat16 as ``uint16``
    bits, float16 as ``int16`` views: read and written as such, no float32 copy)."""
    m, n = v.shape
    if m == 0 or n == 0:
        return
    gs = _layout.empty((0, n), cols.dtype) if grad_s is None else grad_s
    warp_k, block_k, part_k = grad_kernels(_f(grad_out), _f(v), _f(gs), _f(grad_x))
    args = (_f16(grad_out), _f16(v), cols, rows, _f16(gs))
    warp, blocks, threads = _layout.launch_rows(m, n)
    k = warp_k if warp else block_k
    k[blocks, threads, _layout.stream()](*args, bool(centered), _f16(grad_x))
    grid, threads, chunks = _layout.launch_partials(m, n)
    part = _layout.scratch("rg.part", (2, chunks, n), "float64")
    part_k[grid, threads, _layout.stream()](*args[:4], part)
    sum_partials(part[0], grad_weight)
    sum_partials(part[1], grad_bias)
    blocks, tpb = _layout.launch_1d(n)
    _add_nanfix[blocks, tpb, _layout.stream()](cols, grad_weight)


def stats(v, centered, eps, mean, rstd):
    """Fill ``rstd`` (and ``mean`` when ``centered``) of the rows of ``v`` (16-bit or float)."""
    m, n = v.shape
    if m == 0:
        return
    blocks, threads = row_launch(m, n)
    stats_kernel(bool(centered), _f(v))[blocks, threads, _layout.stream()](
        _f16(v), float(eps), rstd if mean is None else mean, rstd)


def _signatures():
    sigs = []
    m2 = {"bf16": "uint16[:, ::1]", "f16": "float16[:, ::1]", F32: "float32[:, ::1]", F64: "float64[:, ::1]"}
    for t in ("float32", "float64"):
        f = F32 if t == "float32" else F64
        mt = m2[f]
        v = f"{t}[::1]"
        warp_k, block_k, part_k = grad_kernels(f, f, f, f)
        gx = f"void({mt}, {mt}, {mt}, {mt}, {mt}, boolean, {mt})"
        sigs += [
            (warp_k, gx), (block_k, gx),
            (part_k, f"void({mt}, {mt}, {mt}, {mt}, float64[:, :, ::1])"),
            (_add_nanfix, f"void({mt}, {v})"),
            (_offset, f"void({v}, float64, {v})"),
            (_columns, f"void({v}, {v}, boolean, boolean, {mt})"),
            (_row_stats, f"void({v}, boolean, {v}, boolean, {mt})"),
        ]
    c, r = m2[F32], m2[F32]
    for h in ("bf16", "f16"):  # 16-bit data, float32 grad_out (mixed) included
        for fg in (h, F32):
            warp_k, block_k, part_k = grad_kernels(fg, h, h, h)
            gx = f"void({m2[fg]}, {m2[h]}, {c}, {r}, {m2[h]}, boolean, {m2[h]})"
            sigs += [(warp_k, gx), (block_k, gx),
                     (part_k, f"void({m2[fg]}, {m2[h]}, {c}, {r}, float64[:, :, ::1])")]
        for centered in (False, True):
            sigs.append((stats_kernel(centered, h), f"void({m2[h]}, float64, float32[::1], float32[::1])"))
    sigs += [(_round_half, "void(float32[::1])"), (_round_bf16, "void(float32[::1])"), (_round_single, "void(float64[::1])"),
             (_round_half_d, "void(float64[::1])")]
    return sigs


PTX_SIGNATURES = _signatures()
