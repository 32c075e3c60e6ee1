"""The scalers' base classes and input checks: scikit-learn's ``BaseEstimator``,
``TransformerMixin``, ``OneToOneFeatureMixin``, ``check_is_fitted`` and validation when it is
installed, otherwise small local stand-ins with the same behaviour and messages
(:data:`HAVE_SKLEARN` tells which), and the local validation helpers (sparse input,
``n_features_in_``, ``feature_names_in_``) used without scikit-learn and for GPU/Dask input.
"""
import numpy as np

try:  # scikit-learn is optional (the ``sklearn`` extra)
    from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

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
