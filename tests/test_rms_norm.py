"""rms_norm / rms_norm_backward: reference twins, PyTorch, finite differences, properties."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from numbanorm import rms_norm, rms_norm_backward

import reference as ref

SHAPES = [((7,), 7), ((4, 9), 9), ((3, 5, 6), (5, 6)), ((2, 3, 4, 5), (4, 5)), ((64, 700), 700)]


@pytest.mark.parametrize("shape,nshape", SHAPES)
@pytest.mark.parametrize("dtype,tol", [(np.float16, 2e-2), (np.float32, 2e-5), (np.float64, 1e-12)])
@pytest.mark.parametrize("affine", [False, True])
def test_forward_matches_reference(rng, shape, nshape, dtype, tol, affine):
    x = rng.standard_normal(shape).astype(dtype)
    nsh = (nshape,) if np.ndim(nshape) == 0 else nshape
    w = rng.standard_normal(nsh).astype(dtype) if affine else None
    y = rms_norm(x, nshape, w, eps=1e-6)
    assert y.dtype == dtype and y.shape == x.shape
    np.testing.assert_allclose(y, ref.rms_norm(x, nshape, w, eps=1e-6), rtol=tol, atol=tol)


@pytest.mark.parametrize("shape,nshape", SHAPES)
@pytest.mark.parametrize("affine", [False, True])
def test_backward_matches_reference(rng, shape, nshape, affine):
    x, g = rng.standard_normal(shape), rng.standard_normal(shape)
    nsh = (nshape,) if np.ndim(nshape) == 0 else nshape
    w = rng.standard_normal(nsh) if affine else None
    gx, gw = rms_norm_backward(g, x, nshape, w, eps=1e-6)
    rx, rw = ref.rms_norm_backward(g, x, nshape, w, eps=1e-6)
    np.testing.assert_allclose(gx, rx, rtol=1e-9, atol=1e-12)
    if affine:
        np.testing.assert_allclose(gw, rw, rtol=1e-9, atol=1e-12)
    else:
        assert gw is None


def test_default_eps_is_machine_epsilon_of_compute_dtype(rng):
    x = np.full((2, 4), 1e-5, np.float32)
    expected = x / np.sqrt((x.astype(np.float64) ** 2).mean(-1, keepdims=True) + np.finfo(np.float32).eps)
    np.testing.assert_allclose(rms_norm(x, 4), expected, rtol=1e-5)
    x16 = x.astype(np.float16)  # float16 is computed in float32 -> float32's epsilon
    np.testing.assert_allclose(rms_norm(x16, 4).astype(np.float32), rms_norm(x16.astype(np.float32), 4), rtol=1e-3)


@pytest.mark.parametrize("eps", [None, 1e-5])
def test_torch_parity_forward_and_autograd(torch, rng, eps):
    F = torch.nn.functional
    x, g, w = rng.standard_normal((3, 4, 10)), rng.standard_normal((3, 4, 10)), rng.standard_normal(10)
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    ty = F.rms_norm(tx, (10,), tw, eps=eps)
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(rms_norm(x, 10, w, eps=eps), ty.detach().numpy(), rtol=1e-12, atol=1e-13)
    gx, gw = rms_norm_backward(g, x, 10, w, eps=eps)
    np.testing.assert_allclose(gx, tx.grad.numpy(), rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(gw, tw.grad.numpy(), rtol=1e-9, atol=1e-11)
    x32 = x.astype(np.float32)
    np.testing.assert_allclose(rms_norm(x32, 10, eps=eps), F.rms_norm(torch.tensor(x32), (10,), eps=eps).numpy(), rtol=1e-5, atol=1e-6)
    x16 = x.astype(np.float16)
    np.testing.assert_allclose(rms_norm(x16, 10, eps=eps).astype(np.float32),
                               F.rms_norm(torch.tensor(x16), (10,), eps=eps).float().numpy(), rtol=2e-3, atol=2e-3)


def test_finite_differences(rng):
    x, w, g = rng.standard_normal((3, 5)), rng.standard_normal(5), rng.standard_normal((3, 5))
    gx, gw = rms_norm_backward(g, x, 5, w, eps=1e-3)
    h = 1e-6
    for arr, grad, is_x in ((x, gx, True), (w, gw, False)):
        num = np.zeros_like(arr)
        for idx in np.ndindex(arr.shape):
            d = np.zeros_like(arr)
            d[idx] = h
            if is_x:
                f = lambda s: (rms_norm(x + s * d, 5, w, eps=1e-3) * g).sum()
            else:
                f = lambda s: (rms_norm(x, 5, w + s * d, eps=1e-3) * g).sum()
            num[idx] = (f(1) - f(-1)) / (2 * h)
        np.testing.assert_allclose(grad, num, rtol=1e-6, atol=1e-7)


def test_saved_rstd_and_shapes(rng):
    x, g = rng.standard_normal((4, 3, 8)).astype(np.float32), rng.standard_normal((4, 3, 8)).astype(np.float32)
    y, rstd = rms_norm(x, (3, 8), return_stats=True)
    assert rstd.shape == (4, 1, 1)
    a = rms_norm_backward(g, x, (3, 8), rstd=rstd)
    b = rms_norm_backward(g, x, (3, 8))
    np.testing.assert_array_equal(a[0], b[0])


def test_out_inplace_noncontiguous_zero_size_nan(rng):
    x = rng.standard_normal((6, 10)).astype(np.float32)
    expected = rms_norm(x, 10)
    xc = x.copy()
    assert rms_norm(xc, 10, out=xc) is xc
    np.testing.assert_array_equal(xc, expected)
    v = rng.standard_normal((12, 20))[::2, ::-2]
    np.testing.assert_allclose(rms_norm(v, 10), ref.rms_norm(v, 10), rtol=1e-12)
    assert rms_norm(np.ones((0, 3)), 3).shape == (0, 3)
    gx, gw = rms_norm_backward(np.ones((0, 3)), np.ones((0, 3)), 3, np.ones(3))
    assert gx.shape == (0, 3) and np.array_equal(gw, np.zeros(3))
    x[2, 3] = np.nan
    y = rms_norm(x, 10)
    assert np.isnan(y[2]).all() and not np.isnan(np.delete(y, 2, axis=0)).any()
    assert rms_norm(np.arange(6).reshape(2, 3), 3).dtype == np.float64


def test_repeatable_bitwise(rng):
    x, g = rng.standard_normal((700, 130)).astype(np.float32), rng.standard_normal((700, 130)).astype(np.float32)
    w = rng.standard_normal(130).astype(np.float32)
    a = rms_norm_backward(g, x, 130, w)
    b = rms_norm_backward(g, x, 130, w)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


@settings(max_examples=40, deadline=None)
@given(
    shape=st.lists(st.integers(1, 9), min_size=1, max_size=4),
    k=st.integers(1, 4),
    dtype=st.sampled_from([np.float32, np.float64]),
    scale=st.sampled_from([1e-3, 1.0, 1e3]),
    seed=st.integers(0, 2**32 - 1),
)
def test_property_matches_reference(shape, k, dtype, scale, seed):
    k = min(k, len(shape))
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * scale).astype(dtype)
    nshape = tuple(shape[len(shape) - k:])
    tol = 1e-10 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(rms_norm(x, nshape, eps=1e-8), ref.rms_norm(x, nshape, eps=1e-8), rtol=tol, atol=tol)
    g = np.ones_like(x)
    np.testing.assert_allclose(rms_norm_backward(g, x, nshape, eps=1e-8)[0] * scale,
                               ref.rms_norm_backward(g, x, nshape, eps=1e-8)[0] * scale, rtol=tol * 10, atol=tol * 10)
