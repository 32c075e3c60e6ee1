"""Host work per GPU call, counted in the simulator (tests/cuda_probe.py): kernel launches
and the stream each is given, host<->device copies, stream/device synchronisations and
device allocations (issue 10, must-show 4)."""
import sys
import types

import numpy as np
import pytest

import numbanorm

from cuda_probe import record

pytestmark = pytest.mark.cuda

#: small launch settings that reach the split-row plan with tiny shapes
SMALL = dict(threads_per_block=128, row_vpt=2, row_threads=256, split_min=64, sm_count=2)


@pytest.fixture
def dev(rng):
    from numba import cuda

    def make(*shape):
        return cuda.to_device(rng.standard_normal(shape).astype(np.float32))

    return make


class FakeCupyArray:
    """What the dispatch layer sees of a CuPy array: a ``cupy`` class exposing a CAI v3
    ``__cuda_array_interface__`` whose ``stream`` is the caller's current stream (under
    the simulator the memory it names is host memory)."""

    __module__ = "cupy._core.core"

    def __init__(self, host, stream):
        self.host, self.stream_ptr = host, stream

    shape = property(lambda self: self.host.shape)
    dtype = property(lambda self: self.host.dtype)
    ndim = property(lambda self: self.host.ndim)
    size = property(lambda self: self.host.size)

    @property
    def __cuda_array_interface__(self):
        h = self.host
        return {"shape": h.shape, "strides": None if h.flags.c_contiguous else h.strides, "typestr": h.dtype.str,
                "data": (h.__array_interface__["data"][0], False), "version": 3, "stream": self.stream_ptr}


@pytest.fixture
def fake_cupy(monkeypatch):
    """A ``cupy`` module whose ``empty`` (the memory pool) counts allocations and whose
    current stream is ``mod.current`` (what its arrays' interfaces report)."""
    mod = types.ModuleType("cupy")
    mod.current = 0xBEEF
    mod.pool = []

    def empty(shape, dtype):
        mod.pool.append(tuple(shape))
        return FakeCupyArray(np.empty(shape, dtype), mod.current)

    def asarray(a):  # import of a (simulated) Numba device array: zero-copy
        if isinstance(a, FakeCupyArray):
            return a
        return FakeCupyArray(a._ary, mod.current)

    mod.empty, mod.asarray = empty, asarray
    mod.array = lambda h: FakeCupyArray(np.array(h), mod.current)
    monkeypatch.setitem(sys.modules, "cupy", mod)
    return mod


def _launch_streams(rec):
    return {getattr(lp.stream, "handle", lp.stream) for lp in rec.launches}


@pytest.mark.parametrize("shape", [(6, 32), (2, 600)], ids=["rows", "split"])
def test_layer_norm_on_device_arrays_is_launches_only(dev, shape):
    """Whole rows: one launch. Split rows: stats, merge, apply. No copies, no syncs; the
    only allocation is the output (the statistics the caller does not ask for and the
    split-mode partials come from reused scratch buffers)."""
    from numbanorm._cuda import _layout

    m, n = shape
    x, w, b = dev(m, n), dev(n), dev(n)
    with _layout.launch_settings(**SMALL):
        numbanorm.layer_norm(x, n, w, b)  # warm the scratch cache
        with record() as rec:
            y = numbanorm.layer_norm(x, n, w, b)
    assert len(rec.launches) == (1 if shape == (6, 32) else 3), rec.launches
    assert rec.h2d == 0 and rec.d2h == 0 and rec.syncs == 0
    assert rec.allocs == [(m, n)], rec.allocs
    assert _launch_streams(rec) == {0}
    np.testing.assert_allclose(y.copy_to_host(), numbanorm.layer_norm(x.copy_to_host(), n, w.copy_to_host(),
                                                                      b.copy_to_host()), rtol=3e-5, atol=3e-5)


def test_default_parameters_are_cached_constants(dev):
    """No weight/bias: the ones/zeros parameter buffers are made once, not per call."""
    x = dev(6, 32)
    numbanorm.layer_norm(x, 32)
    numbanorm.rms_norm(x, 32)
    with record() as rec:
        y = numbanorm.layer_norm(x, 32)
        numbanorm.rms_norm(x, 32)
    assert [lp.name for lp in rec.launches if lp.name == "_fill"] == []
    assert rec.allocs == [(6, 32), (6, 32)] and rec.syncs == 0
    np.testing.assert_allclose(y.copy_to_host(), numbanorm.layer_norm(x.copy_to_host(), 32), rtol=3e-5, atol=3e-5)


def test_layer_norm_backward_on_device_arrays(dev):
    """dx with fused dW/dB partials: the row kernel and the two ordered partial sums, plus
    the zero-fills of grad_weight/grad_bias that the op layer makes; no copies, no syncs;
    scratch reused across calls."""
    from numbanorm._cuda import _layout

    m, n = 6, 32
    g, x, w = dev(m, n), dev(m, n), dev(n)
    with _layout.launch_settings(**SMALL):
        _, mean, rstd = numbanorm.layer_norm(x, n, w, return_stats=True)
        numbanorm.layer_norm_backward(g, x, n, w, mean=mean, rstd=rstd)
        with record() as rec:
            numbanorm.layer_norm_backward(g, x, n, w, mean=mean, rstd=rstd)
    kernels = [lp.name for lp in rec.launches if lp.name != "_fill"]
    assert kernels[0].startswith("_backward_rows_ln") and kernels[1:] == ["_sum_partials"] * 2
    assert rec.h2d == 0 and rec.d2h == 0 and rec.syncs == 0
    assert sorted(rec.allocs) == sorted([(m, n), (n,), (n,)]), rec.allocs


@pytest.mark.parametrize("shape", [(6, 32), (2, 600)], ids=["rows", "split"])
def test_cupy_input_runs_on_the_callers_stream_from_its_pool(fake_cupy, rng, shape):
    """CuPy data: every kernel launches on the stream its interface names (CuPy's current
    stream), the output comes from CuPy's pool (``cupy.empty``), Numba allocates nothing,
    nothing is synchronised or copied, and the result is a CuPy array."""
    from numbanorm._cuda import _layout

    m, n = shape
    xh, wh, bh = (rng.standard_normal(s).astype(np.float32) for s in ((m, n), (n,), (n,)))
    x, w, b = (FakeCupyArray(h, fake_cupy.current) for h in (xh, wh, bh))
    with _layout.launch_settings(**SMALL):
        numbanorm.layer_norm(x, n, w, b)
        fake_cupy.pool.clear()
        with record() as rec:
            y = numbanorm.layer_norm(x, n, w, b)
    assert type(y) is FakeCupyArray
    assert rec.launches and _launch_streams(rec) == {0xBEEF}, rec.launches
    assert rec.allocs == [] and fake_cupy.pool == [(m, n)]
    assert rec.h2d == 0 and rec.d2h == 0 and rec.syncs == 0
    np.testing.assert_allclose(y.host, numbanorm.layer_norm(xh, n, wh, bh), rtol=3e-5, atol=3e-5)


def test_scratch_is_per_stream(fake_cupy, rng):
    """Split rows on two streams: the second stream gets its own partial buffers (a buffer
    in use by one stream's kernels is never handed to another stream)."""
    from numbanorm._cuda import _host, _layout

    xh = rng.standard_normal((2, 600)).astype(np.float32)
    with _layout.launch_settings(**SMALL):
        ys = []
        for s in (0xA0, 0xB0):
            fake_cupy.current = s
            ys.append(numbanorm.layer_norm(FakeCupyArray(xh, s), 600).host)
    keys = [k for k in _host._state.scratch if k[0].startswith("rows.")]
    assert {k[3] for k in keys} >= {0xA0, 0xB0}
    part = {k[3]: _host._state.scratch[k] for k in keys if k[0] == "rows.part"}
    assert part[0xA0] is not part[0xB0]
    np.testing.assert_array_equal(ys[0], ys[1])


def test_streams_are_per_thread(fake_cupy, rng):
    """The call state is thread-local: a Numba call on another thread launches on its own
    (default) stream while this thread's CuPy stream stays set."""
    import threading

    from numba import cuda

    from numbanorm._cuda import _host

    xh = rng.standard_normal((4, 32)).astype(np.float32)
    numbanorm.layer_norm(FakeCupyArray(xh, 0xC0), 32)
    seen = []
    t = threading.Thread(target=lambda: (numbanorm.layer_norm(cuda.to_device(xh), 32), seen.append(_host.key())))
    t.start()
    t.join()
    assert seen == [0] and _host.key() == 0xC0


def _device_calls(dev):
    """Public calls on device data that must not move statistics to the host."""
    x4 = dev(4, 8, 3, 3)
    c = 8
    from numba import cuda

    rm, rv = dev(c), cuda.to_device(np.linspace(0.5, 2.0, c))
    nbt = cuda.to_device(np.array([3], np.int64))
    x2 = dev(40, 6)
    return {
        "batch_norm_train": lambda: numbanorm.batch_norm(x4, rm, rv, training=True),
        "batch_norm_eval": lambda: numbanorm.batch_norm(x4, rm, rv, training=False),
        "batch_norm_counter": lambda: numbanorm.batch_norm(x4, rm, rv, training=True, momentum=None,
                                                           num_batches_tracked=nbt),
        "group_norm": lambda: numbanorm.group_norm(x4, 4),
        "instance_norm": lambda: numbanorm.instance_norm(x4),
        "local_response_norm": lambda: numbanorm.local_response_norm(x4, 3),
        "normalize_rows": lambda: numbanorm.normalize(x2, axis=1),
        "normalize_cols": lambda: numbanorm.normalize(x2, axis=0),
        "rms_norm": lambda: numbanorm.rms_norm(x2, 6),
        "weight_standardize": lambda: numbanorm.weight_standardize(x4),
        "standardize_cols": lambda: numbanorm.standardize(x2, axis=0),
        "min_max_scale_cols": lambda: numbanorm.min_max_scale(x2, axis=0),
    }


@pytest.mark.parametrize("name", [
    "batch_norm_train", "batch_norm_eval", "batch_norm_counter", "group_norm", "instance_norm", "local_response_norm",
    "normalize_rows", "normalize_cols", "rms_norm", "weight_standardize", "standardize_cols",
    "min_max_scale_cols",
])
def test_no_statistics_go_through_the_host(dev, name):
    """Every op on device data: no host<->device copy and no synchronisation."""
    call = _device_calls(dev)[name]
    call()
    with record() as rec:
        call()
    assert rec.launches
    assert (rec.h2d, rec.d2h, rec.syncs) == (0, 0, 0), (name, rec.h2d, rec.d2h, rec.syncs)
