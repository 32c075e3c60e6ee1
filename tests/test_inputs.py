"""Input handling of every public function, layer class and scaler (issue 16, items 2-4).

* Non-native byte order (``>f4`` from FITS / ``.npy`` / HDF5 on a little-endian machine) in
  any array argument, ``out=`` and running statistics: computed as the native array would
  be, native-order results, running statistics updated in place in the caller's order.
* ``numpy.ma.MaskedArray`` anywhere: a ``TypeError`` that says how to proceed (masks are
  not honoured; README Decisions).
* Non-arrays (None where required, str, bytes, dict, object()): a ``TypeError`` naming the
  function and the argument; lists and ``__array__`` objects keep working.
"""
import re

import numpy as np
import pytest

import numbanorm as nn

N, C, L, G = 3, 4, 5, 2
SWAP = np.dtype(np.float32).newbyteorder("S")  # the non-native order, whatever the machine's
SWAP64 = np.dtype(np.float64).newbyteorder("S")


def _arrays(seed=0):
    r = np.random.default_rng(seed)
    return lambda *s: r.standard_normal(s)


def _cases():
    """name -> kwargs (fresh arrays each call; float64)."""
    a = _arrays()
    x2, x3, g2, g3 = a(N, 6), a(N, C, L), a(N, 6), a(N, C, L)
    _, ln_mean, ln_rstd = nn.layer_norm(x2, 6, return_stats=True)
    _, rms_rstd = nn.rms_norm(x2, 6, return_stats=True)
    _, bn_mean, bn_rstd = nn.batch_norm(x3, None, None, training=True, return_stats=True)
    _, in_mean, in_rstd = nn.instance_norm(x3, return_stats=True)
    _, gn_mean, gn_rstd = nn.group_norm(x3, G, return_stats=True)
    stats = dict(running_mean=a(C), running_var=np.abs(a(C)) + 1)
    return {
        "layer_norm": dict(x=x2, normalized_shape=6, weight=a(6), bias=a(6)),
        "layer_norm_backward": dict(grad_out=g2, x=x2, normalized_shape=6, weight=a(6), mean=ln_mean, rstd=ln_rstd),
        "rms_norm": dict(x=x2, normalized_shape=6, weight=a(6)),
        "rms_norm_backward": dict(grad_out=g2, x=x2, normalized_shape=6, weight=a(6), rstd=rms_rstd),
        "batch_norm": dict(x=x3, **stats, weight=a(C), bias=a(C), training=True),
        "batch_norm_backward": dict(grad_out=g3, x=x3, weight=a(C), mean=bn_mean, rstd=bn_rstd),
        "instance_norm": dict(x=x3, **stats, weight=a(C), bias=a(C)),
        "instance_norm_backward": dict(grad_out=g3, x=x3, weight=a(C), mean=in_mean, rstd=in_rstd),
        "group_norm": dict(x=x3, num_groups=G, weight=a(C), bias=a(C)),
        "group_norm_backward": dict(grad_out=g3, x=x3, num_groups=G, weight=a(C), mean=gn_mean, rstd=gn_rstd),
        "local_response_norm": dict(x=x3, size=3),
        "local_response_norm_backward": dict(grad_out=g3, x=x3, size=3),
        "normalize": dict(x=x3),
        "normalize_backward": dict(grad_out=g3, x=x3),
        "weight_standardize": dict(weight=x3),
        "weight_standardize_backward": dict(grad_out=g3, weight=x3),
        "min_max_scale": dict(x=a(6, 3)),
        "standardize": dict(x=a(6, 3)),
    }


CASES = _cases()
NAMES = sorted(CASES)
ARRAY_ARGS = [(n, k) for n in NAMES for k, v in CASES[n].items() if isinstance(v, np.ndarray)]
# the arguments that may not be None (the data); the others are optional parameters
REQUIRED = {"x", "grad_out"}


def _required(name, arg):
    return arg in REQUIRED or (name.startswith("weight_standardize") and arg == "weight")


def _call(name, **kw):
    res = getattr(nn, name)(**kw)
    return res if isinstance(res, tuple) else (res,)


def _fresh(name):
    return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in _cases()[name].items()}


def _assert_same(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        if w is None:
            assert g is None
            continue
        assert g.dtype.isnative, g.dtype
        assert g.dtype == w.dtype
        np.testing.assert_array_equal(g, w)


# --------------------------------------------------------------------------- byte order


@pytest.mark.parametrize("name", NAMES)
def test_non_native_byte_order_every_array(name):
    native = {k: (v.astype(np.float32) if isinstance(v, np.ndarray) else v) for k, v in _fresh(name).items()}
    swapped = {k: (v.astype(SWAP) if isinstance(v, np.ndarray) else v) for k, v in native.items()}
    want = _call(name, **native)
    got = _call(name, **swapped)
    _assert_same(got, want)
    assert got[0].dtype == np.float32
    for k in ("running_mean", "running_var"):  # updated in place, in the caller's byte order
        if k in swapped:
            assert swapped[k].dtype == SWAP
            np.testing.assert_array_equal(swapped[k], native[k])
            assert not np.array_equal(native[k], _fresh(name)[k].astype(np.float32))  # it did change


@pytest.mark.parametrize("name, arg", [(n, k) for n, k in ARRAY_ARGS if not _required(n, k)])
def test_one_non_native_parameter(name, arg):
    kw = _fresh(name)
    want = _call(name, **kw)
    kw = _fresh(name)
    kw[arg] = kw[arg].astype(SWAP64)
    _assert_same(_call(name, **kw), want)


@pytest.mark.parametrize("name", NAMES)
def test_non_native_out(name):
    want = _call(name, **_fresh(name))
    kw = _fresh(name)
    data = kw.get("x", kw.get("weight"))
    out = np.full(data.shape, -7.0, SWAP64)
    got = _call(name, **kw, out=out)
    assert got[0] is out and out.dtype == SWAP64
    np.testing.assert_array_equal(out, want[0])
    out32 = np.zeros(data.shape, SWAP)  # float64 results cast into it (same_kind), as NumPy does
    got = _call(name, **_fresh(name), out=out32)
    np.testing.assert_array_equal(out32, want[0].astype(np.float32))


def test_non_native_running_stats_eval_and_backward():
    kw = _fresh("batch_norm")
    kw["training"] = False
    want = _call("batch_norm", **kw)
    rm, rv = kw["running_mean"].astype(SWAP64), kw["running_var"].astype(SWAP64)
    got = _call("batch_norm", **{**kw, "running_mean": rm, "running_var": rv})
    _assert_same(got, want)
    g = np.ones_like(kw["x"])
    want = nn.batch_norm_backward(g, kw["x"], training=False, running_mean=kw["running_mean"],
                                  running_var=kw["running_var"])
    got = nn.batch_norm_backward(g, kw["x"], training=False, running_mean=rm, running_var=rv)
    _assert_same(got[:1] + got[2:], want[:1] + want[2:])


def test_non_native_layers_and_scalers():
    x = _arrays(1)(8, C, L)
    for cls, args in [(nn.LayerNorm, (L,)), (nn.RMSNorm, (L,)), (nn.BatchNorm1d, (C,)),
                      (nn.InstanceNorm1d, (C,)), (nn.GroupNorm, (G, C)), (nn.LocalResponseNorm, (3,))]:
        a, b = cls(*args), cls(*args)
        y = a(x)
        z = b(x.astype(SWAP64))
        np.testing.assert_array_equal(z, y)
        assert z.dtype.isnative
        np.testing.assert_array_equal(b.backward(np.ones(x.shape, SWAP64)), a.backward(np.ones_like(x)))
        for k, v in a.state_dict().items():
            np.testing.assert_array_equal(b.state_dict()[k], v)
    sd = {k: np.asarray(v).astype(v.dtype.newbyteorder("S")) if v.dtype.kind == "f" else v
          for k, v in nn.BatchNorm1d(C).state_dict().items()}
    sd["running_mean"][:] = 3.0
    layer = nn.BatchNorm1d(C)
    layer.load_state_dict(sd)
    np.testing.assert_array_equal(layer.running_mean, 3.0)
    assert layer.running_mean.dtype.isnative
    x2 = (_arrays(2)(20, 3) * 5 + 100).astype(np.float32)
    for cls in (nn.StandardScaler, nn.MinMaxScaler):
        want = cls().fit_transform(x2)
        s = cls()
        got = s.fit_transform(x2.astype(SWAP))
        assert got.dtype == np.float32 and got.dtype.isnative
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(s.inverse_transform(got.astype(SWAP)), cls().fit(x2).inverse_transform(want))


def test_scale_cli_non_native_npy(tmp_path):
    from numbanorm import cli

    x = (_arrays(3)(50, 4) * 3 + 10).astype(np.float32)
    np.save(tmp_path / "be.npy", x.astype(SWAP))
    for method, ref in [("zscore", nn.standardize), ("minmax", nn.min_max_scale),
                        ("l2", lambda a: nn.normalize(a, axis=-1)), ("layer", lambda a: nn.layer_norm(a, 4))]:
        out = tmp_path / f"{method}.npy"
        assert cli.main(["scale", str(tmp_path / "be.npy"), str(out), "--method", method, "--chunk-rows", "7"]) == 0
        y = np.load(out)
        assert y.dtype == np.float32 and y.dtype.isnative
        np.testing.assert_allclose(y, ref(x), rtol=1e-6, atol=1e-6)


@pytest.mark.cuda
def test_non_native_on_gpu(on_gpu):
    kw = {k: (v.astype(np.float32) if isinstance(v, np.ndarray) else v) for k, v in _fresh("batch_norm").items()}
    sw = {k: (v.astype(SWAP) if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
    out = np.zeros(kw["x"].shape, SWAP)
    with on_gpu():
        want = _call("batch_norm", **kw)
        got = _call("batch_norm", **sw, out=out)
        ln = nn.layer_norm(kw["x"][0].astype(SWAP), L)
    assert got[0] is out
    np.testing.assert_allclose(out, want[0], rtol=1e-6, atol=1e-6)
    for k in ("running_mean", "running_var"):
        assert sw[k].dtype == SWAP
        np.testing.assert_allclose(sw[k], kw[k], rtol=1e-6)
    assert ln.dtype == np.float32 and ln.dtype.isnative
    np.testing.assert_allclose(ln, nn.layer_norm(kw["x"][0], L), rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- masked arrays


def _masked(a):
    m = np.zeros(a.shape, bool)
    m.flat[0] = True
    data = a.copy()
    data.flat[0] = 1e6
    return np.ma.masked_array(data, mask=m)


def _unchanged(kw, before):
    for k, v in kw.items():
        if isinstance(v, np.ndarray):
            np.testing.assert_array_equal(np.asarray(v), np.asarray(before[k]))


@pytest.mark.parametrize("name, arg", ARRAY_ARGS)
def test_masked_array_refused(name, arg):
    kw = _fresh(name)
    kw[arg] = _masked(kw[arg])
    before = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
    with pytest.raises(TypeError, match=rf"^{name}\(\): argument '{arg}' must not be a masked array") as e:
        getattr(nn, name)(**kw)
    msg = str(e.value)
    if arg == "x" and name in ("standardize", "min_max_scale"):
        assert f"{arg}.filled(np.nan)" in msg
    else:
        assert f"{arg}.filled(value)" in msg and f"np.asarray({arg})" in msg
    _unchanged(kw, before)  # running statistics included


@pytest.mark.parametrize("name", NAMES)
def test_masked_out_refused(name):
    kw = _fresh(name)
    data = kw.get("x", kw.get("weight"))
    out = np.ma.masked_array(np.zeros(data.shape), mask=np.zeros(data.shape, bool))
    with pytest.raises(TypeError, match=rf"^{name}\(\): argument 'out' must not be a masked array"):
        getattr(nn, name)(**kw, out=out)
    assert not out.data.any()


def test_masked_layers_and_scalers_refused():
    x = _masked(_arrays(4)(8, C, L))
    for cls, args in [(nn.LayerNorm, (L,)), (nn.BatchNorm1d, (C,)), (nn.GroupNorm, (G, C))]:
        layer = cls(*args)
        with pytest.raises(TypeError, match=rf"^{cls.__name__}\(\): argument 'x' must not be a masked array"):
            layer(x)
    layer = nn.InstanceNorm1d(C)
    layer(x.data)
    with pytest.raises(TypeError, match=r"^InstanceNorm1d\(\): argument 'grad_out' must not be a masked array"):
        layer.backward(_masked(np.ones(x.shape)))
    layer = nn.BatchNorm1d(C)
    sd = layer.state_dict()
    sd["running_mean"] = np.ma.masked_array(np.ones(C), mask=[True] + [False] * (C - 1))
    with pytest.raises(TypeError, match=r"entry 'running_mean' must not be a masked array"):
        layer.load_state_dict(sd)
    np.testing.assert_array_equal(layer.running_mean, 0.0)
    x2 = _masked(_arrays(5)(20, 3))
    for cls in (nn.StandardScaler, nn.MinMaxScaler):
        with pytest.raises(TypeError, match=rf"^{cls.__name__}\.\w+\(\): argument 'X' must not be a masked array.*X\.filled\(np\.nan\)"):
            cls().fit(x2)
        s = cls().fit(x2.data)
        for method in (s.transform, s.partial_fit, s.inverse_transform, s.fit_transform):
            with pytest.raises(TypeError, match="must not be a masked array"):
                method(x2)
    with pytest.raises(TypeError, match=r"argument 'sample_weight' must not be a masked array"):
        nn.StandardScaler().fit(x2.data, sample_weight=np.ma.masked_array(np.ones(20)))


# --------------------------------------------------------------------------- non-arrays


BAD = [("str", "abc", "str 'abc'"), ("bytes", b"ab", "bytes b'ab'"), ("dict", {"a": 1}, "dict {'a': 1}"),
       ("object", object(), "object <object object at")]


@pytest.mark.parametrize("bad", BAD, ids=[b[0] for b in BAD])
@pytest.mark.parametrize("name, arg", ARRAY_ARGS)
def test_non_array_is_type_error(name, arg, bad):
    kw = _fresh(name)
    kw[arg] = bad[1]
    before = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
    with pytest.raises(TypeError, match=rf"^{name}\(\): argument '{arg}' must be an array.*, got {re.escape(bad[2])}"):
        getattr(nn, name)(**kw)
    _unchanged(kw, before)


@pytest.mark.parametrize("name, arg", [(n, k) for n, k in ARRAY_ARGS if _required(n, k)])
def test_required_none_is_type_error(name, arg):
    kw = _fresh(name)
    kw[arg] = None
    with pytest.raises(TypeError, match=rf"^{name}\(\): argument '{arg}' must be an array.*, got None$"):
        getattr(nn, name)(**kw)


@pytest.mark.parametrize("bad", BAD, ids=[b[0] for b in BAD])
@pytest.mark.parametrize("name", NAMES)
def test_non_array_out_is_type_error(name, bad):
    with pytest.raises(TypeError, match=rf"^{name}\(\): argument 'out' must be an array, got {re.escape(bad[2])}"):
        getattr(nn, name)(**_fresh(name), out=bad[1])


class _OnlyArray:
    """An object NumPy converts through ``__array__`` only."""

    def __init__(self, a):
        self.a = a

    def __array__(self, dtype=None, copy=None):
        return self.a if dtype is None else self.a.astype(dtype)


@pytest.mark.parametrize("name", NAMES)
def test_lists_and_array_protocol_objects_work(name):
    want = _call(name, **_fresh(name))
    for wrap in (lambda v: v.tolist(), _OnlyArray):
        kw = {k: (wrap(v) if isinstance(v, np.ndarray) and k not in ("running_mean", "running_var") else v)
              for k, v in _fresh(name).items()}
        _assert_same(_call(name, **kw), want)


def test_layers_non_array_inputs():
    for cls, args in [(nn.LayerNorm, (L,)), (nn.BatchNorm2d, (C,)), (nn.LocalResponseNorm, (3,))]:
        for _, bad, desc in BAD + [("none", None, "None")]:
            with pytest.raises(TypeError, match=rf"^{cls.__name__}\(\): argument 'x' must be an array.*, got {re.escape(desc)}"):
                cls(*args)(bad)
    layer = nn.LayerNorm(3)
    np.testing.assert_array_equal(layer([[1.0, 2.0, 3.0]]), nn.layer_norm(np.array([[1.0, 2.0, 3.0]]), 3))


def test_dask_masked_chunks_and_parameters_refused_and_non_native_chunks_work():
    da = pytest.importorskip("dask.array")
    x = _arrays(6)(6, C, L)
    with pytest.raises(TypeError, match=r"^standardize\(\): argument 'x' must not be a masked array"):
        nn.standardize(da.from_array(np.ma.masked_array(x, mask=x > 1), chunks=(2, C, L)))
    with pytest.raises(TypeError, match=r"^layer_norm\(\): argument 'weight' must not be a masked array"):
        nn.layer_norm(da.from_array(x, chunks=(2, C, L)), L, np.ma.masked_array(np.ones(L)))
    y = nn.layer_norm(da.from_array(x.astype(SWAP), chunks=(2, C, L)), L)
    assert y.dtype == np.float32 and y.dtype.isnative
    np.testing.assert_array_equal(y.compute(), nn.layer_norm(x.astype(np.float32), L))
