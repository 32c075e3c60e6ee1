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

The axis checks, the channels view and the statistics helpers live in
:mod:`numbanorm._stats_host` (shared with :mod:`.min_max_scale`, the Dask builders, the
scalers and ``numbanorm scale``); the names imported from there stay importable here.
"""
import numpy as np

from .. import _dispatch, _validate
from .._stats_host import (  # noqa: F401 - re-exported for the scalers and numbanorm scale
    View, ddof_arg, device_params, host, is_constant, moments, permute, reduce_axes, zscore_params,
)

_OP = "standardize"
_F64 = np.dtype(np.float64)


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
    xa = _validate.array(fn, "x", dev, x)
    ctype, rtype = _validate.float_dtypes(fn, "x", xa.dtype)
    axes = reduce_axes(fn, axis, xa.ndim)
    ddof = ddof_arg(fn, ddof)
    out_a = _validate.out(fn, dev, out, xa.shape, rtype)
    if dev.deferred:
        return dev.build("standardize", _compute, xa, axes, ddof, ctype, rtype, out=out)
    return _compute(dev, xa, axes, ddof, ctype, rtype, out=out, out_a=out_a)


def _compute(dev, xa, axes, ddof, ctype, rtype, *, out=None, out_a=None):
    """The kernels of :func:`standardize` for validated arguments (``axes`` the sorted reduced
    axes, ``ddof`` checked, ``out_a`` the checked ``out=``): statistics of the whole of
    ``xa``, then the transform; nothing checked again. (The Dask builder merges per-block
    statistics instead, so its blocks run the transform of :mod:`numbanorm._stats_host`.)"""
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
            if x3.dtype == np.float32:
                # float32 results: one float64 product by 1/scale (an all-ones ``div`` the
                # kernel leaves out) instead of a float64 division per element, as on the GPU;
                # the float32 result differs from the quotient's in rare last-bit cases only
                with np.errstate(divide="ignore"):
                    mul, div = 1.0 / scale, np.ones_like(scale)
            else:
                mul, div = np.ones_like(mean), scale
            sub, mul, div, add = device_params(dev, mean, mul, div, zeros)
        dev.kernels(_OP).transform(x3, sub, mul, div, add, 0.0, 0.0, False, buf)
    return finish()
