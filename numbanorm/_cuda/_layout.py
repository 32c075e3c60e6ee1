"""Device-array helpers and launch configuration for the CUDA kernels.

The dispatch layer's :class:`numbanorm._dispatch.CudaDevice` calls these (it uses this
module as its ``xp``), and every ``numbanorm/_cuda/<op>.py`` launcher takes its launch
configuration from here.

Arrays
------
``as_device_array(a)``
    Numba device array → itself; CuPy or any ``__cuda_array_interface__`` object →
    zero-copy Numba view (``numba.cuda.as_cuda_array``); NumPy / array-likes → copied to
    the device *keeping their strides* (a non-contiguous or negative-stride NumPy view
    becomes the same view of a device copy of its memory extent, so forced-GPU tests
    exercise the strided kernels). Under the CUDA simulator the same rules give
    ``FakeCUDAArray`` objects (a ``__cuda_array_interface__`` object becomes a zero-copy
    view of the memory it describes). Host arrays of dtypes a kernel cannot take
    (object, strings, datetimes) are returned unchanged for the caller's dtype check.
``empty(shape, dtype)``, ``zeros(shape, dtype)``, ``ones(shape, dtype)``
    new C-contiguous device arrays (filled by a kernel, no host transfer).
``is_c_contiguous(a)``
``ascontiguous(a, dtype)``
    ``a`` itself when already C-contiguous of ``dtype``, else a C-contiguous copy made by
    a gather kernel (any ndim, any strides, negative and zero strides included).
``copyto(dst, src)``
    elementwise ``dst[...] = src`` with dtype cast, same shape, arbitrary strides on both
    sides (a kernel; dims that are contiguous in both are merged first).
``is_device_array(a)``
    True for Numba device arrays (simulated ones included).
``copy_kernel(nd)``
    the strided copy kernel (one ordinary ``@cuda.jit`` kernel for every ndim: shape and
    element strides are UniTuples, so Numba specialises per length; ``nd`` is ignored).

Every array these return is a Numba ``DeviceNDArray`` (``.reshape`` works on contiguous
ones, ``.copy_to_host()`` brings it back). Under the simulator they are a subclass of
``FakeCUDAArray`` whose host-side ``.shape`` is a plain tuple like a real device array's
(``FakeCUDAArray.shape`` refuses negative indices), so host code such as
``x.shape[-1]`` behaves the same in both.

Launch configuration
--------------------
The launch settings and geometry helpers live in :mod:`._launch` (re-exported here:
:func:`set_launch`, :func:`launch_settings`, :func:`launch_1d`, :func:`launch_rows`,
:func:`launch_partials`, ...).
"""
import ctypes
import math

import numpy as np
from numba import cuda, float32, int64, uint64

from . import _host
from ._bf16 import bf16_bits, bf16_value
from ._launch import (  # noqa: F401 - the launchers take their geometry from here
    SIMULATOR, launch_1d, launch_partials, launch_rows, launch_settings, set_launch,
    set_threads_per_block, settings, threads_per_block,
)

if SIMULATOR:
    from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray as _FakeCUDAArray

    class _DeviceArray(_FakeCUDAArray):
        """The simulator's device array with a plain-tuple ``shape`` on the host, like a
        real ``DeviceNDArray`` (``FakeCUDAArray.shape`` refuses negative indices, so host
        code such as ``x.shape[-1]`` would fail only in the simulator). Views stay of
        this type."""

        # the dispatch layer recognises simulated device arrays by their module
        __module__ = _FakeCUDAArray.__module__

        @property
        def shape(self):
            return self._ary.shape

        def __getitem__(self, idx):
            ret = self._ary[idx]
            return type(self)(ret, stream=self.stream) if type(ret) is np.ndarray else ret

        def reshape(self, *args, **kwargs):
            return type(self)(self._ary.reshape(*args, **kwargs), stream=self.stream)

        def ravel(self, *args, **kwargs):
            return type(self)(self._ary.ravel(*args, **kwargs), stream=self.stream)

        def view(self, *args, **kwargs):
            return type(self)(self._ary.view(*args, **kwargs), stream=self.stream)

        def transpose(self, axes=None):
            return type(self)(np.transpose(self._ary, axes=axes), stream=self.stream)

        @property
        def T(self):
            return self.transpose()

    def _as_sim(a):
        return a if type(a) is _DeviceArray else _DeviceArray(a._ary, stream=a.stream)

else:
    from numba.cuda.cudadrv.devicearray import DeviceNDArray as _DeviceArray

    _FakeCUDAArray = _DeviceArray

    def _as_sim(a):
        return a

# --------------------------------------------------------------------------- kernels


@cuda.jit
def _fill(a, value):
    for i in range(cuda.grid(1), a.shape[0], cuda.gridsize(1)):
        a[i] = value


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


PTX_SIGNATURES = [
    (_fill, "void(float32[::1], float64)"),
    (_fill, "void(float64[::1], float64)"),
] + _copy_signatures()


# --------------------------------------------------------------------------- arrays

#: host dtype kinds that can be moved to the device
_MOVABLE_KINDS = "biufc"


def is_device_array(a):
    """True for Numba device arrays (``FakeCUDAArray`` under the simulator)."""
    return isinstance(a, _FakeCUDAArray)


def _c_strides(shape, itemsize):
    strides = []
    s = itemsize
    for n in reversed(shape):
        strides.append(s)
        s *= max(n, 1)
    return tuple(reversed(strides))


def _extent(shape, strides, itemsize):
    """Byte range [lo, hi) relative to element 0 that a (non-empty) strided array touches."""
    lo = sum(min(0, (n - 1) * s) for n, s in zip(shape, strides))
    hi = sum(max(0, (n - 1) * s) for n, s in zip(shape, strides)) + itemsize
    return lo, hi


def _wrap_strided(raw, lo, shape, strides, dtype):
    """A device view of ``shape``/``strides`` whose element 0 is byte ``-lo`` of ``raw``."""
    if SIMULATOR:
        return _DeviceArray(np.ndarray(shape, dtype, buffer=raw._ary, offset=-lo, strides=strides))
    gpu = raw.gpu_data.view(-lo) if lo else raw.gpu_data
    return _DeviceArray(shape, strides, dtype, stream=raw.stream, gpu_data=gpu)


def is_bfloat16(dtype):
    """``ml_dtypes.bfloat16`` (a NumPy "V2" dtype Numba cannot type: kernels take its bits)."""
    return dtype.kind == "V" and dtype.name == "bfloat16"


def _host_to_device(h):
    if is_bfloat16(h.dtype):  # moved as its uint16 bits, re-typed on the device
        return _host_to_device(h.view(np.uint16)).view(h.dtype)
    if h.dtype.kind not in _MOVABLE_KINDS:
        return h  # the public function's dtype check reports it
    if not h.dtype.isnative:  # ">f4" from FITS/.npy: device arrays and kernels take native order
        h = h.astype(h.dtype.newbyteorder("="))
    if h.size == 0 or h.flags.c_contiguous or h.flags.f_contiguous or h.ndim == 0:
        if h.size == 0:
            return empty(h.shape, h.dtype)
        return _as_sim(cuda.to_device(h))
    lo, hi = _extent(h.shape, h.strides, h.itemsize)
    if hi - lo > 4 * h.nbytes + 4096 or any(st % h.itemsize for st in h.strides):
        # a sparse view, or strides that are not whole elements (a record field): copy
        # its elements only
        return _as_sim(cuda.to_device(np.ascontiguousarray(h)))
    ptr = h.__array_interface__["data"][0]
    raw_host = np.frombuffer((ctypes.c_char * (hi - lo)).from_address(ptr + lo), dtype=np.uint8)
    raw = cuda.to_device(raw_host.copy())
    return _wrap_strided(raw, lo, h.shape, h.strides, h.dtype)


def _sim_from_cai(obj):
    """Simulator: zero-copy view of the (host) memory a __cuda_array_interface__ describes."""
    desc = obj.__cuda_array_interface__
    if desc.get("mask") is not None:
        raise NotImplementedError("masked __cuda_array_interface__ arrays are not supported")
    shape = tuple(int(n) for n in desc["shape"])
    dtype = np.dtype(desc["typestr"])
    strides = desc.get("strides")
    strides = _c_strides(shape, dtype.itemsize) if strides is None else tuple(int(s) for s in strides)
    if math.prod(shape) == 0:
        return empty(shape, dtype)
    ptr, readonly = desc["data"]
    lo, hi = _extent(shape, strides, dtype.itemsize)
    buf = (ctypes.c_char * (hi - lo)).from_address(ptr + lo)
    buf._numbanorm_owner = obj  # keep the memory's owner alive as long as the view
    host = np.ndarray(shape, dtype, buffer=buf, offset=-lo, strides=strides)
    if readonly:
        host.flags.writeable = False
    return _DeviceArray(host)


def _from_cai(obj):
    """Zero-copy Numba view of a ``__cuda_array_interface__`` object, without the stream
    synchronisation of ``cuda.as_cuda_array``'s default: the kernels launch on the stream
    the interface names (:mod:`._host`), which orders them after the producer's work. The
    view is not bound to that stream (its own interface names none), so importing a
    result back into CuPy/PyTorch does not synchronise either."""
    desc = obj.__cuda_array_interface__
    if desc.get("stream") is not None:
        desc = dict(desc, stream=None)
    return cuda.from_cuda_array_interface(desc, owner=obj, sync=False)


def as_device_array(a):
    """``a`` as a Numba device array (zero-copy for device data; see the module docstring)."""
    if isinstance(a, _FakeCUDAArray):
        return _as_sim(a)
    if hasattr(a, "__cuda_array_interface__"):
        if SIMULATOR:
            return _sim_from_cai(a)
        return _from_cai(a)
    return _host_to_device(np.asarray(a))


def _numba_empty(shape, dtype):
    return _as_sim(cuda.device_array(shape, dtype=np.dtype(dtype)))


def empty(shape, dtype):
    """New uninitialised C-contiguous device array: from the caller's memory pool for CuPy
    and PyTorch data (``_host.allocator``), else Numba's allocator."""
    alloc = _host.allocator()
    if alloc is None:
        return _numba_empty(shape, dtype)
    dtype = np.dtype(dtype)
    if isinstance(shape, (int, np.integer)):
        shape = (int(shape),)
    obj = alloc(tuple(shape), dtype)
    return _sim_from_cai(obj) if SIMULATOR else _from_cai(obj)


def _filled(shape, dtype, value, make=empty):
    a = make(shape, dtype)
    if a.size:
        flat = a.reshape(a.size)
        blocks, tpb = launch_1d(a.size)
        _fill[blocks, tpb, _host.stream()](flat, value)
    return a


def new_zeros(shape, dtype):
    """New C-contiguous device array of zeros (writable: accumulators, gradients)."""
    return _filled(shape, dtype, 0.0)


_CONSTANTS = {}
_KEEP_CONSTANTS = 16


def _constant(shape, dtype, value):
    """A cached read-only device array filled with ``value`` (per shape, dtype and stream:
    filled once on the stream that first used it, so later launches there are ordered
    after the fill)."""
    shape = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(shape)
    key = (shape, np.dtype(dtype).str, value, _host.key())
    a = _CONSTANTS.pop(key, None)
    if a is None:
        a = _filled(shape, dtype, value, _numba_empty)  # long-lived: not from a pool
    _CONSTANTS[key] = a  # most recently used last
    while len(_CONSTANTS) > _KEEP_CONSTANTS:
        _CONSTANTS.pop(next(iter(_CONSTANTS)))
    return a


def zeros(shape, dtype):
    """A cached, **read-only** C-contiguous device array of zeros (default parameters such
    as a missing ``bias``; ``dev.xp.zeros``). Use :func:`new_zeros` for one to write."""
    return _constant(shape, dtype, 0.0)


def ones(shape, dtype):
    """A cached, **read-only** C-contiguous device array of ones (a missing ``weight``)."""
    return _constant(shape, dtype, 1.0)


def is_ones(a):
    """Whether ``a`` is one of the cached ones constants of :func:`ones` (no lookup cost
    beyond the few cached entries; never creates one)."""
    return any(v is a for k, v in _CONSTANTS.items() if k[2] == 1.0)


def scratch(tag, shape, dtype):
    """A cached device buffer for per-call partials, per thread and stream
    (:func:`._host.scratch`); every buffer of one call needs its own ``tag``."""
    return _host.scratch(tag, shape, np.dtype(dtype), empty)


def begin_call(kind, x):
    """Start a GPU call on data ``x`` (None: host data forced onto the GPU): its stream and
    allocator (:func:`._host.begin`)."""
    _host.begin(kind, x)


def stream():
    """The stream every kernel of the current call launches on (:mod:`._host`)."""
    return _host.stream()


def is_c_contiguous(a):
    return as_device_array(a).is_c_contiguous()


def _pointer(a):
    """Address of element 0 of a device array (a view's own, as Numba passes it to kernels)."""
    return a._ary.__array_interface__["data"][0] if SIMULATOR else a.device_ctypes_pointer.value


def _span(a):
    """Absolute byte range [lo, hi) of a device array's elements; None when it is empty.

    Element 0 is at :func:`_pointer`; negative strides reach below it (``_extent``).
    """
    a = as_device_array(a)
    if a.size == 0:
        return None
    ptr = _pointer(a)
    lo, hi = _extent(a.shape, a.strides, a.dtype.itemsize)
    return ptr + lo, ptr + hi


def may_share_memory(a, b):
    """Whether two device arrays' memory ranges overlap (conservative, as NumPy's)."""
    sa, sb = _span(a), _span(b)
    return sa is not None and sb is not None and sa[0] < sb[1] and sb[0] < sa[1]


_TOO_HARD = getattr(getattr(np, "exceptions", np), "TooHardError", None) or np.TooHardError


def _address_view(a, root, lo):
    """A host array with ``a``'s element addresses shifted by ``-lo`` into ``root`` (a
    byte view that is never read): NumPy's overlap solver needs only the addresses."""
    size = a.dtype.itemsize
    off = _pointer(a) - lo
    one = root[off:off + size].view(np.dtype((np.void, size)))
    return np.lib.stride_tricks.as_strided(one, tuple(a.shape), tuple(a.strides), writeable=False)


def shares_memory(a, b):
    """Whether two device arrays share an element's bytes (exact, unlike
    :func:`may_share_memory`: interleaved views of one buffer do not).

    Solved by ``np.shares_memory`` on address-only host stand-ins of the two arrays
    (bounded work; too hard counts as sharing).
    """
    a, b = as_device_array(a), as_device_array(b)
    sa, sb = _span(a), _span(b)
    if sa is None or sb is None or not (sa[0] < sb[1] and sb[0] < sa[1]):
        return False
    lo = min(sa[0], sb[0])
    span = max(sa[1], sb[1]) - lo
    # ``span`` bytes of addresses over a 1-byte allocation: views, never dereferenced
    root = np.lib.stride_tricks.as_strided(np.zeros(1, np.uint8), (span,), (1,), writeable=False)
    try:
        return bool(np.shares_memory(_address_view(a, root, lo), _address_view(b, root, lo), max_work=1 << 16))
    except _TOO_HARD:
        return True


def same_array(a, b):
    """Whether two device arrays are the same memory seen the same way (pointer, shape,
    strides, dtype): an exact alias, as opposed to a partial overlap."""
    a, b = as_device_array(a), as_device_array(b)
    return a is b or (
        tuple(a.shape) == tuple(b.shape) and tuple(a.strides) == tuple(b.strides)
        and a.dtype == b.dtype and _pointer(a) == _pointer(b)
    )


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
        flat = _DeviceArray(np.lib.stride_tricks.as_strided(base, (count,), (itemsize,)))
    else:
        flat = _DeviceArray(
            (count,), (itemsize,), a.dtype, stream=a.stream, gpu_data=a.gpu_data.view(lo, hi)
        )
    return flat, -lo // itemsize, tuple(st // itemsize for st in strides)


def copyto(dst, src):
    """``dst[...] = src`` (same shape, dtype cast, any strides) with a device kernel."""
    dst = as_device_array(dst)
    src = as_device_array(src)
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


def ascontiguous(a, dtype):
    """``a`` when C-contiguous of ``dtype``, else a C-contiguous ``dtype`` copy (kernel)."""
    a = as_device_array(a)
    dtype = np.dtype(dtype)
    if a.dtype == dtype and a.is_c_contiguous():
        return a
    out = empty(a.shape, dtype)
    copyto(out, a)
    return out
