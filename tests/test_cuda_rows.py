"""LayerNorm/RMSNorm row kernels (numbanorm/_cuda/_rows.py) in the simulator, in every plan
mode (warp, block exact-fit, block with bounds checks, split across blocks), forward and
backward, each launch with >= 4 warps per block and >= 4 blocks (the plan's SM count is
lowered to 2 so 'filling the device' means 4 blocks). Shapes are tiny."""
import numpy as np
import pytest

import numbanorm
from numbanorm._dispatch import force_device

pytestmark = pytest.mark.cuda

SETTINGS = dict(threads_per_block=128, row_vpt=2, row_threads=256, split_min=64, sm_count=2)


@pytest.fixture(autouse=True)
def small_rows():
    from numbanorm._cuda import _layout

    with _layout.launch_settings(**SETTINGS):
        yield


def _plan(m, n, backward=False):
    from numbanorm._cuda import _plan

    return _plan.rows(m, n, backward)


CASES = [  # (shape, forward mode, backward mode)
    ((20, 32), "warp", "warp"),
    ((6, 256), "block", "block"),  # exact fits: 128 threads x 2 forward, 256 x 1 backward
    ((6, 250), "block", "block"),  # bounds-checked teams
    ((2, 256), "split", "split"),  # too few rows for the (simulated) device
    ((2, 600), "split", "split"),  # too long for one block
]


@pytest.mark.parametrize("shape,fwd,bwd", CASES, ids=[f"{s[0]}x{s[1]}" for s, _, _ in CASES])
def test_plan_modes_fill_the_simulated_device(shape, fwd, bwd):
    for backward, mode in ((False, fwd), (True, bwd)):
        p = _plan(*shape, backward)
        assert p.mode == mode
        assert p.threads >= 128, p
        blocks = int(np.prod(p.grid))
        assert blocks >= 4, p


def _case(rng, shape, dtype, offset):
    x = (rng.standard_normal(shape) + offset).astype(dtype)
    n = shape[-1]
    w = rng.standard_normal(n).astype(dtype)
    b = rng.standard_normal(n).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    return x, w, b, g


@pytest.mark.parametrize("shape", [c[0] for c in CASES], ids=[f"{s[0]}x{s[1]}" for s, _, _ in CASES])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layer_norm_and_rms_norm_match_the_cpu(rng, shape, dtype):
    x, w, b, g = _case(rng, shape, dtype, 3.0)
    n = shape[-1]
    tol = dict(rtol=1e-11, atol=1e-11) if dtype == np.float64 else dict(rtol=3e-5, atol=3e-5)
    want = numbanorm.layer_norm(x, n, w, b, return_stats=True)
    want_b = numbanorm.layer_norm_backward(g, x, n, w, mean=want[1], rstd=want[2])
    want_r = numbanorm.rms_norm(x, n, w, return_stats=True)
    want_rb = numbanorm.rms_norm_backward(g, x, n, w, rstd=want_r[1])
    with force_device("cuda"):
        got = numbanorm.layer_norm(x, n, w, b, return_stats=True)
        got_b = numbanorm.layer_norm_backward(g, x, n, w, mean=got[1], rstd=got[2])
        again = numbanorm.layer_norm_backward(g, x, n, w)  # statistics recomputed
        got_r = numbanorm.rms_norm(x, n, w, return_stats=True)
        got_rb = numbanorm.rms_norm_backward(g, x, n, w, rstd=got_r[1])
    for a, e in zip(got + got_b + got_r + got_rb, want + want_b + want_r + want_rb):
        assert a.dtype == e.dtype and a.shape == e.shape
        np.testing.assert_allclose(a, e, **tol)
    for a, e in zip(again, got_b):  # the stats kernel has the forward's bits
        np.testing.assert_array_equal(a, e)


@pytest.mark.parametrize("shape", [(6, 256), (2, 600)], ids=["block", "split"])
def test_float32_with_large_offset(rng, shape):
    x, w, b, _ = _case(rng, shape, np.float32, 1e4)
    n = shape[-1]
    with force_device("cuda"):
        y, mean, rstd = numbanorm.layer_norm(x, n, return_stats=True)
    x64 = x.astype(np.float64)
    ref = (x64 - x64.mean(1, keepdims=True)) / np.sqrt(x64.var(1, keepdims=True) + 1e-5)
    cpu = numbanorm.layer_norm(x, n)
    err, cpu_err = np.abs(y - ref).max(), np.abs(cpu - ref).max()
    assert err <= max(2 * cpu_err, 1e-3), (err, cpu_err)
    np.testing.assert_allclose(np.ravel(mean), x64.mean(1), rtol=1e-7)


@pytest.mark.parametrize("shape", [(6, 250), (2, 600)], ids=["block", "split"])
def test_bitwise_repeatable(rng, shape):
    x, w, b, g = _case(rng, shape, np.float32, 1.0)
    n = shape[-1]
    runs = []
    for _ in range(2):
        with force_device("cuda"):
            runs.append(numbanorm.layer_norm_backward(g, x, n, w) + (numbanorm.layer_norm(x, n, w, b),))
    for a, b2 in zip(*runs):
        np.testing.assert_array_equal(a, b2)
