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
    The copy kernels and their host side live in :mod:`._copy`.

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
from numba import cuda

from . import _copy, _host
from ._copy import _extent, copy_kernel, is_bfloat16  # noqa: F401 - re-exported for callers
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


#: the copy kernels' signatures are ``_copy.PTX_SIGNATURES``
PTX_SIGNATURES = [
    (_fill, "void(float32[::1], float64)"),
    (_fill, "void(float64[::1], float64)"),
]


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


def _wrap_strided(raw, lo, shape, strides, dtype):
    """A device view of ``shape``/``strides`` whose element 0 is byte ``-lo`` of ``raw``."""
    if SIMULATOR:
        return _DeviceArray(np.ndarray(shape, dtype, buffer=raw._ary, offset=-lo, strides=strides))
    gpu = raw.gpu_data.view(-lo) if lo else raw.gpu_data
    return _DeviceArray(shape, strides, dtype, stream=raw.stream, gpu_data=gpu)


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


def copyto(dst, src):
    """``dst[...] = src`` (same shape, dtype cast, any strides) with a device kernel
    (:func:`._copy.copy_device`)."""
    _copy.copy_device(as_device_array(dst), as_device_array(src))


def ascontiguous(a, dtype):
    """``a`` when C-contiguous of ``dtype``, else a C-contiguous ``dtype`` copy (kernel)."""
    a = as_device_array(a)
    dtype = np.dtype(dtype)
    if a.dtype == dtype and a.is_c_contiguous():
        return a
    out = empty(a.shape, dtype)
    copyto(out, a)
    return out
