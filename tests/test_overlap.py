"""``out=`` sharing memory with an input (issue 16 item 1).

An ``out`` that overlaps ``x``, ``grad_out``, a parameter or a statistic the call reads —
``x`` shifted by a few elements or rows, a reversed or interleaved view, windows of one
bigger buffer, a parameter stored inside ``out``'s memory — must give exactly the result
of a separate ``out`` (the overlapping cases compute into scratch and copy, as NumPy's
ufuncs do); the exact alias ``out=x`` stays a direct in-place write. The property test
draws the geometry with hypothesis for every (function, overlapped argument) pair; a
few explicit tests cover running statistics, Dask, the layer classes and, in the CUDA
simulator, device-array views.
"""
import numpy as np
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

import numbanorm as nn
from numbanorm import _dispatch
from numbanorm._ops._common import Output, clobbers

# ----------------------------------------------------------------------------- cases
# name -> (make(rng) -> inputs by name (the first is the data array, whose shape ``out``
#          has), call(inputs, out) -> result)


def _ln_stats(rng):
    x, g = rng.standard_normal((6, 8)), rng.standard_normal((6, 8))
    _, mean, rstd = nn.layer_norm(x, 8, return_stats=True)
    return dict(grad_out=g, x=x, weight=rng.standard_normal(8), mean=mean, rstd=rstd)


def _rms_stats(rng):
    x = rng.standard_normal((6, 8))
    return dict(grad_out=rng.standard_normal((6, 8)), x=x, weight=rng.standard_normal(8),
                rstd=nn.rms_norm(x, 8, return_stats=True)[1])


def _channel_stats(fwd, rng, shape=(4, 6, 5)):
    x = rng.standard_normal(shape)
    _, mean, rstd = fwd(x)
    return dict(grad_out=rng.standard_normal(shape), x=x, weight=rng.standard_normal(shape[1]), mean=mean, rstd=rstd)


def _running(rng, c):
    return rng.standard_normal(c), rng.random(c) + 0.5


def _x(shape):
    return lambda rng: dict(x=rng.standard_normal(shape) * 3 + 1)


def _affine(shape, c):
    return lambda rng: dict(x=rng.standard_normal(shape), weight=rng.standard_normal(c), bias=rng.standard_normal(c))


def _bn_eval_inputs(rng):
    rm, rv = _running(rng, 6)
    return dict(_affine((4, 6, 5), 6)(rng), running_mean=rm, running_var=rv)


def _bn_eval_bw_inputs(rng):
    rm, rv = _running(rng, 6)
    return dict(grad_out=rng.standard_normal((4, 6, 5)), x=rng.standard_normal((4, 6, 5)),
                weight=rng.standard_normal(6), running_mean=rm, running_var=rv)


def _gx_inputs(shape):
    return lambda rng: dict(grad_out=rng.standard_normal(shape), x=rng.standard_normal(shape))


def _add_inputs(rng):
    return dict(x=rng.standard_normal((6, 8)), residual=rng.standard_normal((6, 8)), weight=rng.standard_normal(8),
                bias=rng.standard_normal(8))


def _add_stats(centered):
    def make(rng):
        x, r = rng.standard_normal((6, 8)), rng.standard_normal((6, 8))
        fwd = nn.add_layer_norm if centered else nn.add_rms_norm
        _, s, *stats = fwd(x, r, 8, return_stats=True)
        return dict(grad_y=rng.standard_normal((6, 8)), grad_s=rng.standard_normal((6, 8)), s=s,
                    weight=rng.standard_normal(8), **dict(zip(("mean", "rstd") if centered else ("rstd",), stats)))
    return make


FORWARD = {
    # the fused add norms: out= and (returned first) residual_out=
    "add_layer_norm": (_add_inputs, lambda a, out: nn.add_layer_norm(
        a["x"], a["residual"], 8, a["weight"], a["bias"], out=out)),
    "add_layer_norm_s": (_add_inputs, lambda a, out: nn.add_layer_norm(
        a["x"], a["residual"], 8, a["weight"], a["bias"], residual_out=out)[::-1]),
    "add_rms_norm": (_add_inputs, lambda a, out: nn.add_rms_norm(a["x"], a["residual"], 8, a["weight"], out=out)),
    "add_rms_norm_s": (_add_inputs, lambda a, out: nn.add_rms_norm(
        a["x"], a["residual"], 8, a["weight"], residual_out=out)[::-1]),
    "layer_norm": (_affine((6, 8), 8), lambda a, out: nn.layer_norm(a["x"], 8, a["weight"], a["bias"], out=out)),
    "layer_norm_stats": (_affine((3, 2, 8), 8), lambda a, out: nn.layer_norm(
        a["x"], 8, a["weight"], a["bias"], out=out, return_stats=True)),
    "rms_norm": (lambda rng: dict(x=rng.standard_normal((6, 8)), weight=rng.standard_normal(8)),
                 lambda a, out: nn.rms_norm(a["x"], 8, a["weight"], out=out)),
    "batch_norm_train": (_affine((4, 6, 5), 6), lambda a, out: nn.batch_norm(
        a["x"], None, None, a["weight"], a["bias"], training=True, out=out, return_stats=True)),
    "batch_norm_eval": (_bn_eval_inputs, lambda a, out: nn.batch_norm(
        a["x"], a["running_mean"], a["running_var"], a["weight"], a["bias"], out=out)),
    "batch_norm_last": (_affine((4, 5, 6), 6), lambda a, out: nn.batch_norm(
        a["x"], None, None, a["weight"], a["bias"], training=True, channel_axis=-1, out=out)),
    "instance_norm": (_affine((3, 6, 5), 6), lambda a, out: nn.instance_norm(
        a["x"], None, None, a["weight"], a["bias"], out=out)),
    "instance_norm_eval": (lambda rng: dict(x=rng.standard_normal((3, 6, 5)), **dict(zip(
        ("running_mean", "running_var"), _running(rng, 6)))), lambda a, out: nn.instance_norm(
        a["x"], a["running_mean"], a["running_var"], use_input_stats=False, out=out)),
    "group_norm": (_affine((3, 6, 5), 6), lambda a, out: nn.group_norm(
        a["x"], 2, a["weight"], a["bias"], out=out, return_stats=True)),
    "local_response_norm": (_x((3, 6, 5)), lambda a, out: nn.local_response_norm(a["x"], 3, alpha=0.5, out=out)),
    "lrn_within": (_x((2, 3, 4, 4)), lambda a, out: nn.local_response_norm(
        a["x"], 3, alpha=0.5, mode="within_channel", out=out)),
    "normalize": (_x((6, 8)), lambda a, out: nn.normalize(a["x"], out=out)),
    "normalize_channels": (_x((3, 6, 5)), lambda a, out: nn.normalize(a["x"], axis=1, out=out)),
    "weight_standardize": (lambda rng: dict(weight=rng.standard_normal((4, 3, 2, 2))),
                           lambda a, out: nn.weight_standardize(a["weight"], out=out)),
    "min_max_scale": (_x((8, 6)), lambda a, out: nn.min_max_scale(a["x"], out=out)),
    "min_max_scale_permuted": (_x((3, 4, 5)), lambda a, out: nn.min_max_scale(a["x"], axis=1, out=out)),
    "standardize": (_x((8, 6)), lambda a, out: nn.standardize(a["x"], out=out)),
}

BACKWARD = {
    "add_layer_norm_backward": (_add_stats(True), lambda a, out: nn.add_layer_norm_backward(
        a["grad_y"], a["grad_s"], a["s"], 8, a["weight"], mean=a["mean"], rstd=a["rstd"], out=out)),
    "add_rms_norm_backward": (_add_stats(False), lambda a, out: nn.add_rms_norm_backward(
        a["grad_y"], a["grad_s"], a["s"], 8, a["weight"], rstd=a["rstd"], out=out)),
    "layer_norm_backward": (_ln_stats, lambda a, out: nn.layer_norm_backward(
        a["grad_out"], a["x"], 8, a["weight"], mean=a["mean"], rstd=a["rstd"], out=out)),
    "rms_norm_backward": (_rms_stats, lambda a, out: nn.rms_norm_backward(
        a["grad_out"], a["x"], 8, a["weight"], rstd=a["rstd"], out=out)),
    "batch_norm_backward": (
        lambda rng: _channel_stats(lambda x: nn.batch_norm(x, None, None, training=True, return_stats=True), rng),
        lambda a, out: nn.batch_norm_backward(a["grad_out"], a["x"], a["weight"], mean=a["mean"], rstd=a["rstd"],
                                              out=out)),
    "batch_norm_backward_eval": (_bn_eval_bw_inputs, lambda a, out: nn.batch_norm_backward(
        a["grad_out"], a["x"], a["weight"], training=False, running_mean=a["running_mean"],
        running_var=a["running_var"], out=out)),
    "instance_norm_backward": (
        lambda rng: _channel_stats(lambda x: nn.instance_norm(x, return_stats=True), rng),
        lambda a, out: nn.instance_norm_backward(a["grad_out"], a["x"], a["weight"], mean=a["mean"],
                                                 rstd=a["rstd"], out=out)),
    "group_norm_backward": (
        lambda rng: _channel_stats(lambda x: nn.group_norm(x, 2, return_stats=True), rng),
        lambda a, out: nn.group_norm_backward(a["grad_out"], a["x"], 2, a["weight"], mean=a["mean"],
                                              rstd=a["rstd"], out=out)),
    "local_response_norm_backward": (_gx_inputs((3, 6, 5)), lambda a, out: nn.local_response_norm_backward(
        a["grad_out"], a["x"], 3, alpha=0.5, out=out)),
    "normalize_backward": (_gx_inputs((6, 8)), lambda a, out: nn.normalize_backward(a["grad_out"], a["x"], out=out)),
    "weight_standardize_backward": (
        lambda rng: dict(grad_out=rng.standard_normal((4, 12)), weight=rng.standard_normal((4, 12))),
        lambda a, out: nn.weight_standardize_backward(a["grad_out"], a["weight"], out=out)),
}

CASES = {**FORWARD, **BACKWARD}
PAIRS = [(name, arg) for name, (make, _) in sorted(CASES.items()) for arg in make(np.random.default_rng(0))]

# geometries of an ``out`` of the same shape as the overlapped argument
SAME = ("shift", "reversed", "window", "interleaved", "exact")


def _as_tuple(res):
    return res if isinstance(res, tuple) else (res,)


def _place(draw, shape, target, same):
    """(out, view): ``out`` of ``shape`` and a view of ``target``'s shape sharing its memory."""
    size = int(np.prod(shape))
    if not same:  # a parameter / statistic stored somewhere inside out's memory
        flat = np.full(size, np.nan)
        k = draw(st.integers(0, size - target.size))
        view = flat[k:k + target.size]
        if draw(st.booleans()):
            view = view[::-1]
        return flat.reshape(shape), view.reshape(target.shape)
    geometry = draw(st.sampled_from(SAME))
    if geometry == "shift":  # out = the argument shifted by d elements (a row when d = row length)
        d = draw(st.integers(1, size - 1)) * draw(st.sampled_from((1, -1)))
        flat = np.full(size + abs(d), np.nan)
        a, b = (flat[:size], flat[d:]) if d > 0 else (flat[-d:], flat[:size])
        return b.reshape(shape), a.reshape(shape)
    if geometry == "reversed":
        view = np.full(shape, np.nan)
        return view[::-1], view
    if geometry == "window":  # two overlapping windows of a bigger 2-D buffer
        m, k = shape[0], size // shape[0]
        dr, dc = draw(st.integers(0, m - 1)), draw(st.integers(0, k - 1))
        big = np.full((m + dr + 1, k + dc + 2), np.nan)
        r0, c0 = (dr, dc) if draw(st.booleans()) else (0, 0)
        view = big[r0:r0 + m, c0:c0 + k]
        out = big[dr - r0:dr - r0 + m, dc - c0:dc - c0 + k]
        return out.reshape(shape), view.reshape(shape)
    if geometry == "interleaved":  # one buffer, no element shared
        big = np.full(2 * size, np.nan)
        return big[1::2].reshape(shape), big[::2].reshape(shape)
    view = np.full(shape, np.nan)
    return view, view  # exact alias


@pytest.mark.parametrize("name,arg", PAIRS, ids=[f"{n}-{a}" for n, a in PAIRS])
# no shrinking: a regression fails dozens of pairs, and shrinking each would take minutes
@settings(max_examples=6, deadline=None, derandomize=True, database=None, phases=(Phase.explicit, Phase.generate))
@given(data=st.data())
def test_overlapping_out_gives_the_separate_out_result(name, arg, data):
    make, call = CASES[name]
    inputs = make(np.random.default_rng(data.draw(st.integers(0, 1000), label="seed")))
    shape = next(iter(inputs.values())).shape
    target = inputs[arg]
    want = _as_tuple(call({k: v.copy() for k, v in inputs.items()}, np.full(shape, np.nan)))
    out, view = _place(data.draw, shape, target, target.shape == shape)
    assert np.may_share_memory(out, view)
    view[...] = target
    got = _as_tuple(call(dict(inputs, **{arg: view}), out))
    assert got[0] is out
    assert len(got) == len(want)
    for g, w in zip(got, want):
        if w is None:
            assert g is None
        else:
            np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("name", sorted(FORWARD))
def test_exact_alias_is_in_place(name):
    make, call = FORWARD[name]
    inputs = make(np.random.default_rng(1))
    first = next(iter(inputs))
    want = _as_tuple(call({k: v.copy() for k, v in inputs.items()}, None))
    x = inputs[first]
    got = _as_tuple(call(inputs, x))
    assert got[0] is x
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_output_writes_directly_only_without_overlap_or_for_the_exact_alias():
    dev = _dispatch.CPU
    buf = np.zeros((5, 4))
    x, w = buf[:4], np.ones(4)
    f64 = np.dtype(np.float64)

    def direct(out, inputs, inplace=True):
        return Output(dev, out, out, (4, 4), (4, 4), f64, f64, inputs=inputs, inplace=inplace).direct

    assert direct(np.zeros((4, 4)), (x, w))  # disjoint
    assert direct(x, (x, w))  # out=x (same object)
    assert direct(buf[:4].view(), (x, w))  # the same memory as another object
    assert not direct(x, (x, w), inplace=False)  # backward kernels read inputs more than once
    assert not direct(buf[1:], (x, w))  # shifted by a row
    assert not direct(x, (x, x[0]))  # out=x but the weight lives in x
    assert not direct(x, (w, x))  # the exact alias is allowed for the data (first) input only
    assert clobbers(dev, buf[1:], (None, x)) and not clobbers(dev, buf[1:], (None, w))


def test_plain_rows_fast_path_refuses_partial_overlap():
    from numbanorm import _validate

    buf = np.zeros((5, 8))
    x, w = buf[:4], np.ones(8)
    assert _validate.plain_rows(x, 8, 1e-5, None, w)
    assert _validate.plain_rows(x, 8, 1e-5, x, w)
    assert _validate.plain_rows(x, 8, 1e-5, np.zeros((4, 8)), w)
    assert not _validate.plain_rows(x, 8, 1e-5, buf[1:], w)
    assert not _validate.plain_rows(x, 8, 1e-5, x, x[0])
    out = np.zeros((4, 8))
    assert not _validate.plain_rows(x, 8, 1e-5, out, w, out[1])  # the bias lives in out


# ----------------------------------------------------------------------------- running statistics


def test_training_out_sharing_running_stats_is_refused_and_changes_nothing():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 6, 5))
    buf = np.arange(x.size, dtype=np.float64)
    rm, rv = buf[:6], buf[6:12] + 1.0
    before = buf.copy()
    with pytest.raises(ValueError, match=r"batch_norm\(\): arguments 'out' and 'running_mean' must not share"):
        nn.batch_norm(x, rm, rv, training=True, out=buf.reshape(x.shape))
    np.testing.assert_array_equal(buf, before)
    stats = np.zeros(6)
    with pytest.raises(ValueError, match=r"instance_norm\(\): arguments 'running_mean' and 'running_var'"):
        nn.instance_norm(x, stats, stats)
    np.testing.assert_array_equal(stats, 0.0)


def test_running_stats_inside_x_or_weight_are_read_before_they_are_updated():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 6, 5))
    w = rng.standard_normal(6)
    big = np.concatenate([x.ravel(), w, np.zeros(6)])
    xv, wv = big[:x.size].reshape(x.shape), big[x.size:x.size + 6]
    rm, rv = big[3:9], big[x.size:x.size + 6]  # the running mean in x, the running variance is the weight
    ref_m, ref_v = big[3:9].copy(), w.copy()
    want = nn.batch_norm(x, ref_m, ref_v, w.copy(), training=True)
    y = nn.batch_norm(xv, rm, rv, wv, training=True)
    np.testing.assert_array_equal(y, want)
    np.testing.assert_array_equal(rm, ref_m)
    np.testing.assert_array_equal(rv, ref_v)


# ----------------------------------------------------------------------------- Dask


def _view_graph(a, rows):
    """A Dask array whose graph holds views of ``a`` (``da.from_array`` copies chunks)."""
    da = pytest.importorskip("dask.array")
    name = f"views-{id(a)}-{rows}"
    graph = {(name, i, 0): a[i * rows:(i + 1) * rows] for i in range(a.shape[0] // rows)}
    return da.Array(graph, name, chunks=((rows,) * (a.shape[0] // rows), (a.shape[1],)), dtype=a.dtype)


def test_dask_numpy_out_overlapping_the_graphs_memory():
    rng = np.random.default_rng(4)
    buf = rng.standard_normal((9, 8))
    want = nn.standardize(buf[:-1].copy())
    assert nn.standardize(_view_graph(buf[:-1], 2), out=buf[1:]) is not None
    np.testing.assert_allclose(buf[1:], want, rtol=1e-12, atol=1e-14)  # chunked statistics: rounding differs
    x = rng.standard_normal((8, 8))
    want = nn.layer_norm(x.copy(), 8, return_stats=True)
    y, mean, rstd = nn.layer_norm(_view_graph(x, 2), 8, out=x, return_stats=True)  # in place, lazy stats
    assert y is x
    np.testing.assert_array_equal(x, want[0])
    np.testing.assert_allclose(np.asarray(mean), want[1], rtol=1e-12)
    np.testing.assert_allclose(np.asarray(rstd), want[2], rtol=1e-12)
    g, x = rng.standard_normal((8, 8)), rng.standard_normal((8, 8))
    want = nn.layer_norm_backward(g.copy(), x, 8, np.ones(8))
    got = nn.layer_norm_backward(_view_graph(g, 2), _view_graph(x, 2), 8, np.ones(8), out=g)
    assert got[0] is g
    for a, b in zip(got, want):
        np.testing.assert_allclose(np.asarray(a), b, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- layer classes


def test_layer_classes_with_x_and_grad_out_in_one_buffer():
    # the layer classes take no out=; their backward reads x and grad_out, which may overlap
    rng = np.random.default_rng(5)
    for layer, shape in ((nn.LayerNorm(8, dtype=np.float64), (5, 8)), (nn.BatchNorm2d(3, dtype=np.float64),
                                                                       (2, 3, 2, 2))):
        size = int(np.prod(shape))
        buf = rng.standard_normal(size + 3)
        x, g = buf[:size].reshape(shape), buf[3:].reshape(shape)
        want_y = layer(x.copy())
        want_gx = layer.backward(g.copy())
        y = layer(x)
        np.testing.assert_array_equal(y, want_y)
        np.testing.assert_array_equal(layer.backward(g), want_gx)


# ----------------------------------------------------------------------------- GPU (simulator)


@pytest.fixture
def sim():
    from numba import cuda

    from numbanorm._cuda import _layout

    with _layout.launch_settings(threads_per_block=64, max_blocks=3, partial_blocks=3):
        yield cuda, _layout


@pytest.mark.cuda
def test_gpu_overlap_helpers_on_device_views(sim):
    cuda, L = sim
    d = cuda.to_device(np.zeros((4, 3)))
    col0, col1 = d[:, 0], d[::-1, 1][::-1]
    assert L.may_share_memory(col0, col1) and not L.shares_memory(col0, col1)  # interleaved
    assert L.shares_memory(d, d[1:]) and L.shares_memory(d[::-1], d[2:]) and not L.shares_memory(d[:2], d[2:])
    assert L.same_array(d, d[:]) and not L.same_array(d, d[::-1]) and not L.same_array(d[:3], d[1:])


@pytest.mark.cuda
def test_gpu_device_out_overlapping_inputs(sim):
    cuda, _ = sim
    rng = np.random.default_rng(6)
    host = rng.standard_normal((7, 8)) * 3 + 1
    d = cuda.to_device(host)
    want = nn.layer_norm(host[:-1], 8)
    assert nn.layer_norm(d[:-1], 8, out=d[1:]) is not None  # out = x shifted by one row
    np.testing.assert_allclose(d.copy_to_host()[1:], want, rtol=1e-10, atol=1e-10)

    d = cuda.to_device(host)
    want = nn.standardize(host[1:])
    nn.standardize(d[1:], out=d[:-1])
    np.testing.assert_allclose(d.copy_to_host()[:-1], want, rtol=1e-10, atol=1e-10)

    x4 = rng.standard_normal((2, 3, 2, 2))
    want = nn.batch_norm(x4, None, None, training=True)
    d = cuda.to_device(x4)
    nn.batch_norm(d, None, None, training=True, out=d[::-1])  # reversed view of x
    np.testing.assert_allclose(d.copy_to_host()[::-1], want, rtol=1e-10, atol=1e-10)

    g, x = rng.standard_normal((6, 8)), rng.standard_normal((6, 8))
    w = rng.standard_normal(8)
    want = nn.layer_norm_backward(g, x, 8, w)
    buf = cuda.to_device(np.concatenate([g, w[None]]))  # the weight is a row after grad_out
    got = nn.layer_norm_backward(buf[:6], cuda.to_device(x), 8, buf[6], out=buf[1:])
    np.testing.assert_allclose(buf.copy_to_host()[1:], want[0], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(got[1].copy_to_host(), want[1], rtol=1e-10, atol=1e-10)

    d = cuda.to_device(host)
    want = nn.rms_norm(host, 8)
    assert nn.rms_norm(d, 8, out=d) is d  # the exact alias stays in place
    np.testing.assert_allclose(d.copy_to_host(), want, rtol=1e-10, atol=1e-10)
