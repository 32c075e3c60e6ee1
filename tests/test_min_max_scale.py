"""min_max_scale: parity with the float64 reference and scikit-learn (bitwise for the
scikit-learn formula), NaN and constant features, clip, float32 stability, axes,
dtype/out/layout rules, validation, GPU (simulator)."""
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import numbanorm
from numbanorm import _config
from numbanorm import min_max_scale

import reference as ref

AXES_4D = [0, 1, 2, 3, -1, (0, 2), (1, 3), (0, 2, 3), (0, 1, 2, 3), None, (0, 3), (1, 2)]


def _ref(x, feature_range=(0.0, 1.0), axis=0, clip=False):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return ref.min_max_scale(x, feature_range, axis, clip)


@pytest.mark.parametrize("axis", AXES_4D)
def test_matches_reference_every_axis(rng, axis):
    x = rng.normal(2.0, 3.0, size=(4, 5, 6, 7))
    y = min_max_scale(x, (-2.0, 3.0), axis=axis)
    np.testing.assert_allclose(y, _ref(x, (-2.0, 3.0), axis), rtol=1e-12, atol=1e-12)
    assert y.shape == x.shape and y.dtype == np.float64 and y.flags.c_contiguous


def test_sklearn_bitwise(rng):
    sk = pytest.importorskip("sklearn.preprocessing")
    x = rng.normal(size=(500, 6)) * [1, 2, 3, 4, 5, 6] + [0, 1, -2, 3, 1e6, -7]
    for fr in [(0, 1), (-1, 1), (2.5, 7.25)]:
        np.testing.assert_array_equal(min_max_scale(x, fr), sk.minmax_scale(x, fr))
        np.testing.assert_array_equal(min_max_scale(x, fr, axis=1), sk.minmax_scale(x, fr, axis=1))
        np.testing.assert_array_equal(min_max_scale(x, fr), sk.MinMaxScaler(feature_range=fr).fit_transform(x))


def test_nan_ignored_and_kept(rng):
    sk = pytest.importorskip("sklearn.preprocessing")
    x = rng.normal(size=(200, 5))
    x[rng.random(x.shape) < 0.2] = np.nan
    y = min_max_scale(x)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(x))
    np.testing.assert_array_equal(y, sk.minmax_scale(x))
    assert np.nanmin(y) == 0.0 and np.nanmax(y) == 1.0
    x[:, 2] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        y = min_max_scale(x)
    assert np.isnan(y[:, 2]).all()


@pytest.mark.parametrize("value", [0.0, 3.3, -1e6])
@pytest.mark.parametrize("fr", [(0.0, 1.0), (-1.0, 1.0), (0.3, 0.7)])
def test_constant_feature_maps_to_lo(rng, value, fr):
    x = rng.normal(size=(100, 3))
    x[:, 1] = value
    y = min_max_scale(x, fr)
    np.testing.assert_array_equal(y[:, 1], fr[0])


def test_clip_keeps_nan():
    x = np.array([[0.0], [10.0], [np.nan]])
    y = min_max_scale(x, (0.0, 1.0), clip=True)
    np.testing.assert_array_equal(y, [[0.0], [1.0], [np.nan]])
    # rounding never leaves the range when clipping
    x = np.random.default_rng(1).normal(size=(1000, 4)) * 1e3
    y = min_max_scale(x, (-1.0, 1.0), clip=True)
    assert y.min() >= -1.0 and y.max() <= 1.0


def test_float32_large_offset_is_stable(rng):
    x = (rng.normal(size=(20000, 4)) + 1e6).astype(np.float32)
    y = min_max_scale(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, _ref(x), atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.int32, np.uint8, np.bool_])
def test_dtype_rules(rng, dtype):
    x = (rng.normal(size=(30, 4)) * 10).astype(dtype)
    y = min_max_scale(x)
    assert y.dtype == (np.float16 if dtype == np.float16 else np.float32 if dtype == np.float32 else np.float64)
    tol = 2e-3 if dtype == np.float16 else 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(y.astype(np.float64), _ref(x.astype(np.float64)), rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.complex64, object, "S2"])
def test_bad_dtype(dtype):
    with pytest.raises(TypeError, match=r"min_max_scale\(\): argument 'x'"):
        min_max_scale(np.zeros((3, 2), dtype=dtype))


@pytest.mark.parametrize("fr", [(1, 1), (2, 1), (0, np.inf), (np.nan, 1)])
def test_bad_feature_range_value(fr):
    with pytest.raises(ValueError, match=r"min_max_scale\(\): argument 'feature_range'"):
        min_max_scale(np.zeros((3, 2)), fr)


@pytest.mark.parametrize("fr", [1.0, (1,), (0, 1, 2), ("a", "b"), (True, 2)])
def test_bad_feature_range_type(fr):
    with pytest.raises(TypeError, match=r"min_max_scale\(\): argument 'feature_range'"):
        min_max_scale(np.zeros((3, 2)), fr)


def test_bad_args():
    x = np.zeros((3, 2))
    with pytest.raises(TypeError, match="'clip'"):
        min_max_scale(x, clip="yes")
    with pytest.raises(ValueError, match="'axis'"):
        min_max_scale(x, axis=-3)
    with pytest.raises(ValueError, match="'axis'"):
        min_max_scale(x, axis=(1, 1))


def test_out_and_inplace(rng):
    x = rng.normal(size=(40, 6))
    expected = min_max_scale(x, (-1, 1))
    out = np.empty_like(x)
    assert min_max_scale(x, (-1, 1), out=out) is out
    np.testing.assert_array_equal(out, expected)
    x2 = x.copy()
    assert min_max_scale(x2, (-1, 1), out=x2) is x2
    np.testing.assert_array_equal(x2, expected)
    xp = rng.normal(size=(3, 4, 5))
    o = np.empty_like(xp)
    assert min_max_scale(xp, axis=1, out=o) is o
    np.testing.assert_allclose(o, _ref(xp, axis=1), rtol=1e-12, atol=1e-13)


def test_failed_call_changes_nothing(rng):
    x = rng.normal(size=(5, 3))
    out = np.full((5, 3), 7.0)
    with pytest.raises(ValueError):
        min_max_scale(x, (1, 0), out=out)
    with pytest.raises(ValueError):
        min_max_scale(x, axis=5, out=out)
    with pytest.raises(ValueError, match="'out'"):
        min_max_scale(x, out=np.empty((5, 4)))
    np.testing.assert_array_equal(out, 7.0)


def test_layouts_and_input_untouched(rng):
    base = rng.normal(size=(30, 20))
    b0 = base.copy()
    for x in [base.T, base[::-1], base[::2, ::-3], np.asfortranarray(base)]:
        np.testing.assert_allclose(min_max_scale(x), _ref(x), rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(min_max_scale(x, axis=1), _ref(x, axis=1), rtol=1e-12, atol=1e-13)
    np.testing.assert_array_equal(base, b0)


def test_zero_size():
    for shape, axis in [((0, 3), 0), ((3, 0), 0), ((0,), 0), ((2, 0, 4), (0, 2))]:
        y = min_max_scale(np.empty(shape), axis=axis)
        assert y.shape == shape and y.dtype == np.float64


def test_parallel_serial_and_thread_count_bitwise(rng, monkeypatch):
    import numba

    x = rng.normal(size=(70000, 3))
    x[rng.random(x.shape) < 0.01] = np.nan
    y_par = min_max_scale(x)
    y3 = min_max_scale(x.reshape(10, 7000, 3), axis=(0, 1))
    monkeypatch.setattr(_config, "SERIAL_THRESHOLD", 10**12)
    np.testing.assert_array_equal(min_max_scale(x), y_par)
    np.testing.assert_array_equal(min_max_scale(x.reshape(10, 7000, 3), axis=(0, 1)), y3)
    monkeypatch.undo()
    n = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        np.testing.assert_array_equal(min_max_scale(x), y_par)
    finally:
        numba.set_num_threads(n)
    np.testing.assert_allclose(y_par, _ref(x), rtol=1e-12, atol=1e-12)


def test_segments_extrema_lanes(rng):
    # (I > 1) extrema: runs that are not a multiple of the lane count, NaN anywhere (also
    # in the tail), a channel of NaN only, an extreme in the last element of a run
    from numbanorm._cpu import min_max_scale as kern

    for dtype in (np.float32, np.float64):
        x = rng.normal(size=(3, 4, 3 * kern.LANES + 5)).astype(dtype)
        x[rng.random(x.shape) < 0.05] = np.nan
        x[:, 2] = np.nan
        x[1, 0, -1] = 9.0
        x[2, 3, -2] = -9.0
        mn, mx = np.empty(4), np.empty(4)
        kern.extrema(x, mn, mx)
        keep = [0, 1, 3]
        np.testing.assert_array_equal(mn[keep], np.nanmin(x[:, keep], axis=(0, 2)))
        np.testing.assert_array_equal(mx[keep], np.nanmax(x[:, keep], axis=(0, 2)))
        assert mn[2] > mx[2]  # no value: +inf, -inf


def test_big_paths(rng):
    for x, axis in [(rng.normal(size=(600, 1500)), 0), (rng.normal(size=(3, 2, 40000)) - 7, (0, 2)),
                    (rng.normal(size=(90000,)), 0)]:
        np.testing.assert_allclose(min_max_scale(x, axis=axis), _ref(x, axis=axis), rtol=1e-12, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(
    shape=st.lists(st.integers(1, 6), min_size=1, max_size=4),
    data=st.data(),
    lo=st.floats(-10, 10),
    width=st.floats(0.01, 100),
    clip=st.booleans(),
)
def test_property_range(shape, data, lo, width, clip):
    ndim = len(shape)
    axis = data.draw(st.one_of(
        st.integers(-ndim, ndim - 1),
        st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True).map(tuple),
    ))
    seed = data.draw(st.integers(0, 2**31 - 1))
    x = np.random.default_rng(seed).normal(size=shape) * 5
    fr = (lo, lo + width)
    y = min_max_scale(x, fr, axis=axis, clip=clip)
    np.testing.assert_allclose(y, _ref(x, fr, axis, clip), rtol=1e-9, atol=1e-9 * (1 + abs(lo) + width))
    tol = 1e-12 * (abs(lo) + width + 1)
    assert y.min() >= fr[0] - tol and y.max() <= fr[1] + tol


def test_public_name():
    assert numbanorm.min_max_scale is min_max_scale


@pytest.fixture
def small_launches():
    """Small blocks and grids, so several blocks and grid-stride iterations really run."""
    from numbanorm._cuda import _layout

    with _layout.launch_settings(threads_per_block=32, max_blocks=3, partial_blocks=3):
        yield


@pytest.mark.cuda
@pytest.mark.parametrize("axis", [0, 1, (0, 2), None])
@pytest.mark.parametrize("clip", [False, True])
def test_gpu_matches_cpu(on_gpu, rng, axis, clip, small_launches):
    x = rng.normal(size=(9, 5, 7))
    x[1, 2, 3] = np.nan
    x[:, 3, :] = 2.0
    expected = min_max_scale(x, (-1, 2), axis=axis, clip=clip)
    with on_gpu():
        y = min_max_scale(x, (-1, 2), axis=axis, clip=clip)
    assert isinstance(y, np.ndarray)
    np.testing.assert_array_equal(y, expected)
