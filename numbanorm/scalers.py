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

from . import _scaler_api, _stats_host
from ._scaler_base import (  # noqa: F401 - HAVE_SKLEARN, NotFittedError, InvalidParameterError: public here
    _F16, _F32, _F64, HAVE_SKLEARN, BaseEstimator, InvalidParameterError, NotFittedError, OneToOneFeatureMixin,
    TransformerMixin, _check_n_features, _sparse, check_is_fitted,
)
from ._scaler_data import _check_bool, _Data, _inf_error, _sample_weight


def _fitted_input(est, X, method):
    """The checked input of a fitted scaler's ``transform``/``inverse_transform``: fitted,
    ``X`` in the namespace of the fitted attributes, the fitted feature count (names too for
    ``transform``), no infinities."""
    check_is_fitted(est)
    est._check_namespace(X, method)
    inverse = method == "inverse_transform"
    data = _Data(est, X, method, reset=False, check_features=not inverse)
    if inverse:
        _check_n_features(est, data.f, reset=False)
    data.check_inf()
    return data


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
            n, mean, m2 = _stats_host.chan_merge(n_a, last_mean, last_m2, count, mean_b, m2_b)
            self.mean_ = mean
            if self.with_std:
                with np.errstate(invalid="ignore", divide="ignore"):
                    self.var_ = m2 / n
            else:
                self.var_ = None
            seen = n  # float64, as scikit-learn's _incremental_mean_and_var returns it
        self.n_samples_seen_ = seen[0] if seen.max() == seen.min() else seen
        if self.with_std:
            constant = _stats_host.is_constant(self.var_, self.mean_, self.n_samples_seen_)
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
        copy = self.copy if copy is None else copy
        return _fitted_input(self, X, "transform").apply(*self._params(), copy=copy)

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
        copy = self.copy if copy is None else copy
        data = _fitted_input(self, X, "inverse_transform")
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

    def _check_namespace(self, X, method):
        if HAVE_SKLEARN:
            _scaler_api.check_same_namespace(X, self, "scale_", method)

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
        (_, _, _, _), scale, min_ = _stats_host.minmax_params(data_min, data_max, lo, hi)
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
        data = _fitted_input(self, X, "transform")
        return self._scale(data, *self._check_params())

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
        return self._scale(*self._fit_batch(X))

    def _scale(self, data, lo, hi):
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
        return _fitted_input(self, X, "inverse_transform").apply(self.min_, 1.0, self.scale_, 0.0, copy=self.copy)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.array_api_support = True
        return tags
