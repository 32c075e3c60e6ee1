"""instance_norm / instance_norm_backward: reference twins, PyTorch, running statistics, gradients."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from numbanorm import _dispatch, instance_norm, instance_norm_backward

import reference as ref
from reference import channel_data as _data, channel_pair as _pair, channels_last as _last

TOL = {np.float16: 2e-2, np.float32: 2e-5, np.float64: 1e-12}
SHAPES = [(4, 3, 7), (3, 4, 5, 6), (2, 3, 2, 3, 4)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("channel_axis", [1, -1])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("use_input_stats", [True, False])
def test_forward_and_running_stats_match_reference(rng, shape, channel_axis, dtype, use_input_stats):
    c = shape[1]
    x = _data(rng, shape, dtype, channel_axis)
    w, b = (a.astype(dtype) for a in _pair(rng, c))
    rm, rv = _pair(rng, c)
    rm_r, rv_r = rm.copy(), rv.copy()
    y, mean, rstd = instance_norm(x, rm, rv, w, b, use_input_stats, momentum=0.2, channel_axis=channel_axis,
                                  return_stats=True)
    r = ref.instance_norm(x, rm_r, rv_r, w, b, use_input_stats, momentum=0.2, channel_axis=channel_axis)
    assert y.dtype == dtype and y.shape == x.shape and mean.shape == rstd.shape == (shape[0], c)
    tol = TOL[dtype]
    np.testing.assert_allclose(y, r, rtol=tol, atol=5 * tol)
    rtol = 1e-13 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(rm, rm_r, rtol=rtol, atol=1e-7)
    np.testing.assert_allclose(rv, rv_r, rtol=rtol, atol=1e-7)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("channel_axis", [1, -1])
@pytest.mark.parametrize("affine", [True, False])
def test_backward_matches_reference(rng, shape, channel_axis, affine):
    x = _data(rng, shape, channel_axis=channel_axis)
    g = _data(rng, shape, channel_axis=channel_axis)
    w = _pair(rng, shape[1])[0] if affine else None
    gx, gw, gb = instance_norm_backward(g, x, w, channel_axis=channel_axis)
    rx, rw, rb = ref.instance_norm_backward(g, x, w, channel_axis=channel_axis)
    np.testing.assert_allclose(gx, rx, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(gb, rb, rtol=1e-9, atol=1e-11)
    if affine:
        np.testing.assert_allclose(gw, rw, rtol=1e-9, atol=1e-11)
    else:
        assert gw is None


def test_saved_stats(rng):
    x = _data(rng, (3, 5, 8, 7), np.float32)
    g = _data(rng, (3, 5, 8, 7), np.float32)
    w = _pair(rng, 5, np.float32)[0]
    _, mean, rstd = instance_norm(x, weight=w, return_stats=True)
    np.testing.assert_allclose(mean, x.astype(np.float64).mean(axis=(2, 3)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rstd, 1 / np.sqrt(x.astype(np.float64).var(axis=(2, 3)) + 1e-5), rtol=1e-5)
    a = instance_norm_backward(g, x, w, mean=mean, rstd=rstd)
    b = instance_norm_backward(g, x, w)
    for u, v in zip(a, b):
        np.testing.assert_allclose(u, v, rtol=2e-5, atol=1e-5)
    rm, rv = _pair(rng, 5, np.float32)
    _, m2, r2 = instance_norm(x, rm, rv, use_input_stats=False, return_stats=True)
    np.testing.assert_allclose(m2, np.broadcast_to(rm, (3, 5)))
    np.testing.assert_allclose(r2, np.broadcast_to(1 / np.sqrt(rv + 1e-5), (3, 5)), rtol=1e-6)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("channel_axis", [1, -1])
def test_torch_parity(torch, rng, shape, channel_axis):
    F = torch.nn.functional
    c = shape[1]
    x = _data(rng, shape)
    g = _data(rng, shape)
    w, b = _pair(rng, c)
    rm, rv = _pair(rng, c)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    trm, trv = torch.tensor(rm), torch.tensor(rv)
    ty = F.instance_norm(tx, trm, trv, tw, tb, use_input_stats=True, momentum=0.3, eps=1e-4)
    ty.backward(torch.tensor(g))
    xin, gin = (a if channel_axis == 1 else _last(a) for a in (x, g))
    y = instance_norm(xin, rm, rv, w, b, True, 0.3, 1e-4, channel_axis=channel_axis)
    y = ref.channels_first(y, channel_axis)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(rm, trm.numpy(), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(rv, trv.numpy(), rtol=1e-13, atol=1e-15)
    ref.assert_torch_grads(instance_norm_backward(gin, xin, w, eps=1e-4, channel_axis=channel_axis), (tx, tw, tb), channel_axis)
    te = F.instance_norm(torch.tensor(x), trm, trv, torch.tensor(w), torch.tensor(b), use_input_stats=False, eps=1e-4)
    ye = instance_norm(xin, rm, rv, w, b, use_input_stats=False, eps=1e-4, channel_axis=channel_axis)
    ye = ref.channels_first(ye, channel_axis)
    np.testing.assert_allclose(ye, te.numpy(), rtol=1e-12, atol=1e-12)


def test_torch_parity_float32_module(torch, rng):
    mod = torch.nn.InstanceNorm2d(4, affine=True, track_running_stats=True, momentum=0.25)
    rm, rv = np.zeros(4, np.float32), np.ones(4, np.float32)
    w = mod.weight.detach().numpy()
    b = mod.bias.detach().numpy()
    for step in range(3):
        x = (rng.standard_normal((5, 4, 6, 7)) * (step + 1) - step).astype(np.float32)
        t = mod(torch.tensor(x)).detach().numpy()
        np.testing.assert_allclose(instance_norm(x, rm, rv, w, b, momentum=0.25), t, rtol=1e-4, atol=2e-5)
        np.testing.assert_allclose(rm, mod.running_mean.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(rv, mod.running_var.numpy(), rtol=1e-5, atol=1e-6)
    mod.eval()
    x = rng.standard_normal((2, 4, 6, 7)).astype(np.float32)
    np.testing.assert_allclose(instance_norm(x, rm, rv, w, b, use_input_stats=False),
                               mod(torch.tensor(x)).detach().numpy(), rtol=1e-5, atol=1e-5)


def test_cumulative_average_and_paddle(rng):
    x = _data(rng, (3, 2, 10))
    mean = x.mean(axis=2).mean(axis=0)
    var_b = x.var(axis=2).mean(axis=0)
    rm, rv = np.full(2, 1.0), np.full(2, 2.0)
    nbt = np.array([1], np.int32)
    instance_norm(x, rm, rv, momentum=None, num_batches_tracked=nbt)
    np.testing.assert_allclose(rm, 0.5 * 1.0 + 0.5 * mean, rtol=1e-13)
    np.testing.assert_allclose(rv, 0.5 * 2.0 + 0.5 * var_b * 10 / 9, rtol=1e-13)
    assert nbt[0] == 2
    rm, rv = np.full(2, 1.0), np.full(2, 2.0)
    instance_norm(x, rm, rv, momentum=1 - 0.9, unbiased_running_var=False)
    np.testing.assert_allclose(rm, 0.9 * 1.0 + 0.1 * mean, rtol=1e-13)
    np.testing.assert_allclose(rv, 0.9 * 2.0 + 0.1 * var_b, rtol=1e-13)


def test_finite_differences(rng):
    for ax in (1, -1):
        x = _data(rng, (2, 3, 4), channel_axis=ax)
        w, b = _pair(rng, 3)
        g = _data(rng, x.shape)
        gx, gw, gb = instance_norm_backward(g, x, w, channel_axis=ax)

        def loss(xx, ww, bb):
            return float((instance_norm(xx, None, None, ww, bb, channel_axis=ax) * g).sum())

        ref.assert_matches_differences(loss, dict(xx=x, ww=w, bb=b), dict(xx=gx, ww=gw, bb=gb))


def test_float32_large_offset(rng):
    x = (rng.standard_normal((4, 8, 32, 32)) + 1e4).astype(np.float32)
    for ax, xx in ((1, x), (-1, _last(x))):
        rm, rv = np.zeros(8, np.float32), np.ones(8, np.float32)
        y = instance_norm(xx, rm, rv, channel_axis=ax)
        np.testing.assert_allclose(y, ref.instance_norm(xx, channel_axis=ax), atol=1e-2)
        var = x.astype(np.float64).var(axis=(2, 3), ddof=1).mean(axis=0)
        np.testing.assert_allclose(rv, 0.9 + 0.1 * var, rtol=1e-4)
        assert np.abs(instance_norm_backward(np.ones_like(xx), xx, channel_axis=ax)[0]).max() < 1e-2


def test_out_inplace_noncontiguous_zero_size(rng):
    x = _data(rng, (3, 4, 6), np.float32)
    expected = instance_norm(x)
    xc = x.copy()
    assert instance_norm(xc, out=xc) is xc
    np.testing.assert_array_equal(xc, expected)
    out = np.empty((6, 4, 3), np.float64).transpose(2, 1, 0)
    instance_norm(x, out=out)
    np.testing.assert_array_equal(out, expected)
    base = _data(rng, (4, 3, 12))
    for view in (base[::2], base[:, ::-1], base[..., ::-2]):
        np.testing.assert_allclose(instance_norm(view), ref.instance_norm(view), rtol=1e-12, atol=1e-12)
    for shape in ((0, 3, 4), (2, 3, 0)):
        z = np.ones(shape)
        rm, rv = np.zeros(3), np.ones(3)
        y, mean, _ = instance_norm(z, rm, rv, return_stats=True)
        assert y.shape == shape and mean.shape == (shape[0], 3)
        np.testing.assert_array_equal(rm, 0.0)
        assert instance_norm_backward(z, z)[0].shape == shape
    y = instance_norm(np.arange(12).reshape(2, 2, 3))
    assert y.dtype == np.float64


def test_validation_errors_leave_running_stats_untouched(rng):
    x = _data(rng, (2, 3, 5))
    rm, rv = _pair(rng, 3)
    rm0, rv0 = rm.copy(), rv.copy()
    bad = [
        (ValueError, "more than 1 spatial element", lambda: instance_norm(x[:, :, :1], rm, rv)),
        (ValueError, "more than 1 spatial element", lambda: instance_norm(x[:, :, 0], rm, rv)),
        (ValueError, "required when use_input_stats=False", lambda: instance_norm(x, use_input_stats=False)),
        (ValueError, "running_mean", lambda: instance_norm(x, np.zeros(4), rv)),
        (ValueError, "together", lambda: instance_norm(x, None, rv)),
        (ValueError, "weight", lambda: instance_norm(x, rm, rv, np.ones(2))),
        (ValueError, "bias", lambda: instance_norm(x, rm, rv, None, np.ones(4))),
        (ValueError, "eps", lambda: instance_norm(x, rm, rv, eps=float("inf"))),
        (ValueError, "out", lambda: instance_norm(x, rm, rv, out=np.empty(3))),
        (TypeError, "use_input_stats", lambda: instance_norm(x, rm, rv, use_input_stats=None)),
        (TypeError, "running_var", lambda: instance_norm(x, rm, rv.astype(np.int64))),
    ]
    for exc, words, call in bad:
        with pytest.raises(exc, match=words) as info:
            call()
        assert "instance_norm()" in str(info.value)
        np.testing.assert_array_equal(rm, rm0)
        np.testing.assert_array_equal(rv, rv0)
    # eval mode accepts one spatial element
    assert instance_norm(x[:, :, 0], rm, rv, use_input_stats=False).shape == (2, 3)
    with pytest.raises(ValueError, match="mean"):
        instance_norm_backward(x, x, mean=np.zeros(3), rstd=np.ones(3))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shape=st.lists(st.integers(1, 5), min_size=3, max_size=5),
    channel_axis=st.sampled_from([1, -1]),
    dtype=st.sampled_from([np.float32, np.float64]),
    offset=st.sampled_from([0.0, 1e3, -1e4]),
    seed=st.integers(0, 2**32 - 1),
)
def test_property_matches_reference(shape, channel_axis, dtype, offset, seed):
    rng = np.random.default_rng(seed)
    shape[2 if channel_axis == 1 else 1] += 1  # more than one spatial element
    x = (rng.standard_normal(shape) + offset).astype(dtype)
    c = shape[channel_axis]
    w, b = (a.astype(dtype) for a in _pair(rng, c))
    rm, rv = _pair(rng, c)
    rm_r, rv_r = rm.copy(), rv.copy()
    y = instance_norm(x, rm, rv, w, b, channel_axis=channel_axis)
    r = ref.instance_norm(x, rm_r, rv_r, w, b, channel_axis=channel_axis)
    tol = 1e-12 * max(1.0, abs(offset)) if dtype == np.float64 else 5e-3
    np.testing.assert_allclose(y, r, rtol=tol, atol=tol)
    # float32 data: statistics carry float32 rounding of the shifted values (~1e-7 relative)
    stol = 1e-9 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(rm, rm_r, rtol=stol, atol=stol)
    np.testing.assert_allclose(rv, rv_r, rtol=stol, atol=stol)
    g = rng.standard_normal(shape).astype(dtype)
    gx, gw, gb = instance_norm_backward(g, x, w, channel_axis=channel_axis)
    rx, rw, rb = ref.instance_norm_backward(g, x, w, channel_axis=channel_axis)
    np.testing.assert_allclose(gb, rb, rtol=tol, atol=10 * tol)
    if dtype == np.float64 and offset == 0.0:
        np.testing.assert_allclose(gx, rx, rtol=1e-8, atol=1e-8)


@pytest.mark.cuda
@pytest.mark.parametrize("shape,channel_axis", [((2, 3, 5, 4), 1), ((3, 6, 4), -1)])
def test_gpu_matches_cpu(rng, small_blocks, shape, channel_axis):
    x = _data(rng, shape, np.float32, channel_axis)
    g = _data(rng, shape, np.float32, channel_axis)
    c = x.shape[channel_axis]
    w, b = _pair(rng, c, np.float32)
    rm, rv = _pair(rng, c, np.float32)
    cpu_rm, cpu_rv = rm.copy(), rv.copy()
    cpu = instance_norm(x, cpu_rm, cpu_rv, w, b, channel_axis=channel_axis, return_stats=True)
    cpu_e = instance_norm(x, rm, rv, w, b, use_input_stats=False, channel_axis=channel_axis)
    cpu_b = instance_norm_backward(g, x, w, channel_axis=channel_axis)
    gpu_rm, gpu_rv = rm.copy(), rv.copy()
    with _dispatch.force_device("cuda"):
        gpu = instance_norm(x, gpu_rm, gpu_rv, w, b, channel_axis=channel_axis, return_stats=True)
        gpu_e = instance_norm(x, rm, rv, w, b, use_input_stats=False, channel_axis=channel_axis)
        gpu_b = instance_norm_backward(g, x, w, channel_axis=channel_axis)
    for u, v in zip(cpu + (cpu_e,) + cpu_b, gpu + (gpu_e,) + gpu_b):
        assert isinstance(v, np.ndarray) and v.dtype == u.dtype
        np.testing.assert_allclose(v, u, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gpu_rm, cpu_rm, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(gpu_rv, cpu_rv, rtol=1e-6, atol=1e-7)
