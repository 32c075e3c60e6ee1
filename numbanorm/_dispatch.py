"""Device choice: NumPy → CPU kernels, ``__cuda_array_interface__`` → CUDA kernels.

Public functions call :func:`device_of` once with every array argument (by name). It
returns a :class:`Device` that converts arguments to the kernel side's array type,
allocates, makes canonical contiguous views, and wraps results back into the caller's
array type (CuPy in → CuPy out; other GPU arrays → Numba device arrays; NumPy → NumPy).

CuPy and ``numba.cuda`` are never imported here for NumPy users: GPU arrays are
recognised by the ``__cuda_array_interface__`` attribute of their type, and the
simulator's fake device arrays by their module, as array-api-compat does.

Tests force the GPU path on NumPy inputs with :func:`force_device` (the CUDA simulator
tests run this way: NumPy in, simulated kernels, NumPy out).
"""
import contextlib
import contextvars
import importlib
import sys

import numpy as np

_FORCED = contextvars.ContextVar("numbanorm_forced_device", default=None)


@contextlib.contextmanager
def force_device(name):
    """Inside the block, ``"cuda"`` runs calls on NumPy inputs through the CUDA kernels.

    NumPy inputs are copied to the device, run through the CUDA kernels (the simulator when
    ``NUMBA_ENABLE_CUDASIM=1``) and the results copied back to NumPy (``out=`` included).
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


def _is_gpu(a):
    if hasattr(type(a), "__cuda_array_interface__") or getattr(type(a), "__cuda_ndarray__", False):
        return True
    # the CUDA simulator's device arrays have no __cuda_array_interface__
    return type(a).__module__.startswith("numba.cuda.simulator")


def _is_cupy(a):
    return type(a).__module__.startswith("cupy")


def _where(a):
    if a is None:
        return None
    if type(a) is np.ndarray:
        return "cpu"
    if _is_dask(a):
        return "dask"
    if _is_gpu(a):
        return "cuda"
    return "cpu"


def device_of(fn, **arrays):
    """Decide the device from the named array arguments of public function ``fn``.

    The first named argument is the data (``x``): its kind fixes the result type.
    Mixing host and GPU arrays is a ``TypeError`` that says which argument is where.
    A Dask ``x`` returns the Dask marker device (parameters may be NumPy or Dask).
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
    kinds = set(p for p in places.values() if p != "dask")
    if "dask" in places.values():
        name = next(n for n, w in places.items() if w == "dask")
        raise TypeError(
            f"{fn}(): argument '{name}' is a Dask array but '{first}' is not; "
            f"pass a Dask array as '{first}' to compute lazily"
        )
    if len(kinds) > 1:
        where = ", ".join(f"'{n}' on {'GPU' if w == 'cuda' else 'host (NumPy)'}" for n, w in places.items())
        raise TypeError(
            f"{fn}(): all array arguments must live on the same device, got {where}; "
            "move them with numba.cuda.to_device / cupy.asarray or .get() / np.asarray"
        )
    forced = _FORCED.get()
    if forced == "cuda" and main == "cpu":
        return CudaDevice("numpy")
    if main == "cuda":
        return CudaDevice("cupy" if _is_cupy(arrays[first]) else "numba")
    return CPU


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
    """NumPy arrays, ``numbanorm._cpu`` kernels."""

    name = "cpu"
    is_dask = False
    xp = np

    def kernels(self, op):
        return _kernel_module("_cpu", op)

    def asarray(self, a):
        return a if type(a) is np.ndarray else np.asarray(a)

    def empty(self, shape, dtype):
        return np.empty(shape, dtype)

    def zeros(self, shape, dtype):
        return np.zeros(shape, dtype)

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
        return a

    def to_host(self, a):
        return a


class CudaDevice:
    """GPU arrays (Numba device arrays inside), ``numbanorm._cuda`` kernels.

    ``kind`` is what the caller passed as ``x``: "cupy" (results wrapped as CuPy arrays),
    "numba" (Numba device arrays or any ``__cuda_array_interface__`` object) or "numpy"
    (forced by :func:`force_device`; results copied back to the host).
    """

    name = "cuda"
    is_dask = False

    def __init__(self, kind):
        self.kind = kind
        self._layout = importlib.import_module("numbanorm._cuda._layout")

    def kernels(self, op):
        return _kernel_module("_cuda", op)

    @property
    def xp(self):
        return self._layout

    def asarray(self, a):
        return self._layout.as_device_array(a)

    def empty(self, shape, dtype):
        return self._layout.empty(shape, dtype)

    def zeros(self, shape, dtype):
        return self._layout.zeros(shape, dtype)

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
        if self.kind == "numpy":
            return a.copy_to_host()
        if self.kind == "cupy":
            import cupy

            return cupy.asarray(a)
        return a

    def to_host(self, a):
        return a.copy_to_host()


class DaskDevice:
    """Marker: the data is a Dask array; public functions hand over to ``numbanorm._dask``."""

    name = "dask"
    is_dask = True


CPU = CpuDevice()
DASK = DaskDevice()
