"""``numbanorm bench`` cases for the scikit-learn-compatible scalers: ``fit_transform`` of
StandardScaler and MinMaxScaler on (1_000_000, 64) float64 (the issue's target: >= 4x
scikit-learn, <= 2.5x np.copyto), against scikit-learn's own and a NumPy formula.

``fit_transform`` returns a new array (``copy=True``), so these timings include the first
touch of a fresh 512 MB output; ``np.copyto`` writes into an existing buffer."""

import numbanorm

from . import make_array
from .standardize import sklearn_or_none


def _numpy_standard(x):
    return (x - x.mean(axis=0)) / x.std(axis=0)


def _numpy_minmax(x):
    mn = x.min(axis=0)
    return (x - mn) / (x.max(axis=0) - mn)


def standard(shape, dtype):
    x = make_array(shape, dtype, offset=3.0)
    fns = {
        "numbanorm": lambda: numbanorm.StandardScaler().fit_transform(x),
        "numpy": lambda: _numpy_standard(x),
    }
    sk = sklearn_or_none()
    if sk is not None:
        fns["sklearn"] = lambda: sk.StandardScaler().fit_transform(x)
    return x, fns


def minmax(shape, dtype):
    x = make_array(shape, dtype)
    fns = {
        "numbanorm": lambda: numbanorm.MinMaxScaler().fit_transform(x),
        "numpy": lambda: _numpy_minmax(x),
    }
    sk = sklearn_or_none()
    if sk is not None:
        fns["sklearn"] = lambda: sk.MinMaxScaler().fit_transform(x)
    return x, fns


CASES = [("Standard", (1_000_000, 64), "float64", standard), ("MinMax", (1_000_000, 64), "float64", minmax)]
