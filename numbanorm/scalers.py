"""scikit-learn-compatible ``StandardScaler`` and ``MinMaxScaler`` on numbanorm kernels.

Drop-in replacements for ``sklearn.preprocessing.StandardScaler`` / ``MinMaxScaler``: the
same parameters, fitted attributes (``mean_``, ``var_``, ``scale_``, ``n_samples_seen_``,
``data_min_``, ``data_max_``, ``data_range_``, ``min_``, ``n_features_in_``,
``feature_names_in_``) and results (float64: to rounding; ``MinMaxScaler`` and
``StandardScaler.transform`` use scikit-learn's exact sequence of operations), but the
statistics and the transform run in numbanorm's parallel kernels (one read pass for
``fit``, one read+write pass for ``transform``; no temporary copies of ``X``).

When scikit-learn is installed the classes derive from its ``BaseEstimator``,
``TransformerMixin`` and ``OneToOneFeatureMixin`` and use its input validation, so they
pass ``sklearn.utils.estimator_checks.check_estimator``, work in a ``Pipeline``, with
``clone``, ``set_output`` and ``get_feature_names_out``. Without scikit-learn they use a
small local base class (``get_params``/``set_params``/``fit_transform``/``repr``) and
local validation with the same messages.

Inputs: NumPy arrays and array-likes (CPU kernels), GPU arrays (CUDA kernels; results
stay on the device, fitted attributes are NumPy), Dask arrays (``fit`` computes the
statistics with a tree reduction of per-chunk partials, ``transform`` returns a lazy
Dask array). ``partial_fit`` merges batch statistics with Chan, Golub & LeVeque's
pairwise update, which is numerically stable for any number of batches.

Differences from scikit-learn (all on degenerate input): sparse matrices are not
supported (a ``TypeError`` naming sparse input, as scikit-learn gives for estimators
without sparse support); a feature that is entirely NaN in one ``partial_fit`` batch
keeps the statistics of the other batches instead of becoming NaN.
"""
import math
import numbers

import numpy as np

from . import _dispatch, _interop, _scaler_api, _validate
from ._ops import min_max_scale as _mm
from ._ops import standardize as _std

try:  # scikit-learn is optional (the ``sklearn`` extra)
    from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import _check_sample_weight, check_array, check_is_fitted, validate_data

    HAVE_SKLEARN = True
except ImportError:  # pragma: no cover - exercised by test_scalers with sklearn hidden
    HAVE_SKLEARN = False

_F64 = np.dtype(np.float64)
_F32 = np.dtype(np.float32)
_F16 = np.dtype(np.float16)
_FLOAT_DTYPES = (_F64, _F32, _F16)


class InvalidParameterError(ValueError, TypeError):
    """A constructor parameter has a wrong type or value (caught as ValueError or TypeError)."""


# --------------------------------------------------------------------------- local base
if not HAVE_SKLEARN:
    import inspect

    class NotFittedError(ValueError, AttributeError):
        """The estimator is used before ``fit`` (scikit-learn's exception when installed)."""

    class BaseEstimator:
        """Minimal stand-in for scikit-learn's BaseEstimator: parameters and repr."""

        @classmethod
        def _get_param_names(cls):
            sig = inspect.signature(cls.__init__)
            return sorted(
                p.name for p in sig.parameters.values()
                if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
            )

        def get_params(self, deep=True):
            return {name: getattr(self, name) for name in self._get_param_names()}

        def set_params(self, **params):
            valid = self._get_param_names()
            for key, value in params.items():
                if key not in valid:
                    raise ValueError(
                        f"Invalid parameter {key!r} for estimator {type(self).__name__}. "
                        f"Valid parameters are: {valid!r}."
                    )
                setattr(self, key, value)
            return self

        def __repr__(self):
            defaults = {
                p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values()
                if p.name != "self"
            }
            changed = [
                f"{k}={v!r}" for k, v in self.get_params().items()
                if not (k in defaults and _same(defaults[k], v))
            ]
            return f"{type(self).__name__}({', '.join(changed)})"

    class TransformerMixin:
        def fit_transform(self, X, y=None, **fit_params):
            return self.fit(X, y, **fit_params).transform(X)

    class OneToOneFeatureMixin:
        def get_feature_names_out(self, input_features=None):
            check_is_fitted(self, "n_features_in_")
            if input_features is not None:
                return np.asarray(input_features, dtype=object)
            names = getattr(self, "feature_names_in_", None)
            if names is not None:
                return np.asarray(names, dtype=object)
            return np.asarray([f"x{i}" for i in range(self.n_features_in_)], dtype=object)

    def _same(a, b):
        try:
            return bool(a == b) and type(a) is type(b)
        except Exception:
            return a is b

    def check_is_fitted(estimator, attributes=None):
        attrs = [attributes] if isinstance(attributes, str) else attributes
        if attrs is None:
            fitted = any(k.endswith("_") and not k.startswith("__") for k in vars(estimator))
        else:
            fitted = all(hasattr(estimator, a) for a in attrs)
        if not fitted:
            raise NotFittedError(
                f"This {type(estimator).__name__} instance is not fitted yet. Call 'fit' with "
                "appropriate arguments before using this estimator."
            )


# --------------------------------------------------------------------------- input handling


def _sparse(X):
    return hasattr(X, "tocsr") and hasattr(X, "nnz") and hasattr(X, "format")


def _local_check_array(est, X, fn):
    """NumPy conversion and checks used without scikit-learn (scikit-learn's messages)."""
    if _sparse(X):
        raise TypeError(
            f"{type(est).__name__}.{fn}(): sparse input is not supported (sparse data was "
            "passed for X, but dense data is required); convert it with X.toarray()"
        )
    try:
        X = np.asarray(X)
    except Exception as e:  # ragged lists, ...
        raise ValueError(f"{type(est).__name__}.{fn}(): could not convert X to an array: {e}") from None
    if X.dtype.kind == "c":
        raise ValueError("Complex data not supported\n" + repr(X))
    if X.dtype.kind in "OUSb" or X.dtype.kind not in "fiub":
        try:
            X = X.astype(np.float64)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{type(est).__name__}.{fn}(): X must be numeric: {e}") from None
    if X.ndim != 2:
        raise ValueError(
            f"Expected 2D array, got {'scalar' if X.ndim == 0 else f'{X.ndim}D'} array instead:\narray={X!r}.\n"
            "Reshape your data either using array.reshape(-1, 1) if your data has a single "
            "feature or array.reshape(1, -1) if it contains a single sample."
        )
    if X.dtype not in _FLOAT_DTYPES:
        X = X.astype(np.float64)
    if X.shape[0] < 1:
        raise ValueError(f"Found array with 0 sample(s) (shape={X.shape}) while a minimum of 1 is required.")
    if X.shape[1] < 1:
        raise ValueError(f"Found array with 0 feature(s) (shape={X.shape}) while a minimum of 1 is required.")
    return X


def _check_n_features(est, n, reset):
    if reset:
        est.n_features_in_ = n
        return
    if not hasattr(est, "n_features_in_"):
        return
    if n != est.n_features_in_:
        raise ValueError(
            f"X has {n} features, but {type(est).__name__} is expecting {est.n_features_in_} "
            "features as input."
        )


def _feature_names(est, X, reset):
    """feature_names_in_ without scikit-learn: string column names of DataFrames."""
    cols = getattr(X, "columns", None)
    names = None
    if cols is not None:
        names = np.asarray(list(cols), dtype=object)
        if not all(isinstance(c, str) for c in names):
            names = None
    if reset:
        if names is not None:
            est.feature_names_in_ = names
        elif hasattr(est, "feature_names_in_"):
            del est.feature_names_in_


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
            from . import _dask

            return _dask.column_moments(self.X, sample_weight)
        x3 = self._x3()
        w = None
        if sample_weight is not None:
            w = np.ascontiguousarray(sample_weight, dtype=_F64)
            if self.fortran:  # the (1, f, n) view has the samples along I: weights need (n, f, 1)
                x3 = np.ascontiguousarray(self.X, dtype=self.ctype).reshape(self.n, self.f, 1)
        return _std.moments(self.dev, x3, w)

    def extrema(self):
        """Per-feature NaN-ignoring (min, max) as float64 NumPy arrays (NaN: no value)."""
        if self.kind == "dask":
            from . import _dask

            return _dask.column_extrema(self.X)
        return _mm.extrema(self.dev, self._x3())

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
            from . import _dask

            return _dask.column_transform(self.X, *params, lo, hi, clip, self.dtype)
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
            sub, mul, div, add = _std.device_params(dev, *params)
            dev.kernels("standardize").transform(x3, sub, mul, div, add, lo, hi, clip, out3)
            y = out if out.dtype == self.dtype else out.astype(self.dtype)
            if self.ns is None:
                return y
            if y is self.xa0:
                return self.xp_X  # overwritten in place through its view (copy=False)
            return _interop.wrap_host(_interop.kind(self.xp_X), self.xp_X, y)
        out3 = dev.empty(x3.shape, self.ctype)
        sub, mul, div, add = _std.device_params(dev, *params)
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


def _chan_merge(n_a, m_a, q_a, n_b, m_b, q_b):
    """Vectorised Chan et al. merge of (count, mean, M2); empty sides are skipped."""
    n_a = np.asarray(n_a, _F64)
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


# --------------------------------------------------------------------------- StandardScaler


class StandardScaler(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Standardize features by removing the mean and scaling to unit variance.

    ``z = (x - u) / s`` with ``u`` the mean of the training samples (0 if
    ``with_mean=False``) and ``s`` their standard deviation (1 if ``with_std=False``);
    scikit-learn's ``StandardScaler`` on numbanorm's kernels. NaNs are ignored in ``fit``
    and kept by ``transform``; (near-)constant features get ``scale_ = 1``.

    Parameters
    ----------
    copy : bool, default=True
        If False, ``transform``/``inverse_transform`` overwrite a float NumPy ``X`` in
        place (when it has the result's dtype and is writeable).
    with_mean : bool, default=True
        Center the data before scaling.
    with_std : bool, default=True
        Scale the data to unit variance.

    Attributes
    ----------
    scale_ : ndarray of shape (n_features,) or None
        Per-feature scale (``sqrt(var_)``, 1 for constant features); None if ``with_std=False``.
    mean_ : ndarray of shape (n_features,) or None
        Per-feature mean; None if ``with_mean=False`` and ``with_std=False``.
    var_ : ndarray of shape (n_features,) or None
        Per-feature (biased) variance; None if ``with_std=False``.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when ``X`` had string column names (DataFrames).
    n_samples_seen_ : int or ndarray of shape (n_features,)
        Samples seen per feature (an int when it is the same for every feature, i.e.
        without NaNs); the sum of the sample weights when they were given.

    Examples
    --------
    >>> import numpy as np
    >>> from numbanorm import StandardScaler
    >>> data = np.array([[0, 0], [0, 0], [1, 1], [1, 1]], dtype=float)
    >>> scaler = StandardScaler().fit(data)
    >>> scaler.mean_
    array([0.5, 0.5])
    >>> scaler.transform(data)
    array([[-1., -1.],
           [-1., -1.],
           [ 1.,  1.],
           [ 1.,  1.]])
    >>> scaler.transform(np.array([[2.0, 2.0]]))
    array([[3., 3.]])
    """

    _parameter_constraints = {"copy": ["boolean"], "with_mean": ["boolean"], "with_std": ["boolean"]}

    def __init__(self, *, copy=True, with_mean=True, with_std=True):
        self.with_mean = with_mean
        self.with_std = with_std
        self.copy = copy

    def _reset(self):
        for name in ("scale_", "n_samples_seen_", "mean_", "var_"):
            if hasattr(self, name):
                delattr(self, name)

    def _check_params(self):
        for name in ("copy", "with_mean", "with_std"):
            _check_bool(self, name)

    def fit(self, X, y=None, sample_weight=None):
        """Compute the per-feature mean and standard deviation of ``X`` (NaNs ignored).

        Parameters
        ----------
        X : array of shape (n_samples, n_features)
            NumPy/array-like, GPU or Dask array.
        y : None
            Ignored.
        sample_weight : array of shape (n_samples,), optional
            Per-sample weights.

        Returns
        -------
        self
        """
        self._reset()
        return self.partial_fit(X, y, sample_weight)

    def partial_fit(self, X, y=None, sample_weight=None):
        """Update the mean and variance with the batch ``X`` (Chan et al.'s stable merge).

        Parameters
        ----------
        X : array of shape (n_samples, n_features)
        y : None
            Ignored.
        sample_weight : array of shape (n_samples,), optional

        Returns
        -------
        self
        """
        self._fit_batch(X, sample_weight)
        return self

    def _fit_batch(self, X, sample_weight):
        self._check_params()
        first_call = not hasattr(self, "n_samples_seen_")
        data = _Data(self, X, "partial_fit", reset=first_call)
        w = None if sample_weight is None else _sample_weight(sample_weight, data)
        count, mean_b, m2_b = data.moments(w)
        with np.errstate(invalid="ignore"):
            bad = (count > 0) & ~(np.isfinite(mean_b) & np.isfinite(m2_b))
        if bad.any():
            raise _inf_error(data.dtype)
        self._update(data, count, mean_b, m2_b, weighted=w is not None)
        _scaler_api.move_attributes(self, data.ns, ("mean_", "var_", "scale_", "n_samples_seen_"), scalars=True)
        return data

    def _update(self, data, count, mean_b, m2_b, weighted):
        f = data.f
        dtype = np.dtype(np.int64) if not weighted else (data.dtype if data.dtype != _F16 else _F32)
        if not hasattr(self, "n_samples_seen_"):
            seen = np.zeros(f, dtype=dtype)
        elif np.size(_scaler_api.host(self.n_samples_seen_)) == 1:
            seen = np.repeat(_scaler_api.host(self.n_samples_seen_), f).astype(dtype, copy=False)
        else:
            seen = _scaler_api.host(self.n_samples_seen_)
        if not self.with_mean and not self.with_std:
            self.mean_ = None
            self.var_ = None
            seen = seen + count.astype(dtype)
        else:
            if not hasattr(self, "scale_"):
                last_mean, last_m2, n_a = np.zeros(f), np.zeros(f), np.zeros(f)
            else:
                last_mean = _scaler_api.host64(self.mean_)
                last_m2 = None if self.var_ is None else _scaler_api.host64(self.var_) * np.asarray(seen, _F64)
                n_a = np.asarray(seen, _F64)
            if not self.with_std:
                last_m2 = None
            n, mean, m2 = _chan_merge(n_a, last_mean, last_m2, count, mean_b, m2_b)
            self.mean_ = mean
            if self.with_std:
                with np.errstate(invalid="ignore", divide="ignore"):
                    self.var_ = m2 / n
            else:
                self.var_ = None
            seen = n  # float64, as scikit-learn's _incremental_mean_and_var returns it
        self.n_samples_seen_ = seen[0] if seen.max() == seen.min() else seen
        if self.with_std:
            constant = _std.is_constant(self.var_, self.mean_, self.n_samples_seen_)
            scale = np.sqrt(self.var_)
            scale[constant] = 1.0
            self.scale_ = scale
        else:
            self.scale_ = None

    def _check_namespace(self, X, method):
        if HAVE_SKLEARN:
            attr = next((a for a in ("scale_", "mean_") if getattr(self, a, None) is not None), "n_samples_seen_")
            _scaler_api.check_same_namespace(X, self, attr, method)

    def _params(self):
        sub = self.mean_ if self.with_mean else 0.0
        div = self.scale_ if self.with_std else 1.0
        return sub, 1.0, div, 0.0

    def transform(self, X, copy=None):
        """Standardize ``X``: ``(X - mean_) / scale_``.

        Parameters
        ----------
        X : array of shape (n_samples, n_features)
        copy : bool, optional
            Overrides the ``copy`` parameter.

        Returns
        -------
        X_tr : array like ``X`` (NumPy, GPU or lazy Dask), float32 kept as float32
        """
        check_is_fitted(self)
        self._check_namespace(X, "transform")
        copy = self.copy if copy is None else copy
        data = _Data(self, X, "transform", reset=False)
        data.check_inf()
        return data.apply(*self._params(), copy=copy)

    def fit_transform(self, X, y=None, **fit_params):
        """Fit to ``X`` and standardize it (one statistics pass, one transform pass).

        Parameters
        ----------
        X : array of shape (n_samples, n_features)
        y : None
            Ignored.
        **fit_params
            ``sample_weight``.

        Returns
        -------
        X_tr : array like ``X``
        """
        self._reset()
        data = self._fit_batch(X, fit_params.get("sample_weight"))
        return data.apply(*self._params(), copy=self.copy)

    def inverse_transform(self, X, copy=None):
        """Scale back to the original representation: ``X * scale_ + mean_``.

        Parameters
        ----------
        X : array of shape (n_samples, n_features)
        copy : bool, optional
            Overrides the ``copy`` parameter.

        Returns
        -------
        X_original : array like ``X``
        """
        check_is_fitted(self)
        self._check_namespace(X, "inverse_transform")
        copy = self.copy if copy is None else copy
        data = _Data(self, X, "inverse_transform", reset=False, check_features=False)
        _check_n_features(self, data.f, reset=False)
        data.check_inf()
        mul = self.scale_ if self.with_std else 1.0
        add = self.mean_ if self.with_mean else 0.0
        return data.apply(0.0, mul, 1.0, add, copy=copy)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.array_api_support = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


# --------------------------------------------------------------------------- MinMaxScaler


class MinMaxScaler(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Transform features by scaling each feature to ``feature_range``.

    ``X_scaled = X * scale_ + min_`` with ``scale_ = (max - min) / (data_max_ - data_min_)``
    and ``min_ = min - data_min_ * scale_`` (``(min, max) = feature_range``);
    scikit-learn's ``MinMaxScaler`` on numbanorm's kernels, with its exact rounding. NaNs
    are ignored in ``fit`` and kept by ``transform``; a constant feature maps to
    ``feature_range[0]`` (its range is treated as 1).

    Parameters
    ----------
    feature_range : tuple (min, max), default=(0, 1)
        Desired range of transformed data, ``min < max``.
    copy : bool, default=True
        If False, ``transform``/``inverse_transform`` overwrite a float NumPy ``X`` in place.
    clip : bool, default=False
        Clip transformed values of held-out data to ``feature_range``.

    Attributes
    ----------
    min_ : ndarray of shape (n_features,)
    scale_ : ndarray of shape (n_features,)
    data_min_ : ndarray of shape (n_features,)
    data_max_ : ndarray of shape (n_features,)
    data_range_ : ndarray of shape (n_features,)
    n_features_in_ : int
    n_samples_seen_ : int
    feature_names_in_ : ndarray of str
        Only when ``X`` had string column names (DataFrames).

    Examples
    --------
    >>> import numpy as np
    >>> from numbanorm import MinMaxScaler
    >>> data = np.array([[-1, 2], [-0.5, 6], [0, 10], [1, 18]])
    >>> scaler = MinMaxScaler().fit(data)
    >>> scaler.data_max_
    array([ 1., 18.])
    >>> scaler.transform(data)
    array([[0.  , 0.  ],
           [0.25, 0.25],
           [0.5 , 0.5 ],
           [1.  , 1.  ]])
    >>> scaler.transform(np.array([[2.0, 2.0]]))
    array([[1.5, 0. ]])
    """

    _parameter_constraints = {"feature_range": [tuple], "copy": ["boolean"], "clip": ["boolean"]}

    def __init__(self, feature_range=(0, 1), *, copy=True, clip=False):
        self.feature_range = feature_range
        self.copy = copy
        self.clip = clip

    def _reset(self):
        for name in ("scale_", "min_", "n_samples_seen_", "data_min_", "data_max_", "data_range_"):
            if hasattr(self, name):
                delattr(self, name)

    def _range(self):
        fr = self.feature_range
        expected = "a tuple (min, max) of finite real numbers"
        try:
            lo, hi = fr
        except (TypeError, ValueError):
            raise InvalidParameterError(
                f"The 'feature_range' parameter of MinMaxScaler must be {expected}. Got {fr!r} instead."
            ) from None
        for v in (lo, hi):
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real) or not math.isfinite(v):
                raise InvalidParameterError(
                    f"The 'feature_range' parameter of MinMaxScaler must be {expected}. Got {fr!r} instead."
                )
        if lo >= hi:
            raise ValueError(
                f"Minimum of desired feature range must be smaller than maximum. Got {str(fr)}."
            )
        return float(lo), float(hi)

    def _check_params(self):
        _check_bool(self, "copy")
        _check_bool(self, "clip")
        return self._range()

    def fit(self, X, y=None):
        """Compute the per-feature minimum and maximum of ``X`` (NaNs ignored).

        Parameters
        ----------
        X : array of shape (n_samples, n_features)
            NumPy/array-like, GPU or Dask array.
        y : None
            Ignored.

        Returns
        -------
        self
        """
        self._reset()
        return self.partial_fit(X, y)

    def partial_fit(self, X, y=None):
        """Update the per-feature minimum and maximum with the batch ``X``.

        Parameters
        ----------
        X : array of shape (n_samples, n_features)
        y : None
            Ignored.

        Returns
        -------
        self
        """
        self._fit_batch(X)
        return self

    def _fit_batch(self, X):
        lo, hi = self._check_params()
        if _sparse(X):
            raise TypeError("MinMaxScaler does not support sparse input. Consider using MaxAbsScaler instead.")
        first_pass = not hasattr(self, "n_samples_seen_")
        data = _Data(self, X, "partial_fit", reset=first_pass)
        data_min, data_max = data.extrema()
        if np.isinf(data_min).any() or np.isinf(data_max).any():
            raise _inf_error(data.dtype)
        if first_pass:
            self.n_samples_seen_ = data.n
        else:
            data_min = np.fmin(_scaler_api.host64(self.data_min_), data_min)
            data_max = np.fmax(_scaler_api.host64(self.data_max_), data_max)
            self.n_samples_seen_ += data.n
        (_, _, _, _), scale, min_ = _mm.minmax_params(data_min, data_max, lo, hi)
        self.scale_ = scale
        self.min_ = min_
        self.data_min_ = data_min
        self.data_max_ = data_max
        self.data_range_ = data_max - data_min
        _scaler_api.move_attributes(self, data.ns, ("scale_", "min_", "data_min_", "data_max_", "data_range_"))
        return data, lo, hi

    def transform(self, X):
        """Scale ``X`` to ``feature_range``: ``X * scale_ + min_`` (clipped if ``clip``).

        Parameters
        ----------
        X : array of shape (n_samples, n_features)

        Returns
        -------
        Xt : array like ``X``
        """
        check_is_fitted(self)
        if HAVE_SKLEARN:
            _scaler_api.check_same_namespace(X, self, "scale_", "transform")
        lo, hi = self._check_params()
        data = _Data(self, X, "transform", reset=False)
        data.check_inf()
        return data.apply(0.0, self.scale_, 1.0, self.min_, copy=self.copy, lo=lo, hi=hi, clip=self.clip)

    def fit_transform(self, X, y=None, **fit_params):
        """Fit to ``X`` and scale it (one min/max pass, one transform pass).

        Parameters
        ----------
        X : array of shape (n_samples, n_features)
        y : None
            Ignored.

        Returns
        -------
        Xt : array like ``X``
        """
        self._reset()
        data, lo, hi = self._fit_batch(X)
        return data.apply(0.0, self.scale_, 1.0, self.min_, copy=self.copy, lo=lo, hi=hi, clip=self.clip)

    def inverse_transform(self, X):
        """Undo the scaling: ``(X - min_) / scale_``.

        Parameters
        ----------
        X : array of shape (n_samples, n_features)

        Returns
        -------
        X_original : array like ``X``
        """
        check_is_fitted(self)
        if HAVE_SKLEARN:
            _scaler_api.check_same_namespace(X, self, "scale_", "inverse_transform")
        data = _Data(self, X, "inverse_transform", reset=False, check_features=False)
        _check_n_features(self, data.f, reset=False)
        data.check_inf()
        return data.apply(self.min_, 1.0, self.scale_, 0.0, copy=self.copy)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.array_api_support = True
        return tags
