"""Min-max scaling of data to a feature range, along any axis or tuple of axes.

Semantics follow scikit-learn's ``MinMaxScaler`` / ``minmax_scale``: per remaining
position, ``scale = (hi - lo) / (max - min)`` and ``y = x * scale + (lo - min * scale)``
(scikit-learn's exact sequence of operations), NaNs ignored by the min/max and kept in
the output, a (near-)constant feature (range < 10 eps) maps to ``lo``, optional clipping
to ``[lo, hi]``.

Canonical view: channels ``(O, C, I)``, shared with :mod:`numbanorm._ops.standardize`.

The argument check, the extrema and the transform parameters live in
:mod:`numbanorm._stats_host`; the names imported from there stay importable here.
"""
import numpy as np

from .. import _dispatch, _validate
from .._stats_host import (  # noqa: F401 - re-exported for the scalers and numbanorm scale
    View, device_params, extrema, feature_range_arg, handle_zeros, minmax_params, reduce_axes,
)

_OP = "min_max_scale"
_F64 = np.dtype(np.float64)


def min_max_scale(x, feature_range=(0.0, 1.0), axis=0, *, clip=False, out=None):
    r"""Scale ``x`` linearly so that each position spans ``feature_range`` along ``axis``.

    .. math:: y = (x - \min x)\,\frac{hi - lo}{\max x - \min x} + lo

    with the minimum and maximum of the non-NaN values over the reduced axes, one pair
    per remaining position (``axis=0`` on ``(n_samples, n_features)``: per feature, as
    ``sklearn.preprocessing.minmax_scale``).

    Parameters
    ----------
    x : array_like
        Input; NumPy (CPU kernels), GPU array (CUDA kernels) or Dask array (lazy result).
    feature_range : (float, float)
        Target range ``(lo, hi)``, finite, ``lo < hi``.
    axis : int, tuple of int or None
        The axis or axes reduced over (None: all). Default 0.
    clip : bool
        Clip the result to ``[lo, hi]`` (NaN stays NaN).
    out : array, optional
        Receives the result (may be ``x``).

    Returns
    -------
    y : array like ``x`` (float16 → float16, integers → float64)

    Notes
    -----
    Computed as scikit-learn does, ``y = x * scale + (lo - min * scale)``; a (near-)constant
    position (range below 10 machine epsilons) maps to ``lo``. NaNs are ignored by the
    min/max and stay NaN. Infinite values are not ignored and raise no error: an ``inf``
    makes its position's range infinite, so that position's outputs become 0 or NaN.
    Replace them by NaN first to have them ignored; :class:`numbanorm.MinMaxScaler`
    refuses them, as scikit-learn does, and so does ``numbanorm scale`` unless given
    ``--allow-inf``. Axis sets whose kept axes are not consecutive cost one copy.

    Examples
    --------
    >>> import numpy as np, numbanorm
    >>> x = np.array([[1.0, 7.0], [3.0, 7.0], [5.0, 7.0]])
    >>> numbanorm.min_max_scale(x)
    array([[0. , 0. ],
           [0.5, 0. ],
           [1. , 0. ]])
    >>> numbanorm.min_max_scale(np.array([0.0, 5.0, 10.0]), feature_range=(-1, 1))
    array([-1.,  0.,  1.])
    """
    fn = _OP
    dev = _dispatch.device_of(fn, x=x, out=out)
    xa = _validate.array(fn, "x", dev, x)
    ctype, rtype = _validate.float_dtypes(fn, "x", xa.dtype)
    lo, hi = feature_range_arg(fn, feature_range)
    axes = reduce_axes(fn, axis, xa.ndim)
    clip = _validate.flag(fn, clip, "clip")
    out_a = _validate.out(fn, dev, out, xa.shape, rtype)
    if dev.deferred:
        return dev.build("min_max_scale", _compute, xa, lo, hi, axes, clip, ctype, rtype, out=out)
    return _compute(dev, xa, lo, hi, axes, clip, ctype, rtype, out=out, out_a=out_a)


def _compute(dev, xa, lo, hi, axes, clip, ctype, rtype, *, out=None, out_a=None):
    """The kernels of :func:`min_max_scale` for validated arguments (``lo``/``hi`` the checked
    feature range, ``axes`` the sorted reduced axes, ``out_a`` the checked ``out=``):
    extrema of the whole of ``xa``, then the transform; nothing checked again. (The Dask
    builder merges per-block extrema instead, so its blocks run the transform of
    :mod:`numbanorm._stats_host`.)"""
    view = View(xa.shape, axes)
    x3 = view.input(dev, xa, ctype)
    buf, finish = view.output(dev, out, out_a, ctype, rtype, xa)
    if x3.size:
        if dev.name == "cuda":  # statistics and parameters stay on the device
            c = x3.shape[1]
            mn, mx = dev.scratch("mm.mn", (c,), _F64), dev.scratch("mm.mx", (c,), _F64)
            dev.kernels(_OP).extrema(x3, mn, mx)
            sub, mul, div, add = dev.kernels("_scale_params").minmax(mn, mx, lo, hi)
        else:
            data_min, data_max = extrema(dev, x3)
            params, _, _ = minmax_params(data_min, data_max, lo, hi)
            sub, mul, div, add = device_params(dev, *params)
        dev.kernels(_OP).transform(x3, sub, mul, div, add, lo, hi, clip, buf)
    return finish()
