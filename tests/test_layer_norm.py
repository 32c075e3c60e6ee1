"""layer_norm / layer_norm_backward: reference twins, PyTorch, finite differences, properties."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from numbanorm import layer_norm, layer_norm_backward

import reference as ref

TOL = {np.float16: 2e-2, np.float32: 2e-5, np.float64: 1e-12}

SHAPES = [((7,), (7,)), ((4, 9), 9), ((3, 5, 6), (5, 6)), ((2, 3, 4, 5), (3, 4, 5)), ((64, 700), (700,))]


def _params(rng, nshape, dtype):
    nshape = (nshape,) if np.ndim(nshape) == 0 else nshape
    return rng.standard_normal(nshape).astype(dtype), rng.standard_normal(nshape).astype(dtype)


@pytest.mark.parametrize("shape,nshape", SHAPES)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("affine", [False, True])
def test_forward_matches_reference(rng, shape, nshape, dtype, affine):
    x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    w, b = _params(rng, nshape, dtype) if affine else (None, None)
    y = layer_norm(x, nshape, w, b)
    assert y.dtype == dtype and y.shape == x.shape
    np.testing.assert_allclose(y, ref.layer_norm(x, nshape, w, b), rtol=TOL[dtype], atol=TOL[dtype] * 5)


@pytest.mark.parametrize("shape,nshape", SHAPES)
@pytest.mark.parametrize("affine", [False, True])
def test_backward_matches_reference(rng, shape, nshape, affine):
    x = rng.standard_normal(shape) * 2 - 1
    g = rng.standard_normal(shape)
    w = _params(rng, nshape, np.float64)[0] if affine else None
    gx, gw, gb = layer_norm_backward(g, x, nshape, w)
    rx, rw, rb = ref.layer_norm_backward(g, x, nshape, w)
    np.testing.assert_allclose(gx, rx, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(gb, rb, rtol=1e-9, atol=1e-12)
    if affine:
        np.testing.assert_allclose(gw, rw, rtol=1e-9, atol=1e-12)
    else:
        assert gw is None


def test_saved_stats_equal_recomputed(rng):
    x = rng.standard_normal((16, 33)).astype(np.float32)
    g = rng.standard_normal((16, 33)).astype(np.float32)
    w = rng.standard_normal(33).astype(np.float32)
    y, mean, rstd = layer_norm(x, 33, w, return_stats=True)
    assert mean.shape == rstd.shape == (16, 1) and mean.dtype == np.float32
    np.testing.assert_allclose(mean[:, 0], x.mean(1), rtol=1e-5, atol=1e-6)
    a = layer_norm_backward(g, x, 33, w, mean=mean, rstd=rstd)
    b = layer_norm_backward(g, x, 33, w)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    # stats without the trailing 1 are accepted too
    c = layer_norm_backward(g, x, 33, w, mean=mean[:, 0], rstd=rstd[:, 0])
    np.testing.assert_array_equal(a[0], c[0])


@pytest.mark.parametrize("shape,nshape", SHAPES[1:4])
def test_torch_parity_forward_and_autograd(torch, rng, shape, nshape):
    F = torch.nn.functional
    x = rng.standard_normal(shape)
    nsh = (nshape,) if np.ndim(nshape) == 0 else nshape
    w, b = rng.standard_normal(nsh), rng.standard_normal(nsh)
    g = rng.standard_normal(shape)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = F.layer_norm(tx, nsh, tw, tb, eps=1e-5)
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(layer_norm(x, nshape, w, b), ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    gx, gw, gb = layer_norm_backward(g, x, nshape, w)
    np.testing.assert_allclose(gx, tx.grad.numpy(), rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(gw, tw.grad.numpy(), rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(gb, tb.grad.numpy(), rtol=1e-9, atol=1e-11)
    # float32 forward against torch's float32 kernel
    x32 = x.astype(np.float32)
    t32 = F.layer_norm(torch.tensor(x32), nsh).numpy()
    np.testing.assert_allclose(layer_norm(x32, nshape), t32, rtol=1e-4, atol=1e-5)


def test_torch_return_stats_match_native(torch, rng):
    x = rng.standard_normal((6, 10))
    _, tmean, trstd = torch.native_layer_norm(torch.tensor(x), (10,), None, None, 1e-5)
    _, mean, rstd = layer_norm(x, 10, return_stats=True)
    np.testing.assert_allclose(mean, tmean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(rstd, trstd.numpy(), rtol=1e-12)


def test_finite_differences(rng):
    x = rng.standard_normal((3, 5))
    w, b = rng.standard_normal(5), rng.standard_normal(5)
    g = rng.standard_normal((3, 5))
    gx, gw, gb = layer_norm_backward(g, x, 5, w)
    h = 1e-6

    def loss(xx=x, ww=w, bb=b):
        return float((layer_norm(xx, 5, ww, bb) * g).sum())

    for arr, grad in ((x, gx), (w, gw), (b, gb)):
        num = np.zeros_like(arr)
        for idx in np.ndindex(arr.shape):
            d = np.zeros_like(arr)
            d[idx] = h
            kw = {id(x): "xx", id(w): "ww", id(b): "bb"}[id(arr)]
            num[idx] = (loss(**{kw: arr + d}) - loss(**{kw: arr - d})) / (2 * h)
        np.testing.assert_allclose(grad, num, rtol=1e-6, atol=1e-7)


def test_float32_large_offset(rng):
    x64 = rng.standard_normal((64, 1024)) + 1e4
    y = layer_norm(x64.astype(np.float32), 1024)
    np.testing.assert_allclose(y, ref.layer_norm(x64.astype(np.float32), 1024), atol=1e-2)
    gx, _, _ = layer_norm_backward(np.ones_like(y), x64.astype(np.float32), 1024)
    assert np.abs(gx).max() < 1e-2


@pytest.mark.parametrize(
    "make",
    [
        lambda r: r.standard_normal((8, 4096)) + 1e4,  # offset: one pass about the leading mean
        lambda r: np.concatenate([np.full((8, 1), 1e4), r.standard_normal((8, 4095))], 1),  # leading outlier
        lambda r: np.concatenate([np.full((8, 16), 3e4), r.standard_normal((8, 32768))], 1),  # leading block
        lambda r: np.sort(r.standard_normal((8, 4096)) * 50 + 7, axis=1),  # sorted rows
        lambda r: np.linspace(0, 1e3, 8 * 4096).reshape(8, 4096) + r.standard_normal((8, 4096)),  # trend
        lambda r: r.standard_normal((8, 5)) * 1e-3 + 1.0,  # shorter than the leading block
    ],
    ids=["offset", "outlier", "leading-block", "sorted", "trend", "short"],
)
def test_float32_statistics_as_accurate_as_two_passes(rng, make):
    """Statistics take one pass about the mean of the first 16 elements; rows where that
    shift is more than a standard deviation from the mean are redone in two passes, so
    every row's statistics are float32-accurate (relative to the spread, not the offset)."""
    x = make(rng).astype(np.float32)
    y, mean, rstd = layer_norm(x, x.shape[-1], return_stats=True)
    x64 = x.astype(np.float64)
    mu = x64.mean(-1, keepdims=True)
    r64 = 1.0 / np.sqrt(x64.var(-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(rstd, r64, rtol=1e-6)  # without the two-pass redo: 2e-5
    # the mean to within its float32 rounding plus 1e-5 of the row's spread
    assert (np.abs(mean - mu) <= np.spacing(np.abs(mu).astype(np.float32)) + 1e-5 / r64).all()
    np.testing.assert_allclose(y, (x64 - mu) * r64, atol=5e-4)


def test_integer_and_bool_inputs_compute_in_float64():
    x = np.arange(12, dtype=np.int32).reshape(3, 4)
    y = layer_norm(x, 4)
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, ref.layer_norm(x, 4), rtol=1e-12)
    assert layer_norm(np.eye(3, dtype=bool), 3).dtype == np.float64


def test_out_and_inplace(rng):
    x = rng.standard_normal((5, 8)).astype(np.float32)
    expected = layer_norm(x, 8)
    out = np.empty_like(x)
    assert layer_norm(x, 8, out=out) is out
    np.testing.assert_array_equal(out, expected)
    xc = x.copy()
    assert layer_norm(xc, 8, out=xc) is xc
    np.testing.assert_array_equal(xc, expected)
    out64 = np.empty((5, 8))  # float32 result cast into a float64 out
    layer_norm(x, 8, out=out64)
    np.testing.assert_array_equal(out64, expected.astype(np.float64))
    outT = np.empty((8, 5), np.float32).T  # non-contiguous out
    layer_norm(x, 8, out=outT)
    np.testing.assert_array_equal(outT, expected)


def test_noncontiguous_and_negative_strides(rng):
    base = rng.standard_normal((10, 12, 6))
    for view in (base[::2], base[:, ::-1], base.transpose(1, 0, 2), base[::-1, :, ::-1], base[..., ::2]):
        np.testing.assert_allclose(layer_norm(view, view.shape[-1]), ref.layer_norm(view, view.shape[-1]), rtol=1e-12, atol=1e-12)
        g = np.ones_like(view)
        np.testing.assert_allclose(layer_norm_backward(g, view, view.shape[-1])[0],
                                   ref.layer_norm_backward(g, view, view.shape[-1])[0], atol=1e-12)


def test_zero_size():
    for shape, ns in (((0, 4), 4), ((3, 0), 0), ((2, 0, 3), (0, 3))):
        x = np.ones(shape, np.float32)
        y, mean, rstd = layer_norm(x, ns, return_stats=True)
        assert y.shape == shape and y.dtype == np.float32
        gx, gw, gb = layer_norm_backward(x, x, ns, np.ones(x.shape[1:] if shape[0] == 0 else (ns,) if np.ndim(ns) == 0 else ns, np.float32))
        assert gx.shape == shape


def test_nan_propagates_to_its_row_only():
    x = np.ones((3, 4))
    x[1] = [1.0, 2.0, 3.0, 4.0]
    x[2, 1] = np.nan
    y = layer_norm(x, 4)
    assert np.isnan(y[2]).all()
    assert not np.isnan(y[:2]).any()
    gx, gw, gb = layer_norm_backward(np.ones_like(x), x, 4, np.ones(4))
    assert not np.isnan(gx[:2]).any() and np.isnan(gx[2]).all()


def test_inputs_not_modified(rng):
    x = rng.standard_normal((4, 6))
    w, b, g = rng.standard_normal(6), rng.standard_normal(6), rng.standard_normal((4, 6))
    copies = [a.copy() for a in (x, w, b, g)]
    layer_norm(x, 6, w, b)
    layer_norm_backward(g, x, 6, w)
    for a, c in zip((x, w, b, g), copies):
        np.testing.assert_array_equal(a, c)


def test_repeatable_bitwise(rng):
    x = rng.standard_normal((513, 300)).astype(np.float32)
    g = rng.standard_normal((513, 300)).astype(np.float32)
    w = rng.standard_normal(300).astype(np.float32)
    a = layer_norm_backward(g, x, 300, w)
    for _ in range(3):
        b = layer_norm_backward(g, x, 300, w)
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)
    np.testing.assert_array_equal(layer_norm(x, 300, w), layer_norm(x, 300, w))


def test_parallel_and_serial_paths_agree(rng, monkeypatch):
    from numbanorm import _config

    x = rng.standard_normal((300, 200))
    g = rng.standard_normal((300, 200))
    w = rng.standard_normal(200)
    par = (layer_norm(x, 200, w),) + layer_norm_backward(g, x, 200, w)
    monkeypatch.setattr(_config, "SERIAL_THRESHOLD", 10**12)
    ser = (layer_norm(x, 200, w),) + layer_norm_backward(g, x, 200, w)
    for u, v in zip(par, ser):
        np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-13)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shape=st.lists(st.integers(1, 9), min_size=1, max_size=4),
    k=st.integers(1, 4),
    dtype=st.sampled_from([np.float32, np.float64]),
    offset=st.sampled_from([0.0, 1e3, -1e4]),
    scale=st.sampled_from([1e-2, 1.0, 1e2]),
    seed=st.integers(0, 2**32 - 1),
)
def test_property_matches_reference(shape, k, dtype, offset, scale, seed):
    k = min(k, len(shape))
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * scale + offset).astype(dtype)
    nshape = tuple(shape[len(shape) - k:])
    w = rng.standard_normal(nshape).astype(dtype)
    y = layer_norm(x, nshape, w)
    r = ref.layer_norm(x, nshape, w)
    # float64: the problem's own conditioning (offset / spread) bounds the accuracy
    # float32: element math is float32 (as torch's), so the mean's float32 rounding
    # (half an ulp of the offset) shows up relative to the spread
    tol = 1e-12 * max(1.0, abs(offset) / scale) if dtype == np.float64 else 5e-3 + 2 * 2.0**-23 * abs(offset) / scale
    np.testing.assert_allclose(y, r, rtol=tol, atol=tol)
    gx, gw, gb = layer_norm_backward(np.ones_like(x), x, nshape, w)
    rx, rw, rb = ref.layer_norm_backward(np.ones_like(x), x, nshape, w)
    np.testing.assert_allclose(gb, rb, rtol=tol, atol=tol)
    if dtype == np.float64:
        np.testing.assert_allclose(gx, rx, rtol=100 * tol, atol=100 * tol)


@pytest.mark.parametrize("op", ["layer_norm", "rms_norm"])
def test_streaming_store_path_matches_cached_path(rng, monkeypatch, op):
    """Outputs >= STREAM_BYTES are written with non-temporal stores: same numbers."""
    import importlib

    import numbanorm

    kern = importlib.import_module(f"numbanorm._cpu.{op}")
    fwd, bwd = getattr(numbanorm, op), getattr(numbanorm, op + "_backward")
    x = rng.standard_normal((203, 77)).astype(np.float32)  # odd sizes: unaligned heads and tails
    g = rng.standard_normal((203, 77)).astype(np.float32)
    w = rng.standard_normal(77).astype(np.float32)
    cached = (fwd(x, 77, w),) + tuple(a for a in bwd(g, x, 77, w) if a is not None)
    monkeypatch.setattr(kern, "STREAM_BYTES", 0)
    monkeypatch.setattr(kern, "FORWARD_STREAM_BYTES", 0)
    monkeypatch.setattr(kern, "FORWARD_STREAM_ROW_BYTES", 0)
    streamed = (fwd(x, 77, w),) + tuple(a for a in bwd(g, x, 77, w) if a is not None)
    xc = x.copy()
    fwd(xc, 77, w, out=xc)  # in place through the scratch row
    for u, v in zip(cached, streamed):
        np.testing.assert_array_equal(u, v)
    np.testing.assert_array_equal(xc, cached[0])
