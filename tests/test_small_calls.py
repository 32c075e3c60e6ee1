"""Fast paths of small batch_norm / group_norm calls: the general path's results.

Plain calls (NumPy, float32/float64, C-contiguous, Python scalars; ``_ops/_plain.py``) skip
the general checks, and small batch_norm forwards run their serial kernels in one dispatch
(``_cpu/_channels_small.py``). A NumPy integer argument sends the same call down the general
path, so the two are compared directly: bitwise where the same compiled kernel runs
(group_norm), to a few ulp where LLVM re-optimises the kernels compiled together.
"""
import numpy as np
import pytest

import numbanorm
from numbanorm._cpu import batch_norm as bn_kernels
from numbanorm._ops import batch_norm as bn_ops

ULP = {np.float32: 1e-6, np.float64: 1e-14}


def _close(a, b, dtype):
    np.testing.assert_allclose(a, b, rtol=4 * ULP[dtype], atol=4 * ULP[dtype])


CASES = [((32, 8, 16), 1), ((32, 16, 8), -1), ((64, 24), 1), ((3, 4, 5, 6), -1)]


@pytest.mark.parametrize("shape,ca", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_fast_path_is_the_general_path(rng, monkeypatch, shape, ca, dtype, training):
    x = (rng.standard_normal(shape) * 2 + 1).astype(dtype)
    c = shape[ca]
    w, b = rng.standard_normal(c).astype(dtype), rng.standard_normal(c).astype(dtype)
    rm = rng.standard_normal(c).astype(np.float32)
    rv = (rng.random(c) + 0.5).astype(np.float32)
    calls = []
    kernels = bn_kernels.small_kernels
    spy = (lambda f: lambda *a: calls.append(1) or f(*a))
    monkeypatch.setattr(bn_kernels, "small_kernels", lambda view: tuple(spy(f) for f in kernels(view)))
    monkeypatch.setattr(bn_ops, "_PLANS", {})  # plans hold the kernels: make them again
    for weights in ((w, b), (None, None)):
        rm1, rv1, rm2, rv2 = rm.copy(), rv.copy(), rm.copy(), rv.copy()
        fast = numbanorm.batch_norm(x, rm1, rv1, *weights, training=training, channel_axis=ca)
        general = numbanorm.batch_norm(x, rm2, rv2, *weights, training=training, channel_axis=np.int64(ca))
        _close(fast, general, dtype)
        _close(rm1, rm2, np.float32)
        _close(rv1, rv2, np.float32)
        assert training or np.array_equal(rm1, rm)
        out = np.empty_like(x)
        assert numbanorm.batch_norm(x, rm.copy(), rv.copy(), *weights, training=training, channel_axis=ca,
                                    out=out) is out
        np.testing.assert_array_equal(out, fast)
    assert calls  # the one-dispatch kernels ran
    if training:  # no running statistics, momentum None
        fast = numbanorm.batch_norm(x, None, None, w, b, training=True, momentum=None, channel_axis=ca)
        general = numbanorm.batch_norm(x, None, None, w, b, training=True, momentum=None, channel_axis=np.int64(ca))
        _close(fast, general, dtype)


def test_batch_norm_fast_path_in_place_and_overlaps(rng):
    x = rng.standard_normal((16, 4, 9)).astype(np.float32)
    rm, rv = np.zeros(4, np.float32), np.ones(4, np.float32)
    want = numbanorm.batch_norm(x, rm.copy(), rv.copy(), training=True)
    xc = x.copy()
    assert numbanorm.batch_norm(xc, rm.copy(), rv.copy(), training=True, out=xc) is xc
    np.testing.assert_array_equal(xc, want)
    buf = np.zeros(x.size, np.float32)  # out sharing memory with the running mean: the general error
    rm2 = buf[4:8]
    out = buf.reshape(x.shape)
    with pytest.raises(ValueError, match="batch_norm\\(\\): arguments 'out' and 'running_mean'"):
        numbanorm.batch_norm(x, rm2, rv.copy(), training=True, out=out)


def test_batch_norm_fast_path_keeps_the_errors(rng):
    x = rng.standard_normal((1, 4)).astype(np.float32)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        numbanorm.batch_norm(x, np.zeros(4, np.float32), np.ones(4, np.float32), training=True)
    with pytest.raises(ValueError, match="are required when training=False"):
        numbanorm.batch_norm(x, None, None, training=False)
    rm = np.zeros(4, np.float32)
    rm.flags.writeable = False
    with pytest.raises(ValueError, match="'running_mean' must be a writeable array"):
        numbanorm.batch_norm(rng.standard_normal((3, 4)), rm, np.ones(4), training=True)


@pytest.mark.parametrize("shape,ca,groups", [((32, 8, 16), 1, 4), ((8, 64, 14, 14), 1, 4), ((4, 5, 5, 6), -1, 3)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_group_norm_fast_path_is_the_general_path(rng, shape, ca, groups, dtype):
    x = (rng.standard_normal(shape) * 2 + 1).astype(dtype)
    c = shape[ca]
    w, b = rng.standard_normal(c).astype(dtype), rng.standard_normal(c).astype(dtype)
    for weights in ((w, b), (None, None)):
        fast = numbanorm.group_norm(x, groups, *weights, channel_axis=ca)
        general = numbanorm.group_norm(x, np.int64(groups), *weights, channel_axis=ca)
        np.testing.assert_array_equal(fast, general)
    with pytest.raises(ValueError, match="group_norm\\(\\): argument 'num_groups' must divide"):
        numbanorm.group_norm(x, c + 1, channel_axis=ca)


@pytest.mark.parametrize("shape,ca", [((32, 8, 16), 1), ((8, 64, 14, 14), 1), ((4, 5, 5, 6), -1), ((2, 3, 40, 40), 1)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_instance_norm_fast_path_is_the_general_path(rng, shape, ca, dtype):
    """Plain instance_norm calls (no running statistics) take group_norm's fast path with
    one channel per group: the general path's kernels, bitwise its results."""
    x = (rng.standard_normal(shape) * 2 + 1).astype(dtype)
    c = shape[ca]
    w, b = rng.standard_normal(c).astype(dtype), rng.standard_normal(c).astype(dtype)
    for weights in ((w, b), (None, None)):
        fast = numbanorm.instance_norm(x, None, None, *weights, channel_axis=ca)
        general = numbanorm.instance_norm(x, None, None, *weights, channel_axis=np.int64(ca))
        np.testing.assert_array_equal(fast, general)
        out = np.empty_like(x)
        assert numbanorm.instance_norm(x, None, None, *weights, channel_axis=ca, out=out) is out
        np.testing.assert_array_equal(out, general)
    xc = x.copy()
    assert numbanorm.instance_norm(xc, out=xc, channel_axis=ca) is xc
    np.testing.assert_array_equal(xc, numbanorm.instance_norm(x, channel_axis=np.int64(ca)))
    for one in (np.ones((3, 4), dtype), np.ones((3, 4, 1), dtype), np.ones((3, 1, 1, 4), dtype)):
        with pytest.raises(ValueError, match="more than 1 spatial element per instance"):
            numbanorm.instance_norm(one, channel_axis=1 if one.shape[1] == 4 else -1)


@pytest.mark.parametrize("shape,ca", [((32, 8, 16), 1), ((256, 1024), 1), ((4, 5, 5, 6), -1), ((64, 24), 1)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_backward_fast_path_is_the_general_path(rng, shape, ca, dtype, training):
    """batch_norm_backward with saved statistics and plain arrays skips the general checks:
    bitwise the general path's results (a NumPy integer channel_axis takes that path)."""
    x = (rng.standard_normal(shape) * 2 + 1).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    c = shape[ca]
    w = rng.standard_normal(c).astype(dtype)
    _, mean, rstd = numbanorm.batch_norm(x, None, None, w, training=True, channel_axis=ca, return_stats=True)
    for stats in ((mean, rstd), (mean.astype(np.float64), rstd.astype(np.float64))):
        for wk in (w, None):
            kw = dict(training=training, mean=stats[0], rstd=stats[1])
            fast = numbanorm.batch_norm_backward(g, x, wk, channel_axis=ca, **kw)
            general = numbanorm.batch_norm_backward(g, x, wk, channel_axis=np.int64(ca), **kw)
            assert (fast[1] is None) == (wk is None)
            for u, v in zip(fast, general):
                if v is not None:
                    assert u.dtype == v.dtype and u.shape == v.shape
                    np.testing.assert_array_equal(u, v)
            out = np.empty_like(x)
            assert numbanorm.batch_norm_backward(g, x, wk, channel_axis=ca, out=out, **kw)[0] is out
            np.testing.assert_array_equal(out, general[0])
            gc = g.copy()  # out=grad_out: overlapping, through the general path's scratch buffer
            assert numbanorm.batch_norm_backward(gc, x, wk, channel_axis=ca, out=gc, **kw)[0] is gc
            np.testing.assert_array_equal(gc, general[0])
    with pytest.raises(ValueError, match="must be given together"):
        numbanorm.batch_norm_backward(g, x, w, mean=mean, channel_axis=ca)
    with pytest.raises(ValueError, match="must have shape"):
        numbanorm.batch_norm_backward(g, x, w, mean=mean[:-1], rstd=rstd[:-1], channel_axis=ca)
    with pytest.raises(ValueError, match="grad_out"):
        numbanorm.batch_norm_backward(g[:1], x, w, mean=mean, rstd=rstd, channel_axis=ca)


def _assert_same_results(fast, general):
    """A fast path's results are the general path's: same count, None where it has None,
    else the same shape, dtype and bits."""
    assert len(fast) == len(general)
    for a, b in zip(fast, general):
        if b is None:
            assert a is None
        else:
            assert a.shape == b.shape and a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("shape", [(32, 768), (4, 5, 6), (64, 24), (256, 1024)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("op", ["layer_norm", "rms_norm"])
def test_row_backward_fast_path_is_the_general_path(rng, monkeypatch, shape, dtype, op):
    """Plain row backwards (``_validate.plain_rows_backward``) run the same kernels as the
    general path (sent there by a NumPy-integer ``normalized_shape``): bitwise equal, with
    and without weight and saved statistics (both shapes the forward's forms take)."""
    from numbanorm._ops import layer_norm as ln_ops, rms_norm as rms_ops

    mod = ln_ops if op == "layer_norm" else rms_ops
    calls = []
    plain = mod._plain_backward
    monkeypatch.setattr(mod, "_plain_backward", lambda *a: calls.append(1) or plain(*a))
    fwd, bwd = getattr(numbanorm, op), getattr(numbanorm, op + "_backward")
    n = shape[-1]
    x = (rng.standard_normal(shape) * 2 + 1).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal(n).astype(dtype)
    for weight in (w, None):
        stats = fwd(x, n, weight, return_stats=True)[1:]
        for saved in (stats, tuple(s.reshape(shape[:-1]) for s in stats), None):
            kw = {} if saved is None else dict(zip(("mean", "rstd") if op == "layer_norm" else ("rstd",), saved))
            before = len(calls)
            fast = bwd(g, x, n, weight, **kw)
            assert len(calls) == before + 1
            general = bwd(g, x, np.int64(n), weight, **kw)
            assert len(calls) == before + 1
            _assert_same_results(fast, general)


@pytest.mark.parametrize("shape", [(32, 768), (4, 5, 6), (256, 1024)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("op", ["add_layer_norm", "add_rms_norm"])
def test_fused_backward_fast_path_is_the_general_path(rng, monkeypatch, shape, dtype, op):
    """Plain fused backwards (``_fused.plain_backward``) give what the general path gives
    (sent there by a NumPy-integer ``normalized_shape``), bitwise: with and without weight,
    ``grad_s``, saved statistics (both shapes) and ``out=``; an ``out`` overlapping an input
    is declined and still right."""
    from numbanorm._ops import _fused

    taken = []
    plain = _fused.plain_backward
    monkeypatch.setattr(_fused, "plain_backward", lambda *a: taken.append(r := plain(*a)) or r)
    fwd, bwd = getattr(numbanorm, op), getattr(numbanorm, op + "_backward")
    names = ("mean", "rstd") if op == "add_layer_norm" else ("rstd",)
    n = shape[-1]
    x = (rng.standard_normal(shape) * 2 + 1).astype(dtype)
    r = rng.standard_normal(shape).astype(dtype)
    gy = rng.standard_normal(shape).astype(dtype)
    gs = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal(n).astype(dtype)
    for weight in (w, None):
        _, s, *stats = fwd(x, r, n, weight, return_stats=True)
        for saved in (stats, [a.reshape(shape[:-1]) for a in stats], None):
            kw = {} if saved is None else dict(zip(names, saved))
            for grad_s in (gs, None):
                general = bwd(gy, grad_s, s, np.int64(n), weight, **kw)
                assert taken[-1] is None
                for out in (None, np.empty_like(s)):
                    fast = bwd(gy, grad_s, s, n, weight, out=out, **kw)
                    assert taken[-1] is not None
                    assert out is None or fast[0] is out
                    _assert_same_results(fast, general)
                gc = gy.copy()  # out=grad_y: declined, through the general path's scratch buffer
                assert bwd(gc, grad_s, s, n, weight, out=gc, **kw)[0] is gc
                assert taken[-1] is None
                np.testing.assert_array_equal(gc, general[0])
    with pytest.raises(ValueError, match="grad_s"):
        bwd(gy, gs[:1], s, n, w)
    with pytest.raises(ValueError, match=f"'{names[0]}' must have shape"):
        bwd(gy, gs, s, n, w, **dict(zip(names, [a[:1] for a in stats])))


def test_row_backward_fast_path_keeps_the_errors(rng):
    x = rng.standard_normal((8, 16)).astype(np.float32)
    with pytest.raises(ValueError, match="grad_out"):
        numbanorm.layer_norm_backward(x[:4], x, 16)
    with pytest.raises(ValueError, match="mean"):
        numbanorm.layer_norm_backward(x, x, 16, mean=np.zeros((8, 1), np.float32))
    with pytest.raises(ValueError, match="rstd"):
        numbanorm.rms_norm_backward(x, x, 16, rstd=np.zeros((4, 1), np.float32))


def test_apart_shortcut_never_misses_an_overlap():
    """``_validate.apart`` skips the memory test only for two distinct arrays that own their data."""
    from numbanorm._validate import apart

    a, b = np.empty(16), np.empty(16)
    assert apart(a, (b, None)) and not apart(a, (a,))
    assert not apart(a, (a[1:],)) and not apart(a[:4], (a,)) and apart(a[:4], (a[4:],))
    buf = np.empty(64, np.uint8)
    assert not apart(buf[:32].view(np.float64), (buf[16:48].view(np.float64),))


def test_fused_fast_path_declines_an_output_over_the_weight(rng):
    """A residual_out overlapping the weight it is normalized with takes the general path's
    scratch buffer: the result is that of the untouched weight."""
    x = rng.standard_normal((64, 32)).astype(np.float32)
    r = rng.standard_normal((64, 32)).astype(np.float32)
    buf = rng.standard_normal(64 * 32).astype(np.float32)
    w = buf[:32]
    expect = numbanorm.add_rms_norm(x, r, 32, w.copy())
    s = buf.reshape(64, 32)  # its first row is w's memory: written before rows 1.. are normalized
    y, s_out = numbanorm.add_rms_norm(x, r, 32, w, residual_out=s)
    assert s_out is s
    np.testing.assert_array_equal(y, expect[0])
    np.testing.assert_array_equal(s, expect[1])


@pytest.mark.parametrize("spelling", [lambda n: n, lambda n: (n,), lambda n: [n]], ids=["int", "tuple", "list"])
def test_row_fast_paths_take_torchs_normalized_shape(rng, monkeypatch, spelling):
    """``F.layer_norm(x, (768,))`` is how torch users write it: the 1-tuple and 1-list take
    the fast paths of every row op (forward, backward, fused), with the int's results."""
    from numbanorm import _validate

    seen = []
    for name in ("plain_rows", "plain_fused", "plain_rows_backward"):
        real = getattr(_validate, name)
        monkeypatch.setattr(_validate, name, lambda *a, _f=real: seen.append(r := _f(*a)) or r)
    x, r, g = (rng.standard_normal((4, 24)).astype(np.float32) for _ in range(3))
    w = rng.standard_normal(24).astype(np.float32)
    ns = spelling(24)
    calls = [
        lambda ns: numbanorm.layer_norm(x, ns, w, w),
        lambda ns: numbanorm.rms_norm(x, ns, w),
        lambda ns: numbanorm.add_layer_norm(x, r, ns, w, w),
        lambda ns: numbanorm.add_rms_norm(x, r, ns, w),
        lambda ns: numbanorm.layer_norm_backward(g, x, ns, w),
        lambda ns: numbanorm.rms_norm_backward(g, x, ns, w),
        lambda ns: numbanorm.add_layer_norm_backward(g, g, x, ns, w),
        lambda ns: numbanorm.add_rms_norm_backward(g, g, x, ns, w),
    ]
    for call in calls:
        del seen[:]
        got = call(ns)
        assert seen and seen[-1] == 24
        _assert_same_results(got, call(24))
