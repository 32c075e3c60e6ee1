"""The machine's streaming copy: the second copy-bandwidth denominator of ``numbanorm bench``.

``np.copyto`` is one thread of glibc's memcpy: on some machines (the 2-core AMD one of
issue 11: ~12 GB/s) that is far below what all cores with non-temporal stores move
(26-34 GB/s there), so "× copyto" alone flatters a parallel kernel. :func:`stream_copy`
copies with every Numba thread, each a contiguous chunk written with the streaming
(``!nontemporal``) stores of :mod:`numbanorm._cpu._stream` — the fastest a kernel that reads
``x`` once and writes an output of its size can be. The bench reports both copies and
divides by the faster.
"""
import numba
import numpy as np
from numba import njit, prange

from .._cpu._stream import stream_scale

#: chunk boundaries are multiples of this many elements (whole pages: threads never share
#: a cache line or a page of the output)
ALIGN = 1024


@njit(parallel=True, cache=True)
def _copy_chunks(dst, src, nch):
    n = src.shape[0]
    one = src.dtype.type(1.0)
    for c in prange(nch):
        a = (c * n // nch) // ALIGN * ALIGN
        b = n if c == nch - 1 else ((c + 1) * n // nch) // ALIGN * ALIGN
        if b > a:
            stream_scale(dst, a, src, a, one, b - a)


def _flat(a):
    """The 1-D view of a C-contiguous float32/float64 ``a``, or None (other dtypes' bit
    patterns could be signalling NaNs as floats, which x · 1.0 would change)."""
    if not a.flags.c_contiguous or a.dtype not in (np.float32, np.float64):
        return None
    return a.reshape(-1)


def stream_copy(dst, src):
    """Copy ``src`` into ``dst`` (same shape and dtype, C-contiguous) with all Numba
    threads and streaming stores (x · 1.0 in the data's float type: the same bits for
    every finite or infinite value; only signalling NaN payloads would be quietened).
    Falls back to ``np.copyto`` for other dtypes and non-contiguous arrays."""
    d, s = _flat(dst), _flat(src)
    if d is None or s is None or d.dtype != s.dtype or d.shape != s.shape:
        np.copyto(dst, src)
        return
    _copy_chunks(d, s, max(1, numba.get_num_threads()))
