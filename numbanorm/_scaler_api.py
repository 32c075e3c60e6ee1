"""scikit-learn's array-API mode for numbanorm's scalers (``array_api_dispatch=True``).

With ``sklearn.set_config(array_api_dispatch=True)`` and an ``X`` of a non-NumPy namespace
(PyTorch, ``array_api_strict``, CuPy, ...), scikit-learn's own scalers validate ``X`` in its
namespace, keep their fitted attributes there (on ``X``'s device) and return results there.
numbanorm's scalers do the same: ``X`` is validated by scikit-learn in its namespace, the
kernels read it through a zero-copy view (NumPy for CPU memory, a Numba device array for
CUDA memory), results come back in ``X``'s type on its device, and fitted array attributes
are moved to the namespace and device with scikit-learn's ``move_to``. Reading them back
(``transform``, ``partial_fit``) goes through :func:`host64`.

Without array-API dispatch, nothing here runs: scikit-learn's rules (``np.asarray``) apply.
"""
import numpy as np

from . import _dispatch, _interop

_F64 = np.dtype(np.float64)


class Namespace:
    """``X``'s array namespace and device, for results and fitted attributes."""

    __slots__ = ("xp", "device")

    def __init__(self, xp, device):
        self.xp, self.device = xp, device

    def move(self, a):
        """A NumPy fitted attribute ``a`` in this namespace, on this device."""
        from sklearn.utils._array_api import move_to

        return move_to(a, xp=self.xp, device=self.device)


def namespace(X):
    """X's :class:`Namespace` in array-API mode when it is not NumPy's, else None."""
    from sklearn import get_config

    if not get_config().get("array_api_dispatch", False) or _dispatch._is_dask(X):
        return None
    from sklearn.utils._array_api import _is_numpy_namespace, get_namespace_and_device

    xp, is_api, device = get_namespace_and_device(X)
    if not is_api or _is_numpy_namespace(xp):
        return None
    return Namespace(xp, device)


def validate(est, X, ns, reset, check_features):
    """scikit-learn's validation of ``X`` in its own namespace (its float dtypes, NaN allowed)."""
    from sklearn.utils._array_api import supported_float_dtypes
    from sklearn.utils.validation import check_array, validate_data

    params = dict(dtype=supported_float_dtypes(ns.xp, ns.device), ensure_all_finite=False, copy=False)
    if check_features:
        return validate_data(est, X, reset=reset, **params)
    return check_array(X, **params)


def move_attributes(est, ns, names, scalars=False):
    """Fitted NumPy array attributes ``names`` of ``est`` moved to ``ns`` (None: left alone).

    ``scalars=True`` moves NumPy scalars too, as 0-d arrays (``StandardScaler``'s
    ``n_samples_seen_``, which scikit-learn keeps as a 0-d array of the namespace).
    """
    if ns is None:
        return
    for name in names:
        value = getattr(est, name, None)
        if isinstance(value, np.ndarray) or (scalars and isinstance(value, np.generic)):
            setattr(est, name, ns.move(np.asarray(value)))


def host(a, dtype=None):
    """A fitted attribute (NumPy, another namespace's array, GPU array or scalar) as NumPy."""
    if a is None:
        return None
    if not isinstance(a, (np.ndarray, np.generic, int, float)):
        if _dispatch._is_gpu(a):
            from numba import cuda

            a = cuda.as_cuda_array(_interop.cuda_view(a)).copy_to_host()
        else:
            a = _interop.host_view(a)
    return np.asarray(a, dtype)


def host64(a):
    """:func:`host` in float64."""
    return host(a, _F64)


def check_same_namespace(X, est, attribute, method):
    """scikit-learn's check (1.8+) that ``X`` is in the namespace/device ``est`` was fitted in."""
    try:
        from sklearn.utils._array_api import check_same_namespace as check
    except ImportError:  # older scikit-learn: no such check
        return
    if getattr(est, attribute, None) is not None:
        check(X, est, attribute=attribute, method=method)
