"""Dask path of the fused row norms and the convention / memory-saving options: lazy,
equal to the in-memory calls, chunked along any non-normalized axis."""
import numpy as np
import pytest

import numbanorm as nb

da = pytest.importorskip("dask.array")


@pytest.fixture
def data(rng):
    x, r = rng.standard_normal((10, 3, 8)), rng.standard_normal((10, 3, 8))
    return x, r, rng.standard_normal(8), rng.standard_normal(8), rng.standard_normal(x.shape), rng.standard_normal(x.shape)


def test_add_layer_norm_forward_backward(data):
    x, r, w, b, g, gs = data
    dx, dr = da.from_array(x, chunks=(4, 2, 3)), da.from_array(r, chunks=(3, 3, 8))
    y, s, m, rs = nb.add_layer_norm(dx, dr, 8, w, b, weight_offset=1.0, return_stats=True)
    assert isinstance(y, da.Array) and isinstance(s, da.Array)
    y0, s0, m0, r0 = nb.add_layer_norm(x, r, 8, w, b, weight_offset=1.0, return_stats=True)
    np.testing.assert_array_equal(y.compute(), y0)
    np.testing.assert_array_equal(s.compute(), s0)
    np.testing.assert_array_equal(rs.compute(), r0)
    want = nb.add_layer_norm_backward(g, gs, s0, 8, w, weight_offset=1.0, mean=m0, rstd=r0)
    dg = da.from_array(g, chunks=(5, 3, 8))
    for got in (nb.add_layer_norm_backward(dg, gs, s, 8, w, weight_offset=1.0, mean=m, rstd=rs),
                nb.add_layer_norm_backward(dg, gs, None, 8, w, weight_offset=1.0, y=y, bias=b, rstd=rs)):
        for a, c in zip(got, want):
            np.testing.assert_allclose(a.compute(), c, rtol=1e-12, atol=1e-13)


def test_add_rms_norm_and_options_on_plain_norms(data):
    x, r, w, _, g, _ = data
    dx, dr = da.from_array(x, chunks=(4, 2, 3)), da.from_array(r, chunks=(4, 2, 3))
    y, s = nb.add_rms_norm(dx, dr, 8, w)
    np.testing.assert_array_equal(y.compute(), nb.add_rms_norm(x, r, 8, w)[0])
    np.testing.assert_array_equal(nb.rms_norm(dx, 8, w, weight_offset=1.0).compute(),
                                  nb.rms_norm(x, 8, w, weight_offset=1.0))
    yy, rr = nb.rms_norm(x, 8, w, return_stats=True)
    got = nb.rms_norm_backward(da.from_array(g, chunks=(5, 3, 8)), None, 8, w, y=da.from_array(yy, chunks=5), rstd=rr)
    for a, c in zip(got, nb.rms_norm_backward(g, x, 8, w)):
        np.testing.assert_allclose(a.compute(), c, rtol=1e-12, atol=1e-13)


def test_errors_are_eager(data):
    x, r, w, *_ = data
    with pytest.raises(ValueError, match="add_rms_norm\\(\\): argument 'weight_offset'"):
        nb.add_rms_norm(da.from_array(x), r, 8, w, weight_offset=float("nan"))


def test_numpy_grad_with_dask_y_is_lazy(data):
    x, _, w, b, g, _ = data
    y, mean, rstd = nb.layer_norm(x, 8, w, b, return_stats=True)
    got = nb.layer_norm_backward(g, None, 8, w, y=da.from_array(y, chunks=4), bias=b, rstd=rstd)
    assert isinstance(got[0], da.Array)
    np.testing.assert_allclose(got[0].compute(), nb.layer_norm_backward(g, x, 8, w)[0], rtol=1e-9, atol=1e-11)
