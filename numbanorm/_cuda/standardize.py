"""Standardization CUDA kernels on the channels view, plus the shared scaling transform
(twin of ``numbanorm/_cpu/standardize.py``: same entry points and signatures).

Layout: ``x``/``out`` are C-contiguous ``(O, C, I)`` device arrays of the compute dtype;
statistics per channel ``c`` over ``x[:, c, :]``; results and transform parameters are
``(C,)`` float64 device arrays; ``weight`` is None or an ``(O,)`` float64 device array.

Statistics (:func:`moments`), deterministic two-stage:

1. I > 1: ``_first_valid``: one thread per channel finds its first finite value, the
   shift K (values are accumulated as x − K, so block means are of the order of the
   spread). I == 1: each chunk's thread shifts by its own first finite value instead
   (found in the partials kernel; the partial means are stored absolute, K = 0).
2. Partials per (chunk ``k``, channel ``c``) work item, (count, mean, M2) in float64:

   - I == 1 (features in the fast dimension): one *thread* per (c, k) — threads of a block
     are consecutive channels, so every row load is coalesced — walking the chunk's rows
     in blocks of ``ROW_BLOCK`` rows: two passes over each block (the second hits L1/L2),
     corrected two-pass moments, merged into the thread's running (n, mean, M2) with
     Chan et al.'s update.
   - I > 1: one *block* per (c, k), threads striding over the chunk's flat (o, i) range
     (coalesced along I); two passes over the chunk with ``_reduce.block_sum2``.

   The number of chunks depends on the shape and ``_layout``'s ``partial_blocks``
   setting only (never on the GPU model), so results are reproducible.
3. ``_merge``: one thread per channel merges its chunks in chunk order (Chan), adds K.

Transform (:func:`transform`): y = ((x − sub[c]) · mul[c]) / div[c] + add[c] in float64,
optionally clipped (NaN stays NaN), stored in the data dtype. 2-D kernels, so a thread
loads a channel's parameters once, not per element: ``_transform_cols`` (I == 1: a thread
per column striding over rows) and ``_transform_rows`` (I > 1: a row of I elements per
channel), flat unsigned indices from row offsets (no per-element ``//``/``%``).
No atomics anywhere.
"""
import functools
import math

from numba import cuda, float64, int64, uint64

from . import _layout
from ._reduce import block_sum, block_sum2

#: rows per two-pass block of the (I == 1) per-thread statistics kernels.
ROW_BLOCK = 32


# --------------------------------------------------------------------------- helpers


@cuda.jit(device=True, inline="always")
def _chan(na, ma, qa, nb, mb, qb):
    """Merge (count, mean, M2) of two disjoint sets (Chan, Golub & LeVeque)."""
    if nb == 0.0:
        return na, ma, qa
    if na == 0.0:
        return nb, mb, qb
    n = na + nb
    d = mb - ma
    f = nb / n
    return n, ma + d * f, qa + qb + d * d * (na * f)


@cuda.jit
def _first_valid(x, shift):
    """shift[c] = first finite value of channel c (0 when none)."""
    no, nc, ni = x.shape
    for c in range(cuda.grid(1), nc, cuda.gridsize(1)):
        s = float64(0.0)
        found = False
        for o in range(no):
            for i in range(ni):
                v = float64(x[o, c, i])
                if v == v and abs(v) != math.inf:
                    s = v
                    found = True
                    break
            if found:
                break
        shift[c] = s


@cuda.jit
def _moments_cols(x, w, use_w, nchunks, pc, pm, pq):
    """Partials of (O, C) data: thread (c, k) owns channel c, rows of chunk k. Its shift
    is the chunk's own first finite value of the channel (usually the first row read: no
    separate pass, no one-thread-per-channel kernel); the stored mean is absolute."""
    no, nc = x.shape
    for k in range(cuda.blockIdx.y, nchunks, cuda.gridDim.y):
        r0 = k * no // nchunks
        r1 = (k + 1) * no // nchunks
        for c in range(cuda.grid(1), nc, cuda.gridsize(1)):
            sh = float64(0.0)
            for r in range(r0, r1):
                v = float64(x[r, c])
                if v == v and abs(v) != math.inf:
                    sh = v
                    break
            n = float64(0.0)
            m = float64(0.0)
            q = float64(0.0)
            for b0 in range(r0, r1, ROW_BLOCK):
                b1 = min(r1, b0 + ROW_BLOCK)
                s = float64(0.0)
                nb = float64(0.0)
                for r in range(b0, b1):
                    v = float64(x[r, c]) - sh
                    if v == v:
                        wr = w[r] if use_w else float64(1.0)
                        s += wr * v
                        nb += wr
                if nb != 0.0:
                    mb = s / nb
                    sd = float64(0.0)
                    sq = float64(0.0)
                    for r in range(b0, b1):
                        v = float64(x[r, c]) - sh
                        if v == v:
                            wr = w[r] if use_w else float64(1.0)
                            d = v - mb
                            sd += wr * d
                            sq += wr * d * d
                    n, m, q = _chan(n, m, q, nb, mb + sd / nb, sq - sd * (sd / nb))
            pc[k, c] = n
            pm[k, c] = sh + m if n != 0.0 else m
            pq[k, c] = q


@cuda.jit
def _moments_segs(x, shift, w, use_w, nchunks, pc, pm, pq):
    """Partials of (O, C, I) data: block per (c, k) over chunk k of channel c's O·I values."""
    no, nc, ni = x.shape
    total = no * ni
    t = cuda.threadIdx.x
    nt = cuda.blockDim.x
    for item in range(cuda.blockIdx.x, nc * nchunks, cuda.gridDim.x):
        c = item // nchunks
        k = item % nchunks
        sh = shift[c]
        start = k * total // nchunks
        stop = (k + 1) * total // nchunks
        s = float64(0.0)
        cnt = float64(0.0)
        for f in range(start + t, stop, nt):
            o = f // ni
            v = float64(x[o, c, f - o * ni]) - sh
            if v == v:
                wo = w[o] if use_w else float64(1.0)
                s += wo * v
                cnt += wo
        s, cnt = block_sum2(s, cnt)
        mb = s / cnt if cnt != 0.0 else float64(0.0)
        sd = float64(0.0)
        sq = float64(0.0)
        for f in range(start + t, stop, nt):
            o = f // ni
            v = float64(x[o, c, f - o * ni]) - sh
            if v == v:
                wo = w[o] if use_w else float64(1.0)
                d = v - mb
                sd += wo * d
                sq += wo * d * d
        sd, sq = block_sum2(sd, sq)
        if t == 0:
            pc[k, c] = cnt
            if cnt != 0.0:
                pm[k, c] = mb + sd / cnt
                pq[k, c] = sq - sd * (sd / cnt)
            else:
                pm[k, c] = 0.0
                pq[k, c] = 0.0


@cuda.jit
def _merge(pc, pm, pq, shift, count, mean, m2):
    """Merge the (K, C) partials in chunk order; channels without values get NaN."""
    nk, nc = pc.shape
    for c in range(cuda.grid(1), nc, cuda.gridsize(1)):
        n = float64(0.0)
        m = float64(0.0)
        q = float64(0.0)
        for k in range(nk):
            n, m, q = _chan(n, m, q, pc[k, c], pm[k, c], pq[k, c])
        count[c] = n
        if n > 0.0:
            mean[c] = shift[c] + m
            m2[c] = q
        else:
            mean[c] = math.nan
            m2[c] = math.nan


def _named(fn, name):
    fn.__name__ = fn.__qualname__ = name
    return cuda.jit(fn)


@functools.lru_cache(maxsize=None)
def transform_kernel(cols, use_div, clip):
    """The transform kernel for one layout and option set (compile-time constants, so
    each kernel has one loop without the options' branches):

    ``cols=True``: ``_transform_cols*``, the (R, C) view with the channel the column (I ==
    1): thread column ``j`` loads its parameters once and strides over the rows.
    ``cols=False``: ``_transform_rows*``, the (O·C, I) view: row ``r`` is channel ``r % C``
    (one division per row, parameters loaded once per row), ``blockDim.x`` threads stride
    over its I elements. Flat unsigned indices from the row offsets in both.
    ``use_div=False`` (``_div`` absent from the name): ``div`` is all ones and skipped
    (dividing by 1.0 changes no bit). ``clip``: clipped to [lo, hi], NaN stays NaN.
    """

    def scale1(v, s, m, d, a, lo, hi):
        y = (float64(v) - s) * m
        if use_div:
            y = y / d
        y = y + a
        if clip:
            if y < lo:
                y = lo
            if y > hi:
                y = hi
        return y

    scale1 = cuda.jit(device=True, inline="always")(scale1)

    def transform_cols(x, nrows, ncols, sub, mul, div, add, lo, hi, out):
        j = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        if j >= ncols:
            return
        s = sub[j]
        m = mul[j]
        d = div[j]
        a = add[j]
        nc = uint64(ncols)
        step = uint64(cuda.gridDim.y * cuda.blockDim.y) * nc
        end = uint64(nrows) * nc
        k = uint64(cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y) * nc + uint64(j)
        while k < end:
            out[k] = scale1(x[k], s, m, d, a, lo, hi)
            k += step

    def transform_rows(x, nrows, ni, nc, sub, mul, div, add, lo, hi, out):
        ty = cuda.blockDim.y
        for r in range(cuda.blockIdx.x * ty + cuda.threadIdx.y, nrows, cuda.gridDim.x * ty):
            c = uint64(r) % uint64(nc)
            s = sub[c]
            m = mul[c]
            d = div[c]
            a = add[c]
            base = uint64(r) * uint64(ni)
            for j in range(cuda.threadIdx.x, ni, cuda.blockDim.x):
                k = base + uint64(j)
                out[k] = scale1(x[k], s, m, d, a, lo, hi)

    name = f"_transform_{'cols' if cols else 'rows'}{'_div' if use_div else ''}{'_clip' if clip else ''}"
    return _named(transform_cols if cols else transform_rows, name)


@cuda.jit
def _count_inf(x, part):
    """part[block] = number of ±inf values the block's threads saw (grid-stride)."""
    s = float64(0.0)
    for f in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        if abs(float64(x[f])) == math.inf:
            s += 1.0
    s = block_sum(s)
    if cuda.threadIdx.x == 0:
        part[cuda.blockIdx.x] = int64(s)


# --------------------------------------------------------------------------- planning


def col_plan(no, nc):
    """(chunks, blocks, threads) of the (I == 1) per-thread kernels: ~partial_blocks·threads
    threads in all, each chunk at least ``ROW_BLOCK`` rows."""
    s = _layout.settings()
    tpb = s["threads_per_block"]
    threads = min(tpb, 32 * -(-nc // 32))
    col_blocks = -(-nc // threads)
    target = max(1, (s["partial_blocks"] * tpb) // max(nc, 1))
    k = max(1, min(target, -(-no // ROW_BLOCK)))
    return k, (min(col_blocks, s["max_blocks"]), min(k, 65535)), threads


def seg_plan(no, nc, ni):
    """(chunks, blocks, threads) of the (I > 1) per-block kernels."""
    s = _layout.settings()
    tpb = s["threads_per_block"]
    k = max(1, min(-(-s["partial_blocks"] // max(nc, 1)), (no * ni) // (4 * tpb)))
    return k, max(1, min(nc * k, s["max_blocks"])), tpb


_NO_WEIGHT = None


def _no_weight():
    global _NO_WEIGHT
    if _NO_WEIGHT is None:
        _NO_WEIGHT = _layout.ones(1, "float64")
    return _NO_WEIGHT


# --------------------------------------------------------------------------- launchers


def moments(x, weight, count, mean, m2):
    """Per-channel (count, mean, M2) of the non-NaN values of ``x`` (O, C, I) (device arrays).

    ``weight``: None or an (O,) float64 device array. Channels without values get count 0
    and NaN mean/M2.
    """
    no, nc, ni = x.shape
    if nc == 0:
        return
    if ni == 1 and nc == 1 and weight is None:
        x = x.reshape(1, 1, no)
        no, ni = 1, no
    blocks, tpb = _layout.launch_1d(nc)
    use_w = weight is not None
    w = weight if use_w else _no_weight()
    if ni == 1:  # per-chunk shifts inside the partials kernel: absolute chunk means
        k, grid, threads = col_plan(no, nc)
        parts = [_layout.scratch(f"st.part{i}", (k, nc), "float64") for i in range(3)]
        _moments_cols[grid, threads, _layout.stream()](x.reshape(no, nc), w, use_w, k, *parts)
        shift = _layout.zeros(nc, "float64")
    else:
        shift = _layout.scratch("st.shift", (nc,), "float64")
        _first_valid[blocks, tpb, _layout.stream()](x, shift)
        k, blocks_s, threads = seg_plan(no, nc, ni)
        parts = [_layout.scratch(f"st.part{i}", (k, nc), "float64") for i in range(3)]
        _moments_segs[blocks_s, threads, _layout.stream()](x, shift, w, use_w, k, *parts)
    _merge[blocks, tpb, _layout.stream()](*parts, shift, count, mean, m2)


def _block_2d(ncols):
    """(tx, ty) threads: whole warps along ``ncols`` (up to the block size), rows in y."""
    tpb = _layout.threads_per_block()
    tx = min(tpb, 32 * -(-ncols // 32))
    while tpb % tx:
        tx -= 32
    return tx, tpb // tx


def transform(x, sub, mul, div, add, lo, hi, clip, out):
    """out[o, c, i] = ((x − sub[c]) · mul[c]) / div[c] + add[c], clipped to [lo, hi] if ``clip``.

    ``div`` being the cached ones constant (``_layout.ones``, as ``min_max_scale`` passes
    it) skips the division (dividing by 1.0 changes no bit)."""
    no, nc, ni = x.shape
    size = no * nc * ni
    if size == 0:
        return
    use_div = not _layout.is_ones(div)
    args = (sub, mul, div, add, float(lo), float(hi), out.reshape(size))
    mb = _layout.settings()["max_blocks"]
    if ni == 1:
        tx, ty = _block_2d(nc)
        gx = -(-nc // tx)
        gy = max(1, min(-(-no // ty), max(1, mb // gx), 65535))
        k = transform_kernel(True, use_div, bool(clip))
        k[(gx, gy), (tx, ty), _layout.stream()](x.reshape(size), no, nc, *args)
        return
    tx, ty = _block_2d(ni)
    rows = no * nc
    k = transform_kernel(False, use_div, bool(clip))
    k[max(1, min(-(-rows // ty), mb)), (tx, ty), _layout.stream()](x.reshape(size), rows, ni, nc, *args)


def count_inf(x):
    """Number of +inf/-inf values in the contiguous device array ``x``."""
    size = x.size
    if size == 0:
        return 0
    blocks, tpb = _layout.launch_1d(size)
    part = _layout.scratch("st.inf", (blocks,), "int64")
    _count_inf[blocks, tpb, _layout.stream()](x.reshape(size), part)
    return int(part.copy_to_host().sum())


def _signatures():
    sigs = []
    f64v = "float64[::1]"
    f64m = "float64[:, ::1]"
    for t in ("float32", "float64"):
        a3 = f"{t}[:, :, ::1]"
        a2 = f"{t}[:, ::1]"
        a1 = f"{t}[::1]"
        sigs += [
            (_first_valid, f"void({a3}, {f64v})"),
            (_moments_cols, f"void({a2}, {f64v}, boolean, int64, {f64m}, {f64m}, {f64m})"),
            (_moments_segs, f"void({a3}, {f64v}, {f64v}, boolean, int64, {f64m}, {f64m}, {f64m})"),
            (_count_inf, f"void({a1}, int64[::1])"),
        ]
        for use_div in (False, True):
            for clip in (False, True):
                sigs += [
                    (transform_kernel(True, use_div, clip),
                     f"void({a1}, int64, int64, {f64v}, {f64v}, {f64v}, {f64v}, float64, float64, {a1})"),
                    (transform_kernel(False, use_div, clip),
                     f"void({a1}, int64, int64, int64, {f64v}, {f64v}, {f64v}, {f64v}, float64, float64, {a1})"),
                ]
    sigs.append((_merge, f"void({f64m}, {f64m}, {f64m}, {f64v}, {f64v}, {f64v}, {f64v})"))
    return sigs


PTX_SIGNATURES = _signatures()
