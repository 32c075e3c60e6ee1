"""The compiled warp-shuffle reductions of numbanorm/_cuda/_reduce.py (the ``_gpu_*``
functions that run on a GPU), executed in the simulator: numba-cuda's simulator has no
``shfl_xor_sync``, so this test gives its fake ``cuda`` module one (an exchange through
block-shared memory between two barriers: what the hardware shuffle does for a full warp)
and runs the real reduction code on 4 blocks of 4 and 8 warps. Their results must be
bitwise those of the simulator twins that every other simulator test uses (so the twins
model the compiled code), equal on every thread, and close to NumPy's sums."""
import numpy as np
import pytest

pytestmark = pytest.mark.cuda


@pytest.fixture
def shuffles(monkeypatch):
    from numba.cuda.simulator import kernelapi

    def shfl_xor_sync(self, mask, value, lanemask):
        buf = self.shared.array(1024, np.float64)
        t = self.threadIdx.x + self.blockDim.x * (self.threadIdx.y + self.blockDim.y * self.threadIdx.z)
        buf[t] = value
        self.syncthreads()
        r = buf[t ^ lanemask]
        self.syncthreads()
        return r

    monkeypatch.setattr(kernelapi.FakeCUDAModule, "shfl_xor_sync", shfl_xor_sync, raising=False)


cuda = pytest.importorskip("numba.cuda")
from numbanorm._cuda import _reduce as R  # noqa: E402


@cuda.jit
def _compiled(x, out):
    """``_reduce._check_reductions`` with the ``_gpu_*`` (shuffle) versions called directly."""
    b = cuda.blockIdx.x
    t = R.linear_tid()
    v = x[b, t]
    out[b, t, 0] = R._gpu_warp_sum(v)
    s, u = R._gpu_warp_sum2(v, -v)
    out[b, t, 1] = s
    out[b, t, 2] = u
    out[b, t, 3] = R._gpu_warp_max(v)
    out[b, t, 4] = R._gpu_warp_min(v)
    out[b, t, 5] = R._gpu_block_sum(v)
    s, u = R._gpu_block_sum2(v, v * v)
    out[b, t, 6] = s
    out[b, t, 7] = u
    out[b, t, 8] = R._gpu_block_max(v)
    out[b, t, 9] = R._gpu_block_min(v)
    out[b, t, 10] = R._gpu_shfl_xor(v, 5)


@pytest.mark.parametrize("threads", [128])
def test_compiled_reductions_match_the_simulator_twins_bitwise(rng, shuffles, threads):
    compiled, twins = _compiled, R._check_reductions
    blocks = 4
    x = rng.standard_normal((blocks, threads)) * 10.0 ** rng.integers(-3, 4, (blocks, threads))
    x[2, 37] = np.nan  # NaN propagates through max/min and sums of block 2 (warp 1)
    got = np.zeros((blocks, threads, 12))
    want = np.zeros((blocks, threads, 12))
    compiled[blocks, threads](cuda.to_device(x), d_got := cuda.to_device(got))
    twins[blocks, threads](cuda.to_device(x), d_want := cuda.to_device(want))
    got, want = d_got.copy_to_host(), d_want.copy_to_host()
    np.testing.assert_array_equal(got[..., :11], want[..., :11])  # NaN positions included
    for b in (0, 1, 3):
        for w in range(threads // 32):
            lanes = x[b, w * 32:(w + 1) * 32]
            assert (got[b, w * 32:(w + 1) * 32, 0] == got[b, w * 32, 0]).all()  # every lane, same bits
            np.testing.assert_allclose(got[b, w * 32, 0], lanes.sum(), rtol=1e-12, atol=1e-9)
            assert got[b, w * 32, 3] == lanes.max() and got[b, w * 32, 4] == lanes.min()
        np.testing.assert_allclose(got[b, :, 5], x[b].sum(), rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(got[b, :, 7], (x[b] ** 2).sum(), rtol=1e-12)
        assert (got[b, :, 8] == x[b].max()).all() and (got[b, :, 9] == x[b].min()).all()
    assert np.isnan(got[2, :, 5]).all() and np.isnan(got[2, :, 8]).all() and np.isnan(got[2, 32:64, 3]).all()
    np.testing.assert_array_equal(got[1, :, 10], x[1, np.arange(threads) ^ 5])
