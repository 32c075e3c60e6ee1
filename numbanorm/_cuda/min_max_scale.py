"""Min-max scaling CUDA kernels on the channels view (twin of ``numbanorm/_cpu/min_max_scale.py``).

Layout: ``x``/``out`` C-contiguous ``(O, C, I)`` device arrays of the compute dtype;
``mn``/``mx`` ``(C,)`` float64 device arrays.

:func:`extrema`, two stages like the moments of :mod:`numbanorm._cuda.standardize`:
per-(chunk, channel) partial NaN-ignoring min/max — one thread per (c, k) walking the
chunk's rows when I == 1 (coalesced across channels), one block per (c, k) with
``_reduce.block_min``/``block_max`` when I > 1 — then one thread per channel combines the
chunks. A channel without values gets ``mn > mx`` (+inf, −inf); the caller maps it to NaN.
Min/max are exact, so the result never depends on the launch. The transform pass is the
shared one of :mod:`numbanorm._cuda.standardize`.
"""
import math

from numba import cuda, float64

from . import _layout
from ._reduce import block_max, block_min
from .standardize import col_plan, seg_plan, transform  # noqa: F401  (transform: shared pass)


@cuda.jit
def _extrema_cols(x, nchunks, pmn, pmx):
    no, nc = x.shape
    for k in range(cuda.blockIdx.y, nchunks, cuda.gridDim.y):
        r0 = k * no // nchunks
        r1 = (k + 1) * no // nchunks
        for c in range(cuda.grid(1), nc, cuda.gridsize(1)):
            lo = math.inf
            hi = -math.inf
            for r in range(r0, r1):
                v = float64(x[r, c])
                if v < lo:  # NaN compares false: skipped
                    lo = v
                if v > hi:
                    hi = v
            pmn[k, c] = lo
            pmx[k, c] = hi


@cuda.jit
def _extrema_segs(x, nchunks, pmn, pmx):
    no, nc, ni = x.shape
    total = no * ni
    t = cuda.threadIdx.x
    nt = cuda.blockDim.x
    for item in range(cuda.blockIdx.x, nc * nchunks, cuda.gridDim.x):
        c = item // nchunks
        k = item % nchunks
        lo = math.inf
        hi = -math.inf
        for f in range(k * total // nchunks + t, (k + 1) * total // nchunks, nt):
            o = f // ni
            v = float64(x[o, c, f - o * ni])
            if v < lo:
                lo = v
            if v > hi:
                hi = v
        lo = block_min(lo)  # no NaN reaches the block reduction
        hi = block_max(hi)
        if t == 0:
            pmn[k, c] = lo
            pmx[k, c] = hi


@cuda.jit
def _combine(pmn, pmx, mn, mx):
    nk, nc = pmn.shape
    for c in range(cuda.grid(1), nc, cuda.gridsize(1)):
        lo = math.inf
        hi = -math.inf
        for k in range(nk):
            if pmn[k, c] < lo:
                lo = pmn[k, c]
            if pmx[k, c] > hi:
                hi = pmx[k, c]
        mn[c] = lo
        mx[c] = hi


def extrema(x, mn, mx):
    """Per-channel NaN-ignoring min and max of ``x`` (O, C, I) into float64 ``mn``, ``mx`` (C,)."""
    no, nc, ni = x.shape
    if nc == 0:
        return
    if ni == 1 and nc == 1:
        x = x.reshape(1, 1, no)
        no, ni = 1, no
    if ni == 1:
        k, grid, threads = col_plan(no, nc)
        pmn = _layout.scratch("mm.min", (k, nc), "float64")
        pmx = _layout.scratch("mm.max", (k, nc), "float64")
        _extrema_cols[grid, threads, _layout.stream()](x.reshape(no, nc), k, pmn, pmx)
    else:
        k, blocks, threads = seg_plan(no, nc, ni)
        pmn = _layout.scratch("mm.min", (k, nc), "float64")
        pmx = _layout.scratch("mm.max", (k, nc), "float64")
        _extrema_segs[blocks, threads, _layout.stream()](x, k, pmn, pmx)
    blocks, tpb = _layout.launch_1d(nc)
    _combine[blocks, tpb, _layout.stream()](pmn, pmx, mn, mx)


def _signatures():
    sigs = []
    f64m = "float64[:, ::1]"
    for t in ("float32", "float64"):
        sigs += [
            (_extrema_cols, f"void({t}[:, ::1], int64, {f64m}, {f64m})"),
            (_extrema_segs, f"void({t}[:, :, ::1], int64, {f64m}, {f64m})"),
        ]
    sigs.append((_combine, f"void({f64m}, {f64m}, float64[::1], float64[::1])"))
    return sigs


PTX_SIGNATURES = _signatures()
