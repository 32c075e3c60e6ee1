"""A small pool of recycled buffers for large fresh CPU outputs.

A fresh multi-megabyte NumPy array is newly mapped memory: the kernel writing it first
faults in (and the OS zeroes) every page, which on (8192, 4096) float32 costs about as much
as the normalization itself. onnxruntime's and CuPy's allocators recycle their buffers;
this pool does the same for outputs returned to the caller (no ``out=``):

* it keeps raw ``uint8`` buffers of at least :data:`MIN_BYTES` and hands out views of them
  (the view's ``base`` is the raw buffer);
* a buffer is handed out again only when ``sys.getrefcount`` shows that nothing but the
  pool holds it: every NumPy view, ``memoryview``, ``torch.from_numpy`` tensor or DLPack
  capsule of a result keeps its base alive, so a result the caller still holds in any
  form is never reused. (Raw addresses taken out of Python — ``a.ctypes.data`` kept past
  the array's life — were use-after-free with ``np.empty`` too.)
* at most :data:`MAX_BUFFERS` buffers and ``NUMBANORM_OUTPUT_POOL`` bytes (default
  :data:`DEFAULT_BYTES`; ``0`` disables the pool) are kept, idle buffers evicted first;
  past the cap an output is a plain ``np.empty`` array. One lock makes it thread-safe.
"""
import math
import os
import sys
import threading

import numpy as np

#: outputs smaller than this come from np.empty (glibc recycles small heap blocks itself)
MIN_BYTES = 4 << 20

#: default cap of the bytes the pool keeps (NUMBANORM_OUTPUT_POOL overrides; 0 disables)
DEFAULT_BYTES = 1 << 30

#: the most buffers kept
MAX_BUFFERS = 8

MAX_BYTES = int(os.environ.get("NUMBANORM_OUTPUT_POOL", DEFAULT_BYTES))

_LOCK = threading.Lock()
_BUFS = []


def _baseline():
    """``sys.getrefcount`` of a buffer only the pool's list holds, read as :func:`empty` does."""
    probe = [np.empty(1, np.uint8)]
    for raw in probe:
        return sys.getrefcount(raw)


_IDLE = _baseline()


def _evict(nbytes):
    """Drop idle buffers (oldest first) until ``nbytes`` more fit; whether they do."""
    total = sum(r.nbytes for r in _BUFS)
    count = len(_BUFS)
    keep = []
    for raw in _BUFS:  # the reference pattern of _baseline
        if (total + nbytes > MAX_BYTES or count >= MAX_BUFFERS) and sys.getrefcount(raw) <= _IDLE:
            total -= raw.nbytes
            count -= 1
        else:
            keep.append(raw)
    _BUFS[:] = keep
    return total + nbytes <= MAX_BYTES and count < MAX_BUFFERS


def empty(shape, dtype):
    """An uninitialised C-contiguous array of ``shape``/``dtype``: a view of an idle pooled
    buffer of the same size (within 25 %) when there is one, else a new buffer (pooled
    while under the caps)."""
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes < MIN_BYTES or MAX_BYTES <= 0:
        return np.empty(shape, dtype)
    with _LOCK:
        found = None
        for raw in _BUFS:
            if nbytes <= raw.nbytes <= nbytes + nbytes // 4 and sys.getrefcount(raw) <= _IDLE:
                found = raw
                break
        if found is None:
            if not _evict(nbytes):
                return np.empty(shape, dtype)
            found = np.empty(nbytes, np.uint8)
            _BUFS.append(found)
        return found[:nbytes].view(dtype).reshape(shape)


def empty_like(a):
    """:func:`empty` of ``a``'s shape and dtype."""
    return empty(a.shape, a.dtype)


def clear():
    """Forget every pooled buffer (results still held stay valid: they keep theirs)."""
    with _LOCK:
        _BUFS.clear()
