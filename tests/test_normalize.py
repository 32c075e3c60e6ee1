"""normalize / normalize_backward: reference twins, PyTorch, finite differences, properties."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from numbanorm import _dispatch, normalize, normalize_backward

import reference as ref

PS = [2.0, 1.0, np.inf, 0.5, 3.0, 1.5]
CASES = [((7,), 0), ((5, 9), 1), ((5, 9), -1), ((5, 9), 0), ((3, 4, 6), 1), ((3, 4, 6), -1),
         ((3, 4, 6), 0), ((2, 3, 4, 5), 2), ((40, 1100), 1), ((30, 40, 50), 1)]


@pytest.mark.parametrize("shape,axis", CASES)
@pytest.mark.parametrize("p", PS)
def test_forward_and_backward_match_reference(rng, shape, axis, p):
    x = rng.standard_normal(shape)
    g = rng.standard_normal(shape)
    np.testing.assert_allclose(normalize(x, p, axis), ref.normalize(x, p, axis), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(normalize_backward(g, x, p, axis), ref.normalize_backward(g, x, p, axis),
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype,tol", [(np.float16, 2e-3), (np.float32, 2e-6), (np.float64, 1e-14)])
@pytest.mark.parametrize("axis", [1, -1])
def test_dtypes(rng, dtype, tol, axis):
    x = rng.standard_normal((6, 33, 5)).astype(dtype)
    y = normalize(x, axis=axis)
    assert y.dtype == dtype and y.shape == x.shape
    np.testing.assert_allclose(y, ref.normalize(x, 2.0, axis), rtol=tol, atol=tol)
    gx = normalize_backward(np.ones_like(x), x, axis=axis)
    assert gx.dtype == dtype
    np.testing.assert_allclose(gx, ref.normalize_backward(np.ones_like(x), x, 2.0, axis), rtol=20 * tol, atol=20 * tol)


@pytest.mark.parametrize("shape,axis", [((4, 7), 1), ((4, 7), 0), ((3, 5, 6), 1), ((3, 5, 6), -1), ((2, 3, 4, 5), -3)])
@pytest.mark.parametrize("p", PS)
def test_torch_parity_forward_and_autograd(torch, rng, shape, axis, p):
    F = torch.nn.functional
    x = rng.standard_normal(shape)
    x.flat[::5] = 0.0  # zeros exercise the masks of the p < 1 / p = 1 gradients
    g = rng.standard_normal(shape)
    tx = torch.tensor(x, requires_grad=True)
    ty = F.normalize(tx, p=float(p), dim=axis)
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(normalize(x, p, axis), ty.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(normalize_backward(g, x, p, axis), tx.grad.numpy(), rtol=1e-9, atol=1e-11)
    x32 = x.astype(np.float32)
    np.testing.assert_allclose(normalize(x32, p, axis), F.normalize(torch.tensor(x32), p=float(p), dim=axis).numpy(),
                               rtol=2e-6, atol=1e-7)


def test_torch_parity_eps_clamp_and_inf_ties(torch):
    F = torch.nn.functional
    # rows below eps (gradient dy / eps), exactly at eps (passes through the norm), ties of the max
    x = np.array([[1e-13, -2e-13, 0.0], [1e-6, 0.0, 0.0], [3.0, -3.0, 1.0], [0.0, 0.0, 0.0]])
    g = np.array([[1.0, 2.0, 3.0], [1.0, 5.0, -1.0], [1.0, 5.0, 3.0], [2.0, 1.0, 1.0]])
    for p, eps in ((2.0, 1e-12), (2.0, 1e-6), (np.inf, 1e-12), (1.0, 1e-12), (0.5, 1e-3), (3.0, 1e-12)):
        tx = torch.tensor(x, requires_grad=True)
        F.normalize(tx, p=float(p), dim=1, eps=eps).backward(torch.tensor(g))
        np.testing.assert_allclose(normalize(x, p, 1, eps), F.normalize(torch.tensor(x), p=float(p), dim=1, eps=eps).numpy(),
                                   rtol=1e-12)
        np.testing.assert_allclose(normalize_backward(g, x, p, 1, eps), tx.grad.numpy(), rtol=1e-9, atol=1e-9)


P_NONPOS = [0.0, -1.0, -2.5, -0.5, -np.inf]


def _nonpos_input(rng, shape):
    """Zeros (norm 0 for p < 0, skipped by the p = 0 count), ties of the minimum, a zero vector."""
    x = rng.standard_normal(shape)
    x.flat[::7] = 0.0
    x[0] = 0.0
    x[-1, ...] = np.round(x[-1, ...] * 2) / 2 + 0.5  # repeated values: ties of min |x|
    return x


@pytest.mark.parametrize("shape,axis", [((4, 7), 1), ((4, 7), 0), ((3, 5, 6), 1), ((3, 5, 6), -1)])
@pytest.mark.parametrize("p", P_NONPOS)
def test_torch_parity_p_nonpositive(torch, rng, shape, axis, p):
    """p = 0 (count of nonzeros), p < 0 and p = -inf (min |x|) as torch: forward and autograd."""
    F = torch.nn.functional
    x = _nonpos_input(rng, shape)
    g = rng.standard_normal(shape)
    tx = torch.tensor(x, requires_grad=True)
    ty = F.normalize(tx, p=float(p), dim=axis)
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(normalize(x, p, axis), ty.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(normalize_backward(g, x, p, axis), tx.grad.numpy(), rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(normalize(x, p, axis), ref.normalize(x, p, axis), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(normalize_backward(g, x, p, axis), ref.normalize_backward(g, x, p, axis),
                               rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("p", [2.0, 1.0, np.inf, 0.5, 0.0, -1.0, -np.inf])
def test_torch_parity_zero_dim(torch, p):
    """A 0-d input is one vector of one element along dim 0 / -1 (torch); other dims: IndexError."""
    F = torch.nn.functional
    for v in (-3.0, 0.0, 2.5):
        for axis in (0, -1):
            tx = torch.tensor(v, dtype=torch.float64, requires_grad=True)
            ty = F.normalize(tx, p=float(p), dim=axis)
            ty.backward(torch.tensor(2.0, dtype=torch.float64))
            y = normalize(np.float64(v), p, axis)
            gx = normalize_backward(np.float64(2.0), np.float64(v), p, axis)
            assert y.shape == () and gx.shape == ()
            np.testing.assert_allclose(y, ty.item(), rtol=1e-14)
            np.testing.assert_allclose(gx, tx.grad.item(), rtol=1e-12, atol=1e-15)
    with pytest.raises(IndexError):
        F.normalize(torch.tensor(1.0), dim=1)
    with pytest.raises(IndexError):
        normalize(np.float64(1.0), axis=1)


@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("p", [2.0, 1.0, np.inf, 0.7, 3.0])
def test_finite_differences(rng, axis, p):
    x = rng.standard_normal((3, 4, 5)) + 0.1  # no exact zeros, no ties
    g = rng.standard_normal(x.shape)
    gx = normalize_backward(g, x, p, axis)
    h = 1e-6
    num = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        d = np.zeros_like(x)
        d[idx] = h
        num[idx] = ((normalize(x + d, p, axis) * g).sum() - (normalize(x - d, p, axis) * g).sum()) / (2 * h)
    np.testing.assert_allclose(gx, num, rtol=1e-5, atol=1e-7)


def test_float32_large_offset(rng):
    x64 = rng.standard_normal((64, 1024)) + 1e4
    for axis in (1, 0):
        y = normalize(x64.astype(np.float32), axis=axis)
        np.testing.assert_allclose(y, ref.normalize(x64.astype(np.float32), 2.0, axis), rtol=1e-5)
        gx = normalize_backward(np.ones_like(y), x64.astype(np.float32), axis=axis)
        np.testing.assert_allclose(gx, ref.normalize_backward(np.ones_like(x64), x64.astype(np.float32), 2.0, axis),
                                   rtol=2e-2, atol=1e-6)


def test_integer_and_bool_inputs_compute_in_float64():
    x = np.arange(12, dtype=np.int32).reshape(3, 4)
    y = normalize(x)
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, ref.normalize(x, 2.0, 1), rtol=1e-15)
    assert normalize(np.eye(3, dtype=bool), axis=0).dtype == np.float64
    assert normalize_backward(np.ones((3, 4), np.int64), x).dtype == np.float64


@pytest.mark.parametrize("axis", [1, -1])
def test_out_and_inplace(rng, axis):
    x = rng.standard_normal((5, 8, 3)).astype(np.float32)
    expected = normalize(x, axis=axis)
    out = np.empty_like(x)
    assert normalize(x, axis=axis, out=out) is out
    np.testing.assert_array_equal(out, expected)
    xc = x.copy()
    assert normalize(xc, axis=axis, out=xc) is xc
    np.testing.assert_array_equal(xc, expected)
    out64 = np.empty(x.shape)
    normalize(x, axis=axis, out=out64)
    np.testing.assert_array_equal(out64, expected.astype(np.float64))
    outT = np.empty(x.shape[::-1], np.float32).T
    normalize(x, axis=axis, out=outT)
    np.testing.assert_array_equal(outT, expected)


def test_noncontiguous_and_negative_strides(rng):
    base = rng.standard_normal((10, 12, 6))
    for view in (base[::2], base[:, ::-1], base.transpose(1, 0, 2), base[::-1, :, ::-1], base[..., ::2]):
        for axis in (0, 1, 2):
            np.testing.assert_allclose(normalize(view, 3.0, axis), ref.normalize(view, 3.0, axis), rtol=1e-12)
            g = np.ones_like(view)
            np.testing.assert_allclose(normalize_backward(g, view, 3.0, axis),
                                       ref.normalize_backward(g, view, 3.0, axis), rtol=1e-10, atol=1e-12)


def test_zero_size():
    for shape, axis in (((0, 4), 1), ((3, 0), 1), ((3, 0), 0), ((2, 0, 3), 1), ((2, 3, 0), 1)):
        x = np.ones(shape, np.float32)
        assert normalize(x, axis=axis).shape == shape
        assert normalize_backward(x, x, axis=axis).shape == shape


def test_nan_propagates_to_its_vector_only():
    x = np.ones((3, 4, 2))
    x[1, 2, 0] = np.nan
    for p in (2.0, 1.0, np.inf, 0.5):
        y = normalize(x, p, axis=1)
        assert np.isnan(y[1, :, 0]).all()
        mask = np.ones(x.shape, bool)
        mask[1, :, 0] = False
        assert not np.isnan(y[mask]).any()
        gx = normalize_backward(np.ones_like(x), x, p, axis=1)
        assert np.isnan(gx[1, :, 0]).all() and not np.isnan(gx[mask]).any()
        yr = normalize(x.transpose(0, 2, 1).copy(), p, axis=-1)
        assert np.isnan(yr[1, 0]).all() and np.isfinite(yr[0]).all() and np.isfinite(yr[1, 1]).all()


def test_zero_vectors_and_eps_zero():
    x = np.zeros((2, 3))
    np.testing.assert_array_equal(normalize(x), 0.0)
    np.testing.assert_array_equal(normalize_backward(np.ones_like(x), x), 1e12)
    with np.errstate(invalid="ignore"):
        assert np.isnan(normalize(x, eps=0.0)).all()  # 0 / 0, as torch


def test_inputs_not_modified(rng):
    x = rng.standard_normal((4, 6))
    g = rng.standard_normal((4, 6))
    cx, cg = x.copy(), g.copy()
    normalize(x, 3.0, 0)
    normalize_backward(g, x, 3.0, 0)
    normalize_backward(g, x, 2.0, 1)
    np.testing.assert_array_equal(x, cx)
    np.testing.assert_array_equal(g, cg)


def test_parallel_and_serial_paths_agree(rng, monkeypatch):
    from numbanorm import _config

    x = rng.standard_normal((300, 200))
    g = rng.standard_normal((300, 200))
    args = [(p, ax) for p in (2.0, np.inf, 1.3) for ax in (0, 1)]
    par = [(normalize(x, p, ax), normalize_backward(g, x, p, ax)) for p, ax in args]
    monkeypatch.setattr(_config, "SERIAL_THRESHOLD", 10**12)
    ser = [(normalize(x, p, ax), normalize_backward(g, x, p, ax)) for p, ax in args]
    for a, b in zip(par, ser):
        for u, v in zip(a, b):
            np.testing.assert_allclose(u, v, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_streaming_store_path_matches(rng, monkeypatch, dtype):
    """Large outputs use non-temporal vector stores (a hand-written IR loop with an
    unaligned head and a tail): same results as the ordinary loops, any row length."""
    from numbanorm._cpu import normalize as kernels

    for shape in ((37, 77), (5, 3), (9, 1), (300, 130)):
        x = rng.standard_normal(shape).astype(dtype)
        g = rng.standard_normal(shape).astype(dtype)
        base = x[:, 1:]  # unaligned rows
        views = (x, base)
        expected = [(normalize(v, 2.0, -1), normalize_backward(g[:, : v.shape[1]], v, 2.0, -1),
                     normalize(v, 1.5, -1)) for v in views]
        monkeypatch.setattr(kernels, "STREAM_BYTES", 0)
        monkeypatch.setattr(kernels, "FORWARD_STREAM_BYTES", 0)
        got = [(normalize(v, 2.0, -1), normalize_backward(g[:, : v.shape[1]], v, 2.0, -1),
                normalize(v, 1.5, -1)) for v in views]
        monkeypatch.undo()
        tol = 1e-6 if dtype == np.float32 else 1e-14
        for e, r in zip(expected, got):
            for u, v in zip(e, r):
                np.testing.assert_allclose(v, u, rtol=tol, atol=tol)
        out = np.empty((shape[0], shape[1] + 1), dtype)[:, 1:]  # non-contiguous out
        monkeypatch.setattr(kernels, "STREAM_BYTES", 0)
        monkeypatch.setattr(kernels, "FORWARD_STREAM_BYTES", 0)
        normalize(x, 2.0, -1, out=out)
        monkeypatch.undo()
        np.testing.assert_allclose(out, expected[0][0], rtol=tol, atol=tol)


def test_validation_errors(rng):
    x = rng.standard_normal((3, 4))
    with pytest.raises(ValueError, match=r"normalize\(\): argument 'p'"):
        normalize(x, np.nan)
    with pytest.raises(ValueError, match=r"normalize_backward\(\): argument 'p'"):
        normalize_backward(x, x, np.nan)
    for p in ("2", None, True, 1 + 2j):
        with pytest.raises(TypeError, match="argument 'p'"):
            normalize(x, p)
    for axis in (2, -3):
        with pytest.raises(ValueError, match="argument 'axis'"):
            normalize(x, axis=axis)
        with pytest.raises(IndexError):  # numpy's AxisError is both
            normalize(x, axis=axis)
    with pytest.raises(TypeError, match="argument 'axis'"):
        normalize(x, axis=1.0)
    for axis in (1, -2):  # a 0-d input has axis 0 / -1 only (torch)
        with pytest.raises(IndexError, match="argument 'axis'"):
            normalize(np.float64(3.0), axis=axis)
        with pytest.raises(IndexError, match="argument 'axis'"):
            normalize_backward(np.float64(1.0), np.float64(3.0), axis=axis)
    for eps in (-1.0, np.nan, np.inf):
        with pytest.raises(ValueError, match="argument 'eps'"):
            normalize(x, eps=eps)
    with pytest.raises(TypeError, match="argument 'x'"):
        normalize(x.astype(np.complex128))
    with pytest.raises(TypeError, match="argument 'x'"):
        normalize(np.array([["a", "b"]]))
    with pytest.raises(ValueError, match="argument 'grad_out'"):
        normalize_backward(np.ones((4, 3)), x)
    with pytest.raises(TypeError, match="argument 'grad_out'"):
        normalize_backward(x.astype(np.complex64), x)
    out = np.full((3, 4), 7.0)
    with pytest.raises(ValueError, match="argument 'out'"):
        normalize(x, out=np.empty((4, 3)))
    with pytest.raises(TypeError, match="argument 'out'"):
        normalize(x, out=np.empty((3, 4), np.int64))
    with pytest.raises(ValueError, match="argument 'p'"):
        normalize(x, np.nan, out=out)
    np.testing.assert_array_equal(out, 7.0)  # a failed call changes nothing


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shape=st.lists(st.integers(1, 7), min_size=1, max_size=4),
    axis_seed=st.integers(0, 100),
    p=st.sampled_from([2.0, 1.0, np.inf, 0.5, 2.5, 4.0]),
    dtype=st.sampled_from([np.float32, np.float64]),
    scale=st.sampled_from([1e-3, 1.0, 1e3]),
    seed=st.integers(0, 2**32 - 1),
)
def test_property_matches_reference(shape, axis_seed, p, dtype, scale, seed):
    rng = np.random.default_rng(seed)
    axis = axis_seed % (2 * len(shape)) - len(shape)
    x = (rng.standard_normal(shape) * scale).astype(dtype)
    y = normalize(x, p, axis)
    tol = 1e-12 if dtype == np.float64 else 3e-6
    np.testing.assert_allclose(y, ref.normalize(x, p, axis), rtol=tol, atol=tol)
    # unit norm along the axis (up to rounding) wherever the norm exceeds eps
    n = ref._lp_norm(y.astype(np.float64), p, axis)
    np.testing.assert_allclose(n, 1.0, rtol=50 * tol)
    g = rng.standard_normal(shape).astype(dtype)
    gx = normalize_backward(g, x, p, axis)
    rx = ref.normalize_backward(g, x, p, axis)
    # error relative to the size of the gradient's terms (|dy| / max(norm, eps))
    d = np.maximum(ref._lp_norm(x.astype(np.float64), p, axis), 1e-12)
    scale = np.abs(g / d).max()
    gtol = 1e-10 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(gx, rx, rtol=gtol, atol=gtol * scale)


@pytest.fixture
def small_blocks():
    from numbanorm._cuda import _layout

    with _layout.launch_settings(threads_per_block=32, max_blocks=3, warp_row_max=32):
        yield


@pytest.mark.cuda
@pytest.mark.parametrize("shape,axis", [((5, 70), -1), ((3, 9), -1), ((2, 7, 40), 1), ((4, 3, 2), 0)])
@pytest.mark.parametrize("p", [2.0, 1.0, np.inf, 0.5])
def test_gpu_matches_cpu(rng, small_blocks, shape, axis, p):
    x = rng.standard_normal(shape).astype(np.float32)
    x.flat[::7] = 0.0
    g = rng.standard_normal(shape).astype(np.float32)
    cpu = normalize(x, p, axis), normalize_backward(g, x, p, axis)
    with _dispatch.force_device("cuda"):
        gpu = normalize(x, p, axis), normalize_backward(g, x, p, axis)
    for u, v in zip(cpu, gpu):
        assert isinstance(v, np.ndarray) and v.dtype == u.dtype and v.shape == u.shape
        np.testing.assert_allclose(v, u, rtol=2e-5, atol=2e-6)


@pytest.mark.cuda
@pytest.mark.parametrize("n", [33, 70, 300, 1000])
@pytest.mark.parametrize("p", [2.0, 1.0, np.inf])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gpu_block_rows_warp_segments(rng, n, p, dtype):
    """Block-per-row kernels with 4 warps per block: each warp walks its own contiguous
    segment of the row (a multiple of 32 long; the last ones short or empty)."""
    from numbanorm._cuda import _layout

    x = rng.standard_normal((5, n)).astype(dtype)
    x[1, ::5] = 0.0
    g = rng.standard_normal((5, n)).astype(dtype)
    cpu = normalize(x, p, 1), normalize_backward(g, x, p, 1)
    with _layout.launch_settings(threads_per_block=128, max_blocks=2, warp_row_max=32):
        with _dispatch.force_device("cuda"):
            gpu = normalize(x, p, 1), normalize_backward(g, x, p, 1)
    tol = 2e-6 if dtype == np.float32 else 1e-12
    for u, v in zip(cpu, gpu):
        np.testing.assert_allclose(v, u, rtol=tol, atol=tol)


@pytest.mark.cuda
@pytest.mark.parametrize("shape,axis", [((130, 5), 0), ((2, 66, 3), 1)])
@pytest.mark.parametrize("p", [2.0, 1.0])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gpu_split_channel_backward(rng, shape, axis, p, dtype):
    """p = 2, 1 with C >= 64 along a non-last axis: the backward's (chunk, column)
    partials, their in-order merge and the write pass (4 warps per block, several chunks)."""
    from numbanorm._cuda import _layout

    x = rng.standard_normal(shape).astype(dtype)
    x.flat[::11] = 0.0
    g = rng.standard_normal(shape).astype(dtype)
    cpu = normalize_backward(g, x, p, axis)
    with _layout.launch_settings(threads_per_block=128, max_blocks=4, partial_blocks=4):
        assert _layout.launch_partials(shape[axis], x.size // shape[axis])[2] > 1
        with _dispatch.force_device("cuda"):
            gpu = normalize_backward(g, x, p, axis)
    tol = 2e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(gpu, cpu, rtol=tol, atol=tol)


@pytest.mark.cuda
@pytest.mark.parametrize("shape", [(3, 9, 200), (4, 1, 150)])
@pytest.mark.parametrize("p,dtype", [(2.0, np.float32), (1.0, np.float32), (np.inf, np.float32), (1.0, np.float64)])
def test_gpu_fused_channels(rng, shape, p, dtype):
    """C < 64 along axis 1: the thread-per-column forward and fused backward of the fixed
    kinds (32-bit in-column offsets, four elements per step then one; C = 1 has no full
    step), 4 warps per block x 4 blocks over 600 columns: each thread takes two columns
    (the (o, j) stepping wraps j), the last block partly idle."""
    from numbanorm._cuda import _layout
    from numbanorm._cuda._normalize_channels import fits32

    assert fits32(2**31, 1) and not fits32(2**32 - 4, 1) and not fits32(2**30, 4)
    x = rng.standard_normal(shape).astype(dtype)
    x.flat[::11] = 0.0
    x[1, 0, 3] = np.nan
    g = rng.standard_normal(shape).astype(dtype)
    cpu = normalize(x, p, 1), normalize_backward(g, x, p, 1)
    with _layout.launch_settings(threads_per_block=128, max_blocks=4):
        with _dispatch.force_device("cuda"):
            gpu = normalize(x, p, 1), normalize_backward(g, x, p, 1)
    tol = 2e-5 if dtype == np.float32 else 1e-12
    for u, v in zip(cpu, gpu):
        np.testing.assert_allclose(v, u, rtol=tol, atol=tol)
        assert np.isnan(v[1, :, 3]).all() and not np.isnan(np.delete(v, 3, axis=2)).any()


@pytest.mark.cuda
@pytest.mark.parametrize("axis", [1, 0])
def test_gpu_inf_ties_zero_and_nan_vectors(small_blocks, axis):
    """p = inf (compile-time kernels): the gradient is shared by the ties |x| = max,
    zero vectors get none, NaN propagates to its vector only."""
    x = np.array([[3.0, -3.0, 1.0, 0.0, 3.0], [0.0] * 5, [1.0, np.nan, 2.0, -2.0, 0.5],
                  [-4.0, 2.0, 4.0, 1.0, -1.0]], np.float32)
    x = x if axis == 1 else np.ascontiguousarray(x.T)
    g = np.arange(x.size, dtype=np.float32).reshape(x.shape) - 7.0
    cpu = normalize(x, np.inf, axis), normalize_backward(g, x, np.inf, axis)
    with _dispatch.force_device("cuda"):
        gpu = normalize(x, np.inf, axis), normalize_backward(g, x, np.inf, axis)
    for u, v in zip(cpu, gpu):
        np.testing.assert_allclose(v, u, rtol=1e-6, atol=1e-7, equal_nan=True)


@pytest.mark.cuda
def test_gpu_float64_device_out_inplace_and_zero_rows(small_blocks):
    from numba import cuda

    x = np.zeros((4, 50))
    x[1] = np.arange(50.0)
    x[2, 3] = np.nan
    cpu = normalize(x, axis=1), normalize_backward(np.ones_like(x), x, axis=1)
    d = cuda.to_device(x)
    out = cuda.device_array_like(d)
    assert normalize(d, axis=1, out=out) is out
    np.testing.assert_allclose(out.copy_to_host(), cpu[0], rtol=1e-12, equal_nan=True)
    gx = normalize_backward(cuda.to_device(np.ones_like(x)), d, axis=1)
    np.testing.assert_allclose(gx.copy_to_host(), cpu[1], rtol=1e-12, atol=1e-15, equal_nan=True)
    assert normalize(d, axis=1, out=d) is d  # in place
    np.testing.assert_allclose(d.copy_to_host(), cpu[0], rtol=1e-12, equal_nan=True)


@pytest.mark.cuda
@pytest.mark.parametrize("shape,axis", [((5, 40), -1), ((2, 7, 6), 1), ((70, 3), 0)])
@pytest.mark.parametrize("p", [0.0, -1.5, -np.inf])
def test_gpu_matches_cpu_p_nonpositive(rng, small_blocks, shape, axis, p):
    x = _nonpos_input(rng, shape)
    g = rng.standard_normal(shape)
    cpu = normalize(x, p, axis), normalize_backward(g, x, p, axis), normalize(np.float64(-2.0), p, 0)
    with _dispatch.force_device("cuda"):
        gpu = normalize(x, p, axis), normalize_backward(g, x, p, axis), normalize(np.float64(-2.0), p, 0)
    for u, v in zip(cpu, gpu):
        assert isinstance(v, np.ndarray) and v.dtype == u.dtype and v.shape == u.shape
        np.testing.assert_allclose(v, u, rtol=1e-12, atol=1e-14)


def test_float32_quotient_by_float64_reciprocal_is_exact(rng):
    """The float32 GPU kernels write ``x / d`` as ``float32(float64(x) * (1 / float64(d)))``
    (numbanorm/_cuda/normalize.py): the same bits as the float32 division, denormals,
    overflow and special values included."""
    x = (rng.standard_normal(400_000) * np.exp2(rng.integers(-140, 120, 400_000))).astype(np.float32)
    d = (np.abs(rng.standard_normal(400_000)) * np.exp2(rng.integers(-100, 100, 400_000))).astype(np.float32)
    x[:4] = [np.inf, 0.0, np.nan, 1.0]
    d[:4] = [np.inf, 0.0, 1.0, np.inf]
    with np.errstate(all="ignore"):
        want = x / d
        got = (x.astype(np.float64) * (1.0 / d.astype(np.float64))).astype(np.float32)
    np.testing.assert_array_equal(got, want)
