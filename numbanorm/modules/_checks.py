"""Helpers shared by the layer classes: constructor argument checks (errors name the class,
as ``LayerNorm(): argument 'eps' ...``), input conversion, and moving arrays between the host
and the GPU (NumPy arrays, Numba device arrays, CuPy arrays, CPU torch tensors).
"""
import numbers
import operator

import numpy as np

from .. import _dispatch, _validate


# --------------------------------------------------------------------------------------
# argument checks (constructor)


_PARAM_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


def _bool(cls, value, arg):
    return _validate.flag(cls + "()", value, arg)


def _size(cls, value, arg):
    return _validate.positive_int(cls + "()", value, arg)


def _eps(cls, value, allow_none=False):
    if value is None and allow_none:
        return None
    return _validate.eps(cls + "()", value)


def _momentum(cls, value):
    if value is None:
        return None
    m = _validate.real(cls + "()", value, "momentum")
    if not 0.0 <= m <= 1.0:
        raise ValueError(f"{cls}(): argument 'momentum' must be None or a number in [0, 1], got {m}")
    return value


def _shape(cls, value):
    fn = cls + "()"
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{fn}: argument 'normalized_shape' must be an int or a tuple of ints, got {value!r}")
    if isinstance(value, numbers.Integral):
        shape = (operator.index(value),)
    else:
        try:
            shape = tuple(value)
        except TypeError:
            raise TypeError(
                f"{fn}: argument 'normalized_shape' must be an int or a tuple of ints, "
                f"got {_validate.describe(value)}"
            ) from None
        for d in shape:
            if isinstance(d, (bool, np.bool_)) or not isinstance(d, numbers.Integral):
                raise TypeError(
                    f"{fn}: argument 'normalized_shape' must be an int or a tuple of ints, got {value!r}"
                )
        shape = tuple(operator.index(d) for d in shape)
    if len(shape) == 0:
        raise ValueError(f"{fn}: argument 'normalized_shape' must have at least one dimension, got ()")
    if any(d < 1 for d in shape):
        raise ValueError(f"{fn}: argument 'normalized_shape' must contain sizes >= 1, got {shape}")
    return shape


def _dtype(cls, value):
    if value is None:
        return np.dtype(np.float32)
    try:
        dt = np.dtype(value)
    except TypeError:
        raise TypeError(
            f"{cls}(): argument 'dtype' must be float16, float32 or float64, got {value!r}"
        ) from None
    if dt not in _PARAM_DTYPES:
        raise TypeError(f"{cls}(): argument 'dtype' must be float16, float32 or float64, got {dt}")
    return dt


def _device_name(fn, device):
    if device is None:
        return None
    if not isinstance(device, str):
        # torch.device and similar objects print as "cpu" / "cuda" / "cuda:0"
        if type(device).__name__ == "device" and hasattr(device, "type"):
            device = str(device)
        else:
            raise TypeError(f"{fn}: argument 'device' must be 'cpu' or 'cuda', got {device!r}")
    name = device.lower()
    if name == "cpu":
        return "cpu"
    if name in ("cuda", "gpu", "cuda:0"):
        return "cuda"
    raise ValueError(f"{fn}: argument 'device' must be 'cpu' or 'cuda', got {device!r}")


def _channel_axis_arg(cls, value):
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{cls}(): argument 'channel_axis' must be an integer, got {value!r}")
    try:
        ax = operator.index(value)
    except TypeError:
        raise TypeError(
            f"{cls}(): argument 'channel_axis' must be an integer, got {_validate.describe(value)}"
        ) from None
    if ax == 0:
        raise ValueError(
            f"{cls}(): argument 'channel_axis' must be a non-batch axis (1 = channels-first, "
            f"-1 = channels-last), got 0"
        )
    return ax


# --------------------------------------------------------------------------------------
# array helpers (host NumPy / Numba device arrays)


def _is_gpu(a):
    return a is not None and _dispatch._is_gpu(a)


def _to_host(a):
    """A host NumPy array from a NumPy array, a GPU array or a CPU torch tensor."""
    if hasattr(a, "detach") and hasattr(a, "cpu") and hasattr(a, "numpy"):  # a torch tensor
        return a.detach().cpu().numpy()
    if _is_gpu(a):
        if hasattr(a, "copy_to_host"):
            return a.copy_to_host()
        if hasattr(a, "get"):  # CuPy
            return a.get()
        from numba import cuda

        return cuda.as_cuda_array(a).copy_to_host()
    return np.asarray(a)


def _to_device(a):
    from numba import cuda

    return cuda.to_device(np.ascontiguousarray(a))


def _place(host, device):
    return _to_device(host) if device == "cuda" else host


def _cast(a, dtype, device):
    """``a`` (a gradient) as an array of ``dtype`` on ``device`` (no copy when it already is)."""
    if a is None:
        return None
    if device == "cpu" and type(a) is np.ndarray:
        return a if a.dtype == dtype else a.astype(dtype)
    if a.dtype == dtype and _is_gpu(a) == (device == "cuda"):
        return a
    return _place(_to_host(a).astype(dtype), device)


def _as_input(layer, a, arg="x"):
    """A layer's input as an array (array_likes through ``np.asarray``).

    None, strings, dicts, other non-arrays and masked arrays are a ``TypeError`` naming
    the layer, as the functions do for their arguments.
    """
    if hasattr(a, "shape") and hasattr(a, "ndim"):
        if type(a) is not np.ndarray:
            _validate.check_array_like(type(layer).__name__, arg, a)
        return a
    return _validate.array(type(layer).__name__, arg, _dispatch.CPU, a)


# --------------------------------------------------------------------------------------
# devices and input dimensions


def _require_cuda(fn):
    try:
        from numba import cuda
    except Exception as e:  # pragma: no cover - numba always has cuda (or the simulator)
        raise RuntimeError(f"{fn}: Numba's CUDA support is not importable ({e})") from None
    if not cuda.is_available():
        raise RuntimeError(
            f"{fn}: no CUDA GPU is available (set NUMBA_ENABLE_CUDASIM=1 to use Numba's simulator)"
        )


def _apply_device(layer, device):
    dev = _device_name(f"{type(layer).__name__}()", device)
    if dev == "cuda":
        layer.to("cuda")


def _ndim_error(layer, x, dims, what):
    want = " or ".join(f"{d}D" for d in dims)
    return ValueError(
        f"{type(layer).__name__}(): argument 'x' must be {what}: expected {want} input "
        f"(got {x.ndim}D input)"
    )
