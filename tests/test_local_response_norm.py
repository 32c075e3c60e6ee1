"""local_response_norm / _backward: PyTorch parity, reference twins, finite differences, properties."""
import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from numbanorm import _dispatch, local_response_norm, local_response_norm_backward

import reference as ref

LRN = local_response_norm
LRNB = local_response_norm_backward


def _torch_within(torch, x, size, alpha, beta, k):
    """The within-channel analogue built from torch ops: zero pad (size//2 before,
    (size-1)//2 after) every spatial dim, average-pool the squares with a size**d window."""
    F = torch.nn.functional
    nd = x.dim() - 2
    lo, hi = size // 2, (size - 1) // 2
    sq = F.pad(x * x, (lo, hi) * nd)
    pool = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[nd]
    return x / (k + alpha * pool(sq, size, stride=1)) ** beta


# ----------------------------------------------------------------- PyTorch parity


@pytest.mark.parametrize("shape", [(2, 7, 5), (2, 6, 3, 4), (1, 5, 2, 3, 2), (2, 3, 4, 2, 2, 2), (3, 4, 1)])
@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 8, 11])
def test_torch_parity_across_channels(torch, rng, shape, size):
    F = torch.nn.functional
    x = rng.standard_normal(shape)
    g = rng.standard_normal(shape)
    tx = torch.tensor(x, requires_grad=True)
    ty = F.local_response_norm(tx, size, alpha=0.3, beta=0.75, k=1.5)
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(LRN(x, size, 0.3, 0.75, 1.5), ty.detach().numpy(), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(LRNB(g, x, size, 0.3, 0.75, 1.5), tx.grad.numpy(), rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("beta", [0.75, 0.5, 1.0, 0.25, 0.6, 2.0, 0.0])
def test_torch_parity_betas_and_defaults(torch, rng, beta):
    F = torch.nn.functional
    x = rng.standard_normal((2, 9, 4, 3)) * 5
    g = rng.standard_normal(x.shape)
    tx = torch.tensor(x, requires_grad=True)
    F.local_response_norm(tx, 5, alpha=0.5, beta=beta, k=2.0).backward(torch.tensor(g))
    np.testing.assert_allclose(LRN(x, 5, 0.5, beta, 2.0), F.local_response_norm(torch.tensor(x), 5, 0.5, beta, 2.0).numpy(),
                               rtol=1e-13)
    np.testing.assert_allclose(LRNB(g, x, 5, 0.5, beta, 2.0), tx.grad.numpy(), rtol=1e-10, atol=1e-13)
    # torch's defaults (alpha=1e-4, beta=0.75, k=1) are ours
    np.testing.assert_allclose(LRN(x, 3), F.local_response_norm(torch.tensor(x), 3).numpy(), rtol=1e-14)


@pytest.mark.parametrize("shape,size", [((4, 64, 9, 9), 5), ((2, 96, 7, 7), 5), ((3, 10, 20), 4)])
def test_torch_parity_float32(torch, rng, shape, size):
    F = torch.nn.functional
    x = (rng.standard_normal(shape) * 20).astype(np.float32)
    g = rng.standard_normal(shape).astype(np.float32)
    tx = torch.tensor(x, requires_grad=True)
    ty = F.local_response_norm(tx, size, alpha=1e-3, beta=0.75, k=2.0)
    ty.backward(torch.tensor(g))
    y = LRN(x, size, 1e-3, 0.75, 2.0)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=3e-6, atol=1e-6)
    np.testing.assert_allclose(LRNB(g, x, size, 1e-3, 0.75, 2.0), tx.grad.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("shape", [(2, 3, 9), (2, 3, 6, 5), (1, 2, 4, 3, 5)])
@pytest.mark.parametrize("size", [1, 2, 3, 4, 5])
def test_torch_within_channel_analogue(torch, rng, shape, size):
    x = rng.standard_normal(shape)
    g = rng.standard_normal(shape)
    tx = torch.tensor(x, requires_grad=True)
    ty = _torch_within(torch, tx, size, 0.7, 0.75, 1.2)
    ty.backward(torch.tensor(g))
    kw = dict(mode="within_channel")
    np.testing.assert_allclose(LRN(x, size, 0.7, 0.75, 1.2, **kw), ty.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(LRNB(g, x, size, 0.7, 0.75, 1.2, **kw), tx.grad.numpy(), rtol=1e-10, atol=1e-13)


# ----------------------------------------------------------------- paper convention / reference twins


def test_worked_example():
    # 4 channels, (k, alpha, beta, n) = (0, 1, 1, 2): channel 0 holds 1 and its neighbour 1 holds 1
    x = np.zeros((1, 4, 1))
    x[0, 0] = x[0, 1] = 1.0
    y = LRN(x, 2, alpha=1.0, beta=1.0, k=0.0, convention="paper")
    assert y[0, 0, 0] == 0.5 and y[0, 1, 0] == 0.5  # 1 / (1² + 1²)
    # channels-last, and the torch convention (alpha / n, window [i-1, i]) for contrast
    xl = np.moveaxis(x, 1, -1)
    np.testing.assert_array_equal(LRN(xl, 2, 1.0, 1.0, 0.0, convention="paper", channel_axis=-1)[0, 0, :2], [0.5, 0.5])
    assert LRN(x, 2, alpha=1.0, beta=1.0, k=0.0)[0, 0, 0] == 2.0  # 1 / ((0 + 1²) / 2)


ALL = list(itertools.product(["across_channels", "within_channel"], ["torch", "paper"], [1, -1]))


@pytest.mark.parametrize("mode,convention,channel_axis", ALL)
@pytest.mark.parametrize("shape", [(2, 3, 7), (2, 5, 6, 5), (1, 2, 4, 3, 5), (3, 70, 20, 9)])
def test_matches_reference(rng, mode, convention, channel_axis, shape):
    x = rng.standard_normal(shape)
    g = rng.standard_normal(shape)
    kw = dict(mode=mode, convention=convention, channel_axis=channel_axis)
    for size in (1, 2, 3, 5, 6):
        np.testing.assert_allclose(LRN(x, size, 0.3, 0.75, 1.5, **kw), ref.local_response_norm(x, size, 0.3, 0.75, 1.5, **kw),
                                   rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(LRNB(g, x, size, 0.3, 0.6, 1.5, **kw),
                                   ref.local_response_norm_backward(g, x, size, 0.3, 0.6, 1.5, **kw), rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("mode,convention,channel_axis", ALL)
def test_finite_differences(rng, mode, convention, channel_axis):
    x = rng.standard_normal((2, 3, 4, 3))
    g = rng.standard_normal(x.shape)
    kw = dict(mode=mode, convention=convention, channel_axis=channel_axis)
    for size, beta in ((2, 0.75), (3, 1.3)):
        gx = LRNB(g, x, size, 0.5, beta, 1.0, **kw)
        h = 1e-6
        num = np.zeros_like(x)
        for idx in np.ndindex(x.shape):
            d = np.zeros_like(x)
            d[idx] = h
            num[idx] = ((LRN(x + d, size, 0.5, beta, 1.0, **kw) - LRN(x - d, size, 0.5, beta, 1.0, **kw)) * g).sum() / (2 * h)
        np.testing.assert_allclose(gx, num, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("mode,convention", [("across_channels", "torch"), ("within_channel", "paper")])
def test_channels_last_is_moved_channels_first(rng, mode, convention):
    x = rng.standard_normal((2, 6, 5, 4))
    g = rng.standard_normal(x.shape)
    kw = dict(mode=mode, convention=convention)
    xl, gl = np.moveaxis(x, 1, -1), np.moveaxis(g, 1, -1)
    np.testing.assert_allclose(LRN(xl, 3, channel_axis=-1, **kw), np.moveaxis(LRN(x, 3, **kw), 1, -1), rtol=1e-14)
    np.testing.assert_allclose(LRNB(gl, xl, 3, channel_axis=-1, **kw), np.moveaxis(LRNB(g, x, 3, **kw), 1, -1), rtol=1e-12)


def test_any_channel_axis_across_channels(rng):
    x = rng.standard_normal((2, 4, 6, 3))
    np.testing.assert_allclose(LRN(x, 3, 0.5, channel_axis=2), np.moveaxis(LRN(np.moveaxis(x, 2, 1), 3, 0.5), 1, 2),
                               rtol=1e-14)
    np.testing.assert_allclose(LRN(x, 3, 0.5, channel_axis=-2), LRN(x, 3, 0.5, channel_axis=2))


def test_two_dimensional_input_across_channels(rng):
    x = rng.standard_normal((5, 8))  # (N, C): no spatial dims
    np.testing.assert_allclose(LRN(x, 3, 0.4), ref.local_response_norm(x, 3, 0.4), rtol=1e-14)
    np.testing.assert_allclose(LRNB(x, x, 3, 0.4), ref.local_response_norm_backward(x, x, 3, 0.4), rtol=1e-12)


def test_float32_large_values(rng):
    x64 = rng.standard_normal((4, 16, 8, 8)) + 1e4
    x = x64.astype(np.float32)
    for kw in (dict(), dict(mode="within_channel", convention="paper")):
        np.testing.assert_allclose(LRN(x, 5, 1e-4, 0.75, 1.0, **kw), ref.local_response_norm(x, 5, 1e-4, 0.75, 1.0, **kw),
                                   rtol=2e-6)
        g = np.ones_like(x)
        np.testing.assert_allclose(LRNB(g, x, 5, 1e-4, 0.75, 1.0, **kw),
                                   ref.local_response_norm_backward(g, x, 5, 1e-4, 0.75, 1.0, **kw), rtol=2e-3, atol=1e-6)


# ----------------------------------------------------------------- arrays, dtypes, errors


@pytest.mark.parametrize("dtype,tol", [(np.float16, 2e-3), (np.float32, 2e-6), (np.float64, 1e-14)])
def test_dtypes(rng, dtype, tol):
    x = rng.standard_normal((2, 6, 5, 4)).astype(dtype)
    for kw in (dict(), dict(mode="within_channel", channel_axis=-1)):
        y = LRN(x, 3, 0.5, **kw)
        assert y.dtype == dtype
        np.testing.assert_allclose(y, ref.local_response_norm(x, 3, 0.5, **kw), rtol=tol, atol=tol)
        gx = LRNB(np.ones_like(x), x, 3, 0.5, **kw)
        assert gx.dtype == dtype
    xi = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    assert LRN(xi, 2).dtype == np.float64
    np.testing.assert_allclose(LRN(xi, 2), ref.local_response_norm(xi, 2), rtol=1e-14)
    assert LRN(xi > 3, 2).dtype == np.float64


@pytest.mark.parametrize("mode", ["across_channels", "within_channel"])
def test_out_and_inplace(rng, mode):
    x = rng.standard_normal((3, 8, 6, 5)).astype(np.float32)
    expected = LRN(x, 5, 0.5, mode=mode)
    out = np.empty_like(x)
    assert LRN(x, 5, 0.5, mode=mode, out=out) is out
    np.testing.assert_array_equal(out, expected)
    xc = x.copy()
    assert LRN(xc, 5, 0.5, mode=mode, out=xc) is xc
    np.testing.assert_array_equal(xc, expected)
    xl = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    expected_l = LRN(xl, 4, 0.5, mode=mode, channel_axis=-1)
    LRN(xl, 4, 0.5, mode=mode, channel_axis=-1, out=xl)
    np.testing.assert_array_equal(xl, expected_l)
    out64 = np.empty(x.shape)
    LRN(x, 5, 0.5, mode=mode, out=out64)
    np.testing.assert_array_equal(out64, expected.astype(np.float64))
    outT = np.empty(x.shape[::-1], np.float32).T
    LRN(x, 5, 0.5, mode=mode, out=outT)
    np.testing.assert_array_equal(outT, expected)


def test_inplace_large_parallel(rng):
    x = rng.standard_normal((4, 32, 20, 20)).astype(np.float32)
    for kw in (dict(), dict(channel_axis=-1), dict(mode="within_channel"), dict(mode="within_channel", channel_axis=-1)):
        expected = LRN(x, 5, 0.5, **kw)
        xc = x.copy()
        LRN(xc, 5, 0.5, out=xc, **kw)
        np.testing.assert_array_equal(xc, expected)


def test_noncontiguous_and_negative_strides(rng):
    base = rng.standard_normal((6, 10, 8, 6))
    for view in (base[::2], base[:, ::-1], base.transpose(0, 3, 1, 2), base[::-1, :, ::-1], base[..., ::2]):
        for kw in (dict(), dict(mode="within_channel", convention="paper", channel_axis=-1)):
            np.testing.assert_allclose(LRN(view, 3, 0.5, **kw), ref.local_response_norm(view, 3, 0.5, **kw), rtol=1e-13)
            g = np.ones_like(view)
            np.testing.assert_allclose(LRNB(g, view, 3, 0.5, **kw), ref.local_response_norm_backward(g, view, 3, 0.5, **kw),
                                       rtol=1e-11, atol=1e-14)


def test_zero_size():
    for shape in ((0, 4, 3), (2, 0, 3), (2, 3, 0), (2, 3, 0, 4)):
        x = np.ones(shape, np.float32)
        for kw in (dict(), dict(mode="within_channel"), dict(channel_axis=-1)):
            assert LRN(x, 3, **kw).shape == shape
            assert LRNB(x, x, 3, **kw).shape == shape


def test_nan_propagates_to_its_window_only():
    x = np.ones((2, 8, 5))
    x[1, 4, 2] = np.nan
    y = LRN(x, 3, 0.5)  # window [c-1, c+1]: channels 3, 4, 5 at position 2 of sample 1
    nan = np.isnan(y)
    assert nan[1, 3:6, 2].all() and nan.sum() == 3
    gx = LRNB(np.ones_like(x), x, 3, 0.5)  # grad of channel j reads windows of j-1..j+1
    assert np.isnan(gx[1, 2:7, 2]).all() and np.isnan(gx).sum() == 5
    yw = LRN(x, 3, 0.5, mode="within_channel")  # within: positions 1..3 of channel 4
    assert np.isnan(yw[1, 4, 1:4]).all() and np.isnan(yw).sum() == 3


def test_inputs_not_modified(rng):
    x = rng.standard_normal((2, 5, 4, 3))
    g = rng.standard_normal(x.shape)
    cx, cg = x.copy(), g.copy()
    for kw in (dict(), dict(mode="within_channel")):
        LRN(x, 3, **kw)
        LRNB(g, x, 3, **kw)
    np.testing.assert_array_equal(x, cx)
    np.testing.assert_array_equal(g, cg)


def test_parallel_and_serial_paths_agree(rng, monkeypatch):
    from numbanorm import _config

    x = rng.standard_normal((4, 16, 24, 20)).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    kws = [dict(), dict(channel_axis=-1), dict(mode="within_channel"), dict(mode="within_channel", channel_axis=-1)]
    par = [(LRN(x, 5, 0.5, **kw), LRNB(g, x, 5, 0.5, **kw)) for kw in kws]
    monkeypatch.setattr(_config, "SERIAL_THRESHOLD", 10**12)
    ser = [(LRN(x, 5, 0.5, **kw), LRNB(g, x, 5, 0.5, **kw)) for kw in kws]
    for a, b in zip(par, ser):
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)


def test_validation_errors(rng):
    x = rng.standard_normal((2, 4, 3))
    for size in (0, -2):
        with pytest.raises(ValueError, match=r"local_response_norm\(\): argument 'size'"):
            LRN(x, size)
        with pytest.raises(ValueError, match=r"local_response_norm_backward\(\): argument 'size'"):
            LRNB(x, x, size)
    for size in (2.0, "3", None, True):
        with pytest.raises(TypeError, match="argument 'size'"):
            LRN(x, size)
    with pytest.raises(ValueError, match="argument 'k'"):
        LRN(x, 3, k=-1.0)  # negative base with a non-integer beta
    with pytest.raises(ValueError, match="argument 'k'"):
        LRNB(x, x, 3, k=-0.5, beta=0.5)
    np.testing.assert_allclose(LRN(x, 3, 0.5, 2.0, -1.0), ref.local_response_norm(x, 3, 0.5, 2.0, -1.0))  # integer beta
    for name, value in (("alpha", np.nan), ("beta", np.inf), ("k", np.nan)):
        with pytest.raises(ValueError, match=f"argument '{name}'"):
            LRN(x, 3, **{name: value})
    with pytest.raises(TypeError, match="argument 'alpha'"):
        LRN(x, 3, alpha="1")
    with pytest.raises(ValueError, match="argument 'mode'"):
        LRN(x, 3, mode="across")
    with pytest.raises(ValueError, match="argument 'convention'"):
        LRN(x, 3, convention="caffe")
    with pytest.raises(ValueError, match="argument 'x'"):
        LRN(np.ones(4), 3)
    with pytest.raises(ValueError, match="argument 'x'"):
        LRN(np.ones((3, 4)), 3, mode="within_channel")
    with pytest.raises(ValueError, match="argument 'channel_axis'"):
        LRN(np.ones((2, 3, 4, 5)), 3, mode="within_channel", channel_axis=2)
    for ax in (0, 3, -4):
        with pytest.raises(ValueError, match="argument 'channel_axis'"):
            LRN(x, 3, channel_axis=ax)
    with pytest.raises(TypeError, match="argument 'x'"):
        LRN(x.astype(np.complex64), 3)
    with pytest.raises(ValueError, match="argument 'grad_out'"):
        LRNB(np.ones((2, 4, 4)), x, 3)
    out = np.full(x.shape, 7.0)
    with pytest.raises(ValueError, match="argument 'out'"):
        LRN(x, 3, out=np.empty((2, 4)))
    with pytest.raises(ValueError, match="argument 'size'"):
        LRN(x, 0, out=out)
    with pytest.raises(TypeError, match="argument 'out'"):
        LRN(x, 3, out=np.empty(x.shape, np.int32))
    np.testing.assert_array_equal(out, 7.0)  # a failed call changes nothing


def test_negative_alpha_gives_nan_like_torch(torch, rng):
    x = rng.standard_normal((1, 5, 4)) * 3
    y = LRN(x, 3, alpha=-3.0, beta=0.75, k=1.0)
    t = torch.nn.functional.local_response_norm(torch.tensor(x), 3, alpha=-3.0, beta=0.75, k=1.0).numpy()
    assert np.isnan(y).any()
    np.testing.assert_allclose(y, t, rtol=1e-13, equal_nan=True)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 3),
    c=st.integers(1, 9),
    spatial=st.lists(st.integers(1, 6), min_size=0, max_size=3),
    size=st.integers(1, 12),
    mode=st.sampled_from(["across_channels", "within_channel"]),
    convention=st.sampled_from(["torch", "paper"]),
    channel_axis=st.sampled_from([1, -1]),
    beta=st.sampled_from([0.75, 0.5, 1.0, 0.3, 2.0]),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**32 - 1),
)
def test_property_matches_reference(n, c, spatial, size, mode, convention, channel_axis, beta, dtype, seed):
    if mode == "within_channel" and not spatial:
        spatial = [3]
    shape = (n, c, *spatial) if channel_axis == 1 else (n, *spatial, c)
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 2).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    kw = dict(mode=mode, convention=convention, channel_axis=channel_axis)
    tol = 1e-12 if dtype == np.float64 else 5e-6
    y = LRN(x, size, 0.5, beta, 1.0, **kw)
    np.testing.assert_allclose(y, ref.local_response_norm(x, size, 0.5, beta, 1.0, **kw), rtol=tol, atol=tol)
    # |y| <= |x| / k**beta since the base is >= k
    assert (np.abs(y) <= np.abs(x) * (1 + 1e-5)).all()
    gx = LRNB(g, x, size, 0.5, beta, 1.0, **kw)
    np.testing.assert_allclose(gx, ref.local_response_norm_backward(g, x, size, 0.5, beta, 1.0, **kw),
                               rtol=10 * tol, atol=10 * tol)


# ----------------------------------------------------------------- GPU (simulator)


@pytest.fixture
def small_blocks():
    from numbanorm._cuda import _layout

    with _layout.launch_settings(threads_per_block=32, max_blocks=3):
        yield


@pytest.mark.cuda
@pytest.mark.parametrize("shape,kw", [
    ((2, 6, 9), dict()),
    ((2, 7, 3, 4), dict(convention="paper")),
    ((2, 3, 4, 5), dict(channel_axis=-1)),
    ((1, 2, 7, 6), dict(mode="within_channel")),
    ((1, 4, 3, 5), dict(mode="within_channel", channel_axis=-1, convention="paper")),
    ((1, 1, 3, 4, 5), dict(mode="within_channel")),
    ((2, 3, 40), dict(mode="within_channel", convention="paper")),
])
@pytest.mark.parametrize("size", [2, 5])
def test_gpu_matches_cpu(rng, small_blocks, shape, kw, size):
    x = rng.standard_normal(shape).astype(np.float32)
    g = rng.standard_normal(shape).astype(np.float32)
    cpu = LRN(x, size, 0.5, 0.75, 1.0, **kw), LRNB(g, x, size, 0.5, 0.75, 1.0, **kw)
    with _dispatch.force_device("cuda"):
        gpu = LRN(x, size, 0.5, 0.75, 1.0, **kw), LRNB(g, x, size, 0.5, 0.75, 1.0, **kw)
    for u, v in zip(cpu, gpu):
        assert isinstance(v, np.ndarray) and v.dtype == u.dtype and v.shape == u.shape
        np.testing.assert_allclose(v, u, rtol=2e-5, atol=2e-6)


@pytest.mark.cuda
def test_gpu_small_shared_tile_and_direct_fallback(rng, small_blocks, monkeypatch):
    """A tiny shared tile: narrow tiles, and windows too wide for it take the direct kernel."""
    from numbanorm._cuda import local_response_norm as K

    monkeypatch.setattr(K, "SHARED", 12)
    x = rng.standard_normal((1, 13, 5)).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    for size, kw in ((3, dict()), (16, dict()), (9, dict(mode="within_channel", convention="paper"))):
        cpu = LRN(x, size, 0.5, **kw), LRNB(g, x, size, 0.5, **kw)
        with _dispatch.force_device("cuda"):
            gpu = LRN(x, size, 0.5, **kw), LRNB(g, x, size, 0.5, **kw)
        for u, v in zip(cpu, gpu):
            np.testing.assert_allclose(v, u, rtol=2e-5, atol=2e-6)


@pytest.mark.cuda
def test_gpu_float64_betas_device_arrays_inplace(rng, small_blocks):
    from numba import cuda

    x = rng.standard_normal((2, 5, 6))
    for beta in (0.5, 1.0, 0.3):
        cpu = LRN(x, 4, 0.5, beta, 1.0), LRNB(x, x, 4, 0.5, beta, 1.0)
        d = cuda.to_device(x)
        gx = LRNB(d, d, 4, 0.5, beta, 1.0)
        y = LRN(d, 4, 0.5, beta, 1.0, out=d)  # in place: the halo of one block is another's tile
        assert y is d
        np.testing.assert_allclose(d.copy_to_host(), cpu[0], rtol=1e-12)
        np.testing.assert_allclose(gx.copy_to_host(), cpu[1], rtol=1e-10, atol=1e-14)
    # within channel, 2 window axes, in place
    x = rng.standard_normal((1, 2, 5, 6))
    cpu = LRN(x, 3, 0.5, mode="within_channel")
    d = cuda.to_device(x)
    LRN(d, 3, 0.5, mode="within_channel", out=d)
    np.testing.assert_allclose(d.copy_to_host(), cpu, rtol=1e-12)


# ----------------------------------------------------------------- ONNX convention


@pytest.mark.parametrize("mode,channel_axis", [("across_channels", 1), ("across_channels", -1), ("within_channel", 1)])
def test_onnx_convention_is_torch_mirrored(rng, mode, channel_axis):
    """ONNX's window i-(size-1)//2 .. i+size//2 is torch's window on the reversed axes."""
    x = rng.standard_normal((2, 5, 4, 3))
    g = rng.standard_normal(x.shape)
    kw = dict(mode=mode, channel_axis=channel_axis)
    axes = ((channel_axis % x.ndim,) if mode == "across_channels" else (2, 3))
    for size in (1, 2, 3, 4):
        y = LRN(x, size, 0.3, 0.75, 1.5, convention="onnx", **kw)
        mirrored = np.flip(LRN(np.flip(x, axes).copy(), size, 0.3, 0.75, 1.5, **kw), axes)
        np.testing.assert_allclose(y, mirrored, rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(y, ref.local_response_norm(x, size, 0.3, 0.75, 1.5, convention="onnx", **kw),
                                   rtol=1e-13, atol=1e-15)
        gx = LRNB(g, x, size, 0.3, 0.75, 1.5, convention="onnx", **kw)
        gm = np.flip(LRNB(np.flip(g, axes).copy(), np.flip(x, axes).copy(), size, 0.3, 0.75, 1.5, **kw), axes)
        np.testing.assert_allclose(gx, gm, rtol=1e-12, atol=1e-14)
    assert not np.allclose(LRN(x, 2, 0.3, 0.75, 1.5, convention="onnx", **kw), LRN(x, 2, 0.3, 0.75, 1.5, **kw))


@pytest.mark.cuda
@pytest.mark.parametrize("dtype,tol", [(np.float32, 2e-5), (np.float64, 1e-11)])
def test_gpu_fused_backward_four_warps(rng, dtype, tol):
    """The fused backwards at 4 warps per block and 4 blocks: one axis with column tiles and a
    partial last one (B = 40), B = 1 (2-D input: the tile runs along L), the 2-D within-channel
    kernel with partial row and column tiles (H = 11, W = 37), beta = 0.75 and the generic
    power, and grad_x written over x (a block's halo is another block's tile)."""
    from numba import cuda

    from numbanorm._cuda import _layout

    with _layout.launch_settings(threads_per_block=128, max_blocks=4):
        for shape, size, beta, kw in (((1, 9, 40), 5, 0.75, {}), ((3, 150), 4, 0.6, {}),
                                      ((1, 1, 11, 37), 5, 0.75, dict(mode="within_channel")),
                                      ((1, 2, 6, 9), 4, 0.6, dict(mode="within_channel", convention="paper"))):
            x = rng.standard_normal(shape).astype(dtype)
            g = rng.standard_normal(shape).astype(dtype)
            cpu = LRNB(g, x, size, 0.5, beta, 1.0, **kw)
            with _dispatch.force_device("cuda"):
                gpu = LRNB(g, x, size, 0.5, beta, 1.0, **kw)
            np.testing.assert_allclose(gpu, cpu, rtol=tol, atol=tol)
            d = cuda.to_device(x)
            LRNB(cuda.to_device(g), d, size, 0.5, beta, 1.0, out=d, **kw)
            np.testing.assert_allclose(d.copy_to_host(), cpu, rtol=tol, atol=tol)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype,tol", [(np.float32, 2e-5), (np.float64, 1e-11)])
def test_gpu_fused_forward_2d_four_warps(rng, dtype, tol, monkeypatch):
    """The fused 2-D within-channel forward at 4 warps per block and 4 blocks: partial row and
    column tiles (H = 11, W = 37), batch 1 and a one-column plane (W = 1: the tile is one
    column), beta = 0.75 and the generic power, out written over x (a block's halo is another
    block's tile), and a window too wide for a tiny shared tile falling back to the passes."""
    from numba import cuda

    from numbanorm._cuda import _layout
    from numbanorm._cuda import local_response_norm as K

    calls = []
    fused = K._forward_fused2
    monkeypatch.setattr(K, "_forward_fused2", lambda *a: calls.append(fused(*a)) or calls[-1])
    kw = dict(mode="within_channel")
    with _layout.launch_settings(threads_per_block=128, max_blocks=4):
        # asymmetric windows (torch and onnx with an even size: lo != hi, mirrored), paper
        for shape, size, beta, conv in (((1, 1, 11, 37), 5, 0.75, "torch"), ((2, 2, 6, 9), 4, 0.6, "torch"),
                                        ((1, 2, 13, 1), 4, 0.75, "onnx"), ((1, 1, 5, 7), 4, 0.6, "onnx"),
                                        ((1, 1, 4, 5), 3, 0.6, "paper")):
            x = rng.standard_normal(shape).astype(dtype)
            cpu = LRN(x, size, 0.5, beta, 1.0, convention=conv, **kw)
            with _dispatch.force_device("cuda"):
                gpu = LRN(x, size, 0.5, beta, 1.0, convention=conv, **kw)
            np.testing.assert_allclose(gpu, cpu, rtol=tol, atol=tol)
            d = cuda.to_device(x)
            LRN(d, size, 0.5, beta, 1.0, convention=conv, out=d, **kw)
            np.testing.assert_allclose(d.copy_to_host(), cpu, rtol=tol, atol=tol)
        assert calls == [True] * 10
        monkeypatch.setattr(K, "SHARED", 12)  # (th + 4) (tw + 4) + (th + 4) tw > 12: the passes
        x = rng.standard_normal((1, 1, 7, 6)).astype(dtype)
        with _dispatch.force_device("cuda"):
            gpu = LRN(x, 5, 0.5, **kw)
        np.testing.assert_allclose(gpu, LRN(x, 5, 0.5, **kw), rtol=tol, atol=tol)
        assert calls[-1] is False


@pytest.mark.cuda
@pytest.mark.parametrize("dtype,tol", [(np.float32, 2e-5), (np.float64, 1e-11)])
def test_gpu_direct_passes_four_warps(rng, dtype, tol, monkeypatch):
    """Windows too wide for a tiny shared tile take the direct passes ``_wpass_direct_m<mode>
    [_sq]`` at 4 warps per block and 4 blocks, with more outputs (1380, 598, 540) than the
    grid's 512 threads (partial grid-stride rounds; 1380 = 2 x 30 x 23 > 2 x 512 with the
    (a, l, b) digits' carries into l and a): across channels (forward mode 1 on
    squares; backward sums of squares, then mode 2) and within channel over two axes (mode
    0 on squares and on sums, mode 1 on sums), beta = 0.75 and the generic power; every
    (mode, square) variant must have run."""
    from numbanorm._cuda import _layout
    from numbanorm._cuda import local_response_norm as K

    used = set()
    direct = K.wpass_direct
    monkeypatch.setattr(K, "wpass_direct", lambda mode, square: used.add((mode, square)) or direct(mode, square))
    monkeypatch.setattr(K, "SHARED", 12)  # halo 12 or more: no shared tile fits
    with _layout.launch_settings(threads_per_block=128, max_blocks=4):
        for shape, size, beta, kw in (((2, 30, 23), 16, 0.75, {}), ((2, 13, 23), 15, 0.6, dict(convention="paper")),
                                      ((1, 2, 9, 30), 13, 0.6, dict(mode="within_channel")),
                                      ((1, 2, 9, 30), 14, 0.75, dict(mode="within_channel", convention="onnx"))):
            x = rng.standard_normal(shape).astype(dtype)
            g = rng.standard_normal(shape).astype(dtype)
            cpu = LRN(x, size, 0.5, beta, 1.0, **kw), LRNB(g, x, size, 0.5, beta, 1.0, **kw)
            with _dispatch.force_device("cuda"):
                gpu = LRN(x, size, 0.5, beta, 1.0, **kw), LRNB(g, x, size, 0.5, beta, 1.0, **kw)
            for u, v in zip(cpu, gpu):
                np.testing.assert_allclose(v, u, rtol=tol, atol=tol)
    assert used == set(K.DIRECT_VARIANTS)
