"""Host-side statistics helpers shared by the eager ops (:mod:`numbanorm._ops`), the Dask
graph builders (:mod:`numbanorm._dask`), the scalers and ``numbanorm scale``.

They sit below all of those (they import only :mod:`._dispatch`, :mod:`._validate`,
:mod:`._interop` and :mod:`._ops._common`, never a public op), so both paths call the same
code and no import climbs back up a layer:

* the channels view of data reduced over any axes (:func:`reduce_axes`, :class:`View`);
* per-channel moments and extrema from the kernels (:func:`moments`, :func:`extrema`), the
  z-score and min-max transform parameters (:func:`zscore_params`, :func:`minmax_params`),
  their argument checks (:func:`ddof_arg`, :func:`feature_range_arg`);
* running statistics: :func:`momentum_arg`, :func:`batches_tracked`, :func:`increment`,
  :func:`update_running`;
* per-block partial statistics and their deterministic merges, as structured arrays
  (:data:`MOMENTS`, :data:`EXTREMA`, :func:`moments_chunk`, :func:`merge_moments`,
  :func:`extrema_chunk`, :func:`merge_extrema`: Chan et al. pairwise updates in a fixed order),
  and the scalers' ``partial_fit`` merge (:func:`chan_merge`).
"""
import math
import numbers
import operator
import warnings

import numpy as np

from . import _dispatch, _interop, _validate
from ._ops._common import Output, prod

F64 = _validate.F64
_F64 = F64
MOMENTS = np.dtype([("n", "f8"), ("mean", "f8"), ("m2", "f8")])
EXTREMA = np.dtype([("mn", "f8"), ("mx", "f8")])


# --------------------------------------------------------------------------- reduced axes and the channels view


def reduce_axes(fn, axis, ndim):
    """Sorted tuple of the reduced axes (``None``: all of them)."""
    if axis is None:
        return tuple(range(ndim))
    bad = TypeError(
        f"{fn}(): argument 'axis' must be an integer, a tuple of integers or None, "
        f"got {_validate.describe(axis)}"
    )
    if isinstance(axis, (bool, np.bool_)):
        raise bad
    try:
        axes = (operator.index(axis),)
    except TypeError:
        if not isinstance(axis, (tuple, list)):
            raise bad from None
        if any(isinstance(a, (bool, np.bool_)) for a in axis):
            raise bad from None
        try:
            axes = tuple(operator.index(a) for a in axis)
        except TypeError:
            raise bad from None
    norm = []
    for a in axes:
        if not -ndim <= a < ndim:
            raise np.exceptions.AxisError(
                f"{fn}(): argument 'axis' must hold axes of the {ndim}-D input "
                f"(-{ndim} <= axis < {ndim}), got {axis}"
            )
        norm.append(a % ndim)
    if len(set(norm)) != len(norm):
        raise ValueError(f"{fn}(): argument 'axis' must not repeat an axis, got {axis}")
    return tuple(sorted(norm))


def permute(dev, a, axes):
    """Zero-copy transposed view (NumPy or Numba device array: a strided device view)."""
    if dev.name == "cpu":
        return a.transpose(axes)
    if getattr(dev.xp, "SIMULATOR", False):
        return a.transpose(axes)  # simulated device arrays are NumPy-backed views
    from numba.cuda.cudadrv.devicearray import DeviceNDArray

    shape = tuple(a.shape[i] for i in axes)
    strides = tuple(a.strides[i] for i in axes)
    # the same memory with permuted strides (Numba's own transpose copies, and only 2-D)
    return DeviceNDArray(shape, strides, a.dtype, stream=a.stream, gpu_data=a.gpu_data)


class View:
    """Maps an array of ``shape`` reduced over ``axes`` to the channels view (O, C, I).

    ``perm`` is None when the view is a reshape of the C-contiguous array; otherwise the
    input is transposed by ``perm`` (reduced axes first) and copied, and results are
    transposed back with ``inv``.
    """

    __slots__ = ("shape", "axes", "kept", "perm", "inv", "dims", "stat_shape")

    def __init__(self, shape, axes):
        shape = tuple(int(s) for s in shape)
        self.shape, self.axes = shape, axes
        ndim = len(shape)
        kept = [a for a in range(ndim) if a not in axes]
        self.kept = tuple(kept)
        self.stat_shape = tuple(1 if a in axes else shape[a] for a in range(ndim))
        self.perm = self.inv = None
        if not kept:
            self.dims = (prod(shape), 1, 1)
        elif kept == list(range(kept[0], kept[-1] + 1)):
            self.dims = (prod(shape[: kept[0]]), prod(shape[kept[0]: kept[-1] + 1]), prod(shape[kept[-1] + 1:]))
        else:
            self.perm = tuple(axes) + tuple(kept)
            self.inv = tuple(int(i) for i in np.argsort(self.perm))
            self.dims = (prod(shape[a] for a in axes), prod(shape[a] for a in kept), 1)

    def input(self, dev, xa, ctype):
        """The (O, C, I) C-contiguous ``ctype`` array of ``xa`` (copied only if needed)."""
        if self.perm is not None:
            xa = permute(dev, xa, self.perm)
        return dev.contiguous(xa, ctype).reshape(self.dims)

    def output(self, dev, user_out, out_a, ctype, rtype, xa):
        """An output buffer in the (O, C, I) layout; ``finish()`` returns the result.

        ``xa`` is the input the kernel reads: an ``out`` overlapping it other than exactly
        (``out=x``) gets a scratch buffer (:class:`._common.Output`).
        """
        if out_a is not None and dev.name == "cuda" and getattr(dev, "kind", None) == "numpy":
            # NumPy arrays forced onto the GPU (tests): out_a is a device copy of the
            # caller's out; compute into a device buffer and copy the result back
            buf, fin = self.output(dev, None, None, ctype, rtype, xa)

            def finish_host():
                np.copyto(user_out, fin(), casting="same_kind")
                return user_out

            return buf, finish_host
        if self.perm is None:
            res = Output(dev, user_out, out_a, self.shape, self.dims, ctype, rtype, inputs=(xa,), inplace=True)
            return res.buf, res.result
        buf = dev.empty(self.dims, ctype)
        pshape = tuple(self.shape[a] for a in self.perm)

        def finish():
            y = permute(dev, buf.reshape(pshape), self.inv)
            if out_a is None:
                return dev.wrap(dev.contiguous(y, rtype))
            dev.copyto(out_a, y)
            return user_out

        return buf, finish


def ddof_arg(fn, ddof):
    if isinstance(ddof, (bool, np.bool_)) or not isinstance(ddof, numbers.Real):
        raise TypeError(f"{fn}(): argument 'ddof' must be a real number >= 0, got {_validate.describe(ddof)}")
    ddof = float(ddof)
    if not math.isfinite(ddof) or ddof < 0:
        raise ValueError(f"{fn}(): argument 'ddof' must be a finite real number >= 0, got {ddof}")
    return ddof


def host(dev, a):
    """A small kernel result as a NumPy array."""
    return a if dev.name == "cpu" else dev.to_host(a)


def device_params(dev, *arrays):
    """Small float64 NumPy parameter arrays on the kernel side."""
    if dev.name == "cpu":
        return tuple(np.ascontiguousarray(a, dtype=_F64) for a in arrays)
    return tuple(dev.asarray(np.ascontiguousarray(a, dtype=_F64)) for a in arrays)


def moments(dev, x3, weight=None):
    """(count, mean, M2) float64 NumPy arrays per channel of the (O, C, I) array ``x3``."""
    c = x3.shape[1]
    count, mean, m2 = (dev.empty(c, _F64) for _ in range(3))
    if weight is not None and dev.name != "cpu":
        weight = dev.asarray(np.ascontiguousarray(weight, dtype=_F64))
    dev.kernels("standardize").moments(x3, weight, count, mean, m2)
    return host(dev, count), host(dev, mean), host(dev, m2)


def is_constant(var, mean, n):
    """scikit-learn's ``_is_constant_feature``: variance within the two-pass error bound."""
    eps = np.finfo(np.float64).eps
    with np.errstate(invalid="ignore", over="ignore"):
        return var <= n * eps * var + (n * mean * eps) ** 2


def zscore_params(count, mean, m2, ddof):
    """(mean, scale) from moments: scale = std, 1 for (near-)constant channels."""
    with np.errstate(invalid="ignore", divide="ignore"):
        dof = count - ddof
        var = np.where(dof > 0, m2 / np.where(dof > 0, dof, 1.0), np.nan)
        scale = np.sqrt(var)
    scale[is_constant(var, mean, count)] = 1.0
    return mean, scale


# --------------------------------------------------------------------------- min-max


def feature_range_arg(fn, value, arg="feature_range"):
    """(lo, hi) as Python floats, finite, lo < hi."""
    expected = "a pair (min, max) of finite real numbers with min < max"
    try:
        lo, hi = value
    except (TypeError, ValueError):
        raise TypeError(f"{fn}(): argument '{arg}' must be {expected}, got {_validate.describe(value)}") from None
    for v in (lo, hi):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
            raise TypeError(f"{fn}(): argument '{arg}' must be {expected}, got {_validate.describe(value)}")
    lo, hi = float(lo), float(hi)
    if not (math.isfinite(lo) and math.isfinite(hi)) or not lo < hi:
        raise ValueError(f"{fn}(): argument '{arg}' must be {expected}, got {tuple(value)!r}")
    return lo, hi


def extrema(dev, x3):
    """(data_min, data_max) float64 NumPy arrays per channel; NaN where no value."""
    c = x3.shape[1]
    mn, mx = dev.empty(c, _F64), dev.empty(c, _F64)
    dev.kernels("min_max_scale").extrema(x3, mn, mx)
    mn, mx = host(dev, mn), host(dev, mx)
    none = mn > mx
    mn[none] = np.nan
    mx[none] = np.nan
    return mn, mx


def handle_zeros(rng):
    """scikit-learn's ``_handle_zeros_in_scale``: ranges below 10 eps become 1 (and a mask)."""
    const = rng < 10 * np.finfo(np.float64).eps
    out = rng.copy()
    out[const] = 1.0
    return out, const


def minmax_params(data_min, data_max, lo, hi):
    """(sub, mul, div, add) of the transform, plus (scale_, min_) as scikit-learn defines them.

    Non-constant positions: y = x · scale + min_ (scikit-learn's rounding); constant ones:
    y = (x − data_min) · scale + lo, so that a constant feature maps exactly to ``lo``.
    """
    with np.errstate(invalid="ignore", over="ignore"):
        rng = data_max - data_min
        denom, const = handle_zeros(rng)
        scale = (hi - lo) / denom
        min_ = lo - data_min * scale
    sub = np.where(const, data_min, 0.0)
    add = np.where(const, lo, min_)
    return (sub, scale, np.ones_like(scale), add), scale, min_


# --------------------------------------------------------------------------- running statistics


def momentum_arg(fn, value):
    """None (cumulative average) or a finite real number."""
    return None if value is None else _validate.real(fn, value, "momentum")

def _counter(value):
    """A 1-element counter array as something with copy_to_host/copy_to_device (device) or a
    zero-copy NumPy view of host memory (NumPy, torch, ... tensors)."""
    if hasattr(value, "copy_to_host"):  # Numba device array (or the simulator's)
        return value
    if _dispatch._is_gpu(value):  # CuPy, torch.cuda, ...: zero-copy view, no stream sync
        from ._cuda import _layout

        return _layout.as_device_array(_interop.cuda_view(value))
    return _interop.host_view(value)


def batches_tracked(fn, value):
    """``num_batches_tracked``: None (= 0), an int >= 0, or a 1-element integer array.

    Returns (count, array or None): the array (host or device) is incremented in place
    after a training step. A device counter's count is None: it stays on the device
    (:func:`factor` reads it there; a negative device counter is not detected).
    """
    if value is None:
        return 0, None
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        arr = _counter(value)
        if np.dtype(arr.dtype).kind not in "iu" or prod(arr.shape) != 1:
            raise TypeError(
                f"{fn}(): argument 'num_batches_tracked' must be an int or a 1-element integer "
                f"array, got {_validate.describe(value)}"
            )
        if not _validate._writeable(arr):
            raise ValueError(
                f"{fn}(): argument 'num_batches_tracked' must be a writeable array, got a read-only array"
            )
        if hasattr(arr, "copy_to_host"):  # a device counter: read on the device, never here
            return None, arr
        count = int(np.asarray(arr).reshape(-1)[0])
    else:
        if isinstance(value, (bool, np.bool_)):
            raise TypeError(f"{fn}(): argument 'num_batches_tracked' must be an int, got {value!r}")
        try:
            count = operator.index(value)
        except TypeError:
            raise TypeError(
                f"{fn}(): argument 'num_batches_tracked' must be an int or a 1-element integer "
                f"array, got {_validate.describe(value)}"
            ) from None
        arr = None
    if count < 0:
        raise ValueError(f"{fn}(): argument 'num_batches_tracked' must be >= 0, got {count}")
    return count, arr


def increment(arr):
    """num_batches_tracked += 1 in the caller's counter (host or device: a kernel)."""
    if arr is None:
        return
    if hasattr(arr, "copy_to_host"):
        from ._cuda import _counter as counter_kernels

        counter_kernels.increment(arr)
    else:
        arr += 1


def factor(mom, count, arr):
    """The running statistics' update factor: ``momentum``, or ``1 / (count + 1)`` for the
    cumulative average (from a device counter: a 1-element device array computed there)."""
    if mom is not None:
        return mom
    if count is None:
        from ._cuda import _counter as counter_kernels

        return counter_kernels.cumulative_factor(arr)
    return 1.0 / (count + 1)


def _plain_running(a):
    """Whether the CPU kernels update running statistics ``a`` in place: a writeable
    C-contiguous float32/float64 NumPy array (float32 values are read exactly and stored
    rounded, as the float64 copy's ``copyto`` back rounds them)."""
    return (type(a) is np.ndarray and (a.dtype == np.float32 or a.dtype == np.float64) and a.flags.c_contiguous
            and a.flags.writeable)


def update_running(dev, kern, mean, var, count, factor, unbiased, running, user):
    """Update the caller's running statistics in place (in float64, stored in their dtype).

    ``running``: the (mean, var) arrays of the device; ``user``: the objects the caller
    passed (NumPy arrays forced through the GPU get the result copied back).
    """
    if dev.name == "cpu" and all(_plain_running(a) for a in running):  # in place: the kernel reads
        kern.update_running(mean, var, count, factor, unbiased, *running)  # and computes in float64
        return
    rm, rv = (dev.contiguous(a, F64) for a in running)
    kern.update_running(mean, var, count, factor, unbiased, rm, rv)
    for new, arr, obj in zip((rm, rv), running, user):
        if dev.name == "cuda" and dev.host:  # force_device("cuda") on host data
            np.copyto(_interop.host_view(obj), dev.to_host(new), casting="same_kind")
        elif new is not arr:
            dev.copyto(arr, new)


# --------------------------------------------------------------------------- per-block partials and their merges


def chan(n_a, m_a, q_a, n_b, m_b, q_b):
    """Vectorised Chan et al. merge of (count, mean, M2) arrays; empty sides are skipped."""
    n = n_a + n_b
    with np.errstate(invalid="ignore", divide="ignore"):
        f = np.where(n > 0, n_b / np.where(n > 0, n, 1.0), 0.0)
        d = m_b - m_a
        mean = m_a + d * f
        q = q_a + q_b + d * d * (n_a * f)
    mean = np.where(n_a == 0, m_b, np.where(n_b == 0, m_a, mean))
    q = np.where(n_a == 0, q_b, np.where(n_b == 0, q_a, q))
    return n, mean, q


def block_view(fn, xb, axes):
    """(device, array, :class:`View`, compute dtype, result dtype) of one block reduced over ``axes``."""
    dev = _dispatch.device_of(fn, x=xb)
    xa = dev.asarray(xb)
    ctype, rtype = _validate.float_dtypes(fn, "x", xa.dtype)
    view = View(xa.shape, axes)
    return dev, xa, view, ctype, rtype


def moments_chunk(xb, weights_chunk=None, axis=None, keepdims=True):
    """Partial (count, mean, M2) over ``axis`` of one block (numbanorm kernels), keepdims."""
    axes = tuple(sorted(axis))
    dev, xa, view, ctype, _ = block_view("standardize", xb, axes)
    out = np.zeros(view.stat_shape, MOMENTS)
    if xa.size == 0:
        return out
    w = None
    if weights_chunk is not None:
        if axes != (0,) or xa.ndim != 2:  # pragma: no cover - only the scalers pass weights
            raise ValueError("sample weights are supported for 2-D data reduced over axis 0")
        w = np.ascontiguousarray(np.asarray(weights_chunk)[:, 0], dtype=np.float64)
    n, mean, m2 = moments(dev, view.input(dev, xa, ctype), w)
    out["n"] = n.reshape(view.stat_shape)
    out["mean"] = np.where(n > 0, mean, 0.0).reshape(view.stat_shape)
    out["m2"] = np.where(n > 0, m2, 0.0).reshape(view.stat_shape)
    return out


def merge_moments(parts, axis=None, keepdims=True):
    """Merge partials along ``axis`` in C order of the partials (deterministic)."""
    axes = tuple(sorted(axis))
    p = np.moveaxis(parts, axes, tuple(range(len(axes))))
    kept = p.shape[len(axes):]
    p = p.reshape((-1,) + kept)
    n, m, q = p[0]["n"].copy(), p[0]["mean"].copy(), p[0]["m2"].copy()
    for r in range(1, p.shape[0]):
        n, m, q = chan(n, m, q, p[r]["n"], p[r]["mean"], p[r]["m2"])
    shape = tuple(1 if a in axes else s for a, s in enumerate(parts.shape))
    out = np.empty(shape, MOMENTS)
    out["n"] = n.reshape(shape)
    out["mean"] = m.reshape(shape)
    out["m2"] = q.reshape(shape)
    return out


def extrema_chunk(xb, axis=None, keepdims=True):
    """Partial NaN-ignoring (min, max) over ``axis`` of one block (numbanorm kernels), keepdims."""
    axes = tuple(sorted(axis))
    dev, xa, view, ctype, _ = block_view("min_max_scale", xb, axes)
    out = np.empty(view.stat_shape, EXTREMA)
    out["mn"] = np.nan
    out["mx"] = np.nan
    if xa.size:
        mn, mx = extrema(dev, view.input(dev, xa, ctype))
        out["mn"] = mn.reshape(view.stat_shape)
        out["mx"] = mx.reshape(view.stat_shape)
    return out


def merge_extrema(parts, axis=None, keepdims=True):
    """Merge (min, max) partials along ``axis``; a position with no value stays NaN."""
    axes = tuple(sorted(axis))
    shape = tuple(1 if a in axes else s for a, s in enumerate(parts.shape))
    out = np.empty(shape, EXTREMA)
    with np.errstate(invalid="ignore"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices stay NaN
            out["mn"] = np.nanmin(parts["mn"], axis=axes, keepdims=True)
            out["mx"] = np.nanmax(parts["mx"], axis=axes, keepdims=True)
    return out


def chan_merge(n_a, m_a, q_a, n_b, m_b, q_b):
    """Vectorised Chan et al. merge of (count, mean, M2); empty sides are skipped."""
    n_a = np.asarray(n_a, F64)
    n = n_a + n_b
    with np.errstate(invalid="ignore", divide="ignore"):
        delta = m_b - m_a
        frac = np.where(n > 0, n_b / np.where(n > 0, n, 1.0), 0.0)
        mean = m_a + delta * frac
        q = None if q_a is None else q_a + q_b + delta * delta * (n_a * frac)
    take_b = n_a == 0
    keep_a = n_b == 0
    mean = np.where(take_b, m_b, np.where(keep_a, m_a, mean))
    if q is not None:
        q = np.where(take_b, q_b, np.where(keep_a, q_a, q))
    return n, mean, q
