"""Warp and block reductions for the CUDA kernels (``@cuda.jit(device=True)``).

Every reduction accumulates and returns **float64** (whatever the data dtype) and gives
*every* participating thread the same, bitwise identical result: warp reductions are
XOR butterflies (lane ``l`` adds the value of lane ``l ^ 16``, then ``l ^ 8`` ... ``l ^ 1``;
float addition is commutative, so all 32 lanes end with the same bits), block reductions
reduce each warp, store one value per warp in shared memory, and then every warp reduces
those values in warp order. The summation order depends only on the block shape, never
on scheduling: results are deterministic. No atomics anywhere.

Rules for callers
-----------------
* Blocks are 1-, 2- or 3-D with ``blockDim.x * blockDim.y * blockDim.z`` a multiple of 32
  and at most 1024 threads; warps are formed from the linear thread id
  ``threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z)`` (CUDA's rule).
* Call a warp reduction with all 32 lanes of the warp (lanes with no data pass 0.0, or
  the identity of the reduction); call a block reduction with every thread of the block.
  Put the call outside ``if`` branches that depend on the thread (compute the per-thread
  partial inside the branch, reduce after it). Loops around a reduction must have the same
  trip count for the whole block (e.g. ``for i in range(cuda.blockIdx.x, m,
  cuda.gridDim.x)``, or the warp-per-row pattern of ``layer_norm.py``).
* Block reductions end with ``cuda.syncthreads()``, so they can be called back to back.

Under the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``), which has no warp shuffles
(numba-cuda 0.30's simulator lacks ``shfl_*_sync`` and ``syncwarp``; checked), the public
names are bound to simulator twins: each reduction exchanges the values once through
shared memory (two ``syncthreads``: a simulated barrier costs milliseconds) and every
thread then replays the compiled version's butterfly in Python — the same operands in the
same order, so simulated and compiled kernels compute the same bits. ``shfl_xor`` itself
is emulated with shared memory too. This is why the block-uniform call rule above matters
in the simulator even for warp reductions (on a GPU, warp-uniform is enough). The
compiled (shuffle) versions are the ``_gpu_*`` functions, checked by tests/test_ptx.py.

API
---
``lane_id()``, ``warp_id()``, ``linear_tid()``, ``block_threads()``
    thread coordinates (int).
``shfl_xor(v, lanemask)``
    float64 value of lane ``lane ^ lanemask`` (``cuda.shfl_xor_sync`` with the full mask).
``warp_sum(v)``, ``warp_sum2(a, b)``, ``warp_max(v)``, ``warp_min(v)``
    reductions over the 32 lanes of the calling warp (float64; max/min propagate NaN).
``block_sum(v)``, ``block_sum2(a, b)``, ``block_max(v)``, ``block_min(v)``
    reductions over the whole block.
``sum_partials(part, out)``
    host launcher: ``out[j] = Σ_c part[c, j]`` summed in ``c`` order (the second,
    deterministic stage of per-block partial sums: ``part`` is a C-contiguous float64
    ``(chunks, N)`` device array (or float32: the per-team partials of the row kernels,
    still summed in float64), ``out`` any contiguous float ``(N,)`` device array).
"""
import math

import numpy as np
from numba import cuda, float64

from . import _layout

SIMULATOR = _layout.SIMULATOR

#: all 32 lanes
FULL_MASK = 0xFFFFFFFF
WARP_SIZE = 32
#: most threads a block may have (CUDA limit): sizes the per-warp shared buffers
MAX_WARPS = 32


@cuda.jit(device=True, inline="always")
def linear_tid():
    """Linear thread id inside the block (CUDA's warp numbering)."""
    return cuda.threadIdx.x + cuda.blockDim.x * (cuda.threadIdx.y + cuda.blockDim.y * cuda.threadIdx.z)


@cuda.jit(device=True, inline="always")
def block_threads():
    """Number of threads in the block."""
    return cuda.blockDim.x * cuda.blockDim.y * cuda.blockDim.z


@cuda.jit(device=True, inline="always")
def lane_id():
    """Lane of the calling thread inside its warp (0..31)."""
    return linear_tid() & 31


@cuda.jit(device=True, inline="always")
def warp_id():
    """Warp of the calling thread inside its block."""
    return linear_tid() >> 5


@cuda.jit(device=True, inline="always")
def _gpu_shfl_xor(v, lanemask):
    return cuda.shfl_xor_sync(FULL_MASK, float64(v), lanemask)


@cuda.jit(device=True, inline="always")
def _max(a, b):
    # NaN-propagating maximum: a NaN on either side wins
    if a >= b or a != a:
        return a
    return b


@cuda.jit(device=True, inline="always")
def _min(a, b):
    if a <= b or a != a:
        return a
    return b


# ---------------------------------------------------------------- compiled (shuffles)


@cuda.jit(device=True, inline="always")
def _gpu_warp_sum(v):
    s = float64(v)
    s += _gpu_shfl_xor(s, 16)
    s += _gpu_shfl_xor(s, 8)
    s += _gpu_shfl_xor(s, 4)
    s += _gpu_shfl_xor(s, 2)
    s += _gpu_shfl_xor(s, 1)
    return s


@cuda.jit(device=True, inline="always")
def _gpu_warp_sum2(a, b):
    s = float64(a)
    t = float64(b)
    s += _gpu_shfl_xor(s, 16)
    t += _gpu_shfl_xor(t, 16)
    s += _gpu_shfl_xor(s, 8)
    t += _gpu_shfl_xor(t, 8)
    s += _gpu_shfl_xor(s, 4)
    t += _gpu_shfl_xor(t, 4)
    s += _gpu_shfl_xor(s, 2)
    t += _gpu_shfl_xor(t, 2)
    s += _gpu_shfl_xor(s, 1)
    t += _gpu_shfl_xor(t, 1)
    return s, t


@cuda.jit(device=True, inline="always")
def _gpu_warp_max(v):
    s = float64(v)
    s = _max(s, _gpu_shfl_xor(s, 16))
    s = _max(s, _gpu_shfl_xor(s, 8))
    s = _max(s, _gpu_shfl_xor(s, 4))
    s = _max(s, _gpu_shfl_xor(s, 2))
    s = _max(s, _gpu_shfl_xor(s, 1))
    return s


@cuda.jit(device=True, inline="always")
def _gpu_warp_min(v):
    s = float64(v)
    s = _min(s, _gpu_shfl_xor(s, 16))
    s = _min(s, _gpu_shfl_xor(s, 8))
    s = _min(s, _gpu_shfl_xor(s, 4))
    s = _min(s, _gpu_shfl_xor(s, 2))
    s = _min(s, _gpu_shfl_xor(s, 1))
    return s


@cuda.jit(device=True, inline="always")
def _gpu_block_sum(v):
    buf = cuda.shared.array(MAX_WARPS, float64)
    t = linear_tid()
    lane = t & 31
    s = _gpu_warp_sum(v)
    if lane == 0:
        buf[t >> 5] = s
    cuda.syncthreads()
    s = 0.0
    if lane < (block_threads() + 31) >> 5:
        s = buf[lane]
    s = _gpu_warp_sum(s)
    cuda.syncthreads()  # buf may be reused by the next call
    return s


@cuda.jit(device=True, inline="always")
def _gpu_block_sum2(a, b):
    buf = cuda.shared.array((2, MAX_WARPS), float64)
    t = linear_tid()
    lane = t & 31
    s, u = _gpu_warp_sum2(a, b)
    if lane == 0:
        buf[0, t >> 5] = s
        buf[1, t >> 5] = u
    cuda.syncthreads()
    s = 0.0
    u = 0.0
    if lane < (block_threads() + 31) >> 5:
        s = buf[0, lane]
        u = buf[1, lane]
    s, u = _gpu_warp_sum2(s, u)
    cuda.syncthreads()
    return s, u


@cuda.jit(device=True, inline="always")
def _gpu_block_max(v):
    buf = cuda.shared.array(MAX_WARPS, float64)
    t = linear_tid()
    lane = t & 31
    s = _gpu_warp_max(v)
    if lane == 0:
        buf[t >> 5] = s
    cuda.syncthreads()
    s = -math.inf
    if lane < (block_threads() + 31) >> 5:
        s = buf[lane]
    s = _gpu_warp_max(s)
    cuda.syncthreads()
    return s


@cuda.jit(device=True, inline="always")
def _gpu_block_min(v):
    buf = cuda.shared.array(MAX_WARPS, float64)
    t = linear_tid()
    lane = t & 31
    s = _gpu_warp_min(v)
    if lane == 0:
        buf[t >> 5] = s
    cuda.syncthreads()
    s = math.inf
    if lane < (block_threads() + 31) >> 5:
        s = buf[lane]
    s = _gpu_warp_min(s)
    cuda.syncthreads()
    return s


# ---------------------------------------------------------------- simulator twins
# One shared-memory exchange per reduction (two block barriers; a simulated barrier
# costs milliseconds), then every thread replays the butterfly of the compiled version
# in plain Python: same operands, same order, same bits.

_SUM, _MAX, _MIN = 0, 1, 2


def _op(kind, a, b):
    if kind == _SUM:
        return a + b
    if kind == _MAX:
        return a if (a >= b or a != a) else b
    return a if (a <= b or a != a) else b


def _sim_tree(vals, kind):
    """Lane 0's result of the XOR butterfly over 32 values (= every lane's result)."""
    s = [np.float64(v) for v in vals]
    off = 16
    while off:
        for i in range(off):
            s[i] = _op(kind, s[i], s[i + off])
        off >>= 1
    return s[0]


def _sim_block_tree(vals, nthreads, kind, identity):
    """Result of the compiled block reduction: warp butterflies, then one over the warps."""
    nw = (nthreads + 31) >> 5
    warps = [_sim_tree(vals[w * 32:(w + 1) * 32], kind) for w in range(nw)]
    return _sim_tree(warps + [np.float64(identity)] * (32 - nw), kind)


@cuda.jit(device=True, inline="always")
def _sim_shfl_xor(v, lanemask):
    buf = cuda.shared.array(1024, float64)
    t = linear_tid()
    buf[t] = v
    cuda.syncthreads()
    r = buf[t ^ lanemask]
    cuda.syncthreads()
    return r


@cuda.jit(device=True, inline="always")
def _sim_warp(v, kind):
    buf = cuda.shared.array(1024, float64)
    t = linear_tid()
    buf[t] = v
    cuda.syncthreads()
    w = t & ~31
    r = _sim_tree(buf[w:w + 32], kind)
    cuda.syncthreads()
    return r


@cuda.jit(device=True, inline="always")
def _sim_warp2(a, b):
    buf = cuda.shared.array((2, 1024), float64)
    t = linear_tid()
    buf[0, t] = a
    buf[1, t] = b
    cuda.syncthreads()
    w = t & ~31
    r = _sim_tree(buf[0, w:w + 32], _SUM), _sim_tree(buf[1, w:w + 32], _SUM)
    cuda.syncthreads()
    return r


@cuda.jit(device=True, inline="always")
def _sim_block(v, kind, identity):
    buf = cuda.shared.array(1024, float64)
    t = linear_tid()
    nt = block_threads()
    buf[t] = v
    cuda.syncthreads()
    r = _sim_block_tree(list(buf[:nt]), nt, kind, identity)
    cuda.syncthreads()
    return r


@cuda.jit(device=True, inline="always")
def _sim_block2(a, b):
    buf = cuda.shared.array((2, 1024), float64)
    t = linear_tid()
    nt = block_threads()
    buf[0, t] = a
    buf[1, t] = b
    cuda.syncthreads()
    r = (_sim_block_tree(list(buf[0, :nt]), nt, _SUM, 0.0),
         _sim_block_tree(list(buf[1, :nt]), nt, _SUM, 0.0))
    cuda.syncthreads()
    return r


def _bind_simulator():
    def warp_sum(v):
        return _sim_warp(v, _SUM)

    def warp_max(v):
        return _sim_warp(v, _MAX)

    def warp_min(v):
        return _sim_warp(v, _MIN)

    def block_sum(v):
        return _sim_block(v, _SUM, 0.0)

    def block_max(v):
        return _sim_block(v, _MAX, -math.inf)

    def block_min(v):
        return _sim_block(v, _MIN, math.inf)

    return (_sim_shfl_xor, warp_sum, _sim_warp2, warp_max, warp_min,
            block_sum, _sim_block2, block_max, block_min)


if SIMULATOR:
    (shfl_xor, warp_sum, warp_sum2, warp_max, warp_min,
     block_sum, block_sum2, block_max, block_min) = _bind_simulator()
else:
    shfl_xor = _gpu_shfl_xor
    warp_sum = _gpu_warp_sum
    warp_sum2 = _gpu_warp_sum2
    warp_max = _gpu_warp_max
    warp_min = _gpu_warp_min
    block_sum = _gpu_block_sum
    block_sum2 = _gpu_block_sum2
    block_max = _gpu_block_max
    block_min = _gpu_block_min


@cuda.jit
def _sum_partials(part, out):
    """out[j] = Σ_c part[c, j] in chunk order; one thread per column, grid-stride."""
    nchunks, n = part.shape
    for j in range(cuda.grid(1), n, cuda.gridsize(1)):
        s = float64(0.0)
        for c in range(nchunks):
            s += part[c, j]
        out[j] = s


def sum_partials(part, out):
    """``out[j] = Σ_c part[c, j]`` for a float64 ``(chunks, N)`` partial buffer (fixed order)."""
    n = part.shape[1]
    if n == 0:
        return
    blocks, tpb = _layout.launch_1d(n)
    _sum_partials[blocks, tpb, _layout.stream()](part, out)


@cuda.jit
def _check_reductions(x, out):
    """Self-check kernel (tests, PTX check of the shuffle code): block ``b``, thread ``t``
    holds ``x[b, t]`` and writes every reduction's result to ``out[b, t, :]``."""
    b = cuda.blockIdx.x
    t = linear_tid()
    v = x[b, t]
    out[b, t, 0] = warp_sum(v)
    s, u = warp_sum2(v, -v)
    out[b, t, 1] = s
    out[b, t, 2] = u
    out[b, t, 3] = warp_max(v)
    out[b, t, 4] = warp_min(v)
    out[b, t, 5] = block_sum(v)
    s, u = block_sum2(v, v * v)
    out[b, t, 6] = s
    out[b, t, 7] = u
    out[b, t, 8] = block_max(v)
    out[b, t, 9] = block_min(v)
    out[b, t, 10] = shfl_xor(v, 5)
    out[b, t, 11] = lane_id() + 100 * warp_id()


PTX_SIGNATURES = [
    (_sum_partials, "void(float64[:, ::1], float32[::1])"),
    (_sum_partials, "void(float32[:, ::1], float32[::1])"),
    (_sum_partials, "void(float64[:, ::1], float64[::1])"),
    (_check_reductions, "void(float32[:, ::1], float64[:, :, ::1])"),
    (_check_reductions, "void(float64[:, ::1], float64[:, :, ::1])"),
]
