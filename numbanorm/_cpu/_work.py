"""Per-thread reusable work buffers (partial-sum rows, scratch rows) for the CPU kernels.

A fresh multi-megabyte NumPy array is mmap-ed memory: the kernel that fills it first
faults in (and the OS zeroes) every page, and whether glibc hands back recycled memory
instead depends on the allocation history of the process. Measured on the LayerNorm
backward of (8192, 4096) float32: its 7 MiB of partial and scratch rows cost 2 ms in one
process and 18 ms (1.5 × an ``np.copyto`` of the input) in another. Kernels therefore take
them from here: one buffer per (Python thread, name), grown when a call needs more and
reused by the next call, never handed to callers. Each Python thread has its own buffers
(threads may run kernels concurrently); buffers above :data:`KEEP_BYTES` are not kept.
"""
import math
import threading

import numpy as np

#: work buffers up to this size are kept for reuse by the calling thread
KEEP_BYTES = 64 << 20

#: work buffers below this size are fresh arrays: small allocations come from the heap
#: (no fresh pages to fault in), and ``np.empty`` takes ~0.25 us against ~1.5 us for the
#: lookup here, a tenth of a small fused call's overhead
SMALL_BYTES = 64 << 10

_LOCAL = threading.local()


def empty(name, shape, dtype):
    """An uninitialised C-contiguous ``shape``/``dtype`` array, reused by this thread's
    later calls with the same ``name`` (so its contents live until then only)."""
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > KEEP_BYTES or nbytes < SMALL_BYTES:
        return np.empty(shape, dtype)
    bufs = getattr(_LOCAL, "bufs", None)
    if bufs is None:
        bufs = _LOCAL.bufs = {}
    raw = bufs.get(name)
    if raw is None or raw.nbytes < nbytes:
        raw = bufs[name] = np.empty(max(nbytes, 64), np.uint8)
    return raw[:nbytes].view(dtype).reshape(shape)


def zeros(name, shape, dtype):
    """As :func:`empty`, filled with zeros."""
    if math.prod(shape) * np.dtype(dtype).itemsize < SMALL_BYTES:
        return np.zeros(shape, dtype)
    a = empty(name, shape, dtype)
    a.fill(0)
    return a
