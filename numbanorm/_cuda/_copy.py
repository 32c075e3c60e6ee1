"""The strided copy kernels behind ``_layout.copyto`` / ``ascontiguous`` (and their host side).

Layout and thread mapping: every array is passed as a flat, contiguous 1-D element view of
its memory extent plus an element offset and per-dimension element strides
(:func:`_flat_view`); dims contiguous in both arrays are merged first (:func:`_coalesce`).
One thread per output element, grid-stride over the flat C-order index ``k`` of the
shape, which is split into per-dimension indices with unsigned division.

``copy_device(dst, src)``
    ``dst[...] = src`` for two device arrays of one shape (dtype cast, any strides,
    bfloat16 bits in and out); ``_layout.copyto`` converts its arguments and calls it.
``copy_kernel(nd)``
    the strided copy kernel (one kernel for every ndim; ``nd`` is ignored).

``_layout`` imports this module (never the reverse) and re-exports ``copy_kernel`` and
the helpers its own code uses.
"""
import math

import numpy as np
from numba import cuda, float32, int64, uint64

from . import _host
from ._bf16 import bf16_bits, bf16_value
from ._launch import SIMULATOR, launch_1d

if not SIMULATOR:
    from numba.cuda.cudadrv.devicearray import DeviceNDArray

# --------------------------------------------------------------------------- kernels


@cuda.jit(device=True, inline="always")
def _strided_pair(k, dst_off, dst_strides, src_off, src_strides, shape):
    """Flat output index ``k`` (C order over ``shape``) → the unsigned element indices
    ``dst_off + sum(i_d * dst_strides[d])`` and the same for ``src`` (see
    :func:`_copy_strided`)."""
    nd = len(shape)
    r = uint64(k)
    di = dst_off
    si = src_off
    for j in range(nd - 1):
        d = nd - 1 - j
        n = uint64(shape[d])
        q = r // n
        i = int64(r - q * n)
        r = q
        di += i * dst_strides[d]
        si += i * src_strides[d]
    i = int64(r)
    di += i * dst_strides[0]
    si += i * src_strides[0]
    return uint64(di), uint64(si)


@cuda.jit(device=True, inline="always")
def _size(shape):
    size = 1
    for d in range(len(shape)):
        size *= shape[d]
    return size


@cuda.jit
def _copy_strided(dst, dst_off, dst_strides, src, src_off, src_strides, shape):
    """``dst[...] = src`` over flat 1-D element views (any ndim, no generated code).

    ``shape``, ``dst_strides`` and ``src_strides`` are UniTuples of one length ``nd`` (Numba
    compiles one specialisation per length; ``len(shape)`` is a compile-time constant, so
    the dimension loop unrolls and the tuples stay in registers). Flat output index ``k``
    (C order over ``shape``) → element ``dst_off + sum(i_d * dst_strides[d])`` of ``dst`` and
    the same for ``src``; strides are in elements and may be negative or zero. The flat
    index is split with unsigned division (no floor-division sign fixes) and the final,
    non-negative element indices are unsigned (no negative-index wraparound). The dtype
    cast happens on assignment. Grid-stride loop over ``k``.
    """
    for k in range(cuda.grid(1), _size(shape), cuda.gridsize(1)):
        di, si = _strided_pair(k, dst_off, dst_strides, src_off, src_strides, shape)
        dst[di] = src[si]


@cuda.jit
def _copy_from_bf16(dst, dst_off, dst_strides, src, src_off, src_strides, shape):
    """:func:`_copy_strided` from bfloat16 bits (``src`` ``uint16``) into a float ``dst``."""
    for k in range(cuda.grid(1), _size(shape), cuda.gridsize(1)):
        di, si = _strided_pair(k, dst_off, dst_strides, src_off, src_strides, shape)
        dst[di] = bf16_value(src[si])


@cuda.jit
def _copy_to_bf16(dst, dst_off, dst_strides, src, src_off, src_strides, shape):
    """:func:`_copy_strided` from a float ``src`` into bfloat16 bits (``dst`` ``uint16``;
    float32 rounded once to nearest even, float64 via float32 as ``ml_dtypes`` casts)."""
    for k in range(cuda.grid(1), _size(shape), cuda.gridsize(1)):
        di, si = _strided_pair(k, dst_off, dst_strides, src_off, src_strides, shape)
        dst[di] = bf16_bits(float32(src[si]))


def copy_kernel(nd=None):
    """The strided copy kernel (one kernel for every ndim; ``nd`` is accepted and ignored).

    Call it as ``k[blocks, threads](dst_flat, dst_off, dst_strides, src_flat, src_off,
    src_strides, shape)``; :func:`copyto` builds the arguments (see :func:`_flat_view`).
    """
    return _copy_strided


def _copy_signatures():
    sigs = []
    pairs = [
        ("float32", "float32", (1, 2, 3, 4, 5)),
        ("float64", "float64", (1, 2, 3)),
        ("float32", "float64", (1, 2, 3)),
        ("float64", "float32", (1, 2, 3)),
        ("float32", "float16", (1, 3)),
        ("float16", "float32", (1,)),
        ("float64", "int64", (1, 3)),
        ("float64", "bool", (1,)),
        ("complex128", "float64", (1,)),
    ]
    for d, s, nds in pairs:
        for nd in nds:
            t = f"UniTuple(int64, {nd})"
            sigs.append((_copy_strided, f"void({d}[::1], int64, {t}, {s}[::1], int64, {t}, {t})"))
    for nd in (1, 3):  # bfloat16 bits in and out of the float32-copy paths
        t = f"UniTuple(int64, {nd})"
        sigs.append((_copy_from_bf16, f"void(float32[::1], int64, {t}, uint16[::1], int64, {t}, {t})"))
        sigs.append((_copy_to_bf16, f"void(uint16[::1], int64, {t}, float32[::1], int64, {t}, {t})"))
    return sigs


PTX_SIGNATURES = _copy_signatures()


# --------------------------------------------------------------------------- host side


def is_bfloat16(dtype):
    """``ml_dtypes.bfloat16`` (a NumPy "V2" dtype Numba cannot type: kernels take its bits)."""
    return dtype.kind == "V" and dtype.name == "bfloat16"



def _extent(shape, strides, itemsize):
    """Byte range [lo, hi) relative to element 0 that a (non-empty) strided array touches."""
    lo = sum(min(0, (n - 1) * s) for n, s in zip(shape, strides))
    hi = sum(max(0, (n - 1) * s) for n, s in zip(shape, strides)) + itemsize
    return lo, hi



def _coalesce(shape, s1, s2):
    """Drop size-1 dims and merge dims that are contiguous in both stride sets."""
    dims = [(n, a, b) for n, a, b in zip(shape, s1, s2) if n != 1]
    if not dims:
        return (1,), (0,), (0,)
    out = [dims[-1]]
    for n, a, b in reversed(dims[:-1]):
        nn, aa, bb = out[-1]
        if a == aa * nn and b == bb * nn:
            out[-1] = (n * nn, aa, bb)
        else:
            out.append((n, a, b))
    out.reverse()
    return tuple(d[0] for d in out), tuple(d[1] for d in out), tuple(d[2] for d in out)


def _flat_view(a, shape, strides):
    """``a``'s memory as a contiguous 1-D element view plus indexing data.

    ``shape``/``strides`` (bytes) describe a non-empty strided array whose element 0 is
    ``a``'s element 0. Returns ``(flat, off, element_strides)`` with element
    ``(i0, i1, ...)`` at ``flat[off + sum(i_d * element_strides[d])]``; ``flat`` covers
    exactly the memory extent (negative and zero strides included).
    """
    itemsize = a.dtype.itemsize
    if any(st % itemsize for st in strides):
        raise ValueError(
            f"copyto(): strides {tuple(strides)} are not multiples of the item size {itemsize} "
            "(misaligned elements cannot be accessed by a kernel)"
        )
    lo, hi = _extent(shape, strides, itemsize)
    count = (hi - lo) // itemsize
    if SIMULATOR:
        h = a._ary
        # flip the negative-stride dims so element 0 is the lowest address, then view
        # the extent from there as 1-D (as_strided keeps the memory's owner alive)
        base = np.lib.stride_tricks.as_strided(h, shape, strides)
        base = base[tuple(slice(None, None, -1) if st < 0 else slice(None) for st in strides)]
        flat = type(a)(np.lib.stride_tricks.as_strided(base, (count,), (itemsize,)))
    else:
        flat = DeviceNDArray(
            (count,), (itemsize,), a.dtype, stream=a.stream, gpu_data=a.gpu_data.view(lo, hi)
        )
    return flat, -lo // itemsize, tuple(st // itemsize for st in strides)



def copy_device(dst, src):
    """``dst[...] = src`` (same shape, dtype cast, any strides) with a device kernel;
    ``dst`` and ``src`` are device arrays already (``_layout.copyto`` converts others)."""
    if tuple(dst.shape) != tuple(src.shape):
        raise ValueError(f"copyto(): shapes differ: dst {tuple(dst.shape)}, src {tuple(src.shape)}")
    size = math.prod(dst.shape)
    if size == 0:
        return
    shape, sd, ss = _coalesce(*(tuple(int(v) for v in t) for t in (dst.shape, dst.strides, src.strides)))
    kernel = _copy_strided
    if is_bfloat16(src.dtype) and is_bfloat16(dst.dtype):
        dst, src = dst.view(np.uint16), src.view(np.uint16)
    elif is_bfloat16(src.dtype):
        kernel, src = _copy_from_bf16, src.view(np.uint16)
    elif is_bfloat16(dst.dtype):
        kernel, dst = _copy_to_bf16, dst.view(np.uint16)
    d, d_off, d_str = _flat_view(dst, shape, sd)
    s, s_off, s_str = _flat_view(src, shape, ss)
    blocks, tpb = launch_1d(size)
    kernel[blocks, tpb, _host.stream()](d, d_off, d_str, s, s_off, s_str, shape)
