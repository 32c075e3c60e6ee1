"""Standardization (z-score) of data along any axis or tuple of axes.

Semantics follow scikit-learn's ``StandardScaler`` / ``scale`` and NumPy's
``nanmean``/``nanstd``: statistics over the reduced ``axis`` (one mean and standard
deviation per remaining position), NaNs ignored in the statistics and kept in the output,
``ddof`` as in ``np.std``, near-constant features (scikit-learn's ``_is_constant_feature``
rule) scaled by 1, so a constant feature maps to 0.

Canonical view: channels ``(O, C, I)``, C = the kept positions. When the kept axes are
consecutive (the reduced axes form a leading and/or a trailing group: ``axis=0`` on
``(n, f)``, ``axis=(0, 2, 3)`` on NCHW, ``axis=-1``) this is a reshape of the
C-contiguous input, no copy. Other axis sets (a reduced axis between two kept ones, e.g.
``axis=1`` of a 3-D array) are transposed to (reduced..., kept...) with one copy, and the
result is transposed back.

The helpers here (axis checks, views) are shared with :mod:`numbanorm._ops.min_max_scale`.
"""
import math
import numbers
import operator

import numpy as np

from .. import _dispatch, _validate
from ._common import Output, prod

_OP = "standardize"
_F64 = np.dtype(np.float64)


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
        if out_a is not None and getattr(dev, "kind", None) == "numpy":
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
    dev.kernels(_OP).moments(x3, weight, count, mean, m2)
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


def standardize(x, axis=0, ddof=0, *, out=None):
    r"""Standardize ``x`` to zero mean and unit variance along ``axis``.

    .. math:: y = \frac{x - \bar x}{s},\qquad
              s = \sqrt{\tfrac{1}{n - \mathrm{ddof}} \sum (x - \bar x)^2}

    with the mean and standard deviation of the non-NaN values over the reduced axes,
    one per remaining position (``axis=0`` on ``(n_samples, n_features)``: per feature,
    as ``sklearn.preprocessing.scale``).

    Parameters
    ----------
    x : array_like
        Input; NumPy (CPU kernels), GPU array (CUDA kernels) or Dask array (lazy result).
    axis : int, tuple of int or None
        The axis or axes reduced over (None: all). Default 0.
    ddof : float
        Delta degrees of freedom of the standard deviation (divisor ``n - ddof``), >= 0.
        A position with ``n - ddof <= 0`` gets NaN.
    out : array, optional
        Receives the result (may be ``x``).

    Returns
    -------
    y : array like ``x`` (float16 → float16, integers → float64)

    Notes
    -----
    NaNs are ignored when computing the statistics and stay NaN in the output. A
    (near-)constant position, as detected by scikit-learn, is only centered (scale 1),
    so it maps to 0. Infinite values are not ignored and raise no error: an ``inf`` enters
    its position's statistics (mean ±inf, variance NaN), so every output of that position
    becomes NaN. Replace them by NaN first (``np.where(np.isinf(x), np.nan, x)``) to have
    them ignored; :class:`numbanorm.StandardScaler` refuses them, as scikit-learn does,
    and so does ``numbanorm scale`` unless given ``--allow-inf``.
    Statistics are accumulated in float64 around a per-position shift,
    so float32 data with a large offset standardizes accurately. Axis sets whose kept axes
    are not consecutive (e.g. ``axis=1`` of a 3-D array) cost one transposed copy.

    Examples
    --------
    >>> import numpy as np, numbanorm
    >>> x = np.array([[1.0, 5.0], [3.0, 5.0]])
    >>> numbanorm.standardize(x)
    array([[-1.,  0.],
           [ 1.,  0.]])
    >>> numbanorm.standardize(np.array([[1.0, 2.0, 3.0]]), axis=1, ddof=1)
    array([[-1.,  0.,  1.]])
    """
    fn = _OP
    dev = _dispatch.device_of(fn, x=x, out=out)
    if dev.is_dask:
        from .. import _dask

        return _dask.standardize(x, axis, ddof, out=out)
    xa = _validate.array(fn, "x", dev, x)
    ctype, rtype = _validate.float_dtypes(fn, "x", xa.dtype)
    axes = reduce_axes(fn, axis, xa.ndim)
    ddof = ddof_arg(fn, ddof)
    out_a = _validate.out(fn, dev, out, xa.shape, rtype)

    view = View(xa.shape, axes)
    x3 = view.input(dev, xa, ctype)
    buf, finish = view.output(dev, out, out_a, ctype, rtype, xa)
    if x3.size:
        if dev.name == "cuda":  # statistics and parameters stay on the device
            c = x3.shape[1]
            count, mean, m2 = (dev.scratch(f"st.{k}", (c,), _F64) for k in ("n", "mean", "m2"))
            dev.kernels(_OP).moments(x3, None, count, mean, m2)
            recip = x3.dtype == np.float32  # no float64 division per element (README: GPU notes)
            sub, mul, div, add = dev.kernels("_scale_params").zscore(count, mean, m2, ddof, recip)
        else:
            count, mean, m2 = moments(dev, x3)
            mean, scale = zscore_params(count, mean, m2, ddof)
            zeros = np.zeros_like(mean)
            sub, mul, div, add = device_params(dev, mean, np.ones_like(mean), scale, zeros)
        dev.kernels(_OP).transform(x3, sub, mul, div, add, 0.0, 0.0, False, buf)
    return finish()
