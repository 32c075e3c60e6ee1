"""StandardScaler / MinMaxScaler: scikit-learn parity (attributes and results), partial_fit,
sample weights, NaN, check_estimator, Pipeline/clone/pickle, copy semantics, errors, the
classes without scikit-learn, and the GPU path (simulator)."""
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import numbanorm
from numbanorm import MinMaxScaler, StandardScaler

sk = pytest.importorskip("sklearn")
from sklearn import preprocessing as skp  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import NotFittedError  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

RTOL = 1e-12


def _data(rng, n=500, f=6, nan=0.0, const=True, big=1e6):
    x = rng.normal(size=(n, f)) * np.arange(1, f + 1) + np.array([0, 1e3, -5, big, 7, 0.5])[:f]
    if const:
        x[:, 2 % f] = 3.25
    if nan:
        x[rng.random(x.shape) < nan] = np.nan
    return x


def _same_attrs(ours, theirs, names):
    for name in names:
        a, b = getattr(ours, name), getattr(theirs, name)
        if b is None:
            assert a is None, name
            continue
        if np.ndim(b) == 0:
            assert np.ndim(a) == 0, name
            assert a == b, (name, a, b)
            continue
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=1e-14, err_msg=name)
        assert np.asarray(a).dtype == np.asarray(b).dtype, name


# --------------------------------------------------------------------------- check_estimator


@parametrize_with_checks([StandardScaler(), MinMaxScaler(), StandardScaler(with_mean=False, with_std=False),
                          MinMaxScaler(feature_range=(-2, 3), clip=True)])
def test_sklearn_check_estimator(estimator, check):
    check(estimator)


# --------------------------------------------------------------------------- StandardScaler


@pytest.mark.parametrize("with_mean", [True, False])
@pytest.mark.parametrize("with_std", [True, False])
@pytest.mark.parametrize("nan", [0.0, 0.1])
def test_standard_scaler_matches_sklearn(rng, with_mean, with_std, nan):
    x = _data(rng, nan=nan)
    x_new = _data(np.random.default_rng(7), n=50, nan=nan)
    ours = StandardScaler(with_mean=with_mean, with_std=with_std).fit(x)
    theirs = skp.StandardScaler(with_mean=with_mean, with_std=with_std).fit(x)
    _same_attrs(ours, theirs, ["mean_", "var_", "scale_", "n_samples_seen_", "n_features_in_"])
    assert type(ours.n_samples_seen_) is type(theirs.n_samples_seen_)
    # outputs: (x - mean) / scale carries the rounding of the mean (a sum of n values) as an
    # absolute error, so compare with the conditioning |mean| / scale of each feature
    cond = 1.0 if theirs.mean_ is None else 1 + np.abs(theirs.mean_) / (1 if theirs.scale_ is None else theirs.scale_)
    for a in (x, x_new):
        y, y_sk = ours.transform(a), theirs.transform(a)
        np.testing.assert_allclose(y, y_sk, rtol=RTOL, atol=1e-14 * np.max(cond))
        np.testing.assert_array_equal(np.isnan(y), np.isnan(a))
        np.testing.assert_allclose(ours.inverse_transform(y), theirs.inverse_transform(y_sk), rtol=RTOL)
    np.testing.assert_allclose(ours.fit_transform(x), theirs.fit_transform(x), rtol=RTOL, atol=1e-14 * np.max(cond))


def test_standard_scaler_transform_is_sklearns_rounding(rng):
    x = _data(rng)
    ours, theirs = StandardScaler().fit(x), skp.StandardScaler().fit(x)
    ours.mean_, ours.scale_ = theirs.mean_.copy(), theirs.scale_.copy()  # same parameters ->
    np.testing.assert_array_equal(ours.transform(x), theirs.transform(x))  # bitwise the same result
    np.testing.assert_array_equal(ours.inverse_transform(x), theirs.inverse_transform(x))


def test_standard_scaler_constant_feature(rng):
    x = _data(rng)
    y = StandardScaler().fit_transform(x)
    assert StandardScaler().fit(x).scale_[2] == 1.0
    np.testing.assert_array_equal(y[:, 2], 0.0)


@pytest.mark.parametrize("nan", [0.0, 0.2])
def test_standard_scaler_partial_fit(rng, nan):
    # (scikit-learn merges batch *sums*, which loses ~1e-12 relative on a 1e6-offset feature;
    # ours merges means: see test_standard_scaler_partial_fit_stable_with_offset)
    x = _data(rng, n=1000, nan=nan, big=30.0)
    ours, theirs = StandardScaler(), skp.StandardScaler()
    # (batches with a value in every feature: scikit-learn turns a feature that is all-NaN in
    # one batch into NaN for good, ours keeps the other batches' statistics)
    for chunk in np.array_split(x, [10, 300, 310, 990]):
        ours.partial_fit(chunk)
        theirs.partial_fit(chunk)
        _same_attrs(ours, theirs, ["mean_", "var_", "scale_", "n_samples_seen_"])
    full = StandardScaler().fit(x)
    single = StandardScaler()
    for row in x:  # one sample at a time, all-NaN batches included
        single.partial_fit(row[None])
    for s in (ours, single):
        np.testing.assert_allclose(s.mean_, full.mean_, rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(s.var_, full.var_, rtol=1e-12)
        np.testing.assert_array_equal(s.n_samples_seen_, full.n_samples_seen_)
    np.testing.assert_allclose(ours.mean_, full.mean_, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(ours.var_, full.var_, rtol=1e-12)
    if nan:
        # per-feature counts, float64 as scikit-learn's _incremental_mean_and_var returns them
        assert isinstance(ours.n_samples_seen_, np.ndarray) and ours.n_samples_seen_.dtype == np.float64
    else:
        assert ours.n_samples_seen_ == 1000


def test_standard_scaler_partial_fit_stable_with_offset(rng):
    import math

    x = rng.normal(size=(4000, 2)) + 1e9
    s = StandardScaler()
    for chunk in np.array_split(x, 40):
        s.partial_fit(chunk)
    for j in range(2):
        mu = math.fsum(x[:, j]) / len(x)
        d = x[:, j] - mu
        var = math.fsum(d * d) / len(x)
        assert abs(s.mean_[j] - mu) <= 1e-15 * 1e9  # a few ulps after 40 merges
        # the float64 batch means carry ulp(1e9) = 1.2e-7 each: ~1e-8 relative is the limit of
        # any merge of (mean_, var_) states (scikit-learn's own: ~1e-8 here)
        assert abs(s.var_[j] / var - 1) < 2e-8


def test_standard_scaler_sample_weight(rng):
    x = _data(rng, n=200, nan=0.1)
    w = rng.random(200) * 3
    ours = StandardScaler().fit(x, sample_weight=w)
    theirs = skp.StandardScaler().fit(x, sample_weight=w)
    _same_attrs(ours, theirs, ["mean_", "var_", "scale_", "n_samples_seen_"])
    # integer weights = repeated samples
    x = _data(rng, n=50, const=False)
    wi = rng.integers(0, 4, size=50)
    a = StandardScaler().fit(x, sample_weight=wi)
    b = StandardScaler().fit(np.repeat(x, wi, axis=0))
    np.testing.assert_allclose(a.mean_, b.mean_, rtol=1e-12)
    np.testing.assert_allclose(a.var_, b.var_, rtol=1e-11)
    # partial_fit with weights
    c = StandardScaler().partial_fit(x[:20], sample_weight=wi[:20]).partial_fit(x[20:], sample_weight=wi[20:])
    np.testing.assert_allclose(c.mean_, a.mean_, rtol=1e-12)
    np.testing.assert_allclose(c.var_, a.var_, rtol=1e-11)
    with pytest.raises(ValueError, match="zero"):
        StandardScaler().fit(x, sample_weight=np.zeros(50))
    w0 = wi.astype(float).copy()
    StandardScaler().fit(x, sample_weight=w0)
    np.testing.assert_array_equal(w0, wi)


def test_standard_scaler_float32_and_ints(rng):
    x = (rng.normal(size=(300, 4)) + 1e4).astype(np.float32)
    y = StandardScaler().fit_transform(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, skp.StandardScaler().fit_transform(x.astype(np.float64)), atol=2e-3)
    xi = rng.integers(-5, 5, size=(30, 3))
    np.testing.assert_allclose(StandardScaler().fit_transform(xi), skp.StandardScaler().fit_transform(xi), rtol=RTOL)
    x16 = rng.normal(size=(30, 3)).astype(np.float16)
    y16 = StandardScaler().fit_transform(x16)
    assert y16.dtype == np.float16


# --------------------------------------------------------------------------- MinMaxScaler


@pytest.mark.parametrize("fr", [(0, 1), (-1, 1), (2.5, 7.25)])
@pytest.mark.parametrize("nan", [0.0, 0.1])
@pytest.mark.parametrize("clip", [False, True])
def test_min_max_scaler_matches_sklearn_bitwise(rng, fr, nan, clip):
    x = _data(rng, nan=nan)
    x_new = _data(np.random.default_rng(3), n=60, nan=nan) * 1.5
    ours = MinMaxScaler(feature_range=fr, clip=clip).fit(x)
    theirs = skp.MinMaxScaler(feature_range=fr, clip=clip).fit(x)
    for name in ["data_min_", "data_max_", "data_range_", "scale_", "min_"]:
        np.testing.assert_array_equal(getattr(ours, name), getattr(theirs, name), err_msg=name)
    assert ours.n_samples_seen_ == theirs.n_samples_seen_ and ours.n_features_in_ == 6
    for a in (x, x_new):
        np.testing.assert_array_equal(ours.transform(a), theirs.transform(a))
        np.testing.assert_array_equal(ours.inverse_transform(a), theirs.inverse_transform(a))
    np.testing.assert_array_equal(ours.fit_transform(x), theirs.fit_transform(x))


def test_min_max_scaler_partial_fit(rng):
    x = _data(rng, n=900, nan=0.05)
    ours, theirs = MinMaxScaler(), skp.MinMaxScaler()
    for chunk in np.array_split(x, [5, 100, 600]):
        ours.partial_fit(chunk)
        theirs.partial_fit(chunk)
    for name in ["data_min_", "data_max_", "scale_", "min_"]:
        np.testing.assert_array_equal(getattr(ours, name), getattr(theirs, name))
    assert ours.n_samples_seen_ == 900
    np.testing.assert_array_equal(ours.transform(x), theirs.transform(x))


def test_min_max_scaler_errors(rng):
    x = _data(rng, n=20)
    with pytest.raises(ValueError, match="Minimum of desired feature range must be smaller"):
        MinMaxScaler(feature_range=(1, 0)).fit(x)
    with pytest.raises((TypeError, ValueError), match="feature_range"):
        MinMaxScaler(feature_range="ab").fit(x)
    with pytest.raises(TypeError, match="sparse"):
        import scipy.sparse

        MinMaxScaler().fit(scipy.sparse.csr_matrix(x))


# --------------------------------------------------------------------------- common behaviour


@pytest.mark.parametrize("cls", [StandardScaler, MinMaxScaler])
def test_errors(rng, cls):
    x = _data(rng, n=20)
    with pytest.raises(NotFittedError):
        cls().transform(x)
    s = cls().fit(x)
    with pytest.raises(ValueError, match="X has 5 features, but .* is expecting 6 features"):
        s.transform(x[:, :5])
    with pytest.raises(ValueError, match="infinity"):
        bad = x.copy()
        bad[3, 1] = np.inf
        cls().fit(bad)
    out = x.copy()
    out[0, 0] = -np.inf
    keep = out.copy()
    with pytest.raises(ValueError, match="infinity"):
        cls(copy=False).fit(x).transform(out)
    np.testing.assert_array_equal(out, keep)  # failed transform changed nothing
    with pytest.raises(ValueError, match="2D"):
        cls().fit(x[:, 0])
    with pytest.raises((TypeError, ValueError), match="copy"):
        cls(copy="no").fit(x)


@pytest.mark.parametrize("cls", [StandardScaler, MinMaxScaler])
def test_pipeline_clone_pickle_params(rng, cls):
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline

    x = _data(rng, n=100, const=False)
    y = x @ rng.normal(size=6)
    sk_cls = getattr(skp, cls.__name__)
    ours = make_pipeline(cls(), Ridge(alpha=1e-3)).fit(x, y)
    theirs = make_pipeline(sk_cls(), Ridge(alpha=1e-3)).fit(x, y)
    np.testing.assert_allclose(ours.predict(x), theirs.predict(x), rtol=1e-9)
    s = cls().fit(x)
    c = clone(s)
    assert c.get_params() == cls().get_params() and not hasattr(c, "n_features_in_")
    s2 = pickle.loads(pickle.dumps(s))
    np.testing.assert_array_equal(s2.transform(x), s.transform(x))
    assert cls().set_params(copy=False).copy is False
    assert repr(cls(copy=False)) == f"{cls.__name__}(copy=False)"
    np.testing.assert_array_equal(s.get_feature_names_out(), [f"x{i}" for i in range(6)])


@pytest.mark.parametrize("cls", [StandardScaler, MinMaxScaler])
def test_copy_semantics_and_layouts(rng, cls):
    x = _data(rng, n=200, const=False)
    expected = cls().fit_transform(x)
    x0 = x.copy()
    cls().fit(x).transform(x)
    np.testing.assert_array_equal(x, x0)  # copy=True leaves X alone
    xc = x.copy()
    y = cls(copy=False).fit(xc).transform(xc)
    assert y is xc  # in place, as scikit-learn
    np.testing.assert_array_equal(y, expected)
    xf = np.asfortranarray(x)
    yf = cls().fit_transform(xf)  # (another kernel: the mean of the 1e6-offset feature may
    assert yf.flags.f_contiguous  # differ by an ulp, 1e-10, i.e. 3e-11 after scaling)
    np.testing.assert_allclose(yf, expected, rtol=1e-13, atol=1e-10)
    np.testing.assert_array_equal(xf, x0)
    xs = np.repeat(x, 2, axis=0)[::2]  # strided view of the same values
    np.testing.assert_allclose(cls().fit_transform(xs), expected, rtol=1e-13, atol=1e-15)
    ro = x.copy()
    ro.flags.writeable = False
    np.testing.assert_array_equal(cls(copy=False).fit(ro).transform(ro), expected)
    np.testing.assert_array_equal(cls().fit_transform(x.tolist()), expected)


def test_large_parallel_path_matches_sklearn(rng):
    x = rng.normal(size=(20000, 8)) * 3 + 100
    x[rng.random(x.shape) < 0.01] = np.nan
    for ours, theirs in [(StandardScaler(), skp.StandardScaler()), (MinMaxScaler(), skp.MinMaxScaler())]:
        np.testing.assert_allclose(ours.fit_transform(x), theirs.fit_transform(x), rtol=1e-11, atol=1e-12)


def test_public_names():
    assert numbanorm.StandardScaler is StandardScaler and numbanorm.MinMaxScaler is MinMaxScaler


def test_without_sklearn():
    """The classes work with scikit-learn unavailable (local base class and validation)."""
    code = textwrap.dedent(
        """
        import sys
        sys.modules["sklearn"] = None  # import sklearn -> ImportError
        import numpy as np
        import numbanorm.scalers as S
        assert not S.HAVE_SKLEARN
        rng = np.random.default_rng(0)
        x = rng.normal(size=(100, 3)) * [1, 2, 3] + [0, 5, -5]
        x[5, 1] = np.nan
        s = S.StandardScaler().fit(x)
        y = s.transform(x)
        m = np.nanmean(x, 0); sd = np.nanstd(x, 0)
        np.testing.assert_allclose(y, (x - m) / sd, rtol=1e-12)
        np.testing.assert_allclose(s.inverse_transform(y), x, rtol=1e-12)
        assert list(s.n_samples_seen_) == [100, 99, 100]
        mm = S.MinMaxScaler(feature_range=(-1, 1))
        z = mm.fit_transform(x)
        assert abs(np.nanmin(z) + 1) < 1e-15 and abs(np.nanmax(z) - 1) < 1e-15
        assert mm.get_params() == {"clip": False, "copy": True, "feature_range": (-1, 1)}
        assert repr(mm) == "MinMaxScaler(feature_range=(-1, 1))"
        mm.set_params(clip=True)
        assert mm.clip is True
        try:
            mm.set_params(bogus=1)
            raise AssertionError("no error")
        except ValueError:
            pass
        try:
            S.StandardScaler().transform(x)
            raise AssertionError("no error")
        except S.NotFittedError as e:
            assert "not fitted" in str(e)
        try:
            s.transform(x[:, :2])
            raise AssertionError("no error")
        except ValueError as e:
            assert "expecting 3 features" in str(e)
        try:
            S.StandardScaler().fit(x[:, 0])
            raise AssertionError("no error")
        except ValueError as e:
            assert "2D" in str(e)
        s2 = S.StandardScaler().partial_fit(x[:50]).partial_fit(x[50:])
        np.testing.assert_allclose(s2.mean_, s.mean_, rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(s2.var_, s.var_, rtol=1e-12)
        print("ok")
        """
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


# --------------------------------------------------------------------------- GPU (simulator)


@pytest.fixture
def small_launches():
    """Small blocks and grids, so several blocks and grid-stride iterations really run."""
    from numbanorm._cuda import _layout

    with _layout.launch_settings(threads_per_block=32, max_blocks=3, partial_blocks=3):
        yield


@pytest.mark.cuda
@pytest.mark.parametrize("cls", [StandardScaler, MinMaxScaler])
def test_gpu_arrays(rng, cls, small_launches):
    from numba import cuda

    x = _data(rng, n=40, nan=0.1)
    cpu = cls().fit(x)
    d = cuda.to_device(x)
    gpu = cls().fit(d)
    for name in ["mean_", "var_", "scale_", "data_min_", "data_max_", "min_"]:
        if hasattr(cpu, name):
            np.testing.assert_allclose(getattr(gpu, name), getattr(cpu, name), rtol=1e-12)
    y = gpu.transform(d)
    assert not isinstance(y, np.ndarray)
    np.testing.assert_allclose(y.copy_to_host(), cpu.transform(x), rtol=1e-12, atol=1e-14)
    back = gpu.inverse_transform(y)
    np.testing.assert_allclose(back.copy_to_host(), x, rtol=1e-12)
    if cls is StandardScaler:
        w = rng.random(40)
        a = cls().fit(x, sample_weight=w)
        b = cls().fit(d, sample_weight=cuda.to_device(w))
        np.testing.assert_allclose(b.mean_, a.mean_, rtol=1e-12)
        np.testing.assert_allclose(b.var_, a.var_, rtol=1e-12)
