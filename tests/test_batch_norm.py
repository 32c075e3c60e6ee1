"""batch_norm / batch_norm_backward: reference twins, PyTorch, running statistics, gradients."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from numbanorm import _dispatch, batch_norm, batch_norm_backward

import reference as ref
from reference import channel_data as _data, channel_pair as _stats, channels_last as _last

TOL = {np.float16: 2e-2, np.float32: 2e-5, np.float64: 1e-12}
SHAPES = [(8, 5), (4, 3, 7), (3, 4, 5, 6), (2, 3, 2, 3, 4)]


# --- forward against the reference twin ------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("channel_axis", [1, -1])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("training", [True, False])
def test_forward_matches_reference(rng, shape, channel_axis, dtype, training):
    c = shape[1]
    x = _data(rng, shape, dtype, channel_axis)
    w, b = (a.astype(dtype) for a in _stats(rng, c))
    rm, rv = _stats(rng, c)
    rm_ref, rv_ref = rm.copy(), rv.copy()
    y = batch_norm(x, rm, rv, w, b, training=training, channel_axis=channel_axis)
    r = ref.batch_norm(x, rm_ref, rv_ref, w, b, training=training, channel_axis=channel_axis)
    assert y.dtype == dtype and y.shape == x.shape
    tol = TOL[dtype]
    np.testing.assert_allclose(y, r, rtol=tol, atol=5 * tol)
    np.testing.assert_allclose(rm, rm_ref, rtol=1e-6 if dtype != np.float64 else 1e-13, atol=1e-7)
    np.testing.assert_allclose(rv, rv_ref, rtol=1e-6 if dtype != np.float64 else 1e-13, atol=1e-7)


def test_training_without_running_stats_and_return_stats(rng):
    x = _data(rng, (6, 4, 5))
    y, mean, rstd = batch_norm(x, None, None, training=True, eps=1e-3, return_stats=True)
    np.testing.assert_allclose(y, ref.batch_norm(x, None, None, training=True, eps=1e-3), rtol=1e-12, atol=1e-12)
    assert mean.shape == rstd.shape == (4,)
    np.testing.assert_allclose(mean, x.mean(axis=(0, 2)), rtol=1e-12)
    np.testing.assert_allclose(rstd, 1 / np.sqrt(x.var(axis=(0, 2)) + 1e-3), rtol=1e-12)
    # eval mode: the running statistics are the returned ones
    rm, rv = _stats(rng, 4)
    _, m2, r2 = batch_norm(x, rm, rv, eps=1e-3, return_stats=True)
    np.testing.assert_allclose(m2, rm, rtol=1e-15)
    np.testing.assert_allclose(r2, 1 / np.sqrt(rv + 1e-3), rtol=1e-15)
    # float32 stats for float16 data (the compute dtype)
    _, m3, _ = batch_norm(x.astype(np.float16), None, None, training=True, return_stats=True)
    assert m3.dtype == np.float32


# --- backward -----------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("channel_axis", [1, -1])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_backward_matches_reference(rng, shape, channel_axis, training, affine):
    c = shape[1]
    x = _data(rng, shape, channel_axis=channel_axis)
    g = _data(rng, shape, channel_axis=channel_axis)
    w = _stats(rng, c)[0] if affine else None
    rm, rv = _stats(rng, c)
    kw = dict(training=training, running_mean=rm, running_var=rv, channel_axis=channel_axis)
    gx, gw, gb = batch_norm_backward(g, x, w, **kw)
    rx, rw, rb = ref.batch_norm_backward(g, x, w, **kw)
    np.testing.assert_allclose(gx, rx, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(gb, rb, rtol=1e-9, atol=1e-11)
    if affine:
        np.testing.assert_allclose(gw, rw, rtol=1e-9, atol=1e-11)
    else:
        assert gw is None


@pytest.mark.parametrize("training", [True, False])
def test_saved_stats_equal_recomputed(rng, training):
    x = _data(rng, (8, 6, 9), np.float32)
    g = _data(rng, (8, 6, 9), np.float32)
    w = _stats(rng, 6, np.float32)[0]
    rm, rv = _stats(rng, 6, np.float32)
    _, mean, rstd = batch_norm(x, rm.copy(), rv.copy(), w, training=training, return_stats=True)
    assert mean.dtype == np.float32 and mean.shape == (6,)
    a = batch_norm_backward(g, x, w, training=training, mean=mean, rstd=rstd)
    b = batch_norm_backward(g, x, w, training=training, running_mean=rm, running_var=rv)
    for u, v in zip(a, b):
        np.testing.assert_allclose(u, v, rtol=2e-5, atol=1e-5)
    # saved stats take precedence over running statistics
    c = batch_norm_backward(g, x, w, training=training, mean=mean, rstd=rstd, running_mean=rm + 5, running_var=rv)
    np.testing.assert_array_equal(a[0], c[0])


def test_finite_differences(rng):
    for channel_axis in (1, -1):
        x = _data(rng, (3, 2, 4), channel_axis=channel_axis)
        w, b = _stats(rng, 2)
        g = _data(rng, x.shape)
        gx, gw, gb = batch_norm_backward(g, x, w, channel_axis=channel_axis)

        def loss(xx, ww, bb):
            return float((batch_norm(xx, None, None, ww, bb, training=True, channel_axis=channel_axis) * g).sum())

        ref.assert_matches_differences(loss, dict(xx=x, ww=w, bb=b), dict(xx=gx, ww=gw, bb=gb))


# --- PyTorch parity -----------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("channel_axis", [1, -1])
def test_torch_parity_forward_running_stats_and_autograd(torch, rng, shape, channel_axis):
    F = torch.nn.functional
    c = shape[1]
    x = _data(rng, shape)
    g = _data(rng, shape)
    w, b = _stats(rng, c)
    rm, rv = _stats(rng, c)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    trm, trv = torch.tensor(rm), torch.tensor(rv)
    ty = F.batch_norm(tx, trm, trv, tw, tb, training=True, momentum=0.3, eps=1e-4)
    ty.backward(torch.tensor(g))
    xin, gin = (a if channel_axis == 1 else _last(a) for a in (x, g))
    y = batch_norm(xin, rm, rv, w, b, training=True, momentum=0.3, eps=1e-4, channel_axis=channel_axis)
    y = ref.channels_first(y, channel_axis)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(rm, trm.numpy(), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(rv, trv.numpy(), rtol=1e-13, atol=1e-15)
    ref.assert_torch_grads(batch_norm_backward(gin, xin, w, eps=1e-4, channel_axis=channel_axis), (tx, tw, tb), channel_axis)
    # eval mode, forward and autograd
    tx.grad = None
    te = F.batch_norm(tx, trm, trv, tw, tb, training=False, eps=1e-4)
    te.backward(torch.tensor(g))
    ye = batch_norm(xin, rm, rv, w, b, eps=1e-4, channel_axis=channel_axis)
    ye = ref.channels_first(ye, channel_axis)
    np.testing.assert_allclose(ye, te.detach().numpy(), rtol=1e-12, atol=1e-12)
    gx = batch_norm_backward(gin, xin, w, training=False, running_mean=rm, running_var=rv, eps=1e-4,
                             channel_axis=channel_axis)[0]
    gx = ref.channels_first(gx, channel_axis)
    np.testing.assert_allclose(gx, tx.grad.numpy(), rtol=1e-9, atol=1e-11)


def test_torch_parity_float32_module_with_cumulative_average(torch, rng):
    """nn.BatchNorm2d(momentum=None): several steps, num_batches_tracked as a NumPy buffer."""
    mod = torch.nn.BatchNorm2d(5, momentum=None)
    rm, rv = np.zeros(5, np.float32), np.ones(5, np.float32)
    nbt = np.zeros(1, np.int64)
    for step in range(4):
        x = (rng.standard_normal((6, 5, 3, 4)) * (step + 1) + step).astype(np.float32)
        ty = mod(torch.tensor(x)).detach().numpy()
        y = batch_norm(x, rm, rv, training=True, momentum=None, num_batches_tracked=nbt)
        np.testing.assert_allclose(y, ty, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(rm, mod.running_mean.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(rv, mod.running_var.numpy(), rtol=1e-5, atol=1e-6)
        assert nbt[0] == int(mod.num_batches_tracked) == step + 1
    assert rm.dtype == np.float32
    mod.eval()
    x = rng.standard_normal((2, 5, 3, 4)).astype(np.float32)
    np.testing.assert_allclose(batch_norm(x, rm, rv), mod(torch.tensor(x)).detach().numpy(), rtol=1e-5, atol=1e-5)


def test_momentum_none_with_int_count_and_default(rng):
    x = _data(rng, (7, 3, 4))
    mean = x.mean(axis=(0, 2))
    var_unb = x.var(axis=(0, 2), ddof=1)
    rm, rv = np.full(3, 2.0), np.full(3, 3.0)
    batch_norm(x, rm, rv, training=True, momentum=None, num_batches_tracked=3)
    np.testing.assert_allclose(rm, 0.75 * 2 + 0.25 * mean, rtol=1e-13)
    np.testing.assert_allclose(rv, 0.75 * 3 + 0.25 * var_unb, rtol=1e-13)
    rm, rv = np.full(3, 2.0), np.full(3, 3.0)
    batch_norm(x, rm, rv, training=True, momentum=None)  # no count: the first batch
    np.testing.assert_allclose(rm, mean, rtol=1e-13)
    np.testing.assert_allclose(rv, var_unb, rtol=1e-13)


def test_num_batches_tracked_incremented_with_momentum(rng):
    x = _data(rng, (4, 3))
    nbt = np.array(7)
    batch_norm(x, np.zeros(3), np.ones(3), training=True, num_batches_tracked=nbt)
    assert nbt == 8
    batch_norm(x, np.zeros(3), np.ones(3), training=False, num_batches_tracked=nbt)
    assert nbt == 8  # eval: no step


def test_paddle_update(rng):
    """PaddlePaddle: running = p·running + (1−p)·batch with the *biased* batch variance."""
    p = 0.9
    x = _data(rng, (5, 4, 6))
    rm, rv = _stats(rng, 4)
    m0, v0 = rm.copy(), rv.copy()
    batch_norm(x, rm, rv, training=True, momentum=1 - p, unbiased_running_var=False)
    mean, var = x.mean(axis=(0, 2)), x.var(axis=(0, 2))
    np.testing.assert_allclose(rm, p * m0 + (1 - p) * mean, rtol=1e-12)
    np.testing.assert_allclose(rv, p * v0 + (1 - p) * var, rtol=1e-12)


# --- dtypes, layouts, out= ------------------------------------------------------------------


def test_running_stats_updated_in_their_own_dtype_and_layout(rng):
    x = _data(rng, (6, 4, 5), np.float32)
    ref_m, ref_v = np.zeros(4), np.ones(4)
    ref.batch_norm(x, ref_m, ref_v, training=True)
    rm16, rv16 = np.zeros(4, np.float16), np.ones(4, np.float16)
    batch_norm(x, rm16, rv16, training=True)
    assert rm16.dtype == np.float16
    np.testing.assert_allclose(rm16, ref_m, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(rv16, ref_v, rtol=1e-3, atol=1e-3)
    big = np.zeros((4, 3))
    big[:, 1] = 1.0
    rm_view, rv_view = big[:, 0], big[::-1, 1][::-1]  # strided views of one buffer
    batch_norm(x, rm_view, rv_view, training=True)
    np.testing.assert_allclose(big[:, 0], ref_m, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(big[:, 1], ref_v, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(big[:, 2], 0.0)


def test_integer_and_bool_inputs_compute_in_float64(rng):
    x = rng.integers(-5, 5, (6, 3, 4)).astype(np.int32)
    y = batch_norm(x, None, None, training=True)
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, ref.batch_norm(x, None, None, training=True), rtol=1e-12, atol=1e-12)
    xb = rng.random((5, 3)) > 0.5
    assert batch_norm(xb, np.zeros(3), np.ones(3)).dtype == np.float64
    gx = batch_norm_backward(x.astype(np.float64), x)[0]
    assert gx.dtype == np.float64


def test_out_and_inplace(rng):
    x = _data(rng, (4, 3, 5), np.float32)
    expected = batch_norm(x, None, None, training=True)
    out = np.empty_like(x)
    assert batch_norm(x, None, None, training=True, out=out) is out
    np.testing.assert_array_equal(out, expected)
    xc = x.copy()
    assert batch_norm(xc, None, None, training=True, out=xc) is xc
    np.testing.assert_array_equal(xc, expected)
    out64 = np.empty(x.shape)
    batch_norm(x, None, None, training=True, out=out64)
    np.testing.assert_array_equal(out64, expected.astype(np.float64))
    outT = np.empty(x.shape[::-1], np.float32).T
    batch_norm(x, None, None, training=True, out=outT)
    np.testing.assert_array_equal(outT, expected)
    xl = _last(x)
    xl_c = xl.copy()
    batch_norm(xl_c, None, None, training=True, channel_axis=-1, out=xl_c)
    np.testing.assert_allclose(xl_c, _last(expected), rtol=1e-5, atol=1e-5)


def test_noncontiguous_and_negative_strides(rng):
    base = _data(rng, (6, 4, 10))
    for view in (base[::2], base[:, ::-1], base[..., ::-3], base[::-1, :, ::2], base.transpose(0, 1, 2)[:, 1:]):
        np.testing.assert_allclose(batch_norm(view, None, None, training=True),
                                   ref.batch_norm(view, None, None, training=True), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(batch_norm_backward(view * 2, view)[0],
                                   ref.batch_norm_backward(view * 2, view)[0], rtol=1e-9, atol=1e-11)
    # a channels-last view of channels-first memory
    v = np.moveaxis(base, 1, -1)
    np.testing.assert_allclose(batch_norm(v, None, None, training=True, channel_axis=-1),
                               ref.batch_norm(v, None, None, training=True, channel_axis=-1), atol=1e-12)


def test_other_channel_axis(rng):
    x = _data(rng, (3, 4, 5, 2))
    for ax in (2, -2):
        np.testing.assert_allclose(batch_norm(x, None, None, training=True, channel_axis=ax),
                                   ref.batch_norm(x, None, None, training=True, channel_axis=ax), atol=1e-12)


def test_zero_size(rng):
    rm, rv = np.zeros(3), np.ones(3)
    for shape in ((0, 3), (0, 3, 4), (2, 3, 0)):
        x = np.ones(shape, np.float32)
        y, mean, rstd = batch_norm(x, rm, rv, training=True, return_stats=True)
        assert y.shape == shape and y.dtype == np.float32 and mean.shape == (3,)
        np.testing.assert_array_equal(rm, 0.0)  # an empty batch changes nothing
        np.testing.assert_array_equal(rv, 1.0)
        assert batch_norm(x, rm, rv).shape == shape
        gx, gw, gb = batch_norm_backward(x, x, np.ones(3, np.float32))
        assert gx.shape == shape
        np.testing.assert_array_equal(gb, 0.0)
    x = np.ones((4, 0, 2))
    assert batch_norm(x, np.zeros(0), np.zeros(0), training=True).shape == (4, 0, 2)


def test_nan_propagates_to_its_channel_only():
    x = np.arange(24.0).reshape(2, 3, 4)
    x[1, 1, 2] = np.nan
    y = batch_norm(x, None, None, training=True)
    assert np.isnan(y[:, 1]).all()
    assert not np.isnan(y[:, [0, 2]]).any()
    gx, gw, gb = batch_norm_backward(np.ones_like(x), x, np.ones(3))
    assert np.isnan(gx[:, 1]).all() and not np.isnan(gx[:, [0, 2]]).any()
    assert np.isnan(gw[1]) and not np.isnan(gw[[0, 2]]).any()
    rm, rv = np.zeros(3), np.ones(3)
    batch_norm(x, rm, rv, training=True)
    assert np.isnan(rm[1]) and not np.isnan(rm[[0, 2]]).any()


def test_inputs_not_modified(rng):
    x = _data(rng, (4, 3, 5))
    w, b = _stats(rng, 3)
    g = _data(rng, (4, 3, 5))
    rm, rv = _stats(rng, 3)
    arrays = (x, w, b, g, rm, rv)
    copies = [a.copy() for a in arrays]
    batch_norm(x, rm, rv, w, b)
    batch_norm(x, None, None, w, b, training=True)
    batch_norm_backward(g, x, w)
    batch_norm_backward(g, x, w, training=False, running_mean=rm, running_var=rv)
    for a, c in zip(arrays, copies):
        np.testing.assert_array_equal(a, c)


def test_float32_large_offset(rng):
    x64 = rng.standard_normal((16, 8, 32, 32)) + 1e4
    x = x64.astype(np.float32)
    for ax, xx in ((1, x), (-1, _last(x))):
        rm, rv = np.zeros(8), np.ones(8)
        y = batch_norm(xx, rm, rv, training=True, channel_axis=ax)
        np.testing.assert_allclose(y, ref.batch_norm(xx, None, None, training=True, channel_axis=ax), atol=1e-2)
        np.testing.assert_allclose(rv, 0.9 + 0.1 * x.astype(np.float64).var(axis=(0, 2, 3), ddof=1), rtol=1e-4)
        gx = batch_norm_backward(np.ones_like(xx), xx, channel_axis=ax)[0]
        assert np.abs(gx).max() < 1e-2


@pytest.mark.parametrize("channel_axis", [1, -1])
@pytest.mark.parametrize("training", [True, False])
def test_multi_block_shapes_match_reference(rng, channel_axis, training):
    """Several chunks and BLOCK runs per channel; float64 tight, float32 with an offset."""
    x = _data(rng, (6, 5, 30, 47), channel_axis=channel_axis)
    g = _data(rng, (6, 5, 30, 47), channel_axis=channel_axis)
    w, b = _stats(rng, 5)
    rm, rv = _stats(rng, 5)
    kw = dict(channel_axis=channel_axis)
    np.testing.assert_allclose(batch_norm(x, rm.copy(), rv.copy(), w, b, training, **kw),
                               ref.batch_norm(x, rm.copy(), rv.copy(), w, b, training, **kw), rtol=1e-11, atol=1e-11)
    bkw = dict(training=training, running_mean=rm, running_var=rv, **kw)
    for u, v in zip(batch_norm_backward(g, x, w, **bkw), ref.batch_norm_backward(g, x, w, **bkw)):
        np.testing.assert_allclose(u, v, rtol=1e-9, atol=1e-9)
    x32 = (x + 2e3).astype(np.float32)
    g32 = g.astype(np.float32)
    rm32 = (rm + 2e3).astype(np.float32)
    np.testing.assert_allclose(batch_norm(x32, rm32.copy(), rv.copy(), w, b, training, **kw),
                               ref.batch_norm(x32, rm32.copy(), rv.copy(), w, b, training, **kw), rtol=1e-3, atol=1e-3)
    bkw["running_mean"] = rm32
    for u, v in zip(batch_norm_backward(g32, x32, w.astype(np.float32), **bkw),
                    ref.batch_norm_backward(g32, x32, w, **bkw)):
        np.testing.assert_allclose(u, v, rtol=1e-3, atol=1e-3 * np.abs(v).max())


def test_repeatable_bitwise_on_any_thread_count_and_serial_parallel_agree(rng, monkeypatch):
    import numba

    from numbanorm import _config

    def run(x, g, w, ax):
        y = batch_norm(x, None, None, w, training=True, channel_axis=ax)
        return (y,) + batch_norm_backward(g, x, w, channel_axis=ax)

    for ax in (1, -1):
        x = _data(rng, (9, 16, 40, 41), np.float32, ax)
        g = _data(rng, (9, 16, 40, 41), np.float32, ax)
        w = _stats(rng, 16, np.float32)[0]
        a = run(x, g, w, ax)
        threads = numba.get_num_threads()
        try:
            for n in (1, threads):
                numba.set_num_threads(n)
                for u, v in zip(a, run(x, g, w, ax)):
                    np.testing.assert_array_equal(u, v)  # fixed chunks: bitwise the same
        finally:
            numba.set_num_threads(threads)
        monkeypatch.setattr(_config, "SERIAL_THRESHOLD", 10**12)
        s = run(x, g, w, ax)
        monkeypatch.undo()
        for u, v in zip(a, s):  # the serial twin may vectorize differently: ulps apart
            np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6)


# --- validation -----------------------------------------------------------------------------


def _bad_calls(x, rm, rv):
    c = x.shape[1]
    return [
        (ValueError, "more than 1 value per channel", lambda: batch_norm(x[:1, :, :1], rm, rv, training=True)),
        (ValueError, "required when training=False", lambda: batch_norm(x, None, None)),
        (ValueError, "running_mean", lambda: batch_norm(x, np.zeros(c + 1), rv, training=True)),
        (ValueError, "running_var", lambda: batch_norm(x, rm, np.ones((c, 1)), training=True)),
        (ValueError, "given together", lambda: batch_norm(x, rm, None, training=True)),
        (ValueError, "weight", lambda: batch_norm(x, rm, rv, np.ones(c - 1), training=True)),
        (ValueError, "bias", lambda: batch_norm(x, rm, rv, None, np.ones(2 * c), training=True)),
        (ValueError, "eps", lambda: batch_norm(x, rm, rv, training=True, eps=-1.0)),
        (ValueError, "momentum", lambda: batch_norm(x, rm, rv, training=True, momentum=float("nan"))),
        (TypeError, "momentum", lambda: batch_norm(x, rm, rv, training=True, momentum="0.1")),
        (ValueError, "channel_axis", lambda: batch_norm(x, rm, rv, training=True, channel_axis=0)),
        (ValueError, "channel_axis", lambda: batch_norm(x, rm, rv, training=True, channel_axis=5)),
        (ValueError, "out", lambda: batch_norm(x, rm, rv, training=True, out=np.empty((1, 2)))),
        (TypeError, "x", lambda: batch_norm(x.astype(complex), rm, rv, training=True)),
        (TypeError, "running_mean", lambda: batch_norm(x, rm.astype(int), rv, training=True)),
        (TypeError, "running_mean", lambda: batch_norm(x, list(rm), list(rv), training=True)),
        (TypeError, "training", lambda: batch_norm(x, rm, rv, training=1)),
        (TypeError, "num_batches_tracked", lambda: batch_norm(x, rm, rv, training=True, num_batches_tracked=1.5)),
        (ValueError, "num_batches_tracked", lambda: batch_norm(x, rm, rv, training=True, num_batches_tracked=-1)),
        (ValueError, "x", lambda: batch_norm(x[0, 0], rm, rv, training=True)),
    ]


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_torch_parity_one_dimensional_empty_input(torch, training, dtype):
    """x of shape (0,): torch returns an empty result and touches nothing, for running
    statistics of any length; so does numbanorm (running statistics required in eval, API)."""
    F = torch.nn.functional
    for c in (0, 3):
        trm, trv = torch.zeros(c, dtype=torch.float64), torch.ones(c, dtype=torch.float64)
        ty = F.batch_norm(torch.zeros(0, dtype=torch.float64), trm, trv, training=training)
        rm, rv = np.zeros(c), np.ones(c)
        y = batch_norm(np.zeros(0, dtype), rm, rv, training=training)
        assert y.shape == tuple(ty.shape) == (0,) and y.dtype == dtype
        np.testing.assert_array_equal(rm, trm.numpy())
        np.testing.assert_array_equal(rv, trv.numpy())
        out = np.zeros(0, dtype)
        y, mean, rstd = batch_norm(np.zeros(0, dtype), rm, rv, training=training, out=out, return_stats=True)
        assert y is out and mean.shape == rstd.shape == (0,)
    if training:
        assert F.batch_norm(torch.zeros(0), None, None, training=True).shape == (0,)
        assert batch_norm(np.zeros(0), None, None, training=True).shape == (0,)
    else:
        with pytest.raises(ValueError, match="required when training=False"):
            batch_norm(np.zeros(0), None, None)
    for bad in (dict(momentum="a"), dict(eps=-1.0), dict(weight="w")):
        with pytest.raises((TypeError, ValueError), match=r"batch_norm\(\): argument"):
            batch_norm(np.zeros(0), np.zeros(3), np.ones(3), training=training, **bad)
    with pytest.raises(ValueError, match="at least 2 dimensions"):  # non-empty 1-D: no channel axis
        batch_norm(np.zeros(3), np.zeros(3), np.ones(3))


def test_validation_errors_leave_everything_untouched(rng):
    x = _data(rng, (4, 3, 5))
    rm, rv = _stats(rng, 3)
    rm0, rv0 = rm.copy(), rv.copy()
    for exc, words, call in _bad_calls(x, rm, rv):
        with pytest.raises(exc, match=words) as info:
            call()
        assert "batch_norm()" in str(info.value)
        np.testing.assert_array_equal(rm, rm0)
        np.testing.assert_array_equal(rv, rv0)
    out = np.full(x.shape, 7.0)
    with pytest.raises(ValueError):
        batch_norm(x, rm, rv, np.ones(4), training=True, out=out)
    np.testing.assert_array_equal(out, 7.0)
    ro = rm.copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        batch_norm(x, ro, rv, training=True)
    np.testing.assert_array_equal(rv, rv0)
    batch_norm(x, ro, rv.copy())  # read-only running stats are fine in eval mode


def test_backward_validation(rng):
    x = _data(rng, (4, 3, 5))
    with pytest.raises(ValueError, match="grad_out"):
        batch_norm_backward(np.ones((4, 3)), x)
    with pytest.raises(ValueError, match="training=False"):
        batch_norm_backward(x, x, training=False)
    with pytest.raises(ValueError, match="together"):
        batch_norm_backward(x, x, mean=np.zeros(3))
    with pytest.raises(ValueError, match="mean"):
        batch_norm_backward(x, x, mean=np.zeros(4), rstd=np.ones(4))
    with pytest.raises(TypeError, match="grad_out"):
        batch_norm_backward(x.astype(complex), x)


# --- properties ---------------------------------------------------------------------------


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shape=st.lists(st.integers(1, 6), min_size=2, max_size=5),
    channel_axis=st.sampled_from([1, -1]),
    dtype=st.sampled_from([np.float32, np.float64]),
    training=st.booleans(),
    offset=st.sampled_from([0.0, 1e3, -1e4]),
    seed=st.integers(0, 2**32 - 1),
)
def test_property_matches_reference(shape, channel_axis, dtype, training, offset, seed):
    rng = np.random.default_rng(seed)
    c = shape[channel_axis]
    if training and np.prod(shape) // c == 1:
        shape[0] += 1
    x = (rng.standard_normal(shape) + offset).astype(dtype)
    w, b = (a.astype(dtype) for a in _stats(rng, c))
    rm, rv = _stats(rng, c)
    rm[:] += offset
    rm_r, rv_r = rm.copy(), rv.copy()
    y = batch_norm(x, rm, rv, w, b, training=training, channel_axis=channel_axis)
    r = ref.batch_norm(x, rm_r, rv_r, w, b, training=training, channel_axis=channel_axis)
    tol = 1e-12 * max(1.0, abs(offset)) if dtype == np.float64 else 5e-3
    np.testing.assert_allclose(y, r, rtol=tol, atol=tol)
    # float32 data: statistics carry float32 rounding of the shifted values (~1e-7 relative)
    stol = 1e-9 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(rm, rm_r, rtol=stol, atol=stol)
    np.testing.assert_allclose(rv, rv_r, rtol=stol, atol=stol)
    g = rng.standard_normal(shape).astype(dtype)
    gx, gw, gb = batch_norm_backward(g, x, w, training=training, running_mean=rm, running_var=rv,
                                     channel_axis=channel_axis)
    rx, rw, rb = ref.batch_norm_backward(g, x, w, training=training, running_mean=rm, running_var=rv,
                                         channel_axis=channel_axis)
    np.testing.assert_allclose(gb, rb, rtol=tol, atol=tol * 10)
    if dtype == np.float64:
        np.testing.assert_allclose(gx, rx, rtol=1e3 * tol, atol=1e3 * tol)


# --- GPU (CUDA simulator) -----------------------------------------------------------------


@pytest.mark.cuda
@pytest.mark.parametrize("shape,channel_axis", [((3, 4, 5, 6), 1), ((2, 3, 150), 1), ((5, 3, 4), -1), ((6, 3), 1)])
def test_gpu_matches_cpu(rng, small_blocks, shape, channel_axis):
    x = _data(rng, shape, np.float32, channel_axis)
    g = _data(rng, shape, np.float32, channel_axis)
    c = x.shape[channel_axis]
    w, b = _stats(rng, c, np.float32)
    rm, rv = _stats(rng, c, np.float32)
    kw = dict(channel_axis=channel_axis)
    cpu_rm, cpu_rv = rm.copy(), rv.copy()
    cpu = batch_norm(x, cpu_rm, cpu_rv, w, b, training=True, return_stats=True, **kw)
    cpu_eval = batch_norm(x, rm, rv, w, b, **kw)
    cpu_bwd = batch_norm_backward(g, x, w, **kw)
    cpu_bwd_eval = batch_norm_backward(g, x, w, training=False, running_mean=rm, running_var=rv, **kw)
    gpu_rm, gpu_rv = rm.copy(), rv.copy()
    with _dispatch.force_device("cuda"):
        gpu = batch_norm(x, gpu_rm, gpu_rv, w, b, training=True, return_stats=True, **kw)
        gpu_eval = batch_norm(x, rm, rv, w, b, **kw)
        gpu_bwd = batch_norm_backward(g, x, w, **kw)
        gpu_bwd_eval = batch_norm_backward(g, x, w, training=False, running_mean=rm, running_var=rv, **kw)
    for u, v in zip(cpu + (cpu_eval,) + cpu_bwd + cpu_bwd_eval, gpu + (gpu_eval,) + gpu_bwd + gpu_bwd_eval):
        assert isinstance(v, np.ndarray) and v.dtype == u.dtype
        np.testing.assert_allclose(v, u, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gpu_rm, cpu_rm, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(gpu_rv, cpu_rv, rtol=1e-6, atol=1e-7)


@pytest.mark.cuda
def test_gpu_float64_cumulative_and_device_running_stats(rng, small_blocks):
    from numba import cuda

    x = _data(rng, (4, 3, 7))
    rm, rv = np.zeros(3), np.ones(3)
    ref_m, ref_v = rm.copy(), rv.copy()
    ref.batch_norm(x, ref_m, ref_v, training=True, momentum=None, num_batches_tracked=2)
    d_rm, d_rv = cuda.to_device(rm), cuda.to_device(rv)
    d_x = cuda.to_device(x)
    d_nbt = cuda.to_device(np.array([2], np.int64))
    y = batch_norm(d_x, d_rm, d_rv, training=True, momentum=None, num_batches_tracked=d_nbt)
    assert d_nbt.copy_to_host()[0] == 3
    np.testing.assert_allclose(y.copy_to_host(), ref.batch_norm(x, None, None, training=True), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(d_rm.copy_to_host(), ref_m, rtol=1e-12)
    np.testing.assert_allclose(d_rv.copy_to_host(), ref_v, rtol=1e-12)
    host_count = np.array([5])  # a host counter is fine with device data
    batch_norm(d_x, d_rm, d_rv, training=True, momentum=None, num_batches_tracked=host_count)
    ref.batch_norm(x, ref_m, ref_v, training=True, momentum=None, num_batches_tracked=5)
    assert host_count[0] == 6
    np.testing.assert_allclose(d_rm.copy_to_host(), ref_m, rtol=1e-12)


def test_float16_backward_is_computed_in_float32_and_returned_as_float16(rng):
    x = _data(rng, (6, 3, 7), np.float16)
    g = _data(rng, (6, 3, 7), np.float16)
    w = np.ones(3, np.float16)
    for training in (True, False):
        kw = dict(training=training, running_mean=np.zeros(3, np.float16), running_var=np.ones(3, np.float16))
        got = batch_norm_backward(g, x, w, **kw)
        want = ref.batch_norm_backward(g, x, w, **kw)
        for u, v in zip(got, want):
            assert u.dtype == np.float16
            np.testing.assert_allclose(u, v, rtol=2e-2, atol=2e-2)


@pytest.mark.cuda
@pytest.mark.parametrize("channel_axis", [1, -1])
def test_gpu_float32_large_offset_as_accurate_as_cpu(rng, small_blocks, channel_axis):
    """float32 data with a 1e4 offset: the GPU kernels compute elements in float32 (the
    mean split into two float32 values), their error against float64 stays at the CPU
    path's level, forward and backward."""
    x64 = rng.standard_normal((3, 4, 6, 13)) + 1e4
    x = x64.astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    if channel_axis == -1:
        x, g = _last(x), _last(g)
    w = (1 + 0.1 * rng.standard_normal(4)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    kw = dict(channel_axis=channel_axis)
    want = ref.batch_norm(x.astype(np.float64), None, None, w, b, training=True, **kw)
    want_b = ref.batch_norm_backward(g.astype(np.float64), x.astype(np.float64), w.astype(np.float64), **kw)
    cpu = batch_norm(x, None, None, w, b, training=True, **kw)
    cpu_b = batch_norm_backward(g, x, w, **kw)
    with _dispatch.force_device("cuda"):
        gpu = batch_norm(x, None, None, w, b, training=True, **kw)
        gpu_b = batch_norm_backward(g, x, w, **kw)
    for c, d, r in zip((cpu,) + tuple(cpu_b), (gpu,) + tuple(gpu_b), (want,) + tuple(want_b)):
        scale = np.abs(r).max()
        cpu_err = np.abs(c - r).max() / scale
        gpu_err = np.abs(d - r).max() / scale
        assert gpu_err <= max(4 * cpu_err, 1e-5), (gpu_err, cpu_err)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(4, 8, 5, 5), (8, 16, 14, 14), (3, 9, 7, 300)])
def test_per_channel_kernels_match_the_generic_path(monkeypatch, dtype, shape):
    """The NCHW training forward's and backward's per-channel kernels (``_channels._runs``)
    against the generic two-pass path they replace for such shapes (output, statistics,
    running statistics, gradients); a NaN stays in its channel."""
    from numbanorm._cpu import _channels

    rng = np.random.default_rng(5)
    x = (rng.standard_normal(shape) * 2 + 3).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal(shape[1]).astype(dtype)
    b = rng.standard_normal(shape[1]).astype(dtype)
    x[1, 2, 0, 0] = np.nan
    assert _channels._runs(x.reshape(1, shape[0], shape[1], -1), shape[1])
    tol = 1e-5 if dtype == np.float32 else 1e-12
    results = []
    for generic in (False, True):
        if generic:
            monkeypatch.setattr(_channels, "_runs", lambda x, groups: False)
        rm, rv = np.zeros(shape[1], dtype), np.ones(shape[1], dtype)
        y, mean, rstd = batch_norm(x, rm, rv, w, b, training=True, return_stats=True)
        results.append((y, mean, rstd, rm, rv) + tuple(batch_norm_backward(g, x, w, mean=mean, rstd=rstd)))
    for a, e in zip(*results):
        np.testing.assert_allclose(a, e, rtol=tol, atol=tol * np.nanmax(np.abs(e)))
    for a in (results[0][0], results[0][5]):  # y and grad_x: NaN in channel 2 only
        assert np.isnan(a[:, 2]).all() and not np.isnan(np.delete(a, 2, axis=1)).any()


def test_per_channel_backward_rule_is_shape_only():
    """Which BatchNorm backwards take the per-channel kernel: NCHW shapes with small enough
    channels whose run stride spreads over the cache sets (not 64 KiB multiples with many runs)."""
    from numbanorm._cpu import _channels

    def runs(n, c, hw, dt=np.float32):
        return _channels._runs(np.empty((1, n, c, hw), dt), c)

    assert runs(8, 256, 784) and runs(32, 64, 3136) and runs(4, 8, 1024)
    assert not runs(128, 64, 256) and not runs(64, 32, 1024)  # 64 KiB / 128 KiB strides
    assert not runs(8, 4, 784) and not runs(1, 64, 784)  # too few channels, one run
    assert not runs(64, 16, 3136)  # 1.6 MiB of dy and x a channel
