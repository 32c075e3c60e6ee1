"""The pool of recycled large outputs (``numbanorm/_pool.py``): reuse only once nothing holds a result."""
import numpy as np
import pytest

import numbanorm
from numbanorm import _pool

SHAPE = (1024, 1280)  # 5 MiB of float32: pooled (>= MIN_BYTES)


@pytest.fixture(autouse=True)
def _fresh_pool(monkeypatch):
    monkeypatch.setattr(_pool, "MAX_BYTES", 64 << 20)
    _pool.clear()
    yield
    _pool.clear()


def _addr(a):
    return a.__array_interface__["data"][0]


def test_a_dropped_result_is_reused_and_a_held_one_is_not(rng):
    assert np.prod(SHAPE) * 4 >= _pool.MIN_BYTES
    x = rng.standard_normal(SHAPE).astype(np.float32)
    y = numbanorm.layer_norm(x, SHAPE[1])
    want = y.copy()
    first = _addr(y)
    y2 = numbanorm.layer_norm(x, SHAPE[1])  # y is held: a new buffer
    assert _addr(y2) != first
    np.testing.assert_array_equal(y, want)
    del y
    y3 = numbanorm.rms_norm(x, SHAPE[1])  # y was dropped: its buffer comes back
    assert _addr(y3) == first
    np.testing.assert_array_equal(y3, numbanorm.rms_norm(x.copy(), SHAPE[1], out=np.empty_like(x)))
    np.testing.assert_array_equal(y2, want)


@pytest.mark.parametrize("keep", ["view", "memoryview", "torch"])
def test_anything_derived_from_a_result_keeps_it(rng, keep):
    x = rng.standard_normal(SHAPE).astype(np.float32)
    y = numbanorm.layer_norm(x, SHAPE[1])
    want = y.copy()
    if keep == "view":
        held = y[::3, 1:]
    elif keep == "memoryview":
        held = memoryview(y)
    else:
        torch = pytest.importorskip("torch")
        held = torch.from_numpy(y)
    first = _addr(y)
    del y
    z = numbanorm.layer_norm(x * 2, SHAPE[1])
    assert _addr(z) != first
    np.testing.assert_array_equal(np.asarray(held), want[::3, 1:] if keep == "view" else want)


def test_general_path_fused_outputs_and_stats_calls(rng):
    x = rng.standard_normal(SHAPE).astype(np.float32)
    r = rng.standard_normal(SHAPE).astype(np.float32)
    y, s = numbanorm.add_rms_norm(x, r, SHAPE[1])
    assert _addr(y) != _addr(s)
    np.testing.assert_array_equal(s, x + r)
    y1, mean, rstd = numbanorm.layer_norm(x, SHAPE[1], return_stats=True)  # the general path (Output)
    np.testing.assert_allclose(y1, (x - mean) * rstd, rtol=1e-5, atol=1e-5)
    first = _addr(y1)
    del y1, mean, rstd
    y2 = numbanorm.layer_norm(x.reshape(32, 32, -1), SHAPE[1], return_stats=True)[0]
    assert _addr(y2) == first  # same size: recycled through Output too


def test_quantized_and_16bit_outputs(rng):
    """The ``_lowp`` paths' fresh outputs (int8 codes, bfloat16 rows) are pooled too: a
    dropped one is reused, a held one never is, and the recycled values are the same."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    x = rng.standard_normal((1024, 4096)).astype(np.float32)  # 4 MiB of int8 codes
    q, scale = numbanorm.rms_norm(x, 4096, quantize="int8")
    want = q.copy()
    first = _addr(q)
    q2, _ = numbanorm.rms_norm(x, 4096, quantize="int8")  # q is held: a new buffer
    assert _addr(q2) != first
    del q, scale
    q3, _ = numbanorm.rms_norm(x, 4096, quantize="int8")
    assert _addr(q3) == first
    np.testing.assert_array_equal(q3, want)
    np.testing.assert_array_equal(q2, want)
    xb = x.astype(ml_dtypes.bfloat16)
    y = numbanorm.rms_norm(xb, 4096)
    assert y.dtype == xb.dtype
    wantb, fb = y.copy(), _addr(y)
    del y
    y2 = numbanorm.rms_norm(xb, 4096)
    assert _addr(y2) == fb
    np.testing.assert_array_equal(y2.view(np.uint16), wantb.view(np.uint16))


def test_caps_and_opt_out(rng, monkeypatch):
    x = rng.standard_normal(SHAPE).astype(np.float32)
    held = [numbanorm.rms_norm(x, SHAPE[1]) for _ in range(_pool.MAX_BUFFERS + 2)]
    assert len(_pool._BUFS) == _pool.MAX_BUFFERS  # past the count cap: plain arrays
    assert all(np.array_equal(h, held[0]) for h in held)
    del held
    monkeypatch.setattr(_pool, "MAX_BYTES", 0)  # NUMBANORM_OUTPUT_POOL=0
    _pool.clear()
    numbanorm.rms_norm(x, SHAPE[1])
    assert not _pool._BUFS
    small = _pool.empty((4, 4), np.float32)
    assert small.base is None
