"""``out=`` on every backward function (a numbanorm extension of API.md).

``out`` receives the input-shaped gradient (``grad_x``; ``grad_weight`` for
``weight_standardize_backward``) and is returned in its place; it follows the forward
functions' ``out=`` rules: any castable dtype, any layout, may be ``grad_out`` (or ``x``)
itself, and a call that raises leaves it untouched.
"""
import numpy as np
import pytest

import numbanorm as nn

RNG = np.random.default_rng(7)
X4 = RNG.standard_normal((2, 6, 3, 4))
W6 = RNG.standard_normal(6)

# name -> (call(grad_out, x, **kw) -> result, x)
CASES = {
    "layer_norm": (lambda g, x, **kw: nn.layer_norm_backward(g, x, (3, 4), W6[:4].repeat(3).reshape(3, 4), **kw), X4),
    "rms_norm": (lambda g, x, **kw: nn.rms_norm_backward(g, x, 4, W6[:4], **kw), X4),
    "batch_norm": (lambda g, x, **kw: nn.batch_norm_backward(g, x, W6, **kw), X4),
    "batch_norm_last": (lambda g, x, **kw: nn.batch_norm_backward(g, x, W6[:4], channel_axis=-1, **kw), X4),
    "instance_norm": (lambda g, x, **kw: nn.instance_norm_backward(g, x, W6, **kw), X4),
    "group_norm": (lambda g, x, **kw: nn.group_norm_backward(g, x, 3, W6, **kw), X4),
    "local_response_norm": (lambda g, x, **kw: nn.local_response_norm_backward(g, x, 3, alpha=0.5, **kw), X4),
    "lrn_within": (lambda g, x, **kw: nn.local_response_norm_backward(g, x, 3, alpha=0.5, mode="within_channel",
                                                                      **kw), X4),
    "normalize": (lambda g, x, **kw: nn.normalize_backward(g, x, **kw), X4),
    "normalize_last": (lambda g, x, **kw: nn.normalize_backward(g, x, axis=-1, **kw), X4),
    "weight_standardize": (lambda g, x, **kw: nn.weight_standardize_backward(g, x, **kw), X4),
}


def _first(res):
    return res[0] if isinstance(res, tuple) else res


@pytest.fixture(params=sorted(CASES))
def case(request):
    call, x = CASES[request.param]
    g = RNG.standard_normal(x.shape)
    return call, x, g, call(g, x)


def test_out_receives_the_gradient_and_is_returned(case):
    call, x, g, ref = case
    out = np.full(x.shape, np.nan)
    res = call(g, x, out=out)
    assert _first(res) is out
    np.testing.assert_array_equal(out, _first(ref))
    if isinstance(ref, tuple):  # the parameter gradients are unchanged by out=
        for a, b in zip(res[1:], ref[1:]):
            if a is None:
                assert b is None
            else:
                np.testing.assert_array_equal(a, b)


def test_out_casts_and_any_layout(case):
    call, x, g, ref = case
    x32, g32 = x.astype(np.float32), g.astype(np.float32)
    ref32 = _first(call(g32, x32))
    out = np.zeros(x.shape)  # float64 out of a float32 computation
    assert _first(call(g32, x32, out=out)) is out
    np.testing.assert_array_equal(out, ref32.astype(np.float64))
    big = np.zeros(x.shape[:-1] + (2 * x.shape[-1],), np.float32)
    view = big[..., ::2]  # non-contiguous out
    assert _first(call(g32, x32, out=view)) is view
    np.testing.assert_array_equal(view, ref32)
    assert not big[..., 1::2].any()


def test_out_may_alias_the_inputs(case):
    call, x, g, ref = case
    g2 = g.copy()
    assert _first(call(g2, x, out=g2)) is g2  # in place over grad_out
    np.testing.assert_array_equal(g2, _first(ref))
    x2 = x.copy()
    assert _first(call(g, x2, out=x2)) is x2  # and over x
    np.testing.assert_array_equal(x2, _first(ref))


def test_bad_out_raises_and_changes_nothing(case):
    call, x, g, _ = case
    for bad, err, words in (
        (np.zeros(x.shape[:-1] + (x.shape[-1] + 1,)), ValueError, ["'out'", "shape"]),
        (np.zeros(x.shape, np.int64), TypeError, ["'out'", "dtype"]),
        ("not an array", TypeError, ["'out'"]),
    ):
        before = bad.copy() if isinstance(bad, np.ndarray) else bad
        with pytest.raises(err) as e:
            call(g, x, out=bad)
        assert "_backward()" in str(e.value) and all(w in str(e.value) for w in words), str(e.value)
        if isinstance(bad, np.ndarray):
            np.testing.assert_array_equal(bad, before)
    ro = np.zeros(x.shape)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        call(g, x, out=ro)


def test_failed_call_leaves_out_untouched():
    out = np.full(X4.shape, 3.0)
    with pytest.raises(ValueError, match="eps"):
        nn.layer_norm_backward(np.ones_like(X4), X4, 4, eps=-1.0, out=out)
    with pytest.raises(ValueError, match="num_groups"):
        nn.group_norm_backward(np.ones_like(X4), X4, 4, out=out)
    assert (out == 3.0).all()


def test_zero_size_out():
    x = np.zeros((0, 5))
    out = np.zeros((0, 5))
    gx, gw, gb = nn.layer_norm_backward(x, x, 5, np.ones(5), out=out)
    assert gx is out and gw.shape == (5,) and (gb == 0).all()


def test_streamed_output_into_out():
    """Large outputs take the non-temporal store path; out= must get the same values."""
    from numbanorm._cpu import _stream

    m, n = (_stream.STREAM_BYTES // 4) // 1024 + 8, 1024
    rng = np.random.default_rng(1)
    x = rng.standard_normal((m, n), dtype=np.float32)
    g = rng.standard_normal((m, n), dtype=np.float32)
    ref = nn.rms_norm_backward(g, x, n)[0]
    out = np.empty_like(x)
    assert nn.rms_norm_backward(g, x, n, out=out)[0] is out
    np.testing.assert_array_equal(out, ref)


def test_dask_out():
    da = pytest.importorskip("dask.array")
    x = da.from_array(X4, chunks=(1, 6, 3, 4))
    g = da.from_array(np.ones(X4.shape), chunks=(1, 6, 3, 4))
    ref = nn.layer_norm_backward(np.ones(X4.shape), X4, 4)[0]
    out = np.zeros(X4.shape)
    res = nn.layer_norm_backward(g, x, 4, out=out)
    assert res[0] is out
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)
    dout = da.zeros(X4.shape, chunks=(1, 6, 3, 4))
    res = nn.normalize_backward(g, x, out=dout)
    np.testing.assert_allclose(np.asarray(dout), nn.normalize_backward(np.ones(X4.shape), X4), rtol=1e-12)
    with pytest.raises(ValueError, match="'out'"):
        nn.rms_norm_backward(g, x, 4, out=np.zeros((2, 2)))
