"""The scalers' data handling below the estimators: :class:`_Data` (a validated 2-D ``X``
and the kernels' view of it on the CPU, the GPU or Dask), its per-feature statistics
(moments, extrema: the kernels via :mod:`numbanorm._stats_host`; Dask arrays: the graph
builders of ``numbanorm._dask._columns``) and transform, and the checks of
``sample_weight`` and boolean parameters.
"""
import numbers

import numpy as np

from . import _dispatch, _interop, _scaler_api, _stats_host, _validate
from ._scaler_base import (
    _F16, _F32, _F64, _FLOAT_DTYPES, HAVE_SKLEARN, InvalidParameterError, _check_n_features, _feature_names,
    _local_check_array,
)

if HAVE_SKLEARN:
    from sklearn.utils.validation import _check_sample_weight, check_array, validate_data


class _Data:
    """Validated 2-D input and the kernels' view of it.

    ``kind`` is "cpu" (NumPy, validated with scikit-learn's ``validate_data`` when
    installed), "cuda" (GPU array) or "dask". ``X`` is the validated array; the kernels see
    the channels view ``(O, C, I)`` with C = features: ``(n, f, 1)`` for C-ordered data,
    ``(1, f, n)`` for Fortran-ordered data (no copy either way).
    """

    def __init__(self, est, X, fn, reset, check_features=True):
        self.est, self.fn = est, fn
        self.user = X
        if _validate.is_masked(X):
            raise _validate.masked_error(f"{type(est).__name__}.{fn}", "X", X)
        if isinstance(X, np.ndarray) and not X.dtype.isnative:
            X = X.astype(X.dtype.newbyteorder("="))  # ">f4" (FITS, .npy): native once, as NumPy does
        # scikit-learn's array-API mode with a non-NumPy X: validated in its namespace,
        # results and fitted attributes go back there (see numbanorm._scaler_api)
        self.ns = _scaler_api.namespace(X) if HAVE_SKLEARN else None
        if self.ns is not None:
            X = self.xp_X = _scaler_api.validate(est, X, self.ns, reset, check_features)
            check_features = False  # done by scikit-learn
        where = _dispatch._where(X)
        self.kind = where
        if where == "dask":
            self._init_dask(X, reset, check_features)
        elif where == "cuda":
            self._init_gpu(X, reset, check_features)
        elif self.ns is not None:
            self._init_namespace_cpu(X)
        else:
            self._init_cpu(X, reset, check_features)

    # -- construction
    def _init_cpu(self, X, reset, check_features):
        est = self.est
        if HAVE_SKLEARN:
            params = dict(dtype=_FLOAT_DTYPES, ensure_all_finite=False, copy=False)
            if check_features:
                X = validate_data(est, X, reset=reset, **params)
            else:
                X = check_array(X, **params)
        else:
            Xa = _local_check_array(est, X, self.fn)
            if check_features:
                _check_n_features(est, Xa.shape[1], reset)
                _feature_names(est, X, reset)
            X = Xa
        self.dev = _dispatch.CPU
        self.X = X
        self.n, self.f = X.shape
        self.dtype = X.dtype
        self.ctype = _F32 if X.dtype == _F16 else X.dtype
        # the validated array is ours to overwrite when validation already copied it
        user = self.user
        if isinstance(user, np.ndarray):
            self.owned = not np.may_share_memory(X, user)
        else:
            self.owned = isinstance(user, (list, tuple))

    def _init_namespace_cpu(self, X):
        """A validated array of another namespace in CPU memory: its zero-copy NumPy view."""
        xa = self.xa0 = _interop.host_view(X)
        self.dev = _dispatch.CPU
        self.X = xa
        self.n, self.f = xa.shape
        self.dtype = xa.dtype
        self.ctype = _F32 if xa.dtype == _F16 else xa.dtype
        self.owned = not np.may_share_memory(xa, _interop.host_view(self.user))

    def _init_gpu(self, X, reset, check_features):
        est = self.est
        dev = _dispatch.device_of(f"{type(est).__name__}.{self.fn}", X=X)
        xa = dev.asarray(X)
        if len(xa.shape) != 2:
            raise ValueError(f"Expected 2D array, got {len(xa.shape)}D array instead.")
        if xa.dtype.kind == "c":
            raise ValueError("Complex data not supported")
        ctype, rtype = _validate.float_dtypes(f"{type(est).__name__}.{self.fn}", "X", xa.dtype)
        n, f = xa.shape
        if n < 1 or f < 1:
            raise ValueError(
                f"Found array with {n} sample(s) and {f} feature(s) (shape={(n, f)}) while a "
                "minimum of 1 is required."
            )
        if check_features:
            _check_n_features(est, f, reset)
            if reset and hasattr(est, "feature_names_in_"):
                del est.feature_names_in_
        self.dev, self.X, self.n, self.f = dev, xa, n, f
        self.dtype = np.dtype(rtype)
        self.ctype = np.dtype(ctype)
        self.owned = False

    def _init_dask(self, X, reset, check_features):
        est = self.est
        if X.ndim != 2:
            raise ValueError(f"Expected 2D array, got {X.ndim}D array instead.")
        ctype, rtype = _validate.float_dtypes(f"{type(est).__name__}.{self.fn}", "X", X.dtype)
        n, f = X.shape
        if f < 1 or (n == n and n < 1):  # n may be NaN (unknown chunk sizes)
            raise ValueError(f"Found array with shape {X.shape} while a minimum of 1 sample and feature is required.")
        if check_features:
            _check_n_features(est, f, reset)
            if reset and hasattr(est, "feature_names_in_"):
                del est.feature_names_in_
        self.dev, self.X, self.n, self.f = None, X, n, f
        self.dtype = np.dtype(rtype)
        self.ctype = np.dtype(ctype)
        self.owned = False

    # -- kernel views
    def _x3(self):
        """The (O, C, I) kernel view; ``self.fortran`` tells whether it is (1, f, n)."""
        if getattr(self, "_view", None) is not None:
            return self._view
        X = self.X
        self.fortran = False
        if self.kind == "cpu":
            if X.dtype == self.ctype and X.flags.c_contiguous:
                view = X.reshape(self.n, self.f, 1)
            elif X.dtype == self.ctype and X.flags.f_contiguous:
                view = X.T.reshape(1, self.f, self.n)
                self.fortran = True
            else:
                view = np.ascontiguousarray(X, dtype=self.ctype).reshape(self.n, self.f, 1)
                self.owned = True
                self.X = X = view.reshape(self.n, self.f)
        else:
            view = self.dev.contiguous(X, self.ctype).reshape(self.n, self.f, 1)
        self._view = view
        return view

    def moments(self, sample_weight=None):
        """Per-feature (count, mean, M2) as float64 NumPy arrays (weights: count = Σw)."""
        if self.kind == "dask":
            from ._dask import _columns

            return _columns.column_moments(self.X, sample_weight)
        x3 = self._x3()
        w = None
        if sample_weight is not None:
            w = np.ascontiguousarray(sample_weight, dtype=_F64)
            if self.fortran:  # the (1, f, n) view has the samples along I: weights need (n, f, 1)
                x3 = np.ascontiguousarray(self.X, dtype=self.ctype).reshape(self.n, self.f, 1)
        return _stats_host.moments(self.dev, x3, w)

    def extrema(self):
        """Per-feature NaN-ignoring (min, max) as float64 NumPy arrays (NaN: no value)."""
        if self.kind == "dask":
            from ._dask import _columns

            return _columns.column_extrema(self.X)
        return _stats_host.extrema(self.dev, self._x3())

    def check_inf(self):
        """ValueError if X holds +-inf (scikit-learn's message)."""
        if self.kind == "dask":
            return  # checked lazily inside the transform blocks
        if self.dev.kernels("standardize").count_inf(self._x3()):
            raise _inf_error(self.dtype)

    def apply(self, sub, mul, div, add, copy, lo=0.0, hi=0.0, clip=False):
        """y = ((X − sub) · mul) / div + add per feature (clipped), in X's array type."""
        params = [np.broadcast_to(_scaler_api.host64(p), (self.f,)) for p in (sub, mul, div, add)]
        if self.kind == "dask":
            from ._dask import _columns

            return _columns.column_transform(self.X, *params, lo, hi, clip, self.dtype)
        dev = self.dev
        x3 = self._x3()
        if self.kind == "cpu":
            X = self.X
            inplace = (
                (not copy or self.owned) and X.dtype == self.ctype and X.flags.writeable
                and np.may_share_memory(x3, X)
            )
            if inplace:
                out, out3 = X, x3
            elif self.fortran:
                out = np.empty(X.shape, self.ctype, order="F")
                out3 = out.T.reshape(1, self.f, self.n)
            else:
                out = np.empty(X.shape, self.ctype)
                out3 = out.reshape(self.n, self.f, 1)
            sub, mul, div, add = _stats_host.device_params(dev, *params)
            dev.kernels("standardize").transform(x3, sub, mul, div, add, lo, hi, clip, out3)
            y = out if out.dtype == self.dtype else out.astype(self.dtype)
            if self.ns is None:
                return y
            if y is self.xa0:
                return self.xp_X  # overwritten in place through its view (copy=False)
            return _interop.wrap_host(_interop.kind(self.xp_X), self.xp_X, y)
        out3 = dev.empty(x3.shape, self.ctype)
        sub, mul, div, add = _stats_host.device_params(dev, *params)
        dev.kernels("standardize").transform(x3, sub, mul, div, add, lo, hi, clip, out3)
        y = out3.reshape(self.n, self.f)
        if self.dtype != self.ctype:
            y = dev.astype(y, self.dtype)
        return dev.wrap(y)


def _inf_error(dtype):
    return ValueError(f"Input X contains infinity or a value too large for {np.dtype(dtype)!r}.")


def _check_bool(est, name):
    value = getattr(est, name)
    if not isinstance(value, (bool, np.bool_)):
        raise InvalidParameterError(
            f"The '{name}' parameter of {type(est).__name__} must be an instance of 'bool' "
            f"or an instance of 'numpy.bool_'. Got {value!r} instead."
        )


def _sample_weight(sample_weight, data):
    """Validated (n,) float64 weights (scikit-learn's rules and messages)."""
    if data.kind == "dask" and _dispatch._is_dask(sample_weight):
        return sample_weight
    if _validate.is_masked(sample_weight):
        raise _validate.masked_error(f"{type(data.est).__name__}.fit", "sample_weight", sample_weight)
    if data.ns is not None and not isinstance(sample_weight, numbers.Number):
        sample_weight = _scaler_api.host64(sample_weight)  # any namespace and device
    if data.kind == "cpu" and HAVE_SKLEARN:
        return np.asarray(_check_sample_weight(sample_weight, data.X, dtype=_F64), dtype=_F64)
    if data.kind == "cuda" and _dispatch._is_gpu(sample_weight):
        sample_weight = data.dev.to_host(data.dev.asarray(sample_weight))
    n = data.n
    if isinstance(sample_weight, numbers.Number):
        w = np.full(n, float(sample_weight))
    else:
        w = np.asarray(sample_weight, dtype=_F64)
        if w.ndim != 1:
            raise ValueError(f"Sample weights must be 1D array or scalar, got {w.ndim}D array")
        if w.shape != (n,):
            raise ValueError(f"sample_weight.shape == {w.shape}, expected {(n,)}!")
    if not np.isfinite(w).all():
        raise ValueError("Input sample_weight contains NaN or infinity.")
    if not np.any(w != 0):
        raise ValueError("Sample weights must contain at least one non-zero number.")
    return w
