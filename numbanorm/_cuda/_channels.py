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
    chunk's flat ``(o, i)`` range (coalesced along I) with an unsigned address cursor
    (one conditional wrap per step, no per-element ``//``/``%``), ``_reduce.block_sum2``.
  - ``I = 1`` (channels-last): 2-D blocks ``(32, threads/32)``; ``threadIdx.x`` is the
    channel inside a 32-channel tile (coalesced along C), ``threadIdx.y`` strides over the
    chunk's rows (unsigned address step); the ``y`` partials are added in ``y`` order
    through shared memory.

  The second stage (``_group_stats`` / ``_grad_coefficients``: one block per ``(b, g)``,
  threads over the group's channels, block reductions;
  ``_grad_params``: one thread per channel) adds the partials in chunk order. No atomics.
* Element-wise passes: :mod:`._channels_apply` (coefficients per row or per sample,
  flat unsigned indices).

Numerics: the data are the ``x − K`` (K = the slice's first element; backward: ``x − mean``
with the float64 mean split into two values of the data dtype) summed in the data dtype
over runs of ``RUN`` values per thread, the runs added in float64; threads, chunks and
channels merged in float64 (Chan's formula for the groups) in a fixed order.
"""
import functools
import math

from numba import cuda, float64, uint32, uint64

from . import _layout
from ._channels_apply import _acc, _named, _split, apply_kernel, centered, launch_2d
from ._reduce import block_sum, block_sum2

#: values a thread sums in the data dtype before adding the run into float64
RUN = 16


def _chunks(n, slices, threads):
    """Chunks per (b, c) slice of ``n`` values: about ``partial_blocks`` work items in all,
    each at least ``2 * threads`` values (two per thread: enough chunks that a
    ``(256, 1024)`` BatchNorm1d still gets 512 blocks)."""
    target = _layout.settings()["partial_blocks"]
    return max(1, min(-(-target // max(slices, 1)), n // (2 * threads)))


# --- stage 1: partial sums ---------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _moment_terms(fp64, grad):
    """The per-element steps of the stage-1 sums, as two device functions:
    ``shift(dy, x, mean, b, c, cg, base) -> (m_hi, m_lo)``, the value the element terms are
    taken about (the shift K = x[base] of the statistics; the split float64 mean of the
    gradient sums), and ``terms(dy, x, addr, mh, ml, s, ss) -> (s, ss)`` adding the element
    at ``addr``: (x − K, (x − K)²), or (dy, dy·(x − mean)) with ``grad``."""
    acc = _acc(fp64)
    center = centered(fp64)

    def shift(dy, x, mean, b, c, cg, base):
        if grad:
            return _split(mean[b, c // cg], acc)
        return x[base], acc(0.0)

    def terms(dy, x, addr, mh, ml, s, ss):
        if grad:
            g = dy[addr]
            d = center(x[addr], mh, ml)
            return s + g, ss + g * d
        d = x[addr] - mh
        return s + d, ss + d * d

    return cuda.jit(device=True, inline="always")(shift), cuda.jit(device=True, inline="always")(terms)


@cuda.jit(device=True, inline="always")
def _cursor(f, ni, ci, base):
    """(address, i) of flat position ``f`` of a (O, I) slice whose rows are ``ci`` apart."""
    o = f // ni
    i = f - o * ni
    return base + o * ci + i, i


@functools.lru_cache(maxsize=None)
def moments_inner(fp64, grad, wide=False):
    """Stage-1 kernel of the ``I > 1`` layout (flat ``x`` of ``(B, O, C, I)``), one block
    per (b, c, chunk) work item, threads striding over the chunk's flat (o, i) positions.

    ``grad=False``: ``_moments_inner(x, nb, no, nc, ni, nchunks, part1, part2)``,
    part = Σ (x − K), Σ (x − K)² with K = x[b, 0, c, 0].
    ``grad=True``: ``_grad_moments_inner(dy, x, mean, nb, no, nc, ni, nchunks, part1, part2)``,
    part = Σ dy, Σ dy·(x − mean[b, g]).

    Each thread walks its positions with an unsigned address cursor (``+ step``, one
    conditional wrap to the next ``o``: no per-element ``//``/``%``), does the element
    math in the data dtype (float32 data: ``x − mean`` as ``(x − m_hi) − m_lo`` of the
    float64 mean split in two float32 values) and adds runs of ``RUN`` values into
    float64 accumulators; the block sums are float64 (``block_sum2``). ``wide``: the
    in-row position ``i`` is 64-bit (``I >= 2**31``), else 32-bit."""
    acc = _acc(fp64)
    shift, terms = _moment_terms(fp64, grad)
    ity = uint64 if wide else uint32

    def body(dy, x, mean, nb, no, nc, ni, nchunks, part1, part2):
        n = no * ni
        t = cuda.threadIdx.x
        nt = cuda.blockDim.x
        cg = nc // mean.shape[1]
        uni = uint64(ni)
        ci = uint64(nc) * uni
        dn = uint64(nt) // uni
        di = ity(uint64(nt) - dn * uni)
        ni_i = ity(ni)
        step = dn * ci + di
        wrap = ci - uni
        for w in range(cuda.blockIdx.x, nb * nc * nchunks, cuda.gridDim.x):
            k = w % nchunks
            bc = w // nchunks
            c = bc % nc
            b = bc // nc
            base = uint64(b) * uint64(no) * ci + uint64(c) * uni
            mh, ml = shift(dy, x, mean, b, c, cg, base)
            s = float64(0.0)
            ss = float64(0.0)
            f = k * n // nchunks + t
            stop = (k + 1) * n // nchunks
            if f < stop:
                cnt = (stop - f + nt - 1) // nt
                addr, i0 = _cursor(uint64(f), uni, ci, base)
                i = ity(i0)
                j = 0
                while j < cnt:
                    jn = min(j + RUN, cnt)
                    s32 = acc(0.0)
                    ss32 = acc(0.0)
                    while j < jn:
                        j += 1
                        s32, ss32 = terms(dy, x, addr, mh, ml, s32, ss32)
                        addr += step
                        i = ity(i + di)
                        if i >= ni_i:
                            i = ity(i - ni_i)
                            addr += wrap
                    s += float64(s32)
                    ss += float64(ss32)
            s, ss = block_sum2(s, ss)
            if t == 0:
                part1[b, k, c] = s
                part2[b, k, c] = ss

    body = cuda.jit(device=True, inline="always")(body)
    if grad:
        def _grad_moments_inner(dy, x, mean, nb, no, nc, ni, nchunks, part1, part2):
            body(dy, x, mean, nb, no, nc, ni, nchunks, part1, part2)
        return _named(_grad_moments_inner, "_grad_moments_inner")

    def _moments_inner(x, nb, no, nc, ni, nchunks, part1, part2):
        body(x, x, part1[0], nb, no, nc, ni, nchunks, part1, part2)
    return _named(_moments_inner, "_moments_inner")


@functools.lru_cache(maxsize=None)
def moments_last(fp64, grad):
    """Stage-1 kernel of the channels-last layout (flat ``x`` of ``(B, O, C)``): 2-D
    blocks ``(32, ny)``, ``threadIdx.x`` the channel of a 32-channel tile (coalesced
    along C), ``threadIdx.y`` strides over the chunk's rows with an unsigned address
    step; the ``y`` partials are added in ``y`` order through shared memory. Sums as in
    :func:`moments_inner` (same arguments without ``ni``)."""
    acc = _acc(fp64)
    shift, terms = _moment_terms(fp64, grad)

    def body(dy, x, mean, nb, no, nc, nchunks, part1, part2):
        cg = nc // mean.shape[1]
        buf = cuda.shared.array((2, 32, 32), float64)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        ny = cuda.blockDim.y
        tiles = (nc + 31) // 32
        uc = uint64(nc)
        step = uint64(ny) * uc
        for w in range(cuda.blockIdx.x, nb * nchunks * tiles, cuda.gridDim.x):
            tile = w % tiles
            bk = w // tiles
            k = bk % nchunks
            b = bk // nchunks
            c = tile * 32 + tx
            s = float64(0.0)
            ss = float64(0.0)
            if c < nc:
                base = uint64(b) * uint64(no) * uc + uint64(c)
                mh, ml = shift(dy, x, mean, b, c, cg, base)
                o0 = k * no // nchunks + ty
                o1 = (k + 1) * no // nchunks
                if o0 < o1:
                    cnt = (o1 - o0 + ny - 1) // ny
                    addr = base + uint64(o0) * uc
                    j = 0
                    while j < cnt:
                        jn = min(j + RUN, cnt)
                        s32 = acc(0.0)
                        ss32 = acc(0.0)
                        while j < jn:
                            j += 1
                            s32, ss32 = terms(dy, x, addr, mh, ml, s32, ss32)
                            addr += step
                        s += float64(s32)
                        ss += float64(ss32)
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

    body = cuda.jit(device=True, inline="always")(body)
    if grad:
        def _grad_moments_last(dy, x, mean, nb, no, nc, nchunks, part1, part2):
            body(dy, x, mean, nb, no, nc, nchunks, part1, part2)
        return _named(_grad_moments_last, "_grad_moments_last")

    def _moments_last(x, nb, no, nc, nchunks, part1, part2):
        body(x, x, part1[0], nb, no, nc, nchunks, part1, part2)
    return _named(_moments_last, "_moments_last")


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


# --- launchers (same names and signatures as the CPU entry points) -------------------------


def _tpb():
    return _layout.threads_per_block()


def _flat(a):
    return a.reshape(a.size)


def _partial_sums(grad, x, extra):
    """Run a stage-1 kernel on ``x`` (B, O, C, I); returns the (B, K, C) float64 partials.
    ``extra``: the kernel's leading arguments (``(x,)``, or ``(dy, x, mean)``), the data
    ones passed flat."""
    nb, no, nc, ni = x.shape
    tpb = _tpb()
    fp64 = x.dtype == "float64"
    args = tuple(_flat(a) if a.ndim == 4 else a for a in extra)
    if ni == 1:
        ny = tpb // 32
        k = max(1, min(_chunks(no * 32, nb * ((nc + 31) // 32), tpb), no))
        items = nb * k * ((nc + 31) // 32)
        p1 = _layout.scratch("ch.p1", (nb, k, nc), "float64")
        p2 = _layout.scratch("ch.p2", (nb, k, nc), "float64")
        blocks = min(items, _layout.settings()["max_blocks"])
        moments_last(fp64, grad)[blocks, (32, ny), _layout.stream()](*args, nb, no, nc, k, p1, p2)
    else:
        k = _chunks(no * ni, nb * nc, tpb)
        p1 = _layout.scratch("ch.p1", (nb, k, nc), "float64")
        p2 = _layout.scratch("ch.p2", (nb, k, nc), "float64")
        blocks = min(nb * nc * k, _layout.settings()["max_blocks"])
        moments_inner(fp64, grad, ni >= 2**31)[blocks, tpb, _layout.stream()](*args, nb, no, nc, ni, k, p1, p2)
    return p1, p2


def stats(x, groups, eps, mean, rstd, var):
    """Per-(b, g) float64 ``mean``, ``rstd`` and biased ``var`` ``(B, G)`` of ``x`` (B, O, C, I)."""
    nb = x.shape[0]
    p1, p2 = _partial_sums(False, x, (x,))
    blocks, tpb = _stage2_launch(nb, groups, x.shape[2] // groups)
    _group_stats[blocks, tpb, _layout.stream()](x[:, 0, :, 0], p1, p2, x.shape[1] * x.shape[3], float(eps), mean, var, rstd)


def _rows_view(x):
    """(rows, row length, rows per sample, inner): the element-wise kernels' view of
    (B, O, C, I)."""
    nb, no, nc, ni = x.shape
    if ni == 1:
        return nb * no, nc, no, False
    return nb * no * nc, ni, no * nc, True


def normalize(x, mean, rstd, weight, bias, out):
    """out = (x − mean)·rstd·weight + bias with per-(b, g) float64 ``mean``/``rstd``."""
    nrows, ncols, per_b, inner = _rows_view(x)
    grid, block = launch_2d(nrows, ncols, inner)
    kernel = apply_kernel(inner, x.dtype == "float64", False)
    kernel[grid, block, _layout.stream()](_flat(x), nrows, ncols if inner else 1, x.shape[2], per_b,
                                          mean, rstd, weight, bias, _flat(out))


def forward(x, groups, eps, weight, bias, out, mean, rstd, var):
    """Statistics of ``x`` per (b, g) into ``mean``/``rstd``/``var``, then normalize into ``out``."""
    stats(x, groups, eps, mean, rstd, var)
    normalize(x, mean, rstd, weight, bias, out)


def backward(grad_out, x, weight, mean, rstd, training, grad_x, grad_weight, grad_bias):
    """``grad_x`` (B, O, C, I), ``grad_weight``/``grad_bias`` (C,) from per-(b, g) float64 stats."""
    nb, no, nc, ni = x.shape
    groups = mean.shape[1]
    p1, p2 = _partial_sums(True, x, (grad_out, x, mean))
    coef = [_layout.scratch(f"ch.coef{i}", (nb, nc), "float64") for i in range(5)]
    blocks, tpb = _stage2_launch(nb, groups, nc // groups)
    _grad_coefficients[blocks, tpb, _layout.stream()](p1, p2, weight, rstd, no * ni, bool(training), *coef)
    alpha, beta, gamma, sum1, sum2 = coef
    blocks, tpb = _layout.launch_1d(nc)
    _grad_params[blocks, tpb, _layout.stream()](sum1, sum2, rstd, grad_weight, grad_bias)
    nrows, ncols, per_b, inner = _rows_view(x)
    grid, block = launch_2d(nrows, ncols, inner)
    kernel = apply_kernel(inner, x.dtype == "float64", True)
    kernel[grid, block, _layout.stream()](_flat(grad_out), _flat(x), nrows, ncols if inner else 1, nc, per_b,
                                          mean, alpha, beta, gamma, _flat(grad_x))


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
        a1 = f"{t}[::1]"
        fp64 = t == "float64"
        sigs += [
            (moments_inner(fp64, False), f"void({a1}, {i64}, {i64}, {i64}, {i64}, {i64}, {f64_3}, {f64_3})"),
            (moments_last(fp64, False), f"void({a1}, {i64}, {i64}, {i64}, {i64}, {f64_3}, {f64_3})"),
            (moments_inner(fp64, True),
             f"void({a1}, {a1}, {f64_2}, {i64}, {i64}, {i64}, {i64}, {i64}, {f64_3}, {f64_3})"),
            (moments_inner(fp64, False, True), f"void({a1}, {i64}, {i64}, {i64}, {i64}, {i64}, {f64_3}, {f64_3})"),
            (moments_inner(fp64, True, True),
             f"void({a1}, {a1}, {f64_2}, {i64}, {i64}, {i64}, {i64}, {i64}, {f64_3}, {f64_3})"),
            (moments_last(fp64, True), f"void({a1}, {a1}, {f64_2}, {i64}, {i64}, {i64}, {i64}, {f64_3}, {f64_3})"),
            (_group_stats, f"void({t}[:, :], {f64_3}, {f64_3}, {i64}, float64, {f64_2}, {f64_2}, {f64_2})"),
            (_grad_coefficients, f"void({f64_3}, {f64_3}, {a1}, {f64_2}, {i64}, boolean, "
                                 f"{f64_2}, {f64_2}, {f64_2}, {f64_2}, {f64_2})"),
            (_grad_params, f"void({f64_2}, {f64_2}, {f64_2}, {a1}, {a1})"),
        ]
    return sigs


PTX_SIGNATURES = _signatures()
