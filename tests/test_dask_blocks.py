"""Dask block tasks run the ops' compute functions, not the public ops: the arguments are
validated once, before the graph is built, and computing the graph checks nothing again.

Every argument check of :mod:`numbanorm._validate` (and the public functions themselves)
is replaced by a function that fails while a graph of several blocks is computed; the
result must still equal the in-memory one.
"""
import numpy as np
import pytest

import numbanorm as nn
from numbanorm import _validate

da = pytest.importorskip("dask.array")

CHECKS = ("array", "check_array_like", "eps", "real", "positive_int", "flag", "choice", "normalized_shape",
          "channel_axis", "param", "out")


def _calls(rng):
    x = rng.normal(size=(6, 8, 5, 4)) * 2 + 0.5
    g = rng.normal(size=x.shape)
    w4, b4 = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    w8, b8 = rng.normal(size=8), rng.normal(size=8)
    mean, rstd = nn.layer_norm(x, (5, 4), return_stats=True)[1:]
    rrstd = nn.rms_norm(x, 4, return_stats=True)[1]
    lmean, lrstd = nn.layer_norm(x, 4, return_stats=True)[1:]
    gmean, grstd = nn.group_norm(x, 4, return_stats=True)[1:]
    imean, irstd = nn.instance_norm(x, return_stats=True)[1:]
    rmean, rvar = rng.normal(size=8), rng.uniform(0.5, 2, size=8)
    bmean, brstd = nn.batch_norm(x, None, None, training=True, return_stats=True)[1:]
    return {
        "layer_norm": (nn.layer_norm, (x, (5, 4), w4, b4), dict(return_stats=True)),
        "layer_norm_backward": (nn.layer_norm_backward, (g, x, (5, 4), w4), dict(mean=mean, rstd=rstd)),
        "rms_norm": (nn.rms_norm, (x, 4, w4[0]), dict(return_stats=True)),
        "rms_norm_backward": (nn.rms_norm_backward, (g, x, 4, w4[0]), dict(rstd=rrstd)),
        "add_layer_norm": (nn.add_layer_norm, (x, g, 4, w4[0], b4[0]), dict(weight_offset=1.0, return_stats=True)),
        "add_layer_norm_backward": (nn.add_layer_norm_backward, (g, x, x, 4, w4[0]),
                                    dict(mean=lmean, rstd=lrstd, weight_offset=1.0)),
        "add_rms_norm": (nn.add_rms_norm, (x, g, 4, w4[0]), {}),
        "add_rms_norm_backward": (nn.add_rms_norm_backward, (g, None, None, 4, w4[0]), dict(y=x, rstd=rrstd)),
        "normalize": (nn.normalize, (x, 3.0, 1), {}),
        "normalize_backward": (nn.normalize_backward, (g, x, 2.0, -1), {}),
        "weight_standardize": (nn.weight_standardize, (x,), {}),
        "weight_standardize_backward": (nn.weight_standardize_backward, (g, x), {}),
        "local_response_norm": (nn.local_response_norm, (x, 3), dict(mode="within_channel")),
        "local_response_norm_backward": (nn.local_response_norm_backward, (g, x, 3), {}),
        "group_norm": (nn.group_norm, (x, 4, w8, b8), dict(return_stats=True)),
        "group_norm_backward": (nn.group_norm_backward, (g, x, 4, w8), dict(mean=gmean, rstd=grstd)),
        "group_norm_backward-channels_last": (nn.group_norm_backward, (g, x, 2, w4[0]), dict(channel_axis=-1)),
        "batch_norm": (nn.batch_norm, (x, None, None, w8, b8, True), dict(return_stats=True)),
        "batch_norm-eval": (nn.batch_norm, (x, rmean, rvar, w8, b8), {}),
        "batch_norm_backward": (nn.batch_norm_backward, (g, x, w8), {}),
        "batch_norm_backward-saved": (nn.batch_norm_backward, (g, x), dict(mean=bmean, rstd=brstd)),
        "batch_norm_backward-eval": (nn.batch_norm_backward, (g, x, w8), dict(training=False, running_mean=rmean,
                                                                              running_var=rvar)),
        "instance_norm": (nn.instance_norm, (x, None, None, w8, b8), dict(return_stats=True)),
        "instance_norm-eval": (nn.instance_norm, (x, rmean, rvar), dict(use_input_stats=False)),
        "instance_norm_backward": (nn.instance_norm_backward, (g, x, w8), dict(mean=imean, rstd=irstd)),
        "instance_norm_backward-recomputed": (nn.instance_norm_backward, (g, x), {}),
        "standardize": (nn.standardize, (x,), dict(axis=(0, 2), ddof=1)),
        "min_max_scale": (nn.min_max_scale, (x, (-1, 2)), dict(axis=1, clip=True)),
    }


def _dask(a):
    return da.from_array(a, chunks=(2, 3, 2, 3)) if isinstance(a, np.ndarray) and a.ndim == 4 else a


def _eq(got, want):
    """Equal to the in-memory result (to rounding: some kernels' summation order follows the
    block's shape; test_dask.py checks the bit-for-bit cases)."""
    if isinstance(want, tuple):
        assert isinstance(got, tuple) and len(got) == len(want)
        for a, b in zip(got, want):
            _eq(a, b)
    elif want is None:
        assert got is None
    else:
        a = np.asarray(got)
        assert a.dtype == want.dtype and a.shape == want.shape
        np.testing.assert_allclose(a, want, rtol=1e-12, atol=1e-13)


OPS = sorted(_calls(np.random.default_rng(0)))


@pytest.mark.parametrize("op", OPS)
def test_block_tasks_check_nothing_again(op, rng, monkeypatch):
    import dask

    fn, args, kw = _calls(rng)[op]
    want = fn(*args, **kw)
    lazy = fn(*[_dask(a) for a in args], **{k: _dask(v) for k, v in kw.items()})
    assert all(isinstance(a, da.Array) for a in (lazy if isinstance(lazy, tuple) else (lazy,)) if a is not None)
    assert max(a.npartitions for a in (lazy if isinstance(lazy, tuple) else (lazy,)) if a is not None) > 1

    def refuse(name):
        def check(*a, **k):
            raise AssertionError(f"a Dask block task called _validate.{name}() (the public op again)")
        return check

    for name in CHECKS:
        monkeypatch.setattr(_validate, name, refuse(name))
    # the public function under its module's name too (what the old builders called per block)
    module = __import__(fn.__module__, fromlist=["_"])
    monkeypatch.setattr(module, fn.__name__, refuse(fn.__name__))
    got = dask.compute(*(lazy if isinstance(lazy, tuple) else (lazy,)), scheduler="sync")
    _eq(got if isinstance(lazy, tuple) else got[0], want)


@pytest.mark.parametrize("call", [
    lambda x: nn.layer_norm(x, 96, return_stats=True),
    lambda x: nn.rms_norm(x, 96),
    lambda x: nn.normalize(x, axis=-1),
])
def test_half_blocks_take_the_16_bit_kernels(rng, call):
    """A float16 block runs the 16-bit kernels, as the in-memory call on float16 data does
    (layer_norm's differ from the float32-copy path in the last bit): bit-for-bit equal."""
    x = rng.normal(size=(12, 96)).astype(np.float16)
    want = call(x)
    got = call(da.from_array(x, chunks=(5, 40)))
    for g, w in zip(got if isinstance(want, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
        g = g.compute()
        assert g.dtype == w.dtype
        assert np.array_equal(g.view(np.uint8), w.view(np.uint8))
