"""group_norm / group_norm_backward: reference twins, PyTorch, LayerNorm/InstanceNorm identities."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from numbanorm import _dispatch, group_norm, group_norm_backward, instance_norm, instance_norm_backward, layer_norm

import reference as ref
from reference import channel_data as _data, channels_last as _last

TOL = {np.float16: 2e-2, np.float32: 2e-5, np.float64: 1e-12}
CASES = [((6, 4), 2), ((3, 6, 7), 3), ((2, 8, 5, 6), 4), ((2, 4, 3, 2, 5), 2), ((2, 6, 5), 1), ((2, 6, 5), 6)]


def _affine(rng, c, dtype=np.float64):
    return rng.standard_normal(c).astype(dtype), rng.standard_normal(c).astype(dtype)


@pytest.mark.parametrize("shape,groups", CASES)
@pytest.mark.parametrize("channel_axis", [1, -1])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_forward_matches_reference(rng, shape, groups, channel_axis, dtype):
    x = _data(rng, shape, dtype, channel_axis)
    w, b = _affine(rng, shape[1], dtype)
    y, mean, rstd = group_norm(x, groups, w, b, channel_axis=channel_axis, return_stats=True)
    assert y.dtype == dtype and y.shape == x.shape
    assert mean.shape == rstd.shape == (shape[0], groups)
    tol = TOL[dtype]
    np.testing.assert_allclose(y, ref.group_norm(x, groups, w, b, channel_axis=channel_axis), rtol=tol, atol=5 * tol)


@pytest.mark.parametrize("shape,groups", CASES)
@pytest.mark.parametrize("channel_axis", [1, -1])
@pytest.mark.parametrize("affine", [True, False])
def test_backward_matches_reference(rng, shape, groups, channel_axis, affine):
    x = _data(rng, shape, channel_axis=channel_axis)
    g = _data(rng, shape, channel_axis=channel_axis)
    w = _affine(rng, shape[1])[0] if affine else None
    gx, gw, gb = group_norm_backward(g, x, groups, w, channel_axis=channel_axis)
    rx, rw, rb = ref.group_norm_backward(g, x, groups, w, channel_axis=channel_axis)
    np.testing.assert_allclose(gx, rx, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(gb, rb, rtol=1e-9, atol=1e-11)
    if affine:
        np.testing.assert_allclose(gw, rw, rtol=1e-9, atol=1e-11)
    else:
        assert gw is None


def test_saved_stats_equal_recomputed(rng):
    for ax in (1, -1):
        x = _data(rng, (4, 6, 9, 5), np.float32, ax)
        g = _data(rng, (4, 6, 9, 5), np.float32, ax)
        w = _affine(rng, 6, np.float32)[0]
        _, mean, rstd = group_norm(x, 3, w, return_stats=True, channel_axis=ax)
        assert mean.dtype == np.float32
        xc = x if ax == 1 else np.moveaxis(x, -1, 1)
        np.testing.assert_allclose(mean, xc.astype(np.float64).reshape(4, 3, -1).mean(-1), rtol=1e-5, atol=1e-6)
        a = group_norm_backward(g, x, 3, w, mean=mean, rstd=rstd, channel_axis=ax)
        b = group_norm_backward(g, x, 3, w, channel_axis=ax)
        for u, v in zip(a, b):
            np.testing.assert_allclose(u, v, rtol=2e-5, atol=1e-5)


def test_one_group_is_layer_norm_and_c_groups_is_instance_norm(rng):
    x = _data(rng, (3, 4, 5, 6))
    g = _data(rng, (3, 4, 5, 6))
    np.testing.assert_allclose(group_norm(x, 1), layer_norm(x, x.shape[1:]), rtol=1e-12, atol=1e-12)
    w, b = _affine(rng, 4)
    wl = np.broadcast_to(w[:, None, None], x.shape[1:])
    bl = np.broadcast_to(b[:, None, None], x.shape[1:])
    np.testing.assert_allclose(group_norm(x, 1, w, b), layer_norm(x, x.shape[1:], wl, bl), rtol=1e-12, atol=1e-12)
    from numbanorm import layer_norm_backward

    gx, gw, gb = group_norm_backward(g, x, 1, w)
    lx, lw, lb = layer_norm_backward(g, x, x.shape[1:], wl)
    np.testing.assert_allclose(gx, lx, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gw, lw.sum(axis=(1, 2)), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gb, lb.sum(axis=(1, 2)), rtol=1e-10, atol=1e-12)
    for ax, xx, gg in ((1, x, g), (-1, _last(x), _last(g))):
        np.testing.assert_allclose(group_norm(xx, 4, w, b, channel_axis=ax),
                                   instance_norm(xx, None, None, w, b, channel_axis=ax), rtol=1e-12, atol=1e-12)
        for u, v in zip(group_norm_backward(gg, xx, 4, w, channel_axis=ax),
                        instance_norm_backward(gg, xx, w, channel_axis=ax)):
            np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape,groups", CASES)
@pytest.mark.parametrize("channel_axis", [1, -1])
def test_torch_parity_forward_stats_and_autograd(torch, rng, shape, groups, channel_axis):
    F = torch.nn.functional
    x = _data(rng, shape)
    g = _data(rng, shape)
    w, b = _affine(rng, shape[1])
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = F.group_norm(tx, groups, tw, tb, eps=1e-4)
    ty.backward(torch.tensor(g))
    xin, gin = (a if channel_axis == 1 else _last(a) for a in (x, g))
    y, mean, rstd = group_norm(xin, groups, w, b, eps=1e-4, channel_axis=channel_axis, return_stats=True)
    y = ref.channels_first(y, channel_axis)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    n, c = shape[:2]
    _, tmean, trstd = torch.native_group_norm(torch.tensor(x), None, None, n, c, x.size // (n * c), groups, 1e-4)
    np.testing.assert_allclose(mean, tmean.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(rstd, trstd.numpy(), rtol=1e-12)
    ref.assert_torch_grads(group_norm_backward(gin, xin, groups, w, eps=1e-4, channel_axis=channel_axis), (tx, tw, tb), channel_axis)


def test_torch_parity_float32(torch, rng):
    x = _data(rng, (4, 32, 9, 9), np.float32)
    t = torch.nn.functional.group_norm(torch.tensor(x), 8).numpy()
    np.testing.assert_allclose(group_norm(x, 8), t, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(group_norm(_last(x), 8, channel_axis=-1), _last(t), rtol=1e-4, atol=1e-5)


def test_finite_differences(rng):
    for ax in (1, -1):
        x = _data(rng, (2, 4, 3), channel_axis=ax)
        w, b = _affine(rng, 4)
        g = _data(rng, x.shape)
        gx, gw, gb = group_norm_backward(g, x, 2, w, channel_axis=ax)

        def loss(xx, ww, bb):
            return float((group_norm(xx, 2, ww, bb, channel_axis=ax) * g).sum())

        ref.assert_matches_differences(loss, dict(xx=x, ww=w, bb=b), dict(xx=gx, ww=gw, bb=gb))


@pytest.mark.parametrize("path", ["fused", "generic"])
def test_kernel_paths_match_reference(rng, monkeypatch, path):
    """Both CPU kernel families (fused rows/slab and generic chunks) on multi-block shapes."""
    from numbanorm._cpu import _channels

    if path == "generic":
        monkeypatch.setattr(_channels, "_path", lambda x, groups: "generic")
    else:
        monkeypatch.setattr(_channels, "SLAB_MIN_BATCH", 1)
        monkeypatch.setattr(_channels, "ROWS_MIN", 1)
    for ax in (1, -1):
        x = _data(rng, (3, 8, 20, 31), channel_axis=ax)  # 620 positions: several BLOCKs
        g = _data(rng, (3, 8, 20, 31), channel_axis=ax)
        w, b = _affine(rng, 8)
        for groups in (2, 8):
            np.testing.assert_allclose(group_norm(x, groups, w, b, channel_axis=ax),
                                       ref.group_norm(x, groups, w, b, channel_axis=ax), rtol=1e-11, atol=1e-11)
            for u, v in zip(group_norm_backward(g, x, groups, w, channel_axis=ax),
                            ref.group_norm_backward(g, x, groups, w, channel_axis=ax)):
                np.testing.assert_allclose(u, v, rtol=1e-9, atol=1e-10)
            x32 = (x + 3e3).astype(np.float32)
            np.testing.assert_allclose(group_norm(x32, groups, w, b, channel_axis=ax),
                                       ref.group_norm(x32, groups, w, b, channel_axis=ax), rtol=1e-3, atol=1e-3)
            gx = group_norm_backward(g.astype(np.float32), x32, groups, w.astype(np.float32), channel_axis=ax)[0]
            rx = ref.group_norm_backward(g.astype(np.float32), x32, groups, w, channel_axis=ax)[0]
            np.testing.assert_allclose(gx, rx, rtol=1e-3, atol=1e-3)


def test_2d_inputs_take_the_rows_kernel(rng, monkeypatch):
    """(N, C) inputs run the rows path's I = 1 kernel (serial and on the pool), as the reference."""
    from numbanorm import _config
    from numbanorm._cpu import _channels, _threads

    assert _channels._forward_path(np.empty((64, 1, 600, 1)), 4) == "rows"
    assert _channels._path(np.empty((64, 1, 600, 1)), 4) == "slab"  # the backward's
    assert _channels._forward_path(np.empty((1, 64, 600, 1)), 600) == "generic"  # BatchNorm
    for shape, serial in (((16, 64), True), ((64, 600), True), ((64, 600), False)):  # small plain call; rows
        x = _data(rng, shape)  # of 150 and 300 values (over one BLOCK), one chunk and on the pool
        w, b = _affine(rng, shape[1])
        if not serial:
            monkeypatch.setattr(_config, "SERIAL_THRESHOLD", 1)
            monkeypatch.setattr(_threads, "PASS_GRAIN", 1024)
        for groups in (2, 4):
            for ax in (1, -1):
                y, mean, rstd = group_norm(x, groups, w, b, channel_axis=ax, return_stats=True)
                np.testing.assert_allclose(y, ref.group_norm(x, groups, w, b, channel_axis=ax), rtol=1e-11,
                                           atol=1e-11)
                np.testing.assert_allclose(group_norm(x, groups, w, b, channel_axis=ax), y, rtol=1e-15, atol=1e-15)
            x32 = (x + 3e3).astype(np.float32)
            np.testing.assert_allclose(group_norm(x32, groups, w.astype(np.float32), b.astype(np.float32)),
                                       ref.group_norm(x32, groups, w, b), rtol=1e-3, atol=1e-3)


def test_float32_large_offset(rng):
    x = (rng.standard_normal((4, 32, 24, 24)) + 1e4).astype(np.float32)
    for ax, xx in ((1, x), (-1, _last(x))):
        y = group_norm(xx, 8, channel_axis=ax)
        np.testing.assert_allclose(y, ref.group_norm(xx, 8, channel_axis=ax), atol=1e-2)
        gx = group_norm_backward(np.ones_like(xx), xx, 8, channel_axis=ax)[0]
        assert np.abs(gx).max() < 1e-2


def test_dtypes_out_inplace_and_layouts(rng):
    x = rng.integers(-4, 4, (3, 4, 5)).astype(np.int16)
    y = group_norm(x, 2)
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, ref.group_norm(x, 2), rtol=1e-12, atol=1e-12)
    x = _data(rng, (3, 4, 5), np.float32)
    expected = group_norm(x, 2)
    out = np.empty_like(x)
    assert group_norm(x, 2, out=out) is out
    np.testing.assert_array_equal(out, expected)
    xc = x.copy()
    group_norm(xc, 2, out=xc)
    np.testing.assert_array_equal(xc, expected)
    out16 = np.empty(x.shape, np.float64)[:, :, ::1]
    group_norm(x, 2, out=out16)
    np.testing.assert_array_equal(out16, expected)
    base = _data(rng, (6, 4, 10))
    for view in (base[::2], base[:, ::-1], base[..., ::3], np.moveaxis(base, 1, -1)):
        ax = -1 if view.shape[-1] == 4 else 1
        np.testing.assert_allclose(group_norm(view, 2, channel_axis=ax), ref.group_norm(view, 2, channel_axis=ax),
                                   rtol=1e-12, atol=1e-12)
    x5 = _data(rng, (2, 3, 4, 6))
    np.testing.assert_allclose(group_norm(x5, 2, channel_axis=2), ref.group_norm(x5, 2, channel_axis=2), atol=1e-12)
    np.testing.assert_allclose(group_norm_backward(x5, x5, 2, channel_axis=-2)[0],
                               ref.group_norm_backward(x5, x5, 2, channel_axis=-2)[0], atol=1e-11)


def test_zero_size_and_nan():
    for shape in ((0, 4, 3), (2, 4, 0), (2, 0, 3)):
        x = np.ones(shape, np.float32)
        groups = 2 if shape[1] else 1
        y, mean, rstd = group_norm(x, groups, return_stats=True)
        assert y.shape == shape and mean.shape == (shape[0], groups)
        assert group_norm_backward(x, x, groups)[0].shape == shape
    x = np.arange(48.0).reshape(2, 4, 6)
    x[1, 3, 2] = np.nan
    y = group_norm(x, 2)
    assert np.isnan(y[1, 2:]).all() and not np.isnan(y[0]).any() and not np.isnan(y[1, :2]).any()
    gx = group_norm_backward(np.ones_like(x), x, 2)[0]
    assert np.isnan(gx[1, 2:]).all() and not np.isnan(gx[0]).any()


def test_inputs_not_modified_and_repeatable(rng):
    x = _data(rng, (8, 16, 30, 31), np.float32, -1)
    g = _data(rng, (8, 16, 30, 31), np.float32, -1)
    w, b = _affine(rng, 16, np.float32)
    copies = [a.copy() for a in (x, g, w, b)]
    a = (group_norm(x, 4, w, b, channel_axis=-1),) + group_norm_backward(g, x, 4, w, channel_axis=-1)
    c = (group_norm(x, 4, w, b, channel_axis=-1),) + group_norm_backward(g, x, 4, w, channel_axis=-1)
    for u, v in zip(a, c):
        np.testing.assert_array_equal(u, v)
    for u, v in zip((x, g, w, b), copies):
        np.testing.assert_array_equal(u, v)


def test_validation_errors(rng):
    x = _data(rng, (2, 6, 5))
    out = np.full(x.shape, 3.0)
    bad = [
        (ValueError, "num_groups", lambda: group_norm(x, 4, out=out)),
        (ValueError, "num_groups", lambda: group_norm(x, 0, out=out)),
        (TypeError, "num_groups", lambda: group_norm(x, 2.0, out=out)),
        (ValueError, "weight", lambda: group_norm(x, 2, np.ones(5), out=out)),
        (ValueError, "bias", lambda: group_norm(x, 2, None, np.ones(7), out=out)),
        (ValueError, "eps", lambda: group_norm(x, 2, eps=-1e-5, out=out)),
        (ValueError, "channel_axis", lambda: group_norm(x, 2, channel_axis=0, out=out)),
        (TypeError, "x", lambda: group_norm(x.astype(object), 2, out=out)),
        (ValueError, "out", lambda: group_norm(x, 2, out=np.empty((2, 6)))),
    ]
    for exc, words, call in bad:
        with pytest.raises(exc, match=words) as info:
            call()
        assert "group_norm()" in str(info.value)
    np.testing.assert_array_equal(out, 3.0)
    with pytest.raises(ValueError, match="mean"):
        group_norm_backward(x, x, 2, mean=np.zeros((2, 3)), rstd=np.ones((2, 3)))
    with pytest.raises(ValueError, match="num_groups"):
        group_norm_backward(x, x, 5)
    with pytest.raises(ValueError, match="grad_out"):
        group_norm_backward(x[:1], x, 2)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 4),
    groups=st.integers(1, 4),
    cg=st.integers(1, 3),
    spatial=st.lists(st.integers(1, 5), min_size=0, max_size=3),
    channel_axis=st.sampled_from([1, -1]),
    dtype=st.sampled_from([np.float32, np.float64]),
    offset=st.sampled_from([0.0, 1e3, -1e4]),
    seed=st.integers(0, 2**32 - 1),
)
def test_property_matches_reference(n, groups, cg, spatial, channel_axis, dtype, offset, seed):
    rng = np.random.default_rng(seed)
    shape = (n, groups * cg, *spatial)
    x = (rng.standard_normal(shape) + offset).astype(dtype)
    x = x if channel_axis == 1 else _last(x)
    w, b = _affine(rng, groups * cg, dtype)
    y = group_norm(x, groups, w, b, channel_axis=channel_axis)
    r = ref.group_norm(x, groups, w, b, channel_axis=channel_axis)
    tol = 1e-12 * max(1.0, abs(offset)) if dtype == np.float64 else 5e-3
    if x.size // (n * groups) == 1:  # a single value per group: y = b exactly
        tol = max(tol, 1e-6)
    np.testing.assert_allclose(y, r, rtol=tol, atol=tol)
    g = rng.standard_normal(x.shape).astype(dtype)
    gx, gw, gb = group_norm_backward(g, x, groups, w, channel_axis=channel_axis)
    rx, rw, rb = ref.group_norm_backward(g, x, groups, w, channel_axis=channel_axis)
    np.testing.assert_allclose(gb, rb, rtol=tol, atol=10 * tol)
    if dtype == np.float64 and offset == 0.0:
        np.testing.assert_allclose(gx, rx, rtol=1e-8, atol=1e-8)


@pytest.mark.cuda
@pytest.mark.parametrize("shape,groups,channel_axis", [((2, 6, 5, 4), 3, 1), ((3, 4, 9), 2, -1), ((2, 4, 3), 1, 1)])
def test_gpu_matches_cpu(rng, small_blocks, shape, groups, channel_axis):
    x = _data(rng, shape, np.float32, channel_axis)
    g = _data(rng, shape, np.float32, channel_axis)
    w, b = _affine(rng, shape[1], np.float32)
    cpu = group_norm(x, groups, w, b, channel_axis=channel_axis, return_stats=True)
    cpu_b = group_norm_backward(g, x, groups, w, channel_axis=channel_axis)
    with _dispatch.force_device("cuda"):
        gpu = group_norm(x, groups, w, b, channel_axis=channel_axis, return_stats=True)
        gpu_b = group_norm_backward(g, x, groups, w, channel_axis=channel_axis)
        gpu_s = group_norm_backward(g, x, groups, w, channel_axis=channel_axis, mean=gpu[1], rstd=gpu[2])
    for u, v in zip(cpu + cpu_b + cpu_b, gpu + gpu_b + gpu_s):
        assert isinstance(v, np.ndarray) and v.dtype == u.dtype
        np.testing.assert_allclose(v, u, rtol=1e-5, atol=1e-5)
