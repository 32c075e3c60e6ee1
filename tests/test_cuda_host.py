"""Host work per GPU call, counted in the simulator (tests/cuda_probe.py): kernel launches,
host<->device copies and device allocations (issue 10, must-show 4)."""
import numpy as np
import pytest

import numbanorm

from cuda_probe import record

pytestmark = pytest.mark.cuda


@pytest.fixture
def dev(rng):
    from numba import cuda

    def make(*shape):
        return cuda.to_device(rng.standard_normal(shape).astype(np.float32))

    return make


@pytest.mark.parametrize("shape", [(6, 32), (2, 600)], ids=["rows", "split"])
def test_layer_norm_on_device_arrays_is_launches_only(dev, shape):
    """Whole rows: one launch. Split rows: stats, merge, apply. No copies either way; the
    only allocations are the output and the statistics the op returns; split-mode
    partials come from a reused scratch buffer (the second call allocates nothing else)."""
    from numbanorm._cuda import _layout

    m, n = shape
    x, w, b = dev(m, n), dev(n), dev(n)
    with _layout.launch_settings(threads_per_block=128, row_vpt=2, row_threads=256, split_min=64, sm_count=2):
        numbanorm.layer_norm(x, n, w, b)  # warm the scratch cache
        with record() as rec:
            y = numbanorm.layer_norm(x, n, w, b)
    assert len(rec.launches) == (1 if shape == (6, 32) else 3), rec.launches
    assert rec.h2d == 0 and rec.d2h == 0
    assert sorted(rec.allocs) == sorted([(m, n), (m,), (m,)]), rec.allocs
    np.testing.assert_allclose(y.copy_to_host(), numbanorm.layer_norm(x.copy_to_host(), n, w.copy_to_host(),
                                                                      b.copy_to_host()), rtol=3e-5, atol=3e-5)


def test_layer_norm_backward_on_device_arrays(dev):
    """dx with fused dW/dB partials: the row kernel and the two ordered partial sums, plus
    the zero-fills of grad_weight/grad_bias that the op layer makes; no copies; scratch
    reused across calls."""
    from numbanorm._cuda import _layout

    m, n = 6, 32
    g, x, w = dev(m, n), dev(m, n), dev(n)
    with _layout.launch_settings(threads_per_block=128, row_vpt=2, row_threads=256, split_min=64, sm_count=2):
        _, mean, rstd = numbanorm.layer_norm(x, n, w, return_stats=True)
        numbanorm.layer_norm_backward(g, x, n, w, mean=mean, rstd=rstd)
        with record() as rec:
            numbanorm.layer_norm_backward(g, x, n, w, mean=mean, rstd=rstd)
    kernels = [lp.name for lp in rec.launches if lp.name != "_fill"]
    assert kernels[0].startswith("_backward_rows_ln") and kernels[1:] == ["_sum_partials"] * 2
    assert rec.h2d == 0 and rec.d2h == 0
    assert sorted(rec.allocs) == sorted([(m, n), (n,), (n,)]), rec.allocs
