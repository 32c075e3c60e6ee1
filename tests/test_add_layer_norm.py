"""add_layer_norm / add_layer_norm_backward: PyTorch compositions (forward and autograd),
in place, large-offset statistics, memory-saving backward, GPU simulator."""
import numpy as np
import pytest

import numbanorm
from numbanorm import add_layer_norm, add_layer_norm_backward

SHAPES = [((7,), 7), ((4, 9), 9), ((3, 5, 6), (5, 6)), ((64, 700), 700)]


@pytest.mark.parametrize("shape,nshape", SHAPES)
@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("offset", [0.0, 1.0])
def test_torch_parity_forward_and_autograd(torch, rng, shape, nshape, affine, offset):
    F = torch.nn.functional
    nsh = (nshape,) if np.ndim(nshape) == 0 else tuple(nshape)
    x, r = rng.standard_normal(shape), rng.standard_normal(shape)
    gy, gs = rng.standard_normal(shape), rng.standard_normal(shape)
    w = rng.standard_normal(nsh) if affine else None
    b = rng.standard_normal(nsh) if affine else None
    tx, tr = torch.tensor(x, requires_grad=True), torch.tensor(r, requires_grad=True)
    tw = torch.tensor(w, requires_grad=True) if affine else None
    tb = torch.tensor(b, requires_grad=True) if affine else None
    ts = tx + tr
    ty = F.layer_norm(ts, nsh, None if tw is None else offset + tw, tb, eps=1e-5)
    torch.autograd.backward([ty, ts], [torch.tensor(gy), torch.tensor(gs)])
    y, s, mean, rstd = add_layer_norm(x, r, nshape, w, b, weight_offset=offset, return_stats=True)
    np.testing.assert_array_equal(s, ts.detach().numpy())
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    for kw in ({"mean": mean, "rstd": rstd}, {}):
        gx, gw, gb = add_layer_norm_backward(gy, gs, s, nshape, w, weight_offset=offset, **kw)
        np.testing.assert_allclose(gx, tx.grad.numpy(), rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(gx, tr.grad.numpy(), rtol=1e-9, atol=1e-11)
        if affine:
            np.testing.assert_allclose(gw, tw.grad.numpy(), rtol=1e-9, atol=1e-11)
            np.testing.assert_allclose(gb, tb.grad.numpy(), rtol=1e-9, atol=1e-11)
        else:
            assert gw is None
    if affine:
        gx, gw, gb = add_layer_norm_backward(gy, gs, None, nshape, w, y=y, bias=b, rstd=rstd, weight_offset=offset)
        np.testing.assert_allclose(gx, tx.grad.numpy(), rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(gw, tw.grad.numpy(), rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(gb, tb.grad.numpy(), rtol=1e-9, atol=1e-11)


def test_float32_large_offset_statistics(rng):
    """s around 1e4 with unit spread (and a leading outlier row: the two-pass redo)."""
    x = (rng.standard_normal((64, 512)) + 1e4).astype(np.float32)
    r = rng.standard_normal((64, 512)).astype(np.float32)
    x[3, :16] += 50.0
    y, s = add_layer_norm(x, r, 512)
    s64 = s.astype(np.float64)
    ref = (s64 - s64.mean(-1, keepdims=True)) / np.sqrt(s64.var(-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(y, ref, atol=1e-2)
    np.testing.assert_array_equal(s, x + r)


def test_in_place_is_bitwise_the_same(rng):
    x, r = rng.standard_normal((64, 700)), rng.standard_normal((64, 700))
    w, b = rng.standard_normal(700), rng.standard_normal(700)
    y0, s0 = add_layer_norm(x, r, 700, w, b)
    xc, rc = x.copy(), r.copy()
    y, s = add_layer_norm(xc, rc, 700, w, b, out=xc, residual_out=rc)
    assert y is xc and s is rc
    np.testing.assert_array_equal(y, y0)
    np.testing.assert_array_equal(s, s0)


def test_nan_stays_in_its_row(rng):
    x, r = rng.standard_normal((5, 40)), rng.standard_normal((5, 40))
    x[2, 7] = np.nan
    y, s = add_layer_norm(x, r, 40)
    assert np.isnan(y[2]).all() and np.isfinite(np.delete(y, 2, 0)).all()


def test_backward_without_grad_s_is_layer_norm_backward(rng):
    s, g, w = rng.standard_normal((30, 40)), rng.standard_normal((30, 40)), rng.standard_normal(40)
    got = add_layer_norm_backward(g, None, s, 40, w)
    want = numbanorm.layer_norm_backward(g, s, 40, w)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13)


def test_large_streamed_output_matches_small_path(rng):
    x = rng.standard_normal((4100, 4096), dtype=np.float32)
    r = rng.standard_normal((4100, 4096), dtype=np.float32)
    y, s = add_layer_norm(x, r, 4096)
    y1, s1 = add_layer_norm(x[-10:], r[-10:], 4096)
    np.testing.assert_array_equal(s[-10:], s1)
    np.testing.assert_allclose(y[-10:], y1, rtol=1e-6, atol=1e-6)


@pytest.mark.cuda
@pytest.mark.parametrize("shape", [(5, 7), (3, 70)])
def test_gpu_matches_cpu(on_gpu, rng, shape):
    n = shape[-1]
    x, r = rng.standard_normal(shape) + 3.0, rng.standard_normal(shape)
    w, b = rng.standard_normal(n), rng.standard_normal(n)
    gy, gs = rng.standard_normal(shape), rng.standard_normal(shape)
    y0, s0, m0, r0 = add_layer_norm(x, r, n, w, b, return_stats=True)
    g0 = add_layer_norm_backward(gy, gs, s0, n, w)
    g1 = add_layer_norm_backward(gy, gs, None, n, w, y=y0, bias=b, rstd=r0)
    with on_gpu():
        y, s, mean, rstd = add_layer_norm(x, r, n, w, b, return_stats=True)
        g2 = add_layer_norm_backward(gy, gs, s, n, w)
        g3 = add_layer_norm_backward(gy, gs, None, n, w, y=y, bias=b, rstd=rstd)
    np.testing.assert_allclose(s, s0, rtol=1e-14)
    np.testing.assert_allclose(y, y0, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(mean, m0, rtol=1e-12)
    for got, want in ((g2, g0), (g3, g1)):
        for a, b_ in zip(got, want):
            np.testing.assert_allclose(a, b_, rtol=1e-9, atol=1e-11)


def test_failed_call_changes_nothing(rng):
    x, r = rng.standard_normal((4, 8)), rng.standard_normal((4, 8))
    x0, r0 = x.copy(), r.copy()
    out, sout = np.zeros((4, 8)), np.zeros((4, 8))
    with pytest.raises(ValueError, match="add_layer_norm\\(\\): argument 'weight' must be an array of shape"):
        add_layer_norm(x, r, 8, np.ones(7), out=out, residual_out=sout)
    with pytest.raises(ValueError, match="argument 'residual_out' must be an array of shape"):
        add_layer_norm(x, r, 8, out=out, residual_out=np.zeros((4, 9)))
    with pytest.raises(ValueError, match="argument 'eps'"):
        add_layer_norm(x, r, 8, eps=-1.0, out=out, residual_out=r)
    assert not out.any() and not sout.any()
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(r, r0)
