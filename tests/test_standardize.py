"""standardize: parity with the float64 reference, scikit-learn and PyTorch, NaN and
constant features, float32 stability, axes, dtype/out/layout rules, validation, GPU (simulator)."""
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import numbanorm
from numbanorm import _config
from numbanorm import standardize

import reference as ref

AXES_4D = [0, 1, 2, 3, -1, (0, 2), (1, 3), (0, 2, 3), (0, 1, 2, 3), None, (0, 3), (1, 2), ()]


def _ref(x, axis=0, ddof=0):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return ref.standardize(x, axis, ddof)


@pytest.mark.parametrize("axis", AXES_4D)
def test_matches_reference_every_axis(rng, axis):
    x = rng.normal(2.0, 3.0, size=(4, 5, 6, 7))
    y = standardize(x, axis=axis)
    if axis == ():
        # each element is its own (single-value, constant) group -> 0
        np.testing.assert_array_equal(y, np.zeros_like(x))
        return
    np.testing.assert_allclose(y, _ref(x, axis), rtol=1e-12, atol=1e-12)
    assert y.shape == x.shape and y.dtype == np.float64 and y.flags.c_contiguous


@pytest.mark.parametrize("ddof", [0, 1, 2.5])
def test_ddof(rng, ddof):
    x = rng.normal(size=(50, 4))
    np.testing.assert_allclose(standardize(x, ddof=ddof), _ref(x, 0, ddof), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(
        standardize(x, axis=1, ddof=ddof), (x - x.mean(1, keepdims=True)) / x.std(1, ddof=ddof, keepdims=True),
        rtol=1e-12, atol=1e-13,
    )


def test_ddof_too_large_gives_nan():
    x = np.array([[1.0, 2.0], [3.0, 5.0]])
    assert np.isnan(standardize(x, ddof=2)).all()


def test_sklearn_scale_parity(rng):
    sk = pytest.importorskip("sklearn.preprocessing")
    x = rng.normal(size=(300, 6)) * [1, 2, 3, 4, 5, 6] + [0, 1, -2, 3, 10, -7]
    np.testing.assert_allclose(standardize(x), sk.scale(x), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(standardize(x, axis=1), sk.scale(x, axis=1), rtol=1e-12, atol=1e-14)
    scaler = sk.StandardScaler().fit(x)
    np.testing.assert_allclose(standardize(x), scaler.transform(x), rtol=1e-12, atol=1e-14)


def test_torch_parity(torch, rng):
    x = rng.normal(size=(8, 3, 5, 5))
    t = torch.from_numpy(x)
    for dims in [(0, 2, 3), (1,), (0,)]:
        expected = (t - t.mean(dim=dims, keepdim=True)) / t.std(dim=dims, correction=1, keepdim=True)
        np.testing.assert_allclose(standardize(x, axis=dims, ddof=1), expected.numpy(), rtol=1e-12, atol=1e-12)


def test_nan_ignored_and_kept(rng):
    x = rng.normal(size=(200, 5))
    x[rng.random(x.shape) < 0.2] = np.nan
    x[:, 3] = np.nan  # an all-NaN feature stays NaN
    y = standardize(x)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(x))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = (x - np.nanmean(x, 0)) / np.nanstd(x, 0)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-13)
    sk = pytest.importorskip("sklearn.preprocessing")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        np.testing.assert_allclose(y[:, [0, 1, 2, 4]], sk.StandardScaler().fit_transform(x[:, [0, 1, 2, 4]]),
                                   rtol=1e-12, atol=1e-13)


def test_nan_affects_only_its_group(rng):
    x = rng.normal(size=(10, 4))
    x[3, 2] = np.inf
    y = standardize(x)
    assert np.isnan(y[:, 2]).all()
    np.testing.assert_allclose(y[:, [0, 1, 3]], _ref(x[:, [0, 1, 3]]), rtol=1e-12)


@pytest.mark.parametrize("value", [0.0, 3.3, -1e6, 1e-300])
def test_constant_feature_maps_to_zero(rng, value):
    x = rng.normal(size=(1000, 3))
    x[:, 1] = value
    y = standardize(x)
    np.testing.assert_array_equal(y[:, 1], 0.0)
    assert np.isfinite(y).all()


def test_float32_large_offset_is_stable(rng):
    x64 = rng.normal(size=(20000, 4)) + 1e6
    x = x64.astype(np.float32)
    y = standardize(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, _ref(x), atol=1e-3)  # reference on the same float32 values
    y = standardize(x.reshape(100, 200, 4), axis=(0, 1))
    np.testing.assert_allclose(y, _ref(x.reshape(100, 200, 4), (0, 1)), atol=1e-3)


def test_float64_large_offset_matches_exact(rng):
    import math

    x = rng.normal(size=(5000, 2)) * 3 + 1e8
    y = standardize(x)
    for j in range(2):  # correctly rounded sums (math.fsum): a far better reference than np.sum here
        mu = math.fsum(x[:, j]) / len(x)
        d = x[:, j] - mu
        sd = math.sqrt(math.fsum(d * d) / len(x))
        np.testing.assert_allclose(y[:, j], d / sd, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("dtype", [np.float16, np.int32, np.int64, np.uint8, np.bool_])
def test_dtype_rules(rng, dtype):
    x = (rng.normal(size=(30, 4)) * 10).astype(dtype)
    y = standardize(x)
    assert y.dtype == (np.float16 if dtype == np.float16 else np.float64)
    tol = 2e-3 if dtype == np.float16 else 1e-12
    np.testing.assert_allclose(y.astype(np.float64), _ref(x.astype(np.float64)), rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.complex128, object, "U3", "datetime64[s]"])
def test_bad_dtype(dtype):
    with pytest.raises(TypeError, match=r"standardize\(\): argument 'x'"):
        standardize(np.zeros((3, 2), dtype=dtype))


def test_out_and_inplace(rng):
    x = rng.normal(size=(40, 6))
    expected = standardize(x)
    out = np.empty_like(x)
    assert standardize(x, out=out) is out
    np.testing.assert_array_equal(out, expected)
    x2 = x.copy()
    assert standardize(x2, out=x2) is x2
    np.testing.assert_array_equal(x2, expected)
    out32 = np.empty(x.shape, np.float32)  # same_kind cast
    standardize(x, out=out32)
    np.testing.assert_allclose(out32, expected, rtol=1e-6)
    outnc = np.empty((40, 12))[:, ::2]  # non-contiguous out
    standardize(x, out=outnc)
    np.testing.assert_array_equal(outnc, expected)
    xp = rng.normal(size=(3, 4, 5))  # permuted path into out
    o = np.empty_like(xp)
    assert standardize(xp, axis=1, out=o) is o
    np.testing.assert_allclose(o, _ref(xp, 1), rtol=1e-12, atol=1e-13)


def test_out_errors_change_nothing(rng):
    x = rng.normal(size=(5, 3))
    out = np.full((5, 3), 7.0)
    with pytest.raises(ValueError, match="'out'"):
        standardize(x, out=np.empty((3, 5)))
    with pytest.raises(TypeError, match="'out'"):
        standardize(x, out=np.empty((5, 3), np.int64))
    with pytest.raises(ValueError, match="'ddof'"):
        standardize(x, ddof=-1, out=out)
    np.testing.assert_array_equal(out, 7.0)
    ro = np.empty((5, 3))
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        standardize(x, out=ro)


def test_layouts(rng):
    base = rng.normal(size=(30, 20))
    for x in [base.T, base[::-1], base[::2, ::-3], np.asfortranarray(base)]:
        np.testing.assert_allclose(standardize(x), _ref(x), rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(standardize(x, axis=1), _ref(x, 1), rtol=1e-12, atol=1e-13)


def test_zero_size():
    for shape, axis in [((0, 3), 0), ((3, 0), 0), ((0,), 0), ((2, 0, 4), (0, 2))]:
        y = standardize(np.empty(shape), axis=axis)
        assert y.shape == shape and y.dtype == np.float64


def test_one_dim_and_lists():
    np.testing.assert_allclose(standardize([1.0, 2.0, 3.0]), [-1.224744871391589, 0.0, 1.224744871391589], rtol=1e-14)
    np.testing.assert_array_equal(standardize(np.float64(3.0), axis=None), 0.0)


def test_input_not_modified(rng):
    x = rng.normal(size=(64, 5))
    x[2, 1] = np.nan
    x0 = x.copy()
    standardize(x)
    standardize(x, axis=1)
    standardize(x.T, axis=(0,))
    np.testing.assert_array_equal(x, x0)


def test_axis_errors():
    x = np.zeros((3, 4))
    with pytest.raises(ValueError, match="'axis'"):
        standardize(x, axis=2)
    with pytest.raises(ValueError, match="'axis'"):
        standardize(x, axis=(0, -2))
    with pytest.raises(TypeError, match="'axis'"):
        standardize(x, axis=1.5)
    with pytest.raises(TypeError, match="'axis'"):
        standardize(x, axis=True)
    with pytest.raises(TypeError, match="'ddof'"):
        standardize(x, ddof="1")
    with pytest.raises(ValueError, match="'ddof'"):
        standardize(x, ddof=np.inf)


def test_parallel_serial_and_thread_count_bitwise(rng, monkeypatch):
    import numba

    x = rng.normal(size=(70000, 3)) + 5
    x[rng.random(x.shape) < 0.01] = np.nan
    y_par = standardize(x)
    y4 = standardize(x.reshape(10, 7000, 3), axis=(0, 1))
    monkeypatch.setattr(_config, "SERIAL_THRESHOLD", 10**12)
    np.testing.assert_array_equal(standardize(x), y_par)
    monkeypatch.undo()
    n = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        np.testing.assert_array_equal(standardize(x), y_par)
        np.testing.assert_array_equal(standardize(x.reshape(10, 7000, 3), axis=(0, 1)), y4)
    finally:
        numba.set_num_threads(n)
    np.testing.assert_allclose(y_par, _ref(x), rtol=1e-12, atol=1e-12)


def test_big_rows_and_segments_paths(rng):
    # (I == 1) with many tiles, (I > 1) with several pieces per channel, and one long run
    for x, axis in [(rng.normal(size=(600, 1500)), 0), (rng.normal(size=(3, 2, 40000)) - 7, (0, 2)),
                    (rng.normal(size=(90000,)) * 1e-3 + 1, 0)]:
        np.testing.assert_allclose(standardize(x, axis=axis), _ref(x, axis), rtol=1e-10, atol=1e-10)


def test_segments_path_with_nan_and_inf(rng):
    # I > 1 runs: plain sums, with the careful loop for runs holding NaN or inf
    x = rng.normal(size=(4, 3, 5000)) * 2 + 100
    x[rng.random(x.shape) < 0.001] = np.nan
    x[2, 1, 77] = np.inf
    y = standardize(x, axis=(0, 2))
    np.testing.assert_array_equal(np.isnan(y[:, [0, 2]]), np.isnan(x[:, [0, 2]]))
    assert np.isnan(y[:, 1]).all()  # the channel holding inf
    np.testing.assert_allclose(y[:, [0, 2]], _ref(x[:, [0, 2]], (0, 2)), rtol=1e-10, atol=1e-10)


def test_rows_blocks_with_and_without_nan(rng):
    # (I == 1) blocks of ROW_BLOCK rows: NaN-free blocks take the one-pass loop about their
    # first row, a block holding a NaN (or inf) or whose first row is an outlier the
    # NaN-skipping two passes; both feed one per-column merge
    from numbanorm._cpu import standardize as kern

    rows = 5 * kern.ROW_BLOCK + 7
    x = rng.normal(size=(rows, 4)) * 3 + 50
    x[kern.ROW_BLOCK + 3, 1] = np.nan  # one block of column 1
    x[3 * kern.ROW_BLOCK:4 * kern.ROW_BLOCK, 2] = np.nan  # a whole block of column 2
    x[-1, 3] = np.inf  # the last block of column 3
    x[2 * kern.ROW_BLOCK, 0] = 1e7  # a block whose first row is far from its mean
    y = standardize(x)
    np.testing.assert_array_equal(np.isnan(y[:, :3]), np.isnan(x[:, :3]))
    assert np.isnan(y[:, 3]).all()
    np.testing.assert_allclose(y[:, :3], _ref(x[:, :3]), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dims", [(300, 7, 1), (3, 5, 700), (1, 1, 2000)])
@pytest.mark.parametrize("ones", ["mul", "div", None])
def test_transform_streamed_and_cached_match_numpy(rng, monkeypatch, dims, ones):
    # the shared transform: float64 ((x - sub) * mul) / div + add as NumPy computes it,
    # bitwise, with non-temporal stores (threshold lowered) and without, clipped or not
    from numbanorm._cpu import _transform

    c = dims[1]
    sub, mul, div, add = rng.normal(size=(4, c))
    div += 3.0
    if ones == "mul":
        mul[:] = 1.0
    elif ones == "div":
        div[:] = 1.0
    for dtype in (np.float32, np.float64):
        x = rng.normal(size=dims).astype(dtype)
        x.reshape(-1)[::11] = np.nan
        p = [a.reshape(1, c, 1) for a in (sub, mul, div, add)]
        want = ((x.astype(np.float64) - p[0]) * p[1]) / p[2] + p[3]
        for clip in (False, True):
            expected = (np.clip(want, -0.5, 0.7) if clip else want).astype(dtype)
            for threshold in (0, 1 << 62):
                monkeypatch.setattr(_transform, "STREAM_BYTES", threshold)
                monkeypatch.setattr(_config, "SERIAL_THRESHOLD", 64)  # several chunks
                out = np.empty_like(x)
                _transform.transform(x, sub, mul, div, add, -0.5, 0.7, clip, out)
                np.testing.assert_array_equal(out, expected)


@settings(max_examples=30, deadline=None)
@given(
    shape=st.lists(st.integers(1, 6), min_size=1, max_size=4),
    data=st.data(),
    offset=st.floats(-1e3, 1e3),
    ddof=st.sampled_from([0, 1]),
)
def test_property_matches_reference(shape, data, offset, ddof):
    ndim = len(shape)
    axis = data.draw(st.one_of(
        st.integers(-ndim, ndim - 1),
        st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True).map(tuple),
    ))
    seed = data.draw(st.integers(0, 2**31 - 1))
    x = np.random.default_rng(seed).normal(size=shape) + offset
    y = standardize(x, axis=axis, ddof=ddof)
    expected = _ref(x, axis, ddof)
    np.testing.assert_allclose(y, expected, rtol=1e-9, atol=1e-9)
    # statistics of the result: zero mean (and unit std where defined and not constant)
    axes = ref._scaling_axes(x, axis)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        m = np.nanmean(y, axis=axes)
    assert np.all((np.abs(m) < 1e-9) | np.isnan(m))  # NaN: groups with n <= ddof


def test_public_name():
    assert numbanorm.standardize is standardize


@pytest.fixture
def small_launches():
    """Small blocks and grids, so several blocks and grid-stride iterations really run."""
    from numbanorm._cuda import _layout

    with _layout.launch_settings(threads_per_block=32, max_blocks=3, partial_blocks=3):
        yield


@pytest.mark.cuda
@pytest.mark.parametrize("axis", [0, 1, (0, 2), None, (1,)])
def test_gpu_matches_cpu(on_gpu, rng, axis, small_launches):
    x = rng.normal(size=(9, 5, 7)) + 3
    x[1, 2, 3] = np.nan
    expected = standardize(x, axis=axis, ddof=1)
    with on_gpu():
        y = standardize(x, axis=axis, ddof=1)
    assert isinstance(y, np.ndarray)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.cuda
def test_gpu_several_chunks_and_inplace(on_gpu, rng, small_launches):
    x = rng.normal(size=(200, 3)) * [1, 10, 100] + [0, 5, -3]
    x[rng.random(x.shape) < 0.05] = np.nan
    x[:, 1] = 4.0
    expected = standardize(x)
    x2 = x.copy()
    with on_gpu():
        y = standardize(x2, out=x2)
    assert y is x2
    np.testing.assert_allclose(x2, expected, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(x2[:, 1][~np.isnan(x[:, 1])], 0.0)


@pytest.mark.cuda
def test_gpu_float32_offset_and_out(on_gpu, rng, small_launches):
    x = (rng.normal(size=(70, 3)) + 1e6).astype(np.float32)
    out = np.empty_like(x)
    with on_gpu():
        y = standardize(x, out=out)
    assert y is out
    np.testing.assert_allclose(out, _ref(x), atol=1e-3)
