"""Every kernel family run in the simulator with the *compiled* reductions of
numbanorm/_cuda/_reduce.py (the ``_gpu_*`` warp-shuffle code a GPU runs), not the
``_sim_*`` twins the rest of the simulator suite binds, on >= 4 warps per block and >= 4
blocks per grid (issue 10).

numba-cuda's simulator has no ``shfl_xor_sync``; the fixture gives it a warp-synchronous
one (the 32 lanes of the calling warp exchange values through a per-warp buffer between
two per-warp barriers: what the hardware shuffle does, with no block-wide barrier, so a
kernel that is only warp-uniform where the hardware requires it still runs) and rebinds
every kernel module's reduction names to the ``_gpu_*`` functions. Results must match the
CPU within float64/float32 accuracy, and the shuffle must really have run."""
import math
import threading

import numpy as np
import pytest

import numbanorm
from numbanorm._dispatch import force_device

from cuda_probe import record

pytestmark = pytest.mark.cuda

REDUCTIONS = ("shfl_xor", "warp_sum", "warp_sum2", "warp_max", "warp_min",
              "block_sum", "block_sum2", "block_max", "block_min")
SETTINGS = dict(threads_per_block=128, max_blocks=4, partial_blocks=4, warp_row_max=32,
                row_vpt=2, row_threads=256, split_min=64, sm_count=2)


@pytest.fixture
def compiled_reductions(monkeypatch):
    import importlib
    import pkgutil

    from numba.cuda.simulator import kernelapi

    import numbanorm._cuda as pkg
    from numbanorm._cuda import _layout, _reduce

    warps, lock, calls = {}, threading.Lock(), [0]

    def shfl_xor_sync(self, mask, value, lanemask):
        t = threading.current_thread()
        tid = t.thread_id
        bd = t._manager._block_dim
        nthreads = int(np.prod(bd))
        w = tid >> 5
        key = (id(t._manager), tuple(t.blockIdx), w)
        with lock:
            st = warps.get(key)
            if st is None:
                st = warps[key] = (threading.Barrier(min(32, nthreads - 32 * w)), [0.0] * 32)
            calls[0] += 1
        bar, buf = st
        buf[tid & 31] = value
        bar.wait(timeout=60)
        r = buf[(tid & 31) ^ lanemask]
        bar.wait(timeout=60)
        return r

    monkeypatch.setattr(kernelapi.FakeCUDAModule, "shfl_xor_sync", shfl_xor_sync, raising=False)
    rebound = 0
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name == "_sass":
            continue
        mod = importlib.import_module(f"numbanorm._cuda.{info.name}")
        for name in REDUCTIONS:  # by name: another test may have re-imported _reduce
            if mod is not _reduce and name in vars(mod):
                monkeypatch.setattr(mod, name, getattr(_reduce, "_gpu_" + name))
                rebound += 1
    assert rebound >= 20  # every kernel module that reduces
    with _layout.launch_settings(**SETTINGS):
        yield calls


def _rng():
    return np.random.default_rng(7)


def _ln_rows(shape):
    def run():
        r = _rng()
        x = r.standard_normal(shape) + 3.0
        g = r.standard_normal(shape)
        w = r.standard_normal(shape[-1])
        n = shape[-1]
        y, mean, rstd = numbanorm.layer_norm(x, n, w, w, return_stats=True)
        return [y, *numbanorm.layer_norm_backward(g, x, n, w, mean=mean, rstd=rstd),
                numbanorm.rms_norm(x, n, w), *numbanorm.rms_norm_backward(g, x, n, w)]
    return run


def _channels():
    r = _rng()
    x = r.standard_normal((2, 8, 4, 4)) + 2.0
    g = r.standard_normal(x.shape)
    w = r.standard_normal(8)
    y, m, s = numbanorm.batch_norm(x, None, None, w, w, training=True, return_stats=True)
    out = [y, *numbanorm.batch_norm_backward(g, x, w, mean=m, rstd=s)]
    out.append(numbanorm.batch_norm(np.moveaxis(x, 1, -1).copy(), None, None, w, training=True, channel_axis=-1))
    out.append(numbanorm.group_norm(x, 2, w, w))
    return out


def _others():
    r = _rng()
    x = r.standard_normal((12, 128)) + 1.0
    g = r.standard_normal(x.shape)
    out = [numbanorm.normalize(x, axis=1), numbanorm.normalize_backward(g, x, axis=1),
           numbanorm.normalize(x, p=math.inf, axis=1)]
    out.append(numbanorm.weight_standardize(r.standard_normal((8, 4, 3, 3))))
    x3 = r.standard_normal((4, 2, 40)) + 5.0
    out += [numbanorm.standardize(x3, axis=(0, 2)), numbanorm.min_max_scale(x3, axis=(0, 2))]
    out += list(numbanorm.add_layer_norm(x, g, 128))
    return out


FAMILIES = {
    "rows_warp": _ln_rows((20, 32)),
    "rows_block": _ln_rows((4, 256)),
    "rows_split": _ln_rows((2, 300)),
    "channels": _channels,
    "others": _others,
}


def _flat(results):
    return [np.asarray(a, dtype=np.float64) for a in results if a is not None]


@pytest.mark.slow
@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_with_compiled_reductions_matches_cpu(compiled_reductions, family):
    fn = FAMILIES[family]
    want = _flat(fn())
    before = compiled_reductions[0]
    with force_device("cuda"), record() as rec:
        got = _flat(fn())
    assert compiled_reductions[0] > before, "no warp shuffle ran"
    reducing = [lp for lp in rec.launches if lp.threads >= 128]
    assert reducing and max(lp.blocks for lp in reducing) >= 4, rec.launches
    assert all(lp.threads % 32 == 0 for lp in rec.launches)
    assert len(got) == len(want)
    for i, (a, b) in enumerate(zip(got, want)):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9, err_msg=f"{family} result {i}")
