"""Reductions split across blocks along a long reduced axis, in the simulator: Lp
``normalize`` along axis 0 of a tall, narrow array (e.g. ``(1_000_000, 64)``) cuts the
reduced axis into chunks (``_chan_partial`` → ``_chan_finish`` → ``_chan_apply``) instead of
one block walking it serially. Tiny shapes; the plan's SM count is 2."""
import numpy as np
import pytest

import numbanorm
from numbanorm._dispatch import force_device

from cuda_probe import record

pytestmark = pytest.mark.cuda


@pytest.mark.parametrize("p", [2.0, 1.0, np.inf, 0.5])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_normalize_axis0_split_matches_cpu(rng, p, dtype):
    from numbanorm._cuda import _layout

    x = rng.standard_normal((300, 3)).astype(dtype)
    x[7, 1] = np.nan
    want = numbanorm.normalize(x, p, axis=0)
    with _layout.launch_settings(threads_per_block=128, partial_blocks=4, sm_count=2), record() as rec, \
            force_device("cuda"):
        got = numbanorm.normalize(x, p, axis=0)
    names = [lp.name for lp in rec.launches]
    # the partial kernel is compiled per p kind (``_chan_partial_p2``, ``_p1``, or the runtime kind)
    assert any(n.startswith("_chan_partial") for n in names) and "_chan_apply" in names
    part = next(lp for lp in rec.launches if lp.name.startswith("_chan_partial"))
    assert part.blocks >= 4
    tol = 1e-12 if dtype == np.float64 else 2e-6
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    assert np.isnan(got[:, 1]).all() and np.isfinite(got[:, [0, 2]]).all()
