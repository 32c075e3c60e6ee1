"""Dask: every public function takes a Dask array and returns a lazy one equal to the
in-memory result (bitwise for per-sample normalizations, 1e-12 relative for batch
statistics), rechunking only the axes a normalized group spans; scalers on Dask data;
out=; eager validation; and a run on a dask.distributed cluster of 2 worker processes."""
import importlib.util

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import numbanorm as nn

da = pytest.importorskip("dask.array")

RTOL = 1e-12


def _c(a):
    return a.compute() if isinstance(a, da.Array) else a


def _same(got, expected, rtol=RTOL, atol=1e-13):
    if isinstance(expected, tuple):
        assert isinstance(got, tuple) and len(got) == len(expected)
        for g, e in zip(got, expected):
            _same(g, e, rtol, atol)
        return
    if expected is None:
        assert got is None
        return
    assert isinstance(got, da.Array), type(got)
    g = got.compute()
    assert g.shape == expected.shape and g.dtype == expected.dtype, (g.shape, expected.shape, g.dtype, expected.dtype)
    np.testing.assert_allclose(g, expected, rtol=rtol, atol=atol)


def _have(op):
    return importlib.util.find_spec(f"numbanorm._ops.{op}") is not None


@pytest.fixture
def x4(rng):
    return rng.normal(size=(6, 8, 5, 4)) * 2 + 0.5


@pytest.fixture
def g4(rng):
    return rng.normal(size=(6, 8, 5, 4))


CHUNKS = (2, 3, 2, 3)  # every axis split: every normalized group spans chunks


# --------------------------------------------------------------------------- data scaling


@pytest.mark.parametrize("axis", [0, 1, -1, (0, 2), (1, 3), (0, 1, 2, 3), None, (0, 3)])
def test_standardize_and_min_max_scale(x4, axis):
    x = x4.copy()
    x[0, 1, 2, 3] = np.nan
    dx = da.from_array(x, chunks=CHUNKS)
    y = nn.standardize(dx, axis=axis, ddof=1)
    assert isinstance(y, da.Array) and y.chunks == dx.chunks
    _same(y, nn.standardize(x, axis=axis, ddof=1))
    y = nn.min_max_scale(dx, (-1, 2), axis=axis, clip=True)
    assert y.chunks == dx.chunks
    np.testing.assert_array_equal(y.compute(), nn.min_max_scale(x, (-1, 2), axis=axis, clip=True))


def test_scaling_float32_offset_and_dtypes(rng):
    x = (rng.normal(size=(3000, 3)) + 1e6).astype(np.float32)
    dx = da.from_array(x, chunks=(700, 2))
    y = nn.standardize(dx)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y.compute(), nn.standardize(x), atol=1e-5)
    xi = rng.integers(0, 10, size=(50, 3))
    _same(nn.min_max_scale(da.from_array(xi, chunks=7)), nn.min_max_scale(xi))
    x16 = rng.normal(size=(40, 3)).astype(np.float16)
    y16 = nn.standardize(da.from_array(x16, chunks=9))
    assert y16.dtype == np.float16
    np.testing.assert_allclose(y16.compute().astype(float), nn.standardize(x16).astype(float), atol=2e-3)


def test_scaling_large_many_chunks_matches(rng):
    x = rng.normal(size=(50000, 4)) * [1, 10, 100, 1000] + [0, -3, 1e4, 7]
    x[rng.random(x.shape) < 0.01] = np.nan
    dx = da.from_array(x, chunks=(3001, 3))
    _same(nn.standardize(dx), nn.standardize(x), rtol=RTOL, atol=1e-12)
    np.testing.assert_array_equal(nn.min_max_scale(dx).compute(), nn.min_max_scale(x))


def test_scaling_out_and_errors(rng):
    x = rng.normal(size=(20, 4))
    dx = da.from_array(x, chunks=5)
    o = np.empty_like(x)
    assert nn.standardize(dx, out=o) is o
    np.testing.assert_allclose(o, nn.standardize(x), rtol=RTOL)
    od = da.zeros((20, 4), chunks=4)
    r = nn.min_max_scale(dx, out=od)
    assert r is od
    np.testing.assert_array_equal(od.compute(), nn.min_max_scale(x))
    with pytest.raises(ValueError, match="feature_range"):
        nn.min_max_scale(dx, (1, 0))
    with pytest.raises(ValueError, match="axis"):
        nn.standardize(dx, axis=3)
    with pytest.raises(TypeError, match="'x'"):
        nn.standardize(da.from_array(np.zeros((2, 2), complex)))
    with pytest.raises(ValueError, match="'out'"):
        nn.standardize(dx, out=np.empty((4, 20)))


@settings(max_examples=15, deadline=None)
@given(
    shape=st.lists(st.integers(1, 7), min_size=1, max_size=3),
    data=st.data(),
)
def test_property_any_chunking(shape, data):
    seed = data.draw(st.integers(0, 2**31 - 1))
    x = np.random.default_rng(seed).normal(size=shape) * 3 - 1
    chunks = tuple(data.draw(st.integers(1, n)) for n in shape)
    ndim = len(shape)
    axis = data.draw(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True).map(tuple))
    dx = da.from_array(x, chunks=chunks)
    np.testing.assert_allclose(nn.standardize(dx, axis=axis).compute(), nn.standardize(x, axis=axis),
                               rtol=1e-11, atol=1e-11)
    np.testing.assert_array_equal(nn.min_max_scale(dx, axis=axis).compute(), nn.min_max_scale(x, axis=axis))


# --------------------------------------------------------------------------- scalers


@pytest.mark.parametrize("cls", [nn.StandardScaler, nn.MinMaxScaler])
def test_scalers_on_dask(rng, cls):
    sk = pytest.importorskip("sklearn.preprocessing")
    x = rng.normal(size=(1000, 5)) * 3 + 7
    x[rng.random(x.shape) < 0.05] = np.nan
    dx = da.from_array(x, chunks=(128, 2))
    ours = cls().fit(dx)
    theirs = getattr(sk, cls.__name__)().fit(x)
    for name in ("mean_", "var_", "scale_", "data_min_", "data_max_", "min_"):
        if hasattr(theirs, name):
            np.testing.assert_allclose(getattr(ours, name), getattr(theirs, name), rtol=RTOL)
    y = ours.transform(dx)
    assert isinstance(y, da.Array)
    np.testing.assert_allclose(y.compute(), theirs.transform(x), rtol=RTOL, atol=1e-13)
    np.testing.assert_allclose(ours.inverse_transform(y).compute(), x, rtol=1e-12)
    np.testing.assert_allclose(cls().fit_transform(dx).compute(), theirs.transform(x), rtol=RTOL, atol=1e-13)
    part = cls().partial_fit(dx[:300]).partial_fit(dx[300:])
    np.testing.assert_allclose(part.transform(x), theirs.transform(x), rtol=1e-11, atol=1e-12)


def test_standard_scaler_dask_weights_and_inf(rng):
    sk = pytest.importorskip("sklearn.preprocessing")
    x = rng.normal(size=(400, 3))
    w = rng.random(400)
    dx = da.from_array(x, chunks=(90, 3))
    ours = nn.StandardScaler().fit(dx, sample_weight=da.from_array(w, chunks=50))
    theirs = sk.StandardScaler().fit(x, sample_weight=w)
    np.testing.assert_allclose(ours.mean_, theirs.mean_, rtol=RTOL)
    np.testing.assert_allclose(ours.var_, theirs.var_, rtol=RTOL)
    bad = x.copy()
    bad[5, 1] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        nn.StandardScaler().fit(da.from_array(bad, chunks=100))
    lazy = nn.StandardScaler().fit(x).transform(da.from_array(bad, chunks=100))
    with pytest.raises(ValueError, match="infinity"):
        lazy.compute()


# --------------------------------------------------------------------------- per-sample normalizations


def test_layer_norm_rms_norm(rng, x4, g4):
    w, b = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    dx, dg = da.from_array(x4, chunks=CHUNKS), da.from_array(g4, chunks=(3, 2, 5, 2))
    _same(nn.layer_norm(dx, (5, 4), w, b, return_stats=True), nn.layer_norm(x4, (5, 4), w, b, return_stats=True))
    _same(nn.layer_norm(dx, 4, da.from_array(w[0], chunks=2)), nn.layer_norm(x4, 4, w[0]))
    _same(nn.rms_norm(dx, (4,), w[0], return_stats=True), nn.rms_norm(x4, (4,), w[0], return_stats=True))
    _same(nn.layer_norm_backward(dg, dx, (5, 4), w), nn.layer_norm_backward(g4, x4, (5, 4), w))
    _, m, r = nn.layer_norm(x4, (5, 4), return_stats=True)
    _same(nn.layer_norm_backward(dg, dx, (5, 4), mean=m, rstd=r),
          nn.layer_norm_backward(g4, x4, (5, 4), mean=m, rstd=r))
    _same(nn.rms_norm_backward(dg, dx, (4,), w[0]), nn.rms_norm_backward(g4, x4, (4,), w[0]))


def test_rechunks_only_normalized_axes(x4):
    dx = da.from_array(x4, chunks=(2, 3, 5, 4))  # normalized (5, 4) already whole
    y = nn.layer_norm(dx, (5, 4))
    assert y.chunks == dx.chunks
    dx = da.from_array(x4, chunks=CHUNKS)
    y = nn.layer_norm(dx, (5, 4))
    assert y.chunks[:2] == dx.chunks[:2] and y.chunks[2:] == ((5,), (4,))
    y = nn.normalize(dx, axis=1)
    assert y.chunks[1] == (8,) and y.chunks[0] == dx.chunks[0] and y.chunks[3] == dx.chunks[3]
    y = nn.instance_norm(dx)
    assert y.chunks[:2] == dx.chunks[:2]  # batch and channels keep their chunks


def test_normalize(x4, g4):
    dx, dg = da.from_array(x4, chunks=CHUNKS), da.from_array(g4, chunks=CHUNKS)
    _same(nn.normalize(dx, 3.0, axis=2), nn.normalize(x4, 3.0, axis=2))
    _same(nn.normalize_backward(dg, dx, 2.0, axis=1), nn.normalize_backward(g4, x4, 2.0, axis=1))


def test_group_and_instance_norm(rng, x4, g4):
    w, b = rng.normal(size=8), rng.normal(size=8)
    dx, dg = da.from_array(x4, chunks=CHUNKS), da.from_array(g4, chunks=(3, 2, 5, 2))
    _same(nn.group_norm(dx, 4, w, b, return_stats=True), nn.group_norm(x4, 4, w, b, return_stats=True))
    _same(nn.group_norm_backward(dg, dx, 4, w), nn.group_norm_backward(g4, x4, 4, w))
    _, m, r = nn.group_norm(x4, 2, return_stats=True)
    _same(nn.group_norm_backward(dg, dx, 2, mean=m, rstd=r), nn.group_norm_backward(g4, x4, 2, mean=m, rstd=r))
    _same(nn.instance_norm(dx, weight=w, bias=b, return_stats=True),
          nn.instance_norm(x4, weight=w, bias=b, return_stats=True))
    _same(nn.instance_norm(dx, channel_axis=-1, return_stats=True),
          nn.instance_norm(x4, channel_axis=-1, return_stats=True))
    _same(nn.instance_norm_backward(dg, dx, w), nn.instance_norm_backward(g4, x4, w))
    _, m, r = nn.instance_norm(x4, return_stats=True)
    _same(nn.instance_norm_backward(dg, dx, mean=m, rstd=r), nn.instance_norm_backward(g4, x4, mean=m, rstd=r))


def test_instance_norm_running_stats(x4):
    dx = da.from_array(x4, chunks=CHUNKS)
    rm1, rv1, rm2, rv2 = np.zeros(8), np.ones(8), np.zeros(8), np.ones(8)
    nbt1, nbt2 = np.zeros(1, np.int64), np.zeros(1, np.int64)
    _same(nn.instance_norm(dx, rm1, rv1, momentum=None, num_batches_tracked=nbt1),
          nn.instance_norm(x4, rm2, rv2, momentum=None, num_batches_tracked=nbt2))
    np.testing.assert_allclose(rm1, rm2, rtol=RTOL, atol=1e-16)
    np.testing.assert_allclose(rv1, rv2, rtol=RTOL)
    assert nbt1[0] == nbt2[0] == 1
    _same(nn.instance_norm(dx, rm1, rv1, use_input_stats=False), nn.instance_norm(x4, rm2, rv2, use_input_stats=False))


def test_local_response_norm(x4, g4):
    dx, dg = da.from_array(x4, chunks=CHUNKS), da.from_array(g4, chunks=CHUNKS)
    for kw in [dict(), dict(mode="within_channel"), dict(convention="paper"), dict(channel_axis=-1)]:
        _same(nn.local_response_norm(dx, 3, **kw), nn.local_response_norm(x4, 3, **kw))
        _same(nn.local_response_norm_backward(dg, dx, 3, **kw), nn.local_response_norm_backward(g4, x4, 3, **kw))


@pytest.mark.skipif(not _have("weight_standardize"), reason="weight_standardize not in this tree yet")
def test_weight_standardize(x4, g4):
    dx, dg = da.from_array(x4, chunks=CHUNKS), da.from_array(g4, chunks=CHUNKS)
    _same(nn.weight_standardize(dx), nn.weight_standardize(x4))
    _same(nn.weight_standardize_backward(dg, dx), nn.weight_standardize_backward(g4, x4))


# --------------------------------------------------------------------------- batch_norm


@pytest.mark.parametrize("channel_axis", [1, -1])
def test_batch_norm_training(rng, x4, g4, channel_axis):
    c = x4.shape[channel_axis]
    w, b = rng.normal(size=c), rng.normal(size=c)
    dx, dg = da.from_array(x4, chunks=CHUNKS), da.from_array(g4, chunks=(3, 2, 5, 2))
    kw = dict(channel_axis=channel_axis)
    _same(nn.batch_norm(dx, None, None, w, b, training=True, return_stats=True, **kw),
          nn.batch_norm(x4, None, None, w, b, training=True, return_stats=True, **kw))
    rm1, rv1, rm2, rv2 = np.zeros(c), np.ones(c), np.zeros(c), np.ones(c)
    y = nn.batch_norm(dx, rm1, rv1, w, b, training=True, momentum=0.3, **kw)
    nn.batch_norm(x4, rm2, rv2, w, b, training=True, momentum=0.3, **kw)
    np.testing.assert_allclose(rm1, rm2, rtol=RTOL, atol=1e-16)  # updated at call time
    np.testing.assert_allclose(rv1, rv2, rtol=RTOL)
    _same(y, nn.batch_norm(x4, None, None, w, b, training=True, **kw))
    _same(nn.batch_norm(dx, rm1, rv1, w, b, **kw), nn.batch_norm(x4, rm2, rv2, w, b, **kw))
    _same(nn.batch_norm(dx, da.from_array(rm1, chunks=2), da.from_array(rv1, chunks=3), **kw),
          nn.batch_norm(x4, rm2, rv2, **kw))
    _same(nn.batch_norm_backward(dg, dx, w, **kw), nn.batch_norm_backward(g4, x4, w, **kw))
    _, m, r = nn.batch_norm(x4, None, None, training=True, return_stats=True, **kw)
    _same(nn.batch_norm_backward(dg, dx, mean=m, rstd=r, **kw), nn.batch_norm_backward(g4, x4, mean=m, rstd=r, **kw))
    _same(nn.batch_norm_backward(dg, dx, w, training=False, running_mean=rm1, running_var=rv1, **kw),
          nn.batch_norm_backward(g4, x4, w, training=False, running_mean=rm2, running_var=rv2, **kw))


def test_batch_norm_errors_change_nothing(x4):
    dx = da.from_array(x4, chunks=CHUNKS)
    rm, rv = np.zeros(8), np.ones(8)
    with pytest.raises(ValueError, match="'weight'"):
        nn.batch_norm(dx, rm, rv, np.ones(3), training=True)
    with pytest.raises(ValueError, match="running"):
        nn.batch_norm(dx, None, None, training=False)
    with pytest.raises(TypeError, match="running_mean"):
        nn.batch_norm(dx, da.zeros(8), da.ones(8), training=True)
    np.testing.assert_array_equal(rm, 0.0)
    np.testing.assert_array_equal(rv, 1.0)
    with pytest.raises(ValueError, match="more than 1 value"):
        nn.batch_norm(da.ones((1, 3), chunks=1), None, None, training=True)


def test_validation_is_eager(x4):
    dx = da.from_array(x4, chunks=CHUNKS)
    with pytest.raises(ValueError, match="normalized_shape"):
        nn.layer_norm(dx, (3,))
    with pytest.raises(ValueError, match="num_groups"):
        nn.group_norm(dx, 3)
    with pytest.raises(ValueError, match="'size'"):
        nn.local_response_norm(dx, 0)
    with pytest.raises(ValueError, match="'grad_out'"):
        nn.layer_norm_backward(dx[:, :2], dx, 4)
    with pytest.raises(ValueError, match="'eps'"):
        nn.normalize(dx, eps=-1)


def test_gpu_parameter_with_dask_data_is_a_type_error(x4):
    class FakeGpu:
        __cuda_array_interface__ = {"shape": (4,), "typestr": "<f8", "data": (0, False), "version": 3}
        shape = (4,)
        dtype = np.dtype(np.float64)

    with pytest.raises(TypeError, match="GPU"):
        nn.layer_norm(da.from_array(x4), 4, FakeGpu())


# --------------------------------------------------------------------------- distributed


def test_distributed_two_worker_processes(rng):
    distributed = pytest.importorskip("distributed")
    x = rng.normal(size=(400, 6, 4)) + 3
    dx = da.from_array(x, chunks=(50, 3, 4))
    x2 = x.reshape(400, 24)
    dx2 = da.from_array(x2, chunks=(64, 24))
    g = rng.normal(size=x.shape)
    dg = da.from_array(g, chunks=(50, 3, 4))
    w = rng.normal(size=6)
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None,
                                  worker_dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        rm, rv = np.zeros(6), np.ones(6)
        y_bn = nn.batch_norm(dx, rm, rv, w, training=True)  # statistics computed on the cluster
        lazy = [
            y_bn,
            nn.standardize(dx, axis=(0, 2)),
            nn.min_max_scale(dx2),
            nn.layer_norm(dx, 4, return_stats=True)[0],
            nn.group_norm_backward(dg, dx, 2, w)[1],
            nn.StandardScaler().fit(dx2).transform(dx2),
        ]
        results = client.compute(lazy, sync=True)
        # a NumPy out= with Dask data is filled on the cluster too (not a worker's pickled copy)
        out_ln, out_st = np.zeros(x.shape), np.zeros(x2.shape, np.float32)
        got_ln = nn.layer_norm(dx, 4, out=out_ln)
        got_st = nn.standardize(dx2, out=out_st)
        pids = client.run(lambda: __import__("os").getpid())
        layers = client.run(lambda: __import__("numbanorm").threading_layer())
    assert len(set(pids.values())) == 2
    assert got_ln is out_ln and got_st is out_st
    np.testing.assert_array_equal(out_ln, nn.layer_norm(x, 4))
    np.testing.assert_allclose(out_st, nn.standardize(x2).astype(np.float32), rtol=1e-6)
    assert set(layers.values()) <= {"tbb", "workqueue", "omp"}
    rm2, rv2 = np.zeros(6), np.ones(6)
    np.testing.assert_allclose(results[0], nn.batch_norm(x, rm2, rv2, w, training=True), rtol=RTOL, atol=1e-13)
    np.testing.assert_allclose(rm, rm2, rtol=RTOL, atol=1e-16)
    np.testing.assert_allclose(rv, rv2, rtol=RTOL)
    np.testing.assert_allclose(results[1], nn.standardize(x, axis=(0, 2)), rtol=RTOL, atol=1e-13)
    np.testing.assert_array_equal(results[2], nn.min_max_scale(x2))
    np.testing.assert_array_equal(results[3], nn.layer_norm(x, 4))
    np.testing.assert_allclose(results[4], nn.group_norm_backward(g, x, 2, w)[1], rtol=RTOL)
    np.testing.assert_allclose(results[5], nn.standardize(x2), rtol=RTOL, atol=1e-13)
