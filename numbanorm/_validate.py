"""Argument checks shared by every public function, and their messages.

Every message names the function, the argument, what was expected and what was given:
``layer_norm(): argument 'eps' must be a finite number >= 0, got -1.0``.
Checks run before any kernel, so a call that raises changes nothing.
"""
import math
import numbers
import operator
import sys

import numpy as np

from . import _dispatch

F16 = np.dtype(np.float16)
F32 = np.dtype(np.float32)
F64 = np.dtype(np.float64)
_NDARRAY = np.ndarray
_INF = math.inf
_CPU = _dispatch.CPU


def _type_error(fn, arg, expected, got):
    return TypeError(f"{fn}(): argument '{arg}' must be {expected}, got {got}")


def _value_error(fn, arg, expected, got):
    return ValueError(f"{fn}(): argument '{arg}' must be {expected}, got {got}")


def describe(a):
    """Short description of a value for error messages."""
    if a is None:
        return "None"
    if hasattr(a, "shape") and hasattr(a, "dtype"):
        return f"{type(a).__name__} of shape {tuple(a.shape)} and dtype {a.dtype}"
    if isinstance(a, (tuple, list)) and any(hasattr(v, "shape") for v in a):
        # a sequence of arrays (``out=(y, r)``): their shapes, not their contents
        inner = ", ".join(describe(v) for v in a[:4]) + (", ..." if len(a) > 4 else "")
        return f"{type(a).__name__} of {len(a)} ({inner})"
    text = repr(a)
    if len(text) > _REPR_CHARS:
        text = text[:_REPR_CHARS - 3] + "..."
    return f"{type(a).__name__} {text}"


#: longest repr of a value quoted in an error message
_REPR_CHARS = 200


_RULES = {F32: (F32, F32), F64: (F64, F64), F16: (F32, F16)}


def float_dtypes(fn, arg, dtype):
    """(compute dtype, result dtype) for an input dtype (API.md dtype rules).

    float32 → float32; float64 → float64; float16 → computed in float32, returned as
    float16; bfloat16 (``ml_dtypes``) → computed in float32 (a float32 copy here; the row
    forwards take the 16-bit kernels of ``_ops/_lowp.py`` instead), returned as bfloat16;
    bool and integers → float64. Everything else is a ``TypeError``.
    Non-native byte order (``>f4`` on a little-endian machine: FITS, some ``.npy``/HDF5
    files) follows the same rules and gives native-order types: the kernels' contiguous
    copy converts the data once, as NumPy does.
    """
    rule = _RULES.get(dtype)
    if rule is not None:
        return rule
    dtype = np.dtype(dtype)
    if not dtype.isnative:
        dtype = dtype.newbyteorder("=")
    if dtype == F32 or dtype == F64:
        return dtype, dtype
    if dtype == F16:
        return F32, F16
    if dtype.kind in "biu":
        return F64, F64
    if dtype.name == "bfloat16":  # ml_dtypes.bfloat16 (the row forwards use 16-bit kernels instead)
        return F32, dtype
    raise _type_error(
        fn, arg, "a real array of float16/32/64, integer or bool dtype", f"dtype {dtype}"
    )


_ARRAY = "an array (NumPy, GPU or Dask array, or a nested sequence of numbers)"
_NOT_ARRAYS = (str, bytes, bytearray, dict, set, frozenset)
# functions whose statistics ignore NaN: a masked x can become x.filled(np.nan)
_NAN_IGNORING = ("standardize", "min_max_scale", "StandardScaler", "MinMaxScaler")


def is_masked(value):
    """True for a ``numpy.ma.MaskedArray`` (without importing ``numpy.ma``)."""
    ma = sys.modules.get("numpy.ma")
    return ma is not None and isinstance(value, ma.MaskedArray)


def masked_error(fn, arg, value):
    """The ``TypeError`` for a masked array: numbanorm does not honour masks (README)."""
    if arg in ("x", "X") and fn.split(".")[0] in _NAN_IGNORING:
        how = (
            f"pass {arg}.filled(np.nan) to leave the masked values out of the statistics "
            "(NaN is ignored there and stays NaN in the result), or np.asarray("
            f"{arg}) to use them"
        )
    else:
        how = (
            f"pass {arg}.filled(value) with a fill value of your choice, or np.asarray({arg}) "
            "to use the masked values as they are"
        )
    return TypeError(
        f"{fn}(): argument '{arg}' must not be a masked array (masks are not honoured: the "
        f"masked values would enter the computation), got {describe(value)}; {how}"
    )


def array(fn, arg, dev, value):
    """A required array argument (``x``, ``grad_out``, ...) as an array of ``dev``.

    NumPy, GPU arrays and array_likes (nested lists of numbers, objects with
    ``__array__``) are accepted; ``None``, strings, bytes, dicts, objects NumPy turns into
    an object/string array, and masked arrays (whose mask would be silently dropped) are
    a ``TypeError`` naming the function and the argument.
    """
    if type(value) is _NDARRAY:
        return value if dev is _CPU else dev.asarray(value)  # fast path: one call like dev.asarray
    check_array_like(fn, arg, value)
    a = dev.asarray(value)
    if a.dtype.kind in "OSUV" and not hasattr(value, "dtype"):
        raise _type_error(fn, arg, _ARRAY, describe(value))
    return a


def check_array_like(fn, arg, value):
    """Refuse what cannot be an array argument (see :func:`array`); None included."""
    if value is None or isinstance(value, _NOT_ARRAYS):
        raise _type_error(fn, arg, _ARRAY, describe(value))
    if is_masked(value):
        raise masked_error(fn, arg, value)


def eps(fn, value, arg="eps"):
    """A finite real number >= 0, as a Python float."""
    if type(value) is float and 0.0 <= value < math.inf:  # fast path
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _type_error(fn, arg, "a finite real number >= 0", describe(value))
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise _value_error(fn, arg, "a finite real number >= 0", value)
    return value


def real(fn, value, arg, finite=True):
    """Any real number (finite unless ``finite=False``), as a Python float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _type_error(fn, arg, "a real number", describe(value))
    value = float(value)
    if finite and not math.isfinite(value):
        raise _value_error(fn, arg, "a finite real number", value)
    return value


def positive_int(fn, value, arg):
    """An integer >= 1 (sizes, group counts)."""
    if isinstance(value, bool):
        raise _type_error(fn, arg, "an integer >= 1", describe(value))
    try:
        value = operator.index(value)
    except TypeError:
        raise _type_error(fn, arg, "an integer >= 1", describe(value)) from None
    if value < 1:
        raise _value_error(fn, arg, "an integer >= 1", value)
    return value


def flag(fn, value, arg):
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise _type_error(fn, arg, "True or False", describe(value))


def choice(fn, value, arg, options):
    if not isinstance(value, str) or value not in options:
        raise _value_error(fn, arg, "one of " + ", ".join(repr(o) for o in options), repr(value))
    return value


def normalized_shape(fn, x_shape, value):
    """torch semantics: an int or a sequence of ints equal to the trailing dims of x."""
    if type(value) is int and x_shape and x_shape[-1] == value:  # fast path
        return (value,)
    if isinstance(value, (bool, np.bool_)):
        raise _type_error(fn, "normalized_shape", "an int or a tuple of ints", describe(value))
    try:
        shape = (operator.index(value),)
    except TypeError:
        try:
            shape = tuple(operator.index(d) for d in value)
        except TypeError:
            raise _type_error(
                fn, "normalized_shape", "an int or a tuple of ints", describe(value)
            ) from None
    k = len(shape)
    if k == 0 or k > len(x_shape) or tuple(x_shape[len(x_shape) - k:]) != shape:
        raise _value_error(
            fn,
            "normalized_shape",
            f"the trailing dimensions of x (x has shape {tuple(x_shape)})",
            shape,
        )
    return shape


def channel_axis(fn, value, ndim):
    """Normalise a channel axis for an (N, C, *spatial) or channels-last input of ndim >= 2."""
    if ndim < 2:
        raise _value_error(fn, "x", "an array with at least 2 dimensions (N, C, ...)", f"{ndim}-D")
    if isinstance(value, bool):
        raise _type_error(fn, "channel_axis", "an integer", describe(value))
    try:
        ax = operator.index(value)
    except TypeError:
        raise _type_error(fn, "channel_axis", "an integer", describe(value)) from None
    if not -ndim <= ax < ndim:
        raise _value_error(fn, "channel_axis", f"an axis of the {ndim}-D input", value)
    ax %= ndim
    if ax == 0:
        raise _value_error(
            fn, "channel_axis", "a non-batch axis (1 = channels-first, -1 = channels-last)", value
        )
    return ax


def param(fn, arg, dev, value, shape, dtype):
    """An affine parameter / statistic of exactly ``shape``, as a contiguous ``dtype`` array.

    Returns None for None. Small arrays: converting them is cheap. A 1-element ``shape``
    also accepts a 0-d scalar array.
    """
    if value is None:
        return None
    if (  # fast path: already what the kernels take
        type(value) is np.ndarray and value.dtype == dtype and value.shape == shape
        and value.ndim == 1 and value.flags.c_contiguous
    ):
        return value
    value = array(fn, arg, dev, value)
    if value.dtype.name == "bfloat16":  # ml_dtypes (model checkpoints' weights): exactly float32
        value = value.astype(F32) if dev.name == "cpu" else dev.kernels("_rows_lowp").widen(value)
    if value.dtype.kind not in "fiub":
        raise _type_error(fn, arg, "a real array", f"dtype {value.dtype}")
    if tuple(value.shape) != tuple(shape):
        raise _value_error(fn, arg, f"an array of shape {tuple(shape)}", f"shape {tuple(value.shape)}")
    return dev.contiguous(value, dtype).reshape(-1)


def out(fn, dev, value, shape, dtype, arg="out"):
    """Check an ``out=`` array: right device (done by dispatch), shape and castable dtype.

    Returns it as ``dev``'s array (a NumPy ``out`` forced onto the GPU: its device copy).
    """
    if value is None:
        return None
    if type(value) is np.ndarray and value.shape == shape and value.dtype == dtype and value.flags.writeable:
        if dev.name == "cpu":
            return value  # fast path
    if not hasattr(value, "shape") or not hasattr(value, "dtype"):
        raise _type_error(fn, arg, "an array", describe(value))
    if is_masked(value):
        raise masked_error(fn, arg, value)
    value = dev.asarray(value)
    if tuple(value.shape) != tuple(shape):
        raise _value_error(fn, arg, f"an array of shape {tuple(shape)}", f"shape {tuple(value.shape)}")
    if not np.can_cast(dtype, value.dtype, casting="same_kind"):
        raise _type_error(
            fn, arg, f"an array whose dtype {dtype} results can be cast to", f"dtype {value.dtype}"
        )
    if not _writeable(value):
        raise _value_error(fn, arg, "a writeable array", "a read-only array")
    return value


def _writeable(a):
    """NumPy/CuPy ``flags.writeable``; Numba device arrays' ``flags`` is a dict (no such key)."""
    flags = getattr(a, "flags", None)
    if flags is None:
        return True
    if isinstance(flags, dict):
        return flags.get("WRITEABLE", True)
    return getattr(flags, "writeable", True)


_MAY_SHARE = np.may_share_memory


def apart(o, arrays):
    """True when the NumPy array ``o`` shares memory with none of the NumPy ``arrays``
    (None entries skipped; ``o`` itself among them counts as sharing). Two distinct arrays
    that both own their data (``flags.owndata``: NumPy allocated each buffer for that array
    alone) are apart without a memory test; any other pair takes ``np.may_share_memory``
    (0.35 us a pair, a fifth of a small fused call's checks)."""
    own = o.flags.owndata
    for a in arrays:
        if a is None:
            continue
        if a is o:
            return False
        if not (own and a.flags.owndata) and _MAY_SHARE(o, a):
            return False
    return True


def plain_like(a, dt, shape):
    """Whether ``a`` is a C-contiguous NumPy array of dtype ``dt`` (the same object) and ``shape``."""
    return type(a) is _NDARRAY and a.dtype is dt and a.shape == shape and a.flags.c_contiguous


def plain_out(a, dt, shape):
    """:func:`plain_like`, and writeable: an ``out=`` the kernels may write directly."""
    if type(a) is not _NDARRAY or a.dtype is not dt or a.shape != shape:
        return False
    flags = a.flags
    return flags.c_contiguous and flags.writeable


def plain_rows(x, normalized_shape, eps, out, weight, bias=None):
    """Fast path of the row normalizations' forward (``layer_norm``, ``rms_norm``).

    The row length N (an int > 0) when every check of the general path would pass with
    nothing to convert, else 0: ``x`` a non-empty C-contiguous float32/float64 NumPy array,
    ``normalized_shape`` the length of its last axis as an int or as torch spells it, a
    1-tuple or 1-list of an int (``(768,)``), ``eps`` a float >= 0 or None, ``weight``/``bias`` None or
    C-contiguous ``(N,)`` NumPy arrays of x's dtype (the layouts the kernels are compiled
    for), ``out`` None or a writeable C-contiguous array of x's shape and dtype that is
    either ``x`` itself or shares no memory with ``x``, ``weight`` or ``bias`` (any other
    overlap goes through the general path's scratch buffer), and no device forced.
    0 sends the call through the general checks (which then pass or raise the usual
    error). Written for speed: small calls are dominated by argument checking.
    """
    if type(x) is not _NDARRAY:
        return 0
    n = normalized_shape
    t = type(n)
    if t is not int:
        if (t is not tuple and t is not list) or len(n) != 1 or type(n[0]) is not int:
            return 0
        n = n[0]
    dt = x.dtype
    shape = x.shape
    if (dt is not F32 and dt is not F64) or not shape or shape[-1] != n or not x.size:
        return 0
    if eps is not None and not (type(eps) is float and 0.0 <= eps < _INF):
        return 0
    n1 = (n,)
    if (weight is not None and not plain_like(weight, dt, n1)) or (bias is not None and not plain_like(bias, dt, n1)):
        return 0
    if out is not None and not (plain_out(out, dt, shape) and apart(out, (None if out is x else x, weight, bias))):
        return 0
    return n if x.flags.c_contiguous and _dispatch._FORCED.get() is None else 0


def plain_fused(x, residual, normalized_shape, eps, out, residual_out, weight, bias=None):
    """Fast path of ``add_layer_norm`` / ``add_rms_norm``: :func:`plain_rows` of ``x`` (and
    ``weight``/``bias``), ``residual`` a C-contiguous NumPy array of x's shape and dtype,
    ``out``/``residual_out`` None or writeable C-contiguous arrays of that shape and dtype,
    each either exactly ``x`` or ``residual`` (the kernels read a row before writing it) or
    sharing no memory with any input, and not with each other. Returns the row length N,
    or 0 (never an error), as :func:`plain_rows`."""
    n = plain_rows(x, normalized_shape, eps, None, weight, bias)
    if not n:
        return 0
    dt = x.dtype
    shape = x.shape
    if not plain_like(residual, dt, shape):
        return 0
    for o in (out, residual_out):
        if o is None:
            continue
        if not plain_out(o, dt, shape):
            return 0
        exact = o is x or o is residual
        if not apart(o, (None if exact else x, None if exact else residual, weight, bias)):
            return 0
    return n if out is None or residual_out is None or apart(out, (residual_out,)) else 0


def plain_rows_backward(grad_out, x, normalized_shape, eps, weight, stats):
    """Fast path of ``layer_norm_backward`` / ``rms_norm_backward`` without ``out=``:
    :func:`plain_rows` of ``x``, ``grad_out`` a C-contiguous NumPy array of x's shape and
    dtype, and the saved statistics ``stats`` (mean and rstd, or rstd) all None or all
    C-contiguous NumPy arrays of x's dtype shaped as ``return_stats=True`` returns them or
    as the leading dims. Returns the row length N, or 0 (never an error), as :func:`plain_rows`."""
    n = plain_rows(x, normalized_shape, eps, None, weight)
    if not n:
        return 0
    dt = x.dtype
    shape = x.shape
    if not plain_like(grad_out, dt, shape):
        return 0
    if stats[0] is None:
        return n if all(a is None for a in stats) else 0
    lead = shape[:-1]
    keep = lead + (1,)
    for a in stats:
        if not (type(a) is _NDARRAY and a.dtype is dt and (a.shape == keep or a.shape == lead)
                and a.flags.c_contiguous):
            return 0
    return n