"""Arrays of other libraries: where their memory is, zero-copy views, results in their type.

The dispatch layer asks three things of an argument that is not a plain NumPy array:

:func:`memory`
    ``"cpu"``, ``"cuda"`` or a description of another device, from the object's own
    memory: ``__dlpack_device__`` first, then ``__cuda_array_interface__`` *on the
    instance*. (PyTorch and JAX define ``__cuda_array_interface__`` on the class of CPU
    tensors too, as a property that raises, so the class attribute says nothing.)
:func:`kind`
    which library the caller speaks: ``"numpy"`` (NumPy and plain array-likes),
    ``"torch"``, ``"jax"``, ``"cupy"``, ``"numba"`` (Numba device arrays and any other
    ``__cuda_array_interface__`` object) or ``"array_api"`` (any other object with
    ``__array_namespace__``, e.g. ``array_api_strict``).
:func:`host_view`
    a zero-copy NumPy view of CPU memory (``np.from_dlpack``, else ``np.asarray``).

and :func:`wrap_host` / :func:`wrap_device` turn a NumPy / Numba device result back into
the caller's type on the caller's device. A library is only used when the caller passed
one of its arrays: it is looked up in ``sys.modules``, never imported for NumPy users.

PyTorch tensors that require grad are read through ``.detach()``: numbanorm computes
values, not autograd graphs (its ``*_backward`` functions are the gradients).
"""
import sys

import numpy as np

#: DLPack device types (dlpack.h): host memory and CUDA memory
_DL_HOST = {1: "cpu", 3: "cpu"}  # kDLCPU, kDLCUDAHost (pinned host memory)
_DL_CUDA = {2: "cuda", 13: "cuda"}  # kDLCUDA, kDLCUDAManaged
_DL_NAMES = {4: "OpenCL", 7: "Vulkan", 8: "Metal", 9: "VPI", 10: "ROCm", 11: "ROCm host",
             12: "ext_dev", 14: "oneAPI", 15: "WebGPU", 16: "Hexagon", 17: "MAIA"}


def memory(a):
    """Where the memory of ``a`` (not a NumPy array, not None) lives.

    ``"cuda"`` for Numba device arrays (the simulator's included), DLPack CUDA memory
    and objects whose instance exposes ``__cuda_array_interface__``; ``"cpu"`` for DLPack
    host memory and everything else (array-likes go through ``np.asarray``); for memory
    of another DLPack device, a string naming it (the dispatch layer refuses it).
    """
    t = type(a)
    if getattr(t, "__cuda_ndarray__", False) or t.__module__.startswith("numba.cuda.simulator"):
        return "cuda"
    dl = getattr(t, "__dlpack_device__", None)
    if dl is not None:
        try:
            code = int(a.__dlpack_device__()[0])
        except Exception:  # a broken or deleted array: let the conversion report it
            code = None
        if code in _DL_CUDA:
            return "cuda"
        if code in _DL_HOST:
            return "cpu"
        if code is not None:
            return f"{_DL_NAMES.get(code, 'unknown')} memory (DLPack device type {code})"
    try:  # CPU torch tensors and JAX arrays: the class property raises on the instance
        a.__cuda_array_interface__
    except Exception:
        return "cpu"
    return "cuda"


def kind(a):
    """The library of ``a``, which fixes the type results come back as (module doc)."""
    t = type(a)
    if t is np.ndarray:
        return "numpy"
    mod = t.__module__
    if mod.startswith("torch") or _isinstance(a, "torch", "Tensor"):
        return "torch"
    if mod.startswith(("jax", "jaxlib")) or _isinstance(a, "jax", "Array"):
        return "jax"
    if mod.startswith("cupy"):
        return "cupy"
    if getattr(t, "__cuda_ndarray__", False) or mod.startswith("numba"):
        return "numba"
    if isinstance(a, np.ndarray):
        return "numpy"
    if hasattr(a, "__array_namespace__"):
        return "array_api"
    if memory(a) == "cuda":
        return "numba"
    return "numpy"


def _isinstance(a, module, name):
    mod = sys.modules.get(module)
    return mod is not None and isinstance(a, getattr(mod, name, ()))


def detached(a):
    """``a.detach()`` for a PyTorch tensor that requires grad (module doc), else ``a``."""
    if getattr(a, "requires_grad", False) and kind(a) == "torch":
        return a.detach()
    return a


def host_view(a):
    """A NumPy array of ``a``'s CPU memory: zero-copy through DLPack where ``a`` speaks it.

    NumPy arrays (subclasses: their base-class view) and array-likes go through
    ``np.asarray``; dtypes NumPy's DLPack import refuses (bfloat16) fall back to it too.
    """
    if type(a) is np.ndarray:
        return a
    if not isinstance(a, np.ndarray) and hasattr(a, "__dlpack__"):
        a = detached(a)
        try:
            return np.from_dlpack(a)
        except (BufferError, TypeError, RuntimeError, ValueError):
            pass
    return np.asarray(a)


def is_immutable(a):
    """JAX arrays cannot be written in place."""
    return kind(a) == "jax"


def cuda_view(a):
    """``a`` (CUDA memory) as something Numba reads: ``__cuda_array_interface__`` objects
    as they are (detached torch tensors); DLPack-only CUDA memory through CuPy."""
    a = detached(a)
    t = type(a)
    if getattr(t, "__cuda_ndarray__", False) or t.__module__.startswith("numba"):
        return a
    try:
        a.__cuda_array_interface__
        return a
    except Exception:
        pass
    try:
        import cupy
    except ImportError:
        raise TypeError(
            f"a {t.__name__} in CUDA memory without __cuda_array_interface__ can only be read "
            "through DLPack with CuPy installed; install cupy or pass a CuPy/Numba array"
        ) from None
    return cupy.from_dlpack(a)


def _module(name):
    mod = sys.modules.get(name)
    if mod is None:  # the caller passed one of its arrays, so it is installed
        import importlib

        mod = importlib.import_module(name)
    return mod


def wrap_host(k, like, y):
    """NumPy result ``y`` as an array of kind ``k`` on the CPU device of ``like`` (zero-copy
    where the library can; JAX without ``jax_enable_x64`` keeps float32, its own rule)."""
    if y is None or k == "numpy" or k == "numba":
        return y
    if k == "torch":
        torch = _module("torch")
        try:
            return torch.from_numpy(y)
        except TypeError:  # a dtype torch lacks (none of numbanorm's result dtypes)
            return torch.as_tensor(np.asarray(y))
    if k == "jax":
        jnp = _module("jax.numpy")
        try:
            return jnp.from_dlpack(y)
        except Exception:
            return jnp.asarray(y)
    if k == "array_api":
        xp = like.__array_namespace__()
        return xp.asarray(y, device=getattr(like, "device", None))
    return y


def wrap_device(k, like, y):
    """Numba device result ``y`` as an array of kind ``k`` on the device of ``like``
    (``__cuda_array_interface__`` import, zero-copy)."""
    if y is None or k == "numba":
        return y
    if k == "cupy":
        return _module("cupy").asarray(y)
    if k == "torch":
        return _module("torch").as_tensor(y, device=like.device)
    if k == "jax":
        return _module("jax.numpy").asarray(y)
    if k == "array_api":
        xp = like.__array_namespace__()
        return xp.asarray(y, device=getattr(like, "device", None))
    return y
