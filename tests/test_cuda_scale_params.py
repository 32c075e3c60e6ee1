"""standardize / min_max_scale parameters computed on the device (numbanorm/_cuda/
_scale_params.py) match the NumPy ones of the CPU path on the edge cases: a column with
no value, a constant column, a single value, +-inf, ddof >= count."""
import numpy as np
import pytest

import numbanorm

pytestmark = pytest.mark.cuda


def _edge_columns(rng):
    x = rng.normal(size=(12, 6)) * 3 + 1e4
    x[:, 0] = np.nan          # no value
    x[:, 1] = 7.25            # constant: centered only / maps to lo
    x[1:, 2] = np.nan         # a single value
    x[3, 3] = np.inf          # inf enters the statistics
    x[::2, 4] = np.nan        # half missing
    return x


@pytest.mark.parametrize("ddof", [0, 1, 11, 12])
def test_standardize_params_on_device_match_cpu(on_gpu, rng, ddof):
    x = _edge_columns(rng)
    want = numbanorm.standardize(x, axis=0, ddof=ddof)
    with on_gpu():
        got = numbanorm.standardize(x, axis=0, ddof=ddof)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, equal_nan=True)
    assert np.array_equal(np.isnan(got), np.isnan(want))


@pytest.mark.parametrize("feature_range", [(0.0, 1.0), (-2.0, 3.0)])
def test_min_max_params_on_device_match_cpu(on_gpu, rng, feature_range):
    x = _edge_columns(rng)
    want = numbanorm.min_max_scale(x, feature_range, axis=0, clip=True)
    with on_gpu():
        got = numbanorm.min_max_scale(x, feature_range, axis=0, clip=True)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, equal_nan=True)
    assert np.array_equal(np.isnan(got), np.isnan(want))


def test_standardize_float32_reciprocal_matches_cpu(on_gpu, rng):
    """float32 data multiply by the float64 reciprocal of the std (no division per
    element): the float32 results agree with the CPU's division to the last bit almost
    always, and within 1 ulp."""
    x = _edge_columns(rng).astype(np.float32)
    want = numbanorm.standardize(x, axis=0)
    with on_gpu():
        got = numbanorm.standardize(x, axis=0)
    assert got.dtype == np.float32
    np.testing.assert_array_max_ulp(np.nan_to_num(got, nan=0.0), np.nan_to_num(want, nan=0.0), maxulp=1)
    assert np.array_equal(np.isnan(got), np.isnan(want))
