"""Device choice from where the arrays' memory is: CPU kernels, CUDA kernels or Dask graphs.

Public functions call :func:`device_of` once with every array argument (by name). It
returns a :class:`Device` that converts arguments to the kernel side's array type
(zero-copy: NumPy views of CPU memory, Numba device arrays of CUDA memory), allocates,
makes canonical contiguous views, and wraps results back into the caller's array type
on the caller's device: NumPy → NumPy, CuPy → CuPy, PyTorch → PyTorch, JAX → JAX,
``array_api_strict`` (any ``__array_namespace__`` object) → its namespace, other
``__cuda_array_interface__`` objects → Numba device arrays. The type of ``x`` (the first
named argument) decides; the other arguments are converted (:mod:`._interop`).

The device comes from each object's memory, not its type: ``__dlpack_device__``, then
``__cuda_array_interface__`` present on the instance (PyTorch and JAX define it on the
class of CPU arrays too). CuPy, PyTorch, JAX and ``numba.cuda`` are never imported here
for NumPy users; the simulator's fake device arrays are recognised by their module.

A Dask ``x`` gives :data:`DASK`, whose "kernels" are the graph builders of
``numbanorm._dask``: the public function validates its arguments (Dask arrays by their
metadata), checks ``dev.deferred`` and hands its compute function and the validated
arguments to ``dev.build("<op>", compute, ...)`` (:class:`DaskDevice`).

Tests force the GPU path on host inputs with :func:`force_device` (the CUDA simulator
tests run this way: host arrays in, simulated kernels, results back in the caller's type).
"""
import contextlib
import contextvars
import importlib
import sys

import numpy as np

from . import _interop

_FORCED = contextvars.ContextVar("numbanorm_forced_device", default=None)


@contextlib.contextmanager
def force_device(name):
    """Inside the block, ``"cuda"`` runs calls on host inputs through the CUDA kernels.

    Host inputs (NumPy, CPU torch tensors, ...) are copied to the device, run through the
    CUDA kernels (the simulator when ``NUMBA_ENABLE_CUDASIM=1``) and the results copied
    back to the host in the caller's type (``out=`` and running statistics included).
    ``"cpu"`` undoes an enclosing ``"cuda"`` block; GPU arrays always run on the GPU.
    """
    if name not in ("cpu", "cuda"):
        raise ValueError(f"force_device(): argument 'name' must be 'cpu' or 'cuda', got {name!r}")
    token = _FORCED.set(name)
    try:
        yield
    finally:
        _FORCED.reset(token)


def _is_dask(a):
    mod = sys.modules.get("dask.array")
    return mod is not None and isinstance(a, mod.Array)


def is_deferred(a):
    """Whether ``a`` belongs to a deferred device (a Dask array: its calls build graphs)."""
    return _is_dask(a)


def _is_gpu(a):
    """Whether ``a``'s memory is CUDA memory (see :func:`._interop.memory`)."""
    return type(a) is not np.ndarray and _interop.memory(a) == "cuda"


def _where(a):
    if a is None:
        return None
    if type(a) is np.ndarray:
        return "cpu"
    if _is_dask(a):
        return "dask"
    return _interop.memory(a)


def _place(w):
    return {"cuda": "GPU", "cpu": "host"}.get(w, w)


def device_of(fn, **arrays):
    """Decide the device from the named array arguments of public function ``fn``.

    The first named argument is the data (``x``): its kind fixes the result type.
    Mixing host and GPU arrays is a ``TypeError`` that says which argument is where.
    A Dask ``x`` returns the Dask device :data:`DASK` (parameters may be NumPy or Dask).
    """
    if _FORCED.get() is None:  # fast path: all NumPy (or None)
        for a in arrays.values():
            if a is not None and type(a) is not np.ndarray:
                break
        else:
            return CPU
    places = {}
    for name, a in arrays.items():
        w = _where(a)
        if w is not None:
            places[name] = w
    first = next(iter(arrays))
    main = places.get(first, "cpu")
    if main == "dask":
        for name, w in places.items():
            if w == "cuda":
                raise TypeError(
                    f"{fn}(): argument '{name}' is a GPU array but '{first}' is a Dask array; "
                    "pass host (NumPy) parameters with Dask data"
                )
        return DASK
    if "dask" in places.values():
        name = next(n for n, w in places.items() if w == "dask")
        raise TypeError(
            f"{fn}(): argument '{name}' is a Dask array but '{first}' is not; "
            f"pass a Dask array as '{first}' to compute lazily"
        )
    for name, w in places.items():
        if w not in ("cpu", "cuda"):
            raise TypeError(
                f"{fn}(): argument '{name}' must be in host or CUDA memory, got an array in {w}"
            )
    if len(set(places.values())) > 1:
        where = ", ".join(f"'{n}' on {_place(w)}" for n, w in places.items())
        raise TypeError(
            f"{fn}(): all array arguments must live on the same device, got {where}; "
            "move them with numba.cuda.to_device / cupy.asarray / tensor.cuda() or "
            ".get() / tensor.cpu() / np.asarray"
        )
    out = arrays.get("out")
    if out is not None and _interop.is_immutable(out):
        raise TypeError(
            f"{fn}(): argument 'out' must be a writeable array, got a JAX array (JAX arrays "
            "are immutable); omit out= and use the returned array"
        )
    x = arrays[first]
    kind = "numpy" if x is None else _interop.kind(x)
    if main == "cuda":
        return CudaDevice(kind, x)
    if _FORCED.get() == "cuda":
        return CudaDevice(kind, x, host=True)
    return CPU if kind == "numpy" else CpuDevice(kind, x)


_TOO_HARD = getattr(getattr(np, "exceptions", np), "TooHardError", None) or np.TooHardError


def _shares_memory(a, b):
    """``np.shares_memory`` bounded to a little work; a problem too hard to solve in it
    counts as overlapping (the caller then refuses or copies, both safe)."""
    try:
        return bool(np.shares_memory(a, b, max_work=1 << 16))
    except _TOO_HARD:
        return True


_KERNELS = {}


def _kernel_module(package, op):
    try:
        return _KERNELS[package, op]
    except KeyError:
        mod = _KERNELS[package, op] = importlib.import_module(f"numbanorm.{package}.{op}")
        return mod


class CpuDevice:
    """NumPy arrays, ``numbanorm._cpu`` kernels.

    Arguments in CPU memory become zero-copy NumPy views (:func:`._interop.host_view`);
    results come back as ``kind`` ("numpy", "torch", "jax", "array_api": see
    :func:`._interop.kind`) on the device of ``like`` (the caller's ``x``).
    """

    name = "cpu"
    deferred = False
    host = True
    xp = np

    def __init__(self, kind="numpy", like=None):
        self.kind, self.like = kind, like

    def kernels(self, op):
        return _kernel_module("_cpu", op)

    def asarray(self, a):
        return a if type(a) is np.ndarray else _interop.host_view(a)

    def empty(self, shape, dtype):
        return np.empty(shape, dtype)

    def zeros(self, shape, dtype):
        return np.zeros(shape, dtype)

    def scratch(self, tag, shape, dtype):
        """A buffer for results the caller does not get back (reused per call on the GPU)."""
        return np.empty(shape, dtype)

    def contiguous(self, a, dtype):
        """C-contiguous copy of ``a`` in ``dtype`` only where ``a`` is not already one."""
        return np.ascontiguousarray(a, dtype=dtype)

    def is_contiguous(self, a):
        return a.flags.c_contiguous

    def may_share_memory(self, a, b):
        return np.may_share_memory(a, b)

    def shares_memory(self, a, b):
        """Exact overlap test (NumPy's solver with bounded work; too hard counts as overlap)."""
        return _shares_memory(a, b)

    def same_array(self, a, b):
        """The same memory seen the same way: data pointer, shape, strides and dtype."""
        return a is b or (
            a.shape == b.shape and a.strides == b.strides and a.dtype == b.dtype
            and a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
        )

    def copyto(self, dst, src):
        np.copyto(dst, src, casting="same_kind")

    def astype(self, a, dtype):
        return a.astype(dtype)

    def wrap(self, a):
        return a if self.kind == "numpy" else _interop.wrap_host(self.kind, self.like, a)

    def to_host(self, a):
        return a

    def copy_back(self, user, a):
        """Nothing to do: kernels wrote ``out=`` through its zero-copy view."""


class CudaDevice:
    """GPU arrays (Numba device arrays inside), ``numbanorm._cuda`` kernels.

    ``kind`` is the library of the caller's ``x`` (:func:`._interop.kind`); results are
    wrapped back into it on the device of ``like`` (CuPy in, CuPy out; torch in, torch
    out; any other ``__cuda_array_interface__`` object: a Numba device array).
    ``host=True`` (forced by :func:`force_device` on data in CPU memory): arguments are
    copied to the device and results copied back to the host in the caller's type.
    """

    name = "cuda"
    deferred = False

    def __init__(self, kind, like=None, host=False):
        self.kind, self.like, self.host = kind, like, host
        self._layout = importlib.import_module("numbanorm._cuda._layout")
        # the caller's stream and memory pool for this call's launches and allocations
        self._layout.begin_call(kind, None if host or like is None else _interop.cuda_view(like))

    def kernels(self, op):
        return _kernel_module("_cuda", op)

    @property
    def xp(self):
        return self._layout

    def asarray(self, a):
        if self.host or type(a) is np.ndarray or _interop.memory(a) != "cuda":
            return self._layout.as_device_array(_interop.host_view(a))  # copied to the device
        return self._layout.as_device_array(_interop.cuda_view(a))

    def empty(self, shape, dtype):
        return self._layout.empty(shape, dtype)

    def zeros(self, shape, dtype):
        return self._layout.new_zeros(shape, dtype)

    def scratch(self, tag, shape, dtype):
        """A cached per-thread, per-stream device buffer for results the caller does not
        get back (no allocation per call; distinct ``tag`` per buffer of one call)."""
        return self._layout.scratch(tag, shape, dtype)

    def contiguous(self, a, dtype):
        return self._layout.ascontiguous(a, dtype)

    def is_contiguous(self, a):
        return self._layout.is_c_contiguous(a)

    def may_share_memory(self, a, b):
        return self._layout.may_share_memory(a, b)

    def shares_memory(self, a, b):
        return self._layout.shares_memory(a, b)

    def same_array(self, a, b):
        return self._layout.same_array(a, b)

    def copyto(self, dst, src):
        self._layout.copyto(dst, src)

    def astype(self, a, dtype):
        return self._layout.ascontiguous(a, dtype)

    def wrap(self, a):
        if a is None:
            return None
        if self.host:
            return _interop.wrap_host(self.kind, self.like, a.copy_to_host())
        return _interop.wrap_device(self.kind, self.like, a)

    def to_host(self, a):
        return a.copy_to_host()

    def copy_back(self, user, a):
        """Host ``out=`` forced through the GPU: copy the device result ``a`` into it."""
        if self.host:
            host = self._layout.ascontiguous(a, a.dtype).copy_to_host()
            np.copyto(_interop.host_view(user), host, casting="same_kind")


_BUILDERS = {}


def _builder(op, compute):
    """The Dask graph builder ``op`` of an op whose compute function is ``compute``: the
    function ``op`` in the module of the same name as ``compute``'s under
    ``numbanorm._dask`` (``numbanorm._ops.layer_norm._compute`` -> ``numbanorm._dask.
    layer_norm.layer_norm``), imported on first use."""
    try:
        return _BUILDERS[op, compute]
    except KeyError:
        module = compute.__module__.replace("numbanorm._ops.", "numbanorm._dask.", 1)
        b = _BUILDERS[op, compute] = getattr(importlib.import_module(module), op)
        return b


class DaskDevice:
    """Dask arrays: the "kernels" are the graph builders of ``numbanorm._dask``.

    Public functions validate and canonicalise their arguments once, for Dask arrays too
    (shape and dtype checks read a Dask array's metadata; :meth:`asarray` leaves Dask arrays
    as they are and :meth:`contiguous` casts them lazily), then hand the call to
    :meth:`build` with their *compute function* (which runs the kernels of one in-memory
    array without checking again) and the validated arguments. The builder makes the
    blockwise / reduction graph whose per-block tasks call that compute function with the
    block's device (CPU for NumPy blocks, CUDA for CuPy blocks) and whose statistics come
    from :mod:`numbanorm._stats_host`. Nothing under ``numbanorm._ops`` imports ``_dask``,
    and nothing under ``_dask`` imports ``_ops``: the compute function is passed in.
    """

    name = "dask"
    deferred = True
    host = True

    def asarray(self, a):
        """Dask arrays as they are (lazy); anything else as a NumPy array (host parameters)."""
        return a if _is_dask(a) else _interop.host_view(a)

    def contiguous(self, a, dtype):
        """``a`` in ``dtype``: a lazy cast of a Dask array, a contiguous NumPy array otherwise."""
        if _is_dask(a):
            return a if a.dtype == dtype else a.astype(dtype)
        return np.ascontiguousarray(a, dtype=dtype)

    def shares_memory(self, a, b):
        """Overlap of two host arrays a call writes (running statistics); Dask arrays: never."""
        return not (_is_dask(a) or _is_dask(b)) and _shares_memory(a, b)

    def build(self, op, compute, *args, **kwargs):
        """The lazy Dask result of the call (see :mod:`numbanorm._dask`): the builder ``op``
        of the module of ``compute``'s name under ``numbanorm._dask``, called as
        ``builder(compute, *validated args)``; its block tasks call ``compute(dev, ...)``."""
        return _builder(op, compute)(compute, *args, **kwargs)


CPU = CpuDevice()
DASK = DaskDevice()
