"""scikit-learn's array-API mode (``array_api_dispatch=True``) with numbanorm's scalers.

scikit-learn's own array-API tests for ``StandardScaler``/``MinMaxScaler`` (from
``sklearn/preprocessing/tests/test_data.py``) and its generic array-API estimator checks
(same namespace, mixed namespaces, fit/transform namespace consistency) run with numbanorm's
classes substituted. Namespaces and devices that are not installed or not present
(CuPy, torch CUDA/MPS/XPU, dpnp) are skipped by scikit-learn's helpers; scikit-learn needs
``SCIPY_ARRAY_API=1`` (set for each test here).
"""
import numpy as np
import pytest

pytest.importorskip("sklearn", minversion="1.8")
pytest.importorskip("array_api_strict")
pytest.importorskip("torch")

from sklearn import config_context  # noqa: E402
from sklearn.utils import estimator_checks as checks  # noqa: E402
from sklearn.utils._array_api import (  # noqa: E402
    yield_mixed_namespace_input_permutations,
    yield_namespace_device_dtype_combinations,
)

import numbanorm  # noqa: E402

sk_tests = pytest.importorskip("sklearn.preprocessing.tests.test_data")

COMBOS = list(yield_namespace_device_dtype_combinations())
IDS = [f"{ns}-{dev}-{dt}" for ns, dev, dt in COMBOS]
MIXED = list(yield_mixed_namespace_input_permutations())


@pytest.fixture(autouse=True)
def scipy_array_api(monkeypatch):
    monkeypatch.setenv("SCIPY_ARRAY_API", "1")


@pytest.mark.parametrize("namespace, device_name, dtype_name", COMBOS, ids=IDS)
@pytest.mark.parametrize("sample_weight", [True, None])
def test_standard_scaler_array_api_compliance(namespace, device_name, dtype_name, sample_weight):
    sk_tests.test_standard_scaler_array_api_compliance(
        checks.check_array_api_input_and_values, sample_weight, namespace, device_name, dtype_name
    )


@pytest.mark.parametrize("namespace, device_name, dtype_name", COMBOS, ids=IDS)
@pytest.mark.parametrize("clip", [False, True])
def test_min_max_scaler_array_api_compliance(namespace, device_name, dtype_name, clip):
    sk_tests.test_preprocessing_array_api_compliance(
        numbanorm.MinMaxScaler(clip=clip), checks.check_array_api_input_and_values,
        namespace, device_name, dtype_name,
    )


@pytest.mark.parametrize("namespace, device_name, dtype_name", COMBOS, ids=IDS)
@pytest.mark.parametrize("Xw, X, sample_weight", list(sk_tests._yield_xw_x_sampleweight()))
def test_standard_scaler_sample_weight_array_api(monkeypatch, Xw, X, sample_weight, namespace, device_name,
                                                 dtype_name):
    monkeypatch.setattr(sk_tests, "StandardScaler", numbanorm.StandardScaler)
    sk_tests.test_standard_scaler_sample_weight_array_api(Xw, X, sample_weight, namespace, device_name, dtype_name)


@pytest.mark.parametrize("other, x, _", MIXED, ids=[m[2] for m in MIXED])
@pytest.mark.parametrize("cls", [numbanorm.StandardScaler, numbanorm.MinMaxScaler])
def test_mixed_namespace_inputs(cls, other, x, _):
    checks.check_array_api_mixed_inputs(cls.__name__, cls(), X_ns_and_device=x, other_ns_and_device=other,
                                        check_values=True)


@pytest.mark.parametrize("cls", [numbanorm.StandardScaler, numbanorm.MinMaxScaler])
def test_transform_refuses_another_namespace_than_fit(cls):
    checks.check_array_api_same_namespace(cls.__name__, cls(), "array_api_strict")


def _torch():
    import torch

    return torch.from_numpy, lambda t: t.numpy(), lambda t: isinstance(t, torch.Tensor) and t.device.type == "cpu"


def _strict():
    import array_api_strict as xs

    dev = xs.Device("device1")
    return (lambda a: xs.asarray(a, device=dev), np.from_dlpack,
            lambda a: type(a) is type(xs.asarray(1.0)) and a.device == dev)


@pytest.mark.parametrize("lib", [_torch, _strict], ids=["torch", "array_api_strict"])
@pytest.mark.parametrize("cls", [numbanorm.StandardScaler, numbanorm.MinMaxScaler])
def test_every_method_keeps_namespace_and_device(cls, lib):
    make, back, is_ours = lib()
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((20, 3)), rng.standard_normal((7, 3))
    a[3, 1] = np.nan  # ignored by fit, kept by transform
    ref = cls().partial_fit(a).partial_fit(b)
    with config_context(array_api_dispatch=True):
        est = cls().partial_fit(make(a)).partial_fit(make(b))
        for name in ("scale_", "min_", "mean_", "var_", "data_min_", "data_max_", "data_range_"):
            if hasattr(ref, name):
                assert is_ours(getattr(est, name)), name
                np.testing.assert_allclose(back(getattr(est, name)), getattr(ref, name), rtol=1e-12)
        y = est.transform(make(a.astype(np.float32)))
        assert is_ours(y) and back(y).dtype == np.float32
        np.testing.assert_allclose(back(y), ref.transform(a.astype(np.float32)), rtol=1e-6)
        inv = est.inverse_transform(y)
        assert is_ours(inv)
        np.testing.assert_allclose(back(inv), a, rtol=1e-5, atol=1e-5)
        z = est.fit_transform(make(a))
        assert is_ours(z)
        np.testing.assert_allclose(back(z), cls().fit_transform(a), rtol=1e-12)
        with pytest.raises(ValueError, match="must use the same namespace"):
            est.transform(a)


def test_copy_false_overwrites_the_torch_input_in_place():
    import torch

    a = np.random.default_rng(1).standard_normal((6, 2))
    t = torch.from_numpy(a.copy())
    with config_context(array_api_dispatch=True):
        y = numbanorm.StandardScaler(copy=False).fit(t).transform(t)
    assert y is t
    np.testing.assert_allclose(t.numpy(), (a - a.mean(0)) / a.std(0), rtol=1e-12)
