"""16-bit data (bfloat16, float16) in and out of the row norms, and quantized RMSNorm outputs.

Two numbanorm extensions share this path (README "Decisions"):

* **bfloat16 / float16** ``x`` (``ml_dtypes.bfloat16`` or ``np.float16`` NumPy arrays,
  torch tensors on the CPU, GPU arrays): :func:`rows_forward` and :func:`normalize` run the
  ``_rows_lowp`` kernels on zero-copy *bit views* of the arrays (bfloat16 as ``uint16``,
  float16 as ``int16``): computed in float32, rounded once to the data format on store, no
  float32 copy of the array. The result has ``x``'s dtype, statistics are float32.
* ``quantize="int8"`` / ``"float8_e4m3"`` on ``rms_norm`` / ``add_rms_norm`` (any float
  data): the ``_quant`` kernels return ``(q, scale)`` per row (vLLM's
  ``rms_norm_dynamic_per_token_quant``); see :mod:`numbanorm._cpu._quant`.

``ml_dtypes`` is imported only when a bfloat16 array or a float8 result is involved.
Everything is validated before any kernel runs (a failed call writes nothing).
"""
import sys

import numpy as np

from .. import _dispatch, _pool, _validate
from . import _fused
from ._common import check_disjoint, prod

F16 = np.dtype(np.float16)
F32 = np.dtype(np.float32)
F64 = np.dtype(np.float64)
QUANTIZE = (None, "int8", "float8_e4m3")
_QMAX = {"int8": 127.0, "float8_e4m3": 448.0}
_NAMES = {"bfloat16": "bf16", "float16": "f16", "torch.bfloat16": "bf16", "torch.float16": "f16"}


def fmt(dt):
    """"bf16", "f16" or None for a dtype (NumPy, ml_dtypes or torch)."""
    return _NAMES.get(getattr(dt, "name", None) or str(dt))


def wanted(x, casting=None):
    """Whether a forward call on ``x`` takes the 16-bit kernels (not a deferred device, not casting
    "llama"/"none", which round between steps and keep their float32-copy path)."""
    dt = getattr(x, "dtype", None)
    return (dt is not None and fmt(dt) is not None and casting in (None, "gemma")
            and not _dispatch.is_deferred(x))


def wanted_backward(*arrays):
    """Whether a backward on these data arrays (``x``/``y``/``s``, ``grad_out``, ``grad_s``;
    None skipped) takes the 16-bit kernels: one of them bfloat16/float16, none float64
    (float64 data compute in float64), none deferred."""
    arrays = [a for a in arrays if a is not None]
    dts = [getattr(a, "dtype", None) for a in arrays]
    return (any(fmt(dt) is not None for dt in dts if dt is not None)
            and not any(dt is not None and fmt(dt) is None and getattr(dt, "itemsize", 0) == 8 for dt in dts)
            and not any(_dispatch.is_deferred(a) for a in arrays))


def rows_backward(*args, **kwargs):
    """``_fused.backward`` on 16-bit data: ``grad_out``, the data (``x``/``s`` or ``y``),
    ``grad_s`` read and ``grad_x`` written as bit views by the kernels, math in float32, no
    float32 copy of an array; ``grad_x`` has the data's dtype, the parameter gradients the
    dtype the float32-copy path gives them (API dtype rules)."""
    return _fused.backward(*args, lowp=_THIS, **kwargs)


def bfloat16():
    import ml_dtypes

    return np.dtype(ml_dtypes.bfloat16)


def float8_e4m3():
    import ml_dtypes

    return np.dtype(ml_dtypes.float8_e4m3fn)


def check_quantize(fn, value):
    if value is None or (isinstance(value, str) and value in QUANTIZE):
        return value
    raise ValueError(f"{fn}(): argument 'quantize' must be one of None, 'int8', 'float8_e4m3', got {value!r}")


# ------------------------------------------------------------------ arrays and bit views

_BITS = {"bf16": np.dtype(np.uint16), "f16": np.dtype(np.int16)}


def _host(a):
    """A NumPy array of host data ``a``; torch bfloat16 tensors through an int16 view."""
    if type(a) is np.ndarray:
        return a
    if str(getattr(a, "dtype", "")) == "torch.bfloat16":
        import torch

        return a.detach().view(torch.int16).numpy().view(bfloat16())
    return _dispatch.CPU.asarray(a)


def asarray(dev, a):
    """``a`` as ``dev``'s array (GPU: a bit view for bfloat16, which Numba may not type)."""
    if dev.name == "cpu":
        return _host(a)
    return dev.kernels("_rows_lowp").device_array(dev, a)  # GPU arrays, or host data forced there


def _kernel_view(dev, a, shape2, ctype):
    """``a`` as the kernels read it: a C-contiguous bit view of 16-bit data, float32 as it
    is, anything else converted to ``ctype`` (copies only where needed)."""
    f = fmt(a.dtype)
    if f is not None:
        a = _bits(dev, a, _BITS[f])
        return dev.contiguous(a, a.dtype).reshape(shape2)
    if a.dtype == F32 or a.dtype == ctype:
        return dev.contiguous(a, a.dtype).reshape(shape2)
    return dev.contiguous(a, ctype).reshape(shape2)


def _bits(dev, a, dt):
    """Zero-copy view of a 16/8-bit float array as the integer type ``dt``."""
    return a.view(dt) if dev.name == "cpu" else dev.kernels("_rows_lowp").bits(a, dt)


def _float_dtype(fn, arg, dt):
    """The dtype an array of ``dt`` is read as: itself for float16/bfloat16/float32/float64,
    float64 for integers and bool (API dtype rules)."""
    if fmt(dt) is not None:
        return np.dtype(dt)
    ctype, rtype = _validate.float_dtypes(fn, arg, dt)
    return rtype


class _Result:
    """An output of ``dtype`` (shape ``shape``): written directly into ``out`` when it has
    that dtype, is C-contiguous and overlaps no input other than exactly (``aliases``),
    else into a scratch array copied into ``out`` after the kernel (module doc)."""

    def __init__(self, dev, out, shape, dtype, inputs, aliases=()):
        self.dev, self.out, self.shape, self.dtype = dev, out, shape, dtype
        direct = out is not None and out.dtype == dtype and dev.is_contiguous(out)
        if direct:
            for a in inputs:
                if a is not None and dev.may_share_memory(out, a) and not any(
                        a is b and dev.same_array(out, a) for b in aliases):
                    direct = False
        self.direct = direct
        # a fresh host buffer comes from the output pool (as the float32 paths' outputs): a new
        # 32 MiB int8 / 64 MiB bfloat16 array faults in and zeroes every page on each call
        self.buf = out if direct else (_pool.empty(shape, dtype) if dev.name == "cpu" else dev.empty(shape, dtype))

    def kernel(self, shape2):
        f = fmt(self.dtype)
        b = self.buf.reshape(shape2)
        if f is not None:
            return _bits(self.dev, b, _BITS[f])
        if self.dtype.kind == "V" and self.dtype.itemsize == 1:  # float8_e4m3fn
            return _bits(self.dev, b, np.dtype(np.uint8))
        return b

    def result(self, dev_wrap):
        if self.out is None:
            return dev_wrap(self.buf)
        if not self.direct:
            if self.dev.name == "cpu":
                np.copyto(self.out, self.buf, casting="same_kind")
            else:
                self.dev.kernels("_rows_lowp").copy_into(self.out, self.buf)
        return None


def _out(fn, dev, value, shape, dtype, arg="out", exact=False):
    """``out=`` / ``residual_out=``: an array of ``shape`` that ``dtype`` results can be cast
    to (``exact``: of ``dtype`` itself, the quantized outputs)."""
    if value is None:
        return None
    if not hasattr(value, "shape") or not hasattr(value, "dtype"):
        raise TypeError(f"{fn}(): argument '{arg}' must be an array, got {_validate.describe(value)}")
    a = asarray(dev, value)
    if tuple(a.shape) != tuple(shape):
        raise ValueError(f"{fn}(): argument '{arg}' must be an array of shape {tuple(shape)}, "
                         f"got shape {tuple(a.shape)}")
    if exact and a.dtype != dtype:
        raise TypeError(f"{fn}(): argument '{arg}' must be an array of dtype {dtype} (the quantized "
                        f"output), got dtype {a.dtype}")
    if not exact and not np.can_cast(dtype, a.dtype, casting="same_kind"):
        raise TypeError(f"{fn}(): argument '{arg}' must be an array whose dtype {dtype} results can be "
                        f"cast to, got dtype {a.dtype}")
    if not _validate._writeable(a):
        raise ValueError(f"{fn}(): argument '{arg}' must be a writeable array, got a read-only array")
    return a


def _param(fn, arg, dev, value, nshape, ctype):
    if value is not None and fmt(getattr(value, "dtype", None)) == "bf16":
        value = asarray(dev, value)
        value = value.astype(F32) if dev.name == "cpu" else dev.kernels("_rows_lowp").widen(value)
    return _validate.param(fn, arg, dev, value, nshape, ctype)


def _wrap(dev, user, a):
    """Result ``a`` in the caller's array type (torch bfloat16 through an int16 view)."""
    if dev.name == "cpu" and dev.kind == "torch" and fmt(a.dtype) == "bf16":
        import torch

        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    if dev.name != "cpu":
        return dev.kernels("_rows_lowp").wrap(dev, a)  # bit views back to bfloat16
    return dev.wrap(a)


def _stype(fn, xt, rt, residual_dtype):
    if residual_dtype is not None:
        name = getattr(residual_dtype, "name", None) or str(residual_dtype)
        dt = bfloat16() if name == "bfloat16" else None
        if dt is None:
            try:
                dt = np.dtype(residual_dtype)
            except TypeError:
                dt = None
        if dt is None or not (dt in (F16, F32, F64) or fmt(dt) == "bf16"):
            raise TypeError(f"{fn}(): argument 'residual_dtype' must be bfloat16, float16, float32 or "
                            f"float64, got {residual_dtype!r}")
        return dt
    if rt == xt:
        return xt
    try:
        return np.result_type(xt, rt)
    except TypeError:
        return F32


# ------------------------------------------------------------------ the row forwards


def rows_forward(fn, centered, x, residual, normalized_shape, weight, bias, eps, *, weight_offset=0.0,
                 casting=None, residual_dtype=None, out=None, residual_out=None, return_stats=False, add=False,
                 quantize=None):
    """The forward of ``[add_]layer_norm`` / ``[add_]rms_norm`` on 16-bit data or with
    ``quantize``; returns what the public function returns (module doc)."""
    quantize = check_quantize(fn, quantize)
    dev = _dispatch.device_of(fn, x=x, residual=residual, weight=weight, bias=bias, out=out,
                              residual_out=residual_out)
    if dev.deferred:
        raise TypeError(f"{fn}(): argument 'quantize' is not supported for Dask arrays, got {quantize!r}; "
                        "quantize the computed blocks with map_blocks")
    offset = _fused.check_offset(fn, weight_offset)
    casting = _fused.check_casting(fn, casting)
    return_stats = _validate.flag(fn, return_stats, "return_stats")
    if quantize is not None and casting in ("llama", "none"):
        raise ValueError(f"{fn}(): argument 'casting' must be None or 'gemma' with quantize=, got {casting!r}")
    _validate.check_array_like(fn, "x", x)
    xa = asarray(dev, x)
    xt = _float_dtype(fn, "x", xa.dtype)
    ctype = F64 if xt == F64 else F32
    nshape = _validate.normalized_shape(fn, tuple(xa.shape), normalized_shape)
    shape = tuple(xa.shape)
    ra = stype = None
    if add:
        _validate.check_array_like(fn, "residual", residual)
        ra = asarray(dev, residual)
        if tuple(ra.shape) != shape:
            raise ValueError(f"{fn}(): argument 'residual' must have the shape of x {shape}, "
                             f"got shape {tuple(ra.shape)}")
        stype = _stype(fn, xt, _float_dtype(fn, "residual", ra.dtype), residual_dtype)
        if stype == F64:
            ctype = F64
    elif residual_dtype is not None or residual_out is not None:
        raise TypeError(f"{fn}(): residual_dtype/residual_out belong to the add_* functions")
    eps = _fused._eps(fn, eps, centered, ctype)
    m, n = _fused._rows(shape, nshape)
    w = _param(fn, "weight", dev, weight, nshape, ctype)
    b = _param(fn, "bias", dev, bias, nshape, ctype) if centered else None
    qtype = None if quantize is None else (np.dtype(np.int8) if quantize == "int8" else float8_e4m3())
    ytype = xt if qtype is None else qtype
    out_a = _out(fn, dev, out, shape, ytype, exact=qtype is not None)
    s_a = _out(fn, dev, residual_out, shape, stype, arg="residual_out") if add else None
    check_disjoint(fn, dev, out=out_a, residual_out=s_a)
    return rows_compute(dev, centered, add, quantize, xa, ra, nshape, w, b, eps, offset, ctype, ytype, stype,
                        qtype, return_stats, out=out, out_a=out_a, residual_out=residual_out, s_a=s_a)


def rows_compute(dev, centered, add, quantize, xa, ra, nshape, w, b, eps, offset, ctype, ytype, stype, qtype,
                 return_stats, *, out=None, out_a=None, residual_out=None, s_a=None):
    """The kernels of :func:`rows_forward` for validated arguments (``xa``/``ra`` ``dev``'s
    arrays, ``w``/``b`` contiguous ``ctype`` parameters or None, ``out_a``/``s_a`` the checked
    outputs): no check is repeated. Also the per-block compute of the Dask row forwards on
    16-bit blocks. Returns what the public function returns."""
    shape = tuple(xa.shape)
    m, n = _fused._rows(shape, nshape)
    ins = (xa, ra, w, b)
    res_y = _Result(dev, out_a, shape, ytype, ins, aliases=(xa,) if qtype is None else ())
    res_s = _Result(dev, s_a, shape, stype, ins, aliases=(xa, ra)) if add else None
    stats = dev.empty((2, m), ctype)
    mean, rstd = stats[0], stats[1]
    scale = dev.empty(m, ctype) if qtype is not None else None
    if m and n:
        rows = (m, n)
        kern_w = dev.xp.ones(n, ctype) if w is None else (
            dev.kernels("_rows_grad").offset_weight(w, offset) if offset else w)
        kern_b = dev.xp.zeros(n, ctype) if b is None else b
        x2 = _kernel_view(dev, xa, rows, ctype)
        r2 = _kernel_view(dev, ra, rows, ctype) if add else None
        y2 = res_y.kernel(rows)
        s2 = res_s.kernel(rows) if add else None
        _run(dev, centered, add, quantize, x2, r2, kern_w, kern_b, eps, s2, y2, mean, rstd, scale)
    wrap = lambda a: _wrap(dev, None, a)  # noqa: E731
    y = res_y.result(wrap)
    for user, a in ((out, out_a), (residual_out, s_a)):
        if user is not None and a is not user:
            dev.copy_back(user, a)  # host out= forced through the GPU, or a torch view
    result = (out if y is None else y,)
    if qtype is not None:
        result += (_stat(dev, scale, shape, len(nshape)),)
    if add:
        s = res_s.result(wrap)
        result += (residual_out if s is None else s,)
    if return_stats:
        sts = (mean, rstd) if centered else (rstd,)
        result += tuple(_stat(dev, a, shape, len(nshape)) for a in sts)
    return result if len(result) > 1 else result[0]


def _stat(dev, a, shape, k):
    a = a.reshape(tuple(shape[: len(shape) - k]) + (1,) * k)
    return _wrap(dev, None, a)


def _run(dev, centered, add, quantize, x2, r2, w, b, eps, s2, y2, mean, rstd, scale):
    if quantize is not None:
        k = dev.kernels("_quant")
        if add:
            k.add_rms_quant(x2, r2, w, eps, _QMAX[quantize], s2, y2, scale, rstd)
        else:
            k.rms_quant(x2, w, eps, _QMAX[quantize], y2, scale, rstd)
        return
    k = dev.kernels("_rows_lowp")
    if add and centered:
        k.add_ln_forward(x2, r2, w, b, eps, s2, y2, mean, rstd)
    elif add:
        k.add_rms_forward(x2, r2, w, eps, s2, y2, rstd)
    elif centered:
        k.ln_forward(x2, w, b, eps, y2, mean, rstd)
    else:
        k.rms_forward(x2, w, eps, y2, rstd)


# ------------------------------------------------------------------ normalize


def normalize(fn, x, p, axis, eps, out, check_p, check_axis):
    """:func:`numbanorm.normalize` of 16-bit ``x`` along its last axis (None otherwise: the
    caller's float32-copy path handles other axes)."""
    dev = _dispatch.device_of(fn, x=x, out=out)
    xa = asarray(dev, x)
    p = check_p(fn, p)
    ax = check_axis(fn, axis, xa.ndim)
    eps = _validate.eps(fn, eps)
    shape = tuple(xa.shape)
    if xa.ndim == 0 or prod(shape[ax + 1:]) != 1:
        return None
    out_a = _out(fn, dev, out, shape, xa.dtype)
    return normalize_compute(dev, xa, p, ax, eps, out=out, out_a=out_a)


def normalize_compute(dev, xa, p, ax, eps, *, out=None, out_a=None):
    """The kernel of :func:`normalize` for validated arguments (16-bit ``xa`` normalized
    along its last axis ``ax``); also the Dask normalize's task on such blocks."""
    shape = tuple(xa.shape)
    xt = xa.dtype
    res = _Result(dev, out_a, shape, xt, (xa,), aliases=(xa,))
    m, n = prod(shape[:ax]), shape[ax]
    if m and n:
        k = dev.kernels("_rows_lowp")
        k.normalize_forward(_kernel_view(dev, xa, (m, n), F32), p, eps, res.kernel((m, n)))
    y = res.result(lambda a: _wrap(dev, None, a))
    if out is not None and out_a is not out:
        dev.copy_back(out, out_a)
    return out if y is None else y


def normalize_backward(fn, grad_out, x, p, axis, eps, out, check_p, check_axis):
    """:func:`numbanorm.normalize_backward` of 16-bit ``x`` along its last axis: ``x`` and
    ``grad_out`` (16-bit or float32; other dtypes converted to float32) read by the
    kernels as bit views, ``grad_x`` (``x``'s dtype) written rounded once, no float32 copy.
    None for other axes (the caller's float32-copy path)."""
    dev = _dispatch.device_of(fn, x=x, grad_out=grad_out, out=out)
    xa = asarray(dev, x)
    ga = asarray(dev, grad_out)
    _validate.float_dtypes(fn, "grad_out", ga.dtype)
    shape = tuple(xa.shape)
    if tuple(ga.shape) != shape:
        raise ValueError(f"{fn}(): argument 'grad_out' must have the shape of x {shape}, got shape {tuple(ga.shape)}")
    p = check_p(fn, p)
    ax = check_axis(fn, axis, xa.ndim)
    eps = _validate.eps(fn, eps)
    if xa.ndim == 0 or prod(shape[ax + 1:]) != 1:
        return None
    out_a = _out(fn, dev, out, shape, xa.dtype)
    return normalize_backward_compute(dev, ga, xa, p, ax, eps, out=out, out_a=out_a)


def normalize_backward_compute(dev, ga, xa, p, ax, eps, *, out=None, out_a=None):
    """The kernel of :func:`normalize_backward` for validated arguments (16-bit ``xa``
    along its last axis ``ax``); also the Dask normalize_backward's task on such blocks.
    ``out`` overlapping an input gets scratch, then a copy (as the other backwards)."""
    shape = tuple(xa.shape)
    res = _Result(dev, out_a, shape, xa.dtype, (xa, ga))
    m, n = prod(shape[:ax]), shape[ax]
    if m and n:
        dev.kernels("_rows_lowp").normalize_backward(
            _kernel_view(dev, ga, (m, n), F32), _kernel_view(dev, xa, (m, n), F32), p, eps, res.kernel((m, n)))
    gx = res.result(lambda a: _wrap(dev, None, a))
    if out is not None and out_a is not out:
        dev.copy_back(out, out_a)
    return out if gx is None else gx


_THIS = sys.modules[__name__]
