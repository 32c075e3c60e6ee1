"""Memory-saving backward: layer_norm_backward / rms_norm_backward (and the fused ones)
from the forward's output ``y`` instead of ``x`` (x̂ = (y − b) / w), zero weights."""
import numpy as np
import pytest

from numbanorm import (add_layer_norm, add_layer_norm_backward, layer_norm, layer_norm_backward, rms_norm,
                       rms_norm_backward)


@pytest.mark.parametrize("shape,nshape", [((4, 9), 9), ((3, 5, 6), (5, 6)), ((64, 700), 700)])
def test_layer_norm_from_output_equals_from_input(rng, shape, nshape):
    nsh = (nshape,) if np.ndim(nshape) == 0 else nshape
    x, g = rng.standard_normal(shape), rng.standard_normal(shape)
    w, b = rng.uniform(0.5, 2.0, nsh) * rng.choice([-1, 1], nsh), rng.standard_normal(nsh)
    y, mean, rstd = layer_norm(x, nshape, w, b, return_stats=True)
    want = layer_norm_backward(g, x, nshape, w, mean=mean, rstd=rstd)
    got = layer_norm_backward(g, None, nshape, w, y=y, bias=b, rstd=rstd)
    for a, c in zip(got, want):
        np.testing.assert_allclose(a, c, rtol=1e-9, atol=1e-11)


def test_rms_norm_from_output_equals_from_input(rng):
    x, g, w = rng.standard_normal((40, 33)), rng.standard_normal((40, 33)), rng.uniform(0.5, 2, 33)
    y, rstd = rms_norm(x, 33, w, return_stats=True)
    want = rms_norm_backward(g, x, 33, w, rstd=rstd)
    got = rms_norm_backward(g, None, 33, w, y=y, rstd=rstd)
    for a, c in zip(got, want):
        np.testing.assert_allclose(a, c, rtol=1e-9, atol=1e-11)
    y32, r32 = rms_norm(x.astype(np.float32), 33, w.astype(np.float32), return_stats=True)
    gx32, _ = rms_norm_backward(g.astype(np.float32), None, 33, w.astype(np.float32), y=y32, rstd=r32)
    assert gx32.dtype == np.float32
    np.testing.assert_allclose(gx32, want[0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", ["layer", "rms"])
def test_zero_weights_nan_only_where_undefined(rng, kind):
    """Where w = 0, x̂ is not recoverable from y: grad_x and grad_weight of those columns
    are NaN; every other entry (and grad_bias) equals the gradient computed from x."""
    n = 12
    x, g = rng.standard_normal((10, n)), rng.standard_normal((10, n))
    w, b = rng.uniform(0.5, 2.0, n), rng.standard_normal(n)
    zero = np.zeros(n, bool)
    zero[[2, 7]] = True
    w[zero] = 0.0
    if kind == "layer":
        y, mean, rstd = layer_norm(x, n, w, b, return_stats=True)
        want = layer_norm_backward(g, x, n, w, mean=mean, rstd=rstd)
        got = layer_norm_backward(g, None, n, w, y=y, bias=b, rstd=rstd)
        np.testing.assert_allclose(got[2], want[2], rtol=1e-12)  # grad_bias: always defined
    else:
        y, rstd = rms_norm(x, n, w, return_stats=True)
        want = rms_norm_backward(g, x, n, w, rstd=rstd)
        got = rms_norm_backward(g, None, n, w, y=y, rstd=rstd)
    gx, gw = got[0], got[1]
    assert np.isnan(gx[:, zero]).all() and np.isnan(gw[zero]).all()
    np.testing.assert_allclose(gx[:, ~zero], want[0][:, ~zero], rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(gw[~zero], want[1][~zero], rtol=1e-9, atol=1e-11)


def test_fused_backward_from_output_drops_s(rng):
    x, r = rng.standard_normal((20, 30)), rng.standard_normal((20, 30))
    gy, gs = rng.standard_normal((20, 30)), rng.standard_normal((20, 30))
    w, b = rng.uniform(0.5, 2, 30), rng.standard_normal(30)
    y, s, mean, rstd = add_layer_norm(x, r, 30, w, b, return_stats=True)
    want = add_layer_norm_backward(gy, gs, s, 30, w, mean=mean, rstd=rstd)
    del s
    got = add_layer_norm_backward(gy, gs, None, 30, w, y=y, bias=b, rstd=rstd, out=gy)
    assert got[0] is gy
    for a, c in zip(got, want):
        np.testing.assert_allclose(a, c, rtol=1e-9, atol=1e-11)


def test_from_output_argument_errors(rng):
    x = rng.standard_normal((3, 4))
    with pytest.raises(ValueError, match="layer_norm_backward\\(\\): argument 'rstd' is required with y="):
        layer_norm_backward(x, None, 4, y=x)
    with pytest.raises(ValueError, match="rms_norm_backward\\(\\): give exactly one of 'x'"):
        rms_norm_backward(x, x, 4, y=x, rstd=np.ones(3))
    with pytest.raises(ValueError, match="argument 'bias' is used only with y="):
        layer_norm_backward(x, x, 4, bias=np.zeros(4))


def test_positional_signature_unchanged(rng):
    x, g, w = rng.standard_normal((5, 6)), rng.standard_normal((5, 6)), rng.standard_normal(6)
    gx, gw, gb = layer_norm_backward(g, x, 6, w)
    gx2, gw2 = rms_norm_backward(g, x, 6, w)
    assert gx.shape == gx2.shape == x.shape and gw.shape == gb.shape == gw2.shape == (6,)
