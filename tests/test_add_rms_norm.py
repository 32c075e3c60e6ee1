"""add_rms_norm / add_rms_norm_backward: PyTorch compositions (forward and autograd),
in-place residual, residual_dtype, weight_offset, memory-saving backward, GPU simulator."""
import numpy as np
import pytest

import numbanorm
from numbanorm import add_rms_norm, add_rms_norm_backward

SHAPES = [((7,), 7), ((4, 9), 9), ((3, 5, 6), (5, 6)), ((64, 700), 700), ((200, 300), 300)]


def _torch_composition(torch, x, r, nshape, w, eps, offset=0.0):
    """The definition: s = x + r, y = F.rms_norm(s) * (offset + w), with autograd."""
    F = torch.nn.functional
    tx = torch.tensor(x, requires_grad=True)
    tr = torch.tensor(r, requires_grad=True)
    tw = None if w is None else torch.tensor(w, requires_grad=True)
    s = tx + tr
    y = F.rms_norm(s, nshape, None, eps=eps)
    if tw is not None:
        y = y * (offset + tw)
    return tx, tr, tw, s, y


@pytest.mark.parametrize("shape,nshape", SHAPES)
@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("offset", [0.0, 1.0])
def test_torch_parity_forward_and_autograd(torch, rng, shape, nshape, affine, offset):
    nsh = (nshape,) if np.ndim(nshape) == 0 else tuple(nshape)
    x, r = rng.standard_normal(shape), rng.standard_normal(shape)
    gy, gs = rng.standard_normal(shape), rng.standard_normal(shape)
    w = rng.standard_normal(nsh) if affine else None
    tx, tr, tw, ts, ty = _torch_composition(torch, x, r, nsh, w, 1e-6, offset)
    torch.autograd.backward([ty, ts], [torch.tensor(gy), torch.tensor(gs)])
    y, s, rstd = add_rms_norm(x, r, nshape, w, eps=1e-6, weight_offset=offset, return_stats=True)
    np.testing.assert_allclose(s, ts.detach().numpy(), rtol=0, atol=0)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12, atol=1e-13)
    for kw in ({"rstd": rstd}, {}):
        gx, gw = add_rms_norm_backward(gy, gs, s, nshape, w, eps=1e-6, weight_offset=offset, **kw)
        np.testing.assert_allclose(gx, tx.grad.numpy(), rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(gx, tr.grad.numpy(), rtol=1e-9, atol=1e-11)
        if affine:
            np.testing.assert_allclose(gw, tw.grad.numpy(), rtol=1e-9, atol=1e-11)
        else:
            assert gw is None
    if affine and offset:  # memory-saving form: s recovered from y
        gx, gw = add_rms_norm_backward(gy, gs, None, nshape, w, y=y, rstd=rstd, weight_offset=offset)
        np.testing.assert_allclose(gx, tx.grad.numpy(), rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(gw, tw.grad.numpy(), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("shape", [(4, 9), (300, 1000)])
def test_float32_matches_float64_and_torch(torch, rng, shape):
    x = rng.standard_normal(shape).astype(np.float32)
    r = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal(shape[-1]).astype(np.float32)
    y, s = add_rms_norm(x, r, shape[-1], w)
    assert y.dtype == s.dtype == np.float32
    ty = torch.nn.functional.rms_norm(torch.from_numpy(x) + torch.from_numpy(r), (shape[-1],), torch.from_numpy(w))
    np.testing.assert_array_equal(s, x + r)
    np.testing.assert_allclose(y, ty.numpy(), rtol=2e-5, atol=2e-5)


def test_in_place_residual_and_output_into_x(rng):
    x, r = rng.standard_normal((64, 700)), rng.standard_normal((64, 700))
    w = rng.standard_normal(700)
    y0, s0 = add_rms_norm(x, r, 700, w)
    xc, rc = x.copy(), r.copy()
    y, s = add_rms_norm(xc, rc, 700, w, out=xc, residual_out=rc)  # FlashInfer's in-place form
    assert y is xc and s is rc
    np.testing.assert_array_equal(y, y0)
    np.testing.assert_array_equal(s, s0)
    xc, rc = x.copy(), r.copy()
    _, s = add_rms_norm(xc, rc, 700, w, residual_out=xc)
    np.testing.assert_array_equal(s, s0)


def test_partial_overlap_goes_through_scratch(rng):
    buf = rng.standard_normal((65, 50))
    x, r = buf[:64].copy(), rng.standard_normal((64, 50))
    y0, s0 = add_rms_norm(x, r, 50)
    buf[:64] = x
    _, s = add_rms_norm(buf[:64], r, 50, residual_out=buf[1:])  # s overlaps x shifted by a row
    np.testing.assert_array_equal(s, s0)


def test_out_and_residual_out_must_differ(rng):
    x = rng.standard_normal((4, 8))
    with pytest.raises(ValueError, match="add_rms_norm\\(\\): arguments 'out' and 'residual_out'"):
        add_rms_norm(x, x.copy(), 8, out=x, residual_out=x)


def test_residual_dtype_keeps_float32_stream_for_half_data(rng):
    x = rng.standard_normal((16, 64)).astype(np.float16)
    r = rng.standard_normal((16, 64)).astype(np.float32)
    w = rng.standard_normal(64).astype(np.float16)
    y, s = add_rms_norm(x, r, 64, w, residual_dtype=np.float32)
    assert y.dtype == np.float16 and s.dtype == np.float32
    s64 = x.astype(np.float64) + r
    np.testing.assert_allclose(s, s64, rtol=1e-7)
    y64 = s64 / np.sqrt((s64 ** 2).mean(-1, keepdims=True) + np.finfo(np.float32).eps) * w
    np.testing.assert_allclose(y.astype(np.float64), y64, rtol=2e-3, atol=2e-3)
    _, s2 = add_rms_norm(x, r.astype(np.float16), 64, w)
    assert s2.dtype == np.float16


def test_shape_and_dtype_errors_change_nothing(rng):
    x, r = rng.standard_normal((4, 8)), rng.standard_normal((4, 9))
    out = np.zeros((4, 8))
    with pytest.raises(ValueError, match="add_rms_norm\\(\\): argument 'residual' must have the shape"):
        add_rms_norm(x, r, 8, out=out)
    with pytest.raises(TypeError, match="argument 'residual_dtype'"):
        add_rms_norm(x, x, 8, residual_dtype=np.int32)
    with pytest.raises(ValueError, match="argument 'weight_offset'"):
        add_rms_norm(x, x, 8, weight_offset=float("nan"))
    assert not out.any()


def test_backward_needs_s_or_y(rng):
    g = rng.standard_normal((4, 8))
    with pytest.raises(ValueError, match="add_rms_norm_backward\\(\\): give exactly one of 's'"):
        add_rms_norm_backward(g, None, None, 8)
    with pytest.raises(ValueError, match="argument 'rstd' is required with y="):
        add_rms_norm_backward(g, None, None, 8, y=g)


def test_backward_without_grad_s_is_rms_norm_backward(rng):
    s, g, w = rng.standard_normal((30, 40)), rng.standard_normal((30, 40)), rng.standard_normal(40)
    gx, gw = add_rms_norm_backward(g, None, s, 40, w)
    rx, rw = numbanorm.rms_norm_backward(g, s, 40, w)
    np.testing.assert_allclose(gx, rx, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(gw, rw, rtol=1e-12, atol=1e-14)


def test_large_streamed_output_matches_small_path(rng):
    """Outputs >= 64 MiB take the streamed-store kernel path (one large call, float32)."""
    x = rng.standard_normal((4100, 4096), dtype=np.float32)
    r = rng.standard_normal((4100, 4096), dtype=np.float32)
    y, s = add_rms_norm(x, r, 4096)
    rows = slice(4090, 4100)
    y1, s1 = add_rms_norm(x[rows], r[rows], 4096)
    np.testing.assert_array_equal(s[rows], s1)
    np.testing.assert_allclose(y[rows], y1, rtol=1e-6, atol=1e-6)


@pytest.mark.cuda
@pytest.mark.parametrize("shape", [(5, 7), (3, 70)])
def test_gpu_matches_cpu(on_gpu, rng, shape):
    x, r = rng.standard_normal(shape), rng.standard_normal(shape)
    w, gy, gs = rng.standard_normal(shape[-1]), rng.standard_normal(shape), rng.standard_normal(shape)
    y0, s0, rstd0 = add_rms_norm(x, r, shape[-1], w, weight_offset=0.5, return_stats=True)
    g0 = add_rms_norm_backward(gy, gs, s0, shape[-1], w, weight_offset=0.5)
    g1 = add_rms_norm_backward(gy, gs, None, shape[-1], w, y=y0, rstd=rstd0, weight_offset=0.5)
    rc = r.copy()
    with on_gpu():
        y, s, rstd = add_rms_norm(x, rc, shape[-1], w, weight_offset=0.5, residual_out=rc, return_stats=True)
        gx, gw = add_rms_norm_backward(gy, gs, s, shape[-1], w, weight_offset=0.5)
        hx, hw = add_rms_norm_backward(gy, gs, None, shape[-1], w, y=y, rstd=rstd, weight_offset=0.5)
    np.testing.assert_allclose(s, s0, rtol=1e-14)
    np.testing.assert_allclose(rc, s0, rtol=1e-14)
    np.testing.assert_allclose(y, y0, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(rstd, rstd0, rtol=1e-12)
    for a, b in ((gx, g0[0]), (gw, g0[1]), (hx, g1[0]), (hw, g1[1])):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("xdt,rdt", [(np.float64, np.float32), (np.float32, np.float16), (np.float64, np.float16)])
def test_narrow_residual_stream_is_rounded_before_the_norm(rng, xdt, rdt):
    """y is the norm of s as returned (PyTorch: norm((x + r).to(residual dtype)))."""
    x = rng.standard_normal((8, 32)).astype(xdt)
    r = rng.standard_normal((8, 32)).astype(rdt)
    y, s = add_rms_norm(x, r, 32, residual_dtype=rdt)
    assert s.dtype == rdt and y.dtype == xdt
    np.testing.assert_array_equal(s, (x.astype(np.float64) + r).astype(rdt))
    np.testing.assert_allclose(y, numbanorm.rms_norm(s.astype(xdt), 32), rtol=1e-6, atol=1e-6)


@pytest.mark.cuda
def test_gpu_narrow_residual_stream(on_gpu, rng):
    x = rng.standard_normal((4, 16))
    r = rng.standard_normal((4, 16)).astype(np.float16)
    want = add_rms_norm(x, r, 16, residual_dtype=np.float16)
    want32 = add_rms_norm(x, r, 16, residual_dtype=np.float32)
    with on_gpu():
        got = add_rms_norm(x, r, 16, residual_dtype=np.float16)
        got32 = add_rms_norm(x, r, 16, residual_dtype=np.float32)
    for a, b in zip(got + got32, want + want32):
        np.testing.assert_allclose(a, b, rtol=1e-12)


@pytest.mark.parametrize("fused", ["rms", "layer"])
def test_plain_fast_path_equals_general_path(rng, fused):
    """Plain NumPy calls skip the general checks; both paths give bitwise equal results."""
    x = rng.standard_normal((32, 768)).astype(np.float32)
    r = rng.standard_normal((32, 768)).astype(np.float32)
    w = rng.standard_normal(768).astype(np.float32)
    f = add_rms_norm if fused == "rms" else numbanorm.add_layer_norm
    y, s = f(x, r, 768, w)
    general = f(x, r, 768, w, return_stats=True)  # return_stats takes the general path
    np.testing.assert_array_equal(y, general[0])
    np.testing.assert_array_equal(s, general[1])
    xc, rc = x.copy(), r.copy()
    y2, s2 = f(xc, rc, 768, w, out=xc, residual_out=rc)
    assert y2 is xc and s2 is rc
    np.testing.assert_array_equal(y2, y)
    np.testing.assert_array_equal(s2, s)
