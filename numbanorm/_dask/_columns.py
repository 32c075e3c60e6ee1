"""The scalers' Dask statistics (:class:`numbanorm.StandardScaler`, :class:`numbanorm.MinMaxScaler`
on a 2-D Dask ``X``): per-feature moments and extrema computed now by a tree reduction, and
the lazy blockwise transform ``y = ((X - sub) * mul) / div + add``."""
import functools

import numpy as np

from .. import _dispatch, _validate
from .._stats_host import device_params
from ._graph import aligned, blockwise, dask_array, is_dask
from ._stats import reduce_extrema, reduce_moments


def column_moments(X, sample_weight=None):
    """Per-feature (count, mean, M2) of a 2-D Dask array, computed now (float64 NumPy)."""
    da = dask_array()
    w = None
    if sample_weight is not None:
        w = sample_weight if is_dask(sample_weight) else da.from_array(np.asarray(sample_weight, np.float64))
        if tuple(w.shape) != (X.shape[0],):
            raise ValueError(f"sample_weight.shape == {tuple(w.shape)}, expected {(X.shape[0],)}!")
        w = w.rechunk((X.chunks[0],))[:, None]
    st = reduce_moments(X, (0,), weights=w).compute()
    n = st["n"].reshape(-1)
    mean = np.where(n > 0, st["mean"].reshape(-1), np.nan)
    m2 = np.where(n > 0, st["m2"].reshape(-1), np.nan)
    return n, mean, m2


def column_extrema(X):
    """Per-feature NaN-ignoring (min, max) of a 2-D Dask array, computed now (NaN: no value)."""
    st = reduce_extrema(X, (0,)).compute()
    return st["mn"].reshape(-1), st["mx"].reshape(-1)


def _column_block(xb, sub, mul, div, add, lo, hi, clip, rtype):
    dev = _dispatch.device_of("transform", x=xb)
    xa = dev.asarray(xb)
    ctype, _ = _validate.float_dtypes("transform", "X", xa.dtype)
    x3 = dev.contiguous(xa, ctype).reshape(xa.shape[0], xa.shape[1], 1)
    kern = dev.kernels("standardize")
    if kern.count_inf(x3):
        raise ValueError(f"Input X contains infinity or a value too large for {np.dtype(ctype)!r}.")
    out3 = dev.empty(x3.shape, ctype)
    kern.transform(x3, *device_params(dev, sub.ravel(), mul.ravel(), div.ravel(), add.ravel()), lo, hi, clip, out3)
    y = out3.reshape(xa.shape)
    if np.dtype(rtype) != np.dtype(ctype):
        y = dev.astype(y, rtype)
    return (dev.wrap(y),)


def column_transform(X, sub, mul, div, add, lo, hi, clip, rtype):
    """Lazy y = ((X − sub) · mul) / div + add per feature (the scalers' transform), blockwise.

    A block holding ±inf raises scikit-learn's ValueError when it is computed.
    """
    params = [(aligned(np.ascontiguousarray(p, np.float64), (1,), X.chunks), (1,)) for p in (sub, mul, div, add)]
    y, = blockwise(functools.partial(_param_block, _column_block, lo=float(lo), hi=float(hi), clip=bool(clip),
                                     rtype=np.dtype(rtype)),
                   X, [(X, (0, 1))] + params, [(rtype, X.chunks)])
    return y


def _param_block(func, xb, sub, mul, div, add, lo, hi, clip, rtype):
    return func(xb, sub, mul, div, add, lo, hi, clip, rtype)
