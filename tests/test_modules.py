"""Layer classes (numbanorm.modules): PyTorch twins, state dicts, modes, devices, errors."""
import importlib
import os

import numpy as np
import pytest

import numbanorm as nb
from numbanorm.modules import StateDictError

# layer class -> the functional op module it is built on
_OPS = {
    "LayerNorm": "layer_norm",
    "RMSNorm": "rms_norm",
    "BatchNorm1d": "batch_norm",
    "BatchNorm2d": "batch_norm",
    "BatchNorm3d": "batch_norm",
    "InstanceNorm1d": "instance_norm",
    "InstanceNorm2d": "instance_norm",
    "InstanceNorm3d": "instance_norm",
    "GroupNorm": "group_norm",
    "LocalResponseNorm": "local_response_norm",
}


def need(cls):
    """Skip when the functional op under layer class ``cls`` is not available."""
    op = _OPS[cls]
    try:
        importlib.import_module(f"numbanorm._ops.{op}")
    except ImportError:  # pragma: no cover - only while the op is being written
        pytest.skip(f"numbanorm.{op} not available")


def make_pair(torch, cls, args, kw, dtype=np.float64):
    """Our layer and its torch twin (same arguments, same dtype)."""
    need(cls)
    tdt = {np.float64: torch.float64, np.float32: torch.float32}[dtype]
    ours_kw = dict(kw)
    if cls != "LocalResponseNorm":
        ours_kw["dtype"] = dtype
    ours = getattr(nb, cls)(*args, **ours_kw)
    theirs = getattr(torch.nn, cls)(*args, **kw)
    if cls != "LocalResponseNorm":
        theirs = theirs.to(tdt)
    return ours, theirs


# (class, args, kwargs, input shape)
TWINS = [
    ("LayerNorm", (5,), {}, (4, 5)),
    ("LayerNorm", ((3, 4),), {"bias": False}, (2, 3, 3, 4)),
    ("LayerNorm", (6,), {"elementwise_affine": False}, (3, 6)),
    ("LayerNorm", (4,), {"eps": 1e-3}, (2, 3, 4)),
    ("RMSNorm", (5,), {}, (4, 5)),
    ("RMSNorm", ((3, 4),), {"eps": 1e-6}, (2, 3, 4)),
    ("RMSNorm", (6,), {"elementwise_affine": False}, (3, 6)),
    ("BatchNorm1d", (3,), {}, (6, 3)),
    ("BatchNorm1d", (3,), {"momentum": None}, (4, 3, 5)),
    ("BatchNorm1d", (3,), {"bias": False, "momentum": 0.3}, (4, 3, 2)),
    ("BatchNorm2d", (3,), {}, (4, 3, 2, 3)),
    ("BatchNorm2d", (2,), {"affine": False, "momentum": None}, (3, 2, 2, 2)),
    ("BatchNorm2d", (2,), {"track_running_stats": False}, (3, 2, 2, 2)),
    ("BatchNorm3d", (2,), {"eps": 1e-3}, (2, 2, 2, 2, 3)),
    ("InstanceNorm1d", (3,), {}, (2, 3, 5)),
    ("InstanceNorm1d", (3,), {"affine": True, "track_running_stats": True}, (2, 3, 5)),
    ("InstanceNorm2d", (2,), {"affine": True}, (2, 2, 3, 3)),
    ("InstanceNorm2d", (2,), {"affine": True, "track_running_stats": True, "momentum": 0.5}, (2, 3, 3)),
    ("InstanceNorm3d", (2,), {"affine": True, "bias": False}, (2, 2, 2, 2, 3)),
    ("GroupNorm", (2, 4), {}, (3, 4, 5)),
    ("GroupNorm", (1, 4), {"affine": False}, (2, 4, 2, 3)),
    ("GroupNorm", (3, 3), {"eps": 1e-3}, (5, 3)),
    ("GroupNorm", (2, 6), {"bias": False}, (2, 6, 2, 2, 2)),
    ("LocalResponseNorm", (3,), {}, (2, 5, 4)),
    ("LocalResponseNorm", (2,), {"alpha": 0.05, "beta": 0.5, "k": 2.0}, (2, 4, 3, 3)),
]


def _ids(t):
    return f"{t[0]}-{t[1]}-{t[2]}-{t[3]}"


def close(a, b, rtol=1e-9, atol=1e-11):
    b = b.detach().numpy() if hasattr(b, "detach") else np.asarray(b)
    np.testing.assert_allclose(np.asarray(a), b, rtol=rtol, atol=atol)


def assert_same_state(ours, theirs, rtol=1e-9, atol=1e-11):
    sd_o, sd_t = ours.state_dict(), theirs.state_dict()
    assert list(sd_o) == list(sd_t)
    for k in sd_t:
        assert sd_o[k].shape == tuple(sd_t[k].shape), k
        close(sd_o[k], sd_t[k], rtol, atol)


def step(torch, ours, theirs, x, g, lr, rtol=1e-9, atol=1e-11):
    """One forward/backward/SGD step on both layers, checking every result."""
    y = ours(x)
    xt = torch.tensor(x, requires_grad=True)
    yt = theirs(xt)
    close(y, yt, rtol, atol)
    gx = ours.backward(g)
    yt.backward(torch.from_numpy(g))
    close(gx, xt.grad, rtol, atol)
    names = [n for n, _ in theirs.named_parameters()]
    assert names == [n for n, _ in ours.named_parameters()]
    assert sorted(ours.grads) == sorted(names)
    with torch.no_grad():
        for name, tp in theirs.named_parameters():
            close(ours.grads[name], tp.grad, rtol, atol)
            tp -= lr * tp.grad
            tp.grad = None
    for name, p in ours.named_parameters():
        p -= lr * ours.grads[name]
    assert_same_state(ours, theirs, rtol, atol)


@pytest.mark.parametrize("case", TWINS, ids=_ids)
def test_training_twin_matches_torch(torch, case):
    """Same batches -> same outputs, gradients, parameters and running stats, train then eval."""
    cls, args, kw, shape = case
    ours, theirs = make_pair(torch, cls, args, kw)
    rng = np.random.default_rng(7)
    assert_same_state(ours, theirs)
    for _ in range(4):
        x = rng.standard_normal(shape) * 2.0 + 0.7
        g = rng.standard_normal(shape)
        step(torch, ours, theirs, x, g, lr=0.3)
    assert ours.eval() is ours
    theirs.eval()
    assert ours.training is False
    for _ in range(2):
        x = rng.standard_normal(shape) * 1.5 - 0.2
        g = rng.standard_normal(shape)
        step(torch, ours, theirs, x, g, lr=0.1)
    assert ours.train() is ours and ours.training is True


@pytest.mark.parametrize("cls,args,kw,shape", [
    ("BatchNorm2d", (3,), {}, (4, 3, 3, 3)),
    ("LayerNorm", (8,), {}, (5, 8)),
    ("GroupNorm", (2, 4), {}, (3, 4, 6)),
])
def test_float32_twin(torch, cls, args, kw, shape):
    ours, theirs = make_pair(torch, cls, args, kw, dtype=np.float32)
    assert ours.weight.dtype == np.float32
    rng = np.random.default_rng(3)
    for _ in range(3):
        x = (rng.standard_normal(shape) + 1).astype(np.float32)
        g = rng.standard_normal(shape).astype(np.float32)
        step(torch, ours, theirs, x, g, lr=0.2, rtol=2e-4, atol=2e-5)
        assert ours.weight_grad.dtype == np.float32


def test_unbatched_instance_norm(torch):
    ours, theirs = make_pair(torch, "InstanceNorm1d", (3,), {"affine": True, "track_running_stats": True})
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 7))
    g = rng.standard_normal((3, 7))
    step(torch, ours, theirs, x, g, lr=0.1)
    ours.eval()
    theirs.eval()
    step(torch, ours, theirs, x, g, lr=0.1)


@pytest.mark.parametrize("cls,args,shape", [
    ("BatchNorm2d", (3,), (2, 4, 5, 3)),
    ("BatchNorm1d", (3,), (4, 5, 3)),
    ("GroupNorm", (2, 4), (2, 5, 4)),
    ("InstanceNorm2d", (3,), (2, 3, 4, 3)),
    ("LocalResponseNorm", (3,), (2, 4, 5)),
])
def test_channels_last_equals_channels_first(cls, args, shape):
    """channel_axis=-1 on (N, *, C) equals channel_axis=1 on the transposed input."""
    need(cls)
    kw = {} if cls == "LocalResponseNorm" else {"dtype": np.float64}
    if cls == "InstanceNorm2d":
        kw["affine"] = True
    first = getattr(nb, cls)(*args, **kw)
    last = getattr(nb, cls)(*args, channel_axis=-1, **kw)
    rng = np.random.default_rng(5)
    x_last = rng.standard_normal(shape)
    g_last = rng.standard_normal(shape)
    perm = (0, x_last.ndim - 1) + tuple(range(1, x_last.ndim - 1))
    x_first, g_first = x_last.transpose(perm), g_last.transpose(perm)
    y_last = last(x_last)
    y_first = first(x_first)
    np.testing.assert_allclose(y_last.transpose(perm), y_first, rtol=1e-10, atol=1e-12)
    gx_last = last.backward(g_last)
    gx_first = first.backward(g_first)
    np.testing.assert_allclose(gx_last.transpose(perm), gx_first, rtol=1e-10, atol=1e-12)
    for name in first.grads:
        np.testing.assert_allclose(last.grads[name], first.grads[name], rtol=1e-10)
    assert_state_equal(last.state_dict(), first.state_dict())
    assert "channel_axis=-1" in repr(last)


def assert_state_equal(a, b):
    assert list(a) == list(b)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-12)


# --------------------------------------------------------------------------------------
# constructors: defaults, repr, errors


DEFAULTS = [
    ("LayerNorm", (4,), {}),
    ("LayerNorm", ((2, 3),), {"bias": False}),
    ("LayerNorm", (4,), {"elementwise_affine": False}),
    ("RMSNorm", (4,), {}),
    ("RMSNorm", ([2, 3],), {"eps": 1e-6}),
    ("BatchNorm1d", (3,), {}),
    ("BatchNorm2d", (3,), {"momentum": None, "bias": False}),
    ("BatchNorm3d", (3,), {"affine": False, "track_running_stats": False}),
    ("InstanceNorm1d", (3,), {}),
    ("InstanceNorm2d", (3,), {"affine": True, "track_running_stats": True}),
    ("InstanceNorm3d", (3,), {"affine": True}),
    ("GroupNorm", (2, 4), {}),
    ("GroupNorm", (2, 4), {"affine": False}),
    ("LocalResponseNorm", (2,), {}),
    ("LocalResponseNorm", (3,), {"alpha": 1e-3, "beta": 0.5, "k": 2}),
]


@pytest.mark.parametrize("cls,args,kw", DEFAULTS)
def test_defaults_and_repr_match_torch(torch, cls, args, kw):
    ours = getattr(nb, cls)(*args, **kw)
    theirs = getattr(torch.nn, cls)(*args, **kw)
    assert repr(ours) == repr(theirs)
    for attr in ("normalized_shape", "eps", "elementwise_affine", "num_features", "momentum", "affine",
                 "track_running_stats", "num_groups", "num_channels", "size", "alpha", "beta", "k"):
        if hasattr(theirs, attr):
            assert getattr(ours, attr) == getattr(theirs, attr), attr
    sd_o, sd_t = ours.state_dict(), theirs.state_dict()
    assert list(sd_o) == list(sd_t)
    for k, v in sd_t.items():
        np.testing.assert_array_equal(sd_o[k], v.numpy())
        assert sd_o[k].dtype == v.numpy().dtype, k
    assert ours.training is True
    assert len(ours.parameters()) == len(list(theirs.parameters()))


def test_constructor_signatures_follow_torch():
    """Positional order is PyTorch's (device, dtype included); extras are keyword-only."""
    import inspect

    sig = inspect.signature(nb.BatchNorm2d)
    assert list(sig.parameters)[:7] == ["num_features", "eps", "momentum", "affine", "track_running_stats",
                                        "device", "dtype"]
    assert sig.parameters["channel_axis"].kind is inspect.Parameter.KEYWORD_ONLY
    assert sig.parameters["momentum"].default == 0.1
    sig = inspect.signature(nb.InstanceNorm1d)
    assert sig.parameters["affine"].default is False
    assert sig.parameters["track_running_stats"].default is False
    sig = inspect.signature(nb.LayerNorm)
    assert list(sig.parameters)[:4] == ["normalized_shape", "eps", "elementwise_affine", "bias"]
    sig = inspect.signature(nb.RMSNorm)
    assert sig.parameters["eps"].default is None
    sig = inspect.signature(nb.GroupNorm)
    assert list(sig.parameters)[:4] == ["num_groups", "num_channels", "eps", "affine"]
    sig = inspect.signature(nb.LocalResponseNorm)
    assert [sig.parameters[n].default for n in ("alpha", "beta", "k")] == [1e-4, 0.75, 1.0]


def test_dtype_argument():
    assert nb.LayerNorm(3).weight.dtype == np.float32
    ln = nb.LayerNorm(3, dtype=np.float64)
    assert ln.weight.dtype == np.float64 and ln.bias.dtype == np.float64
    bn = nb.BatchNorm1d(2, dtype="float64")
    assert bn.running_mean.dtype == np.float64
    assert bn.num_batches_tracked.dtype == np.int64 and bn.num_batches_tracked.shape == ()
    assert "dtype=float64" in repr(bn)
    bn.float()
    assert bn.weight.dtype == np.float32 and bn.running_var.dtype == np.float32
    assert bn.to(dtype=np.float64) is bn and bn.running_var.dtype == np.float64


@pytest.mark.parametrize("make,exc,match", [
    (lambda: nb.LayerNorm(0), ValueError, "normalized_shape"),
    (lambda: nb.LayerNorm((3, -1)), ValueError, "normalized_shape"),
    (lambda: nb.LayerNorm(()), ValueError, "normalized_shape"),
    (lambda: nb.LayerNorm(2.5), TypeError, "normalized_shape"),
    (lambda: nb.LayerNorm("abc"), TypeError, "normalized_shape"),
    (lambda: nb.LayerNorm(True), TypeError, "normalized_shape"),
    (lambda: nb.LayerNorm(3, eps=-1.0), ValueError, "eps"),
    (lambda: nb.LayerNorm(3, eps=float("nan")), ValueError, "eps"),
    (lambda: nb.LayerNorm(3, eps="small"), TypeError, "eps"),
    (lambda: nb.LayerNorm(3, elementwise_affine="yes"), TypeError, "elementwise_affine"),
    (lambda: nb.LayerNorm(3, dtype=np.int32), TypeError, "dtype"),
    (lambda: nb.LayerNorm(3, dtype=np.complex64), TypeError, "dtype"),
    (lambda: nb.LayerNorm(3, device="tpu"), ValueError, "device"),
    (lambda: nb.RMSNorm(3, eps=-1e-6), ValueError, "eps"),
    (lambda: nb.RMSNorm([]), ValueError, "normalized_shape"),
    (lambda: nb.BatchNorm2d(0), ValueError, "num_features"),
    (lambda: nb.BatchNorm2d(-3), ValueError, "num_features"),
    (lambda: nb.BatchNorm2d(3.0), TypeError, "num_features"),
    (lambda: nb.BatchNorm2d(3, momentum=1.5), ValueError, "momentum"),
    (lambda: nb.BatchNorm2d(3, momentum=-0.1), ValueError, "momentum"),
    (lambda: nb.BatchNorm2d(3, momentum="fast"), TypeError, "momentum"),
    (lambda: nb.BatchNorm2d(3, affine=1), TypeError, "affine"),
    (lambda: nb.BatchNorm2d(3, track_running_stats=None), TypeError, "track_running_stats"),
    (lambda: nb.BatchNorm2d(3, channel_axis=0), ValueError, "channel_axis"),
    (lambda: nb.BatchNorm2d(3, channel_axis=1.0), TypeError, "channel_axis"),
    (lambda: nb.BatchNorm1d(3, dtype="int64"), TypeError, "dtype"),
    (lambda: nb.InstanceNorm2d(0), ValueError, "num_features"),
    (lambda: nb.InstanceNorm1d(2, eps=-1), ValueError, "eps"),
    (lambda: nb.GroupNorm(3, 4), ValueError, "divisible"),
    (lambda: nb.GroupNorm(0, 4), ValueError, "num_groups"),
    (lambda: nb.GroupNorm(2, 0), ValueError, "num_channels"),
    (lambda: nb.GroupNorm(2, "4"), TypeError, "num_channels"),
    (lambda: nb.GroupNorm(2, 4, affine="no"), TypeError, "affine"),
    (lambda: nb.LocalResponseNorm(0), ValueError, "size"),
    (lambda: nb.LocalResponseNorm(2.0), TypeError, "size"),
    (lambda: nb.LocalResponseNorm(2, alpha="a"), TypeError, "alpha"),
    (lambda: nb.LocalResponseNorm(2, beta=float("inf")), ValueError, "beta"),
    (lambda: nb.LocalResponseNorm(2, mode="sideways"), ValueError, "mode"),
    (lambda: nb.LocalResponseNorm(2, convention="caffe"), ValueError, "convention"),
])
def test_bad_constructor_arguments(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


# --------------------------------------------------------------------------------------
# forward-time checks


@pytest.mark.parametrize("make,shape,match", [
    (lambda: nb.BatchNorm2d(3), (4, 3, 5), "4D"),
    (lambda: nb.BatchNorm2d(3), (4, 3, 5, 5, 5), "4D"),
    (lambda: nb.BatchNorm1d(3), (4,), "2D or 3D"),
    (lambda: nb.BatchNorm1d(3), (2, 3, 2, 2), "2D or 3D"),
    (lambda: nb.BatchNorm3d(3), (2, 3, 2, 2), "5D"),
    (lambda: nb.BatchNorm2d(3), (4, 5, 2, 2), "num_features"),
    (lambda: nb.InstanceNorm2d(3), (2, 3), "3D or 4D"),
    (lambda: nb.InstanceNorm1d(3, affine=True), (2, 4, 5), "num_features"),
    (lambda: nb.GroupNorm(2, 4), (4,), "at least 2"),
    (lambda: nb.GroupNorm(2, 4), (2, 6), "num_channels"),
    (lambda: nb.LocalResponseNorm(2), (2, 6), "3D or higher"),
])
def test_input_checks(make, shape, match):
    layer = make()
    with pytest.raises(ValueError, match=match):
        layer(np.zeros(shape, np.float32))


def test_failed_forward_changes_nothing():
    need("BatchNorm2d")
    bn = nb.BatchNorm2d(3)
    before = bn.state_dict()
    with pytest.raises(ValueError):
        bn(np.ones((1, 3, 1, 1), np.float32))  # one value per channel in training
    with pytest.raises(ValueError):
        bn(np.ones((2, 4, 2, 2), np.float32))
    assert_state_equal(bn.state_dict(), before)
    assert int(bn.num_batches_tracked) == 0


def test_backward_needs_forward():
    ln = nb.LayerNorm(3)
    with pytest.raises(RuntimeError, match="call the layer"):
        ln.backward(np.ones((2, 3), np.float32))


def test_eval_uses_running_stats_and_does_not_update():
    need("BatchNorm1d")
    bn = nb.BatchNorm1d(2, dtype=np.float64)
    rng = np.random.default_rng(0)
    for _ in range(3):
        bn(rng.standard_normal((8, 2)) * 3 + 5)
    assert int(bn.num_batches_tracked) == 3
    bn.eval()
    before = bn.state_dict()
    x = rng.standard_normal((4, 2))
    y = bn(x)
    expect = (x - bn.running_mean) / np.sqrt(bn.running_var + bn.eps)
    np.testing.assert_allclose(y, expect, rtol=1e-12)
    assert_state_equal(bn.state_dict(), before)
    # a single sample is fine in eval mode (PyTorch too)
    assert bn(x[:1]).shape == (1, 2)


def test_momentum_none_is_cumulative_average():
    need("BatchNorm1d")
    bn = nb.BatchNorm1d(1, momentum=None, dtype=np.float64)
    rng = np.random.default_rng(2)
    batches = [rng.standard_normal((5, 1)) + i for i in range(4)]
    for b in batches:
        bn(b)
    np.testing.assert_allclose(bn.running_mean, np.mean([b.mean() for b in batches]), rtol=1e-12)
    np.testing.assert_allclose(bn.running_var, np.mean([b.var(ddof=1) for b in batches]), rtol=1e-12)
    assert int(bn.num_batches_tracked) == 4


# --------------------------------------------------------------------------------------
# parameters, gradients


def test_parameters_and_grads():
    ln = nb.LayerNorm(4, dtype=np.float64)
    assert [n for n, _ in ln.named_parameters()] == ["weight", "bias"]
    assert ln.parameters()[0] is ln.weight
    assert ln.weight_grad is None and ln.grads == {}
    x = np.arange(8.0).reshape(2, 4)
    y = ln(x)
    g = np.ones_like(y)
    ln.backward(g)
    np.testing.assert_allclose(ln.bias_grad, [2, 2, 2, 2])
    assert ln.grads["weight"] is ln.weight_grad
    # overwritten, not accumulated
    ln.backward(g)
    np.testing.assert_allclose(ln.bias_grad, [2, 2, 2, 2])
    ln.zero_grad()
    assert ln.grads == {} and ln.bias_grad is None
    assert nb.LayerNorm(4, elementwise_affine=False).parameters() == []
    assert nb.LayerNorm(4, bias=False).bias is None
    bn = nb.BatchNorm2d(2)
    assert [n for n, _ in bn.named_buffers()] == ["running_mean", "running_var", "num_batches_tracked"]
    assert nb.BatchNorm2d(2, track_running_stats=False).buffers() == []


def test_layer_backward_matches_functions():
    """The layer gives exactly what the functional forward/backward give."""
    ln = nb.LayerNorm((2, 3), dtype=np.float64)
    rng = np.random.default_rng(4)
    ln.weight[...] = rng.standard_normal((2, 3))
    ln.bias[...] = rng.standard_normal((2, 3))
    x = rng.standard_normal((4, 2, 3))
    g = rng.standard_normal((4, 2, 3))
    np.testing.assert_array_equal(ln(x), nb.layer_norm(x, (2, 3), ln.weight, ln.bias))
    gx, gw, gb = nb.layer_norm_backward(g, x, (2, 3), ln.weight)
    np.testing.assert_allclose(ln.backward(g), gx, rtol=1e-14)
    np.testing.assert_allclose(ln.weight_grad, gw, rtol=1e-14)
    np.testing.assert_allclose(ln.bias_grad, gb, rtol=1e-14)


# --------------------------------------------------------------------------------------
# state dicts


@pytest.mark.parametrize("cls,args,kw,shape", [
    ("BatchNorm2d", (3,), {}, (4, 3, 2, 2)),
    ("BatchNorm1d", (3,), {"momentum": None, "bias": False}, (5, 3)),
    ("LayerNorm", ((2, 3),), {}, (4, 2, 3)),
    ("RMSNorm", (4,), {}, (3, 4)),
    ("GroupNorm", (2, 4), {}, (2, 4, 3)),
    ("InstanceNorm2d", (2,), {"affine": True, "track_running_stats": True}, (2, 2, 3, 3)),
])
def test_state_dict_round_trip_with_torch(torch, cls, args, kw, shape):
    need(cls)
    theirs = getattr(torch.nn, cls)(*args, **kw)
    rng = np.random.default_rng(9)
    # give torch non-trivial parameters and running statistics
    with torch.no_grad():
        for p in theirs.parameters():
            p.copy_(torch.from_numpy(rng.standard_normal(tuple(p.shape)).astype(np.float32)))
    for _ in range(3):
        theirs(torch.from_numpy((rng.standard_normal(shape) * 2 + 1).astype(np.float32)))
    theirs.eval()
    ours = getattr(nb, cls)(*args, **kw)
    res = ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    assert res.missing_keys == [] and res.unexpected_keys == []
    assert_same_state(ours, theirs, rtol=0, atol=0)
    ours.eval()
    x = (rng.standard_normal(shape)).astype(np.float32)
    close(ours(x), theirs(torch.from_numpy(x)), rtol=1e-5, atol=1e-6)
    # and back into a fresh torch module
    again = getattr(torch.nn, cls)(*args, **kw)
    again.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    for k, v in again.state_dict().items():
        assert torch.equal(v, theirs.state_dict()[k]), k
    # torch tensors are accepted directly
    fresh = getattr(nb, cls)(*args, **kw)
    fresh.load_state_dict(theirs.state_dict())
    assert_state_equal(fresh.state_dict(), ours.state_dict())


def test_state_dict_is_a_copy_and_load_is_in_place():
    bn = nb.BatchNorm1d(2)
    sd = bn.state_dict()
    sd["weight"][:] = 5
    assert np.all(bn.weight == 1)
    w = bn.weight
    sd2 = {k: v.copy() for k, v in sd.items()}
    sd2["running_mean"] = np.array([1.0, 2.0])  # float64 is cast to the layer dtype
    sd2["num_batches_tracked"] = np.array(7)
    bn.load_state_dict(sd2)
    assert bn.weight is w and np.all(w == 5)
    assert bn.running_mean.dtype == np.float32 and list(bn.running_mean) == [1.0, 2.0]
    assert int(bn.num_batches_tracked) == 7


def test_load_state_dict_errors_change_nothing():
    bn = nb.BatchNorm2d(2)
    good = bn.state_dict()
    for k in good:
        if k != "num_batches_tracked":
            good[k] = good[k] + 3
    bad_shape = dict(good, running_var=np.ones(3, np.float32))
    extra = dict(good, something=np.ones(1))
    missing = {k: v for k, v in good.items() if k != "bias"}
    before = bn.state_dict()
    with pytest.raises(StateDictError, match="size mismatch for running_var"):
        bn.load_state_dict(bad_shape)
    with pytest.raises(ValueError, match="Unexpected key"):
        bn.load_state_dict(extra)
    with pytest.raises(RuntimeError, match="Missing key.*bias"):
        bn.load_state_dict(missing)
    with pytest.raises(TypeError):
        bn.load_state_dict(dict(good, weight=np.array(["a", "b"])))
    with pytest.raises(TypeError):
        bn.load_state_dict([("weight", np.ones(2))])
    assert_state_equal(bn.state_dict(), before)
    res = bn.load_state_dict(dict(missing, something=np.ones(1)), strict=False)
    assert res.missing_keys == ["bias"] and res.unexpected_keys == ["something"]
    assert np.all(bn.weight == 4) and np.all(bn.bias == 0)
    # num_batches_tracked may be absent (PyTorch state dicts without version metadata)
    nb_less = {k: v for k, v in good.items() if k != "num_batches_tracked"}
    assert bn.load_state_dict(nb_less).missing_keys == []


def test_affine_false_state_dict_rejects_weight():
    inorm = nb.InstanceNorm2d(3)
    assert inorm.state_dict() == {}
    with pytest.raises(StateDictError, match="Unexpected"):
        inorm.load_state_dict({"weight": np.ones(3)})


# --------------------------------------------------------------------------------------
# devices


SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"


def test_cuda_without_gpu_raises():
    from numba import cuda

    if SIMULATOR or cuda.is_available():
        pytest.skip("a (simulated) GPU is available")
    ln = nb.LayerNorm(3)
    with pytest.raises(RuntimeError, match="GPU"):
        ln.cuda()
    assert ln.device == "cpu" and type(ln.weight) is np.ndarray


def test_bad_device_names():
    ln = nb.LayerNorm(3)
    with pytest.raises(ValueError, match="device"):
        ln.to("tpu")
    with pytest.raises(TypeError, match="device"):
        ln.to(3)


@pytest.mark.cuda
def test_to_cuda_and_back():
    bn = nb.BatchNorm1d(3)
    bn.load_state_dict(dict(bn.state_dict(), weight=np.array([1.0, 2.0, 3.0]), running_mean=np.ones(3)))
    assert bn.cuda() is bn and bn.device == "cuda"
    assert type(bn.weight) is not np.ndarray
    assert type(bn.weight).__module__.startswith("numba.cuda")
    assert type(bn.running_var).__module__.startswith("numba.cuda")
    assert type(bn.num_batches_tracked) is np.ndarray  # the counter stays on the host
    sd = bn.state_dict()  # host NumPy copies
    assert type(sd["weight"]) is np.ndarray and list(sd["weight"]) == [1.0, 2.0, 3.0]
    # mixing a host input with device parameters is refused, by device
    with pytest.raises(TypeError):
        bn(np.ones((4, 3), np.float32))
    assert bn.cpu() is bn and type(bn.weight) is np.ndarray
    assert list(bn.weight) == [1.0, 2.0, 3.0] and list(bn.running_mean) == [1.0, 1.0, 1.0]
    ln = nb.LayerNorm(4, device="cuda")
    assert ln.device == "cuda"
    ln.load_state_dict({"weight": np.full(4, 2.0), "bias": np.zeros(4)})
    np.testing.assert_array_equal(ln.to("cpu").weight, np.full(4, 2.0, np.float32))


@pytest.mark.cuda
@pytest.mark.parametrize("cls,args,kw,shape", [
    ("LayerNorm", (4,), {}, (3, 4)),
    ("RMSNorm", (4,), {}, (3, 4)),
    ("BatchNorm1d", (3,), {}, (4, 3)),
    ("GroupNorm", (2, 4), {}, (2, 4, 3)),
])
def test_layer_on_gpu_matches_cpu(cls, args, kw, shape):
    """Forward, backward and running stats of a layer moved to the (simulated) GPU."""
    need(cls)
    from numba import cuda

    op = _OPS[cls]
    try:
        importlib.import_module(f"numbanorm._cuda.{op}")
    except ImportError:  # pragma: no cover - GPU kernels still being written
        pytest.skip(f"numbanorm._cuda.{op} not available")
    rng = np.random.default_rng(11)
    cpu = getattr(nb, cls)(*args, dtype=np.float64, **kw)
    gpu = getattr(nb, cls)(*args, dtype=np.float64, **kw).cuda()
    x = rng.standard_normal(shape) + 1
    g = rng.standard_normal(shape)
    y_c = cpu(x)
    y_g = gpu(cuda.to_device(x))
    np.testing.assert_allclose(y_g.copy_to_host(), y_c, rtol=1e-10, atol=1e-12)
    gx_c = cpu.backward(g)
    gx_g = gpu.backward(cuda.to_device(g))
    np.testing.assert_allclose(gx_g.copy_to_host(), gx_c, rtol=1e-10, atol=1e-12)
    for name in cpu.grads:
        np.testing.assert_allclose(gpu.grads[name].copy_to_host(), cpu.grads[name], rtol=1e-10, atol=1e-12)
    assert_state_equal(gpu.state_dict(), cpu.state_dict())


def test_mixed_input_dtype_and_pickle():
    import pickle

    need("BatchNorm1d")
    bn = nb.BatchNorm1d(3)  # float32 parameters
    x = np.random.default_rng(0).standard_normal((5, 3))  # float64 input
    y = bn(x)
    assert y.dtype == np.float64  # the functions' dtype rule: float64 in, float64 out
    bn.backward(np.ones_like(y))
    assert bn.weight_grad.dtype == np.float32 and bn.running_mean.dtype == np.float32
    clone = pickle.loads(pickle.dumps(bn))
    assert_state_equal(clone.state_dict(), bn.state_dict())
    assert repr(clone) == repr(bn)


def test_classes_keep_their_public_module():
    """The classes live in private per-family submodules of numbanorm.modules but keep it as
    their home: numbanorm.X and numbanorm.modules.X are one object, and pickles name
    numbanorm.modules (not the private layout, which may move again)."""
    import pickle

    import numbanorm.modules as mods

    layers = [n for n in nb.__all__
              if isinstance(getattr(nb, n), type) and issubclass(getattr(nb, n), mods._base._Layer)]
    assert {"LayerNorm", "AddRMSNorm", "BatchNorm2d", "InstanceNorm3d", "GroupNorm", "LocalResponseNorm"} <= set(layers)
    for name in layers + mods.__all__ + ["IncompatibleKeys"]:
        cls = getattr(mods, name)
        assert cls.__module__ == "numbanorm.modules", name
        assert name not in nb.__all__ or getattr(nb, name) is cls, name
    data = pickle.dumps(nb.GroupNorm(2, 4))
    assert b"numbanorm.modules" in data and b"numbanorm.modules._" not in data
    assert repr(pickle.loads(data)) == "GroupNorm(2, 4, eps=1e-05, affine=True, bias=True)"
