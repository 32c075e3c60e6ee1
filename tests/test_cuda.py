"""CUDA path in Numba's simulator: layout helpers, reductions, dispatch, LayerNorm/RMSNorm.

Run with ``NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/test_cuda.py`` (on a machine with a
GPU these run on the device). Launch settings are lowered (128 threads = 4 warps per block,
at most 4 blocks) so several blocks run and grid-stride loops loop; the row-length
threshold between the warp-per-row and block-per-row kernels is lowered to reach both.
Shapes are tiny: the simulator runs every thread as a Python thread.
"""
import math

import numpy as np
import pytest

import numbanorm
from numbanorm._dispatch import force_device

pytestmark = pytest.mark.cuda

WARP = 1024  # warp_row_max: these rows go one warp per row
BLOCK = 16  # these rows (N > 16) go one block per row


@pytest.fixture(scope="module")
def cuda():
    from numba import cuda

    return cuda


@pytest.fixture(scope="module")
def L():
    from numbanorm._cuda import _layout

    return _layout


@pytest.fixture(autouse=True)
def small_launches(request):
    if "cuda" not in request.keywords:
        yield
        return
    from numbanorm._cuda import _layout

    with _layout.launch_settings(threads_per_block=128, max_blocks=4, partial_blocks=4):
        yield


def rows_mode(warp_row_max):
    from numbanorm._cuda import _layout

    return _layout.launch_settings(warp_row_max=warp_row_max)


class CAIWrapper:
    """A foreign GPU array: exposes only ``__cuda_array_interface__`` (wraps a device array)."""

    def __init__(self, dev):
        self._dev = dev

    @property
    def __cuda_array_interface__(self):
        d = self._dev
        if hasattr(type(d), "__cuda_array_interface__"):  # real GPU
            return d.__cuda_array_interface__
        host = d._ary  # simulator: the fake device array's memory is host memory
        return {
            "shape": host.shape,
            "strides": None if host.flags.c_contiguous else host.strides,
            "typestr": host.dtype.str,
            "data": (host.__array_interface__["data"][0], False),
            "version": 3,
        }


def host(a):
    """Device array -> NumPy (Numba's copy_to_host refuses negative strides: gather first)."""
    if not hasattr(a, "copy_to_host"):
        return np.asarray(a)
    if any(s < 0 for s in a.strides):
        from numbanorm._cuda import _layout

        a = _layout.ascontiguous(a, a.dtype)
    return a.copy_to_host()


def rand(rng, shape, dtype=np.float64, offset=0.0):
    return (rng.standard_normal(shape) + offset).astype(dtype)


# --------------------------------------------------------------------------- _layout


def test_settings_are_validated_and_restored(L):
    before = L.settings()
    with pytest.raises(ValueError, match="threads_per_block"):
        L.set_launch(threads_per_block=48)
    with pytest.raises(TypeError, match="unknown setting"):
        L.set_launch(bogus=1)
    with L.launch_settings(threads_per_block=32, max_blocks=2):
        assert L.threads_per_block() == 32
        assert L.launch_1d(1000) == (2, 32)
        assert L.launch_rows(10, 40) == (True, 2, 32)
        assert L.launch_rows(10, 4000) == (False, 2, 32)
    assert L.settings() == before
    old = L.set_threads_per_block(96)
    assert L.threads_per_block() == 96
    L.set_threads_per_block(old)
    assert L.settings() == before


def test_launch_partials_geometry(L):
    with L.launch_settings(threads_per_block=64, partial_blocks=8):
        grid, threads, chunks = L.launch_partials(100, 150)
        assert threads == 64 and grid == (3, chunks) and chunks == 3
        grid, threads, chunks = L.launch_partials(5, 10)
        assert threads == 32 and grid == (1, 5) and chunks == 5


def test_as_device_array_kinds(cuda, L, rng):
    x = rand(rng, (4, 6))
    d = L.as_device_array(x)
    assert L.is_device_array(d) and d.is_c_contiguous()
    np.testing.assert_array_equal(host(d), x)
    assert L.as_device_array(d) is d
    assert L.is_device_array(L.as_device_array(cuda.to_device(x)))
    assert L.as_device_array(cuda.to_device(x)).shape[-1] == 6  # plain tuple shapes, also simulated
    # strided host views keep their strides on the device (and their values)
    for view in (x[:, ::2], x[::-1], x[::-2, ::-3], x.T, np.broadcast_to(x[:1], (3, 6))):
        dv = L.as_device_array(view)
        assert tuple(dv.shape) == view.shape
        np.testing.assert_array_equal(host(dv), view)
    assert not L.as_device_array(x[:, ::2]).is_c_contiguous()
    np.testing.assert_array_equal(host(L.as_device_array([[1, 2], [3, 4]])), [[1, 2], [3, 4]])
    obj = np.array([1, "a"], dtype=object)
    assert L.as_device_array(obj) is obj  # left to the public function's dtype check


def test_cuda_array_interface_is_a_zero_copy_view(cuda, L, rng):
    x = rand(rng, (3, 5))
    d = cuda.to_device(x)
    v = L.as_device_array(CAIWrapper(d))
    np.testing.assert_array_equal(host(v), x)
    L.copyto(v, L.zeros((3, 5), np.float64))
    np.testing.assert_array_equal(host(d), 0.0)  # wrote through to the wrapped array
    # strided and negative-stride foreign views
    big = cuda.to_device(x)
    w = L.as_device_array(CAIWrapper(big[::-1, ::2]))
    np.testing.assert_array_equal(host(w), x[::-1, ::2])


def test_empty_zeros_ones(L):
    z = L.zeros((3, 4), np.float32)
    o = L.ones(7, "float64")
    assert z.dtype == np.float32 and tuple(z.shape) == (3, 4)
    np.testing.assert_array_equal(host(z), 0)
    np.testing.assert_array_equal(host(o), 1)
    e = L.empty((0, 5), np.float32)
    assert tuple(e.shape) == (0, 5)
    assert tuple(L.ones((2, 0), np.float64).shape) == (2, 0)


@pytest.mark.parametrize(
    "make",
    [
        lambda a: a[:, ::2],
        lambda a: a[::-1],
        lambda a: a[::-1, ::-2],
        lambda a: a[1:, 3:9],
        lambda a: a.reshape(2, 3, 2, 7)[:, ::-1, :, 1::3],
    ],
    ids=["step", "reversed", "negative-steps", "slice", "4-D"],
)
def test_ascontiguous_gathers_any_strides(cuda, L, rng, make):
    x = rand(rng, (6, 14))
    d = make(cuda.to_device(x))
    want = make(x)
    c = L.ascontiguous(d, np.float32)
    assert c.is_c_contiguous() and c.dtype == np.float32 and tuple(c.shape) == want.shape
    np.testing.assert_array_equal(host(c), want.astype(np.float32))


def test_ascontiguous_returns_the_same_array_when_possible(cuda, L, rng):
    d = L.as_device_array(rand(rng, (3, 4), np.float32))
    assert L.ascontiguous(d, np.float32) is d
    assert L.ascontiguous(d, np.float64) is not d
    assert L.is_c_contiguous(d) and not L.is_c_contiguous(d[:, ::2])
    # reshape works on the results
    assert tuple(L.ascontiguous(d[:, ::2], np.float64).reshape(6).shape) == (6,)


@pytest.mark.parametrize("src_dtype", [np.float16, np.int64, np.int8, np.bool_, np.float64])
def test_ascontiguous_casts(cuda, L, rng, src_dtype):
    x = (rng.standard_normal((3, 5)) * 4).astype(src_dtype)
    c = L.ascontiguous(cuda.to_device(x)[:, ::-1], np.float32)
    np.testing.assert_array_equal(host(c), x[:, ::-1].astype(np.float32))


def test_copyto_strided_destination_and_0d(cuda, L, rng):
    x = rand(rng, (4, 5))
    dst = cuda.to_device(np.zeros((4, 10)))
    L.copyto(dst[::-1, 1::2], cuda.to_device(x))
    want = np.zeros((4, 10))
    want[::-1, 1::2] = x
    np.testing.assert_array_equal(host(dst), want)
    s = cuda.to_device(np.array(2.5))
    o = L.empty((), np.float32)
    L.copyto(o, s)
    assert host(o)[()] == 2.5
    with pytest.raises(ValueError, match="shapes differ"):
        L.copyto(dst, cuda.to_device(x))


# --------------------------------------------------------------------------- _reduce


def test_reductions(cuda, rng):
    from numbanorm._cuda import _reduce

    nb, nt = 3, 64
    x = rand(rng, (nb, nt))
    x[2, 17] = np.nan
    d = cuda.to_device(x)
    out = cuda.device_array((nb, nt, 12))
    _reduce._check_reductions[nb, nt](d, out)
    r = host(out)
    for b in range(nb):
        for w in range(nt // 32):
            seg = x[b, 32 * w:32 * (w + 1)]
            rw = r[b, 32 * w:32 * (w + 1)]
            for k in range(5):  # warp results identical on every lane
                np.testing.assert_array_equal(rw[:, k], rw[0, k])
            np.testing.assert_allclose(rw[0, 0], seg.sum(), rtol=1e-13)
            np.testing.assert_allclose(rw[0, 1:3], [seg.sum(), -seg.sum()], rtol=1e-13)
            if np.isnan(seg).any():
                assert np.isnan(rw[0, 3]) and np.isnan(rw[0, 4])
            else:
                assert rw[0, 3] == seg.max() and rw[0, 4] == seg.min()
        rb = r[b]
        for k in range(5, 10):
            np.testing.assert_array_equal(rb[:, k], rb[0, k])
        np.testing.assert_allclose(rb[0, [5, 6, 7]], [x[b].sum(), x[b].sum(), (x[b] ** 2).sum()], rtol=1e-13)
        if b == 2:
            assert np.isnan(rb[0, 8]) and np.isnan(rb[0, 9])
        else:
            assert rb[0, 8] == x[b].max() and rb[0, 9] == x[b].min()
        np.testing.assert_array_equal(rb[:, 10], x[b, np.arange(nt) ^ 5])
        np.testing.assert_array_equal(rb[:, 11], np.arange(nt) % 32 + 100 * (np.arange(nt) // 32))


def test_sum_partials_fixed_order(cuda, L, rng):
    from numbanorm._cuda import _reduce

    part = rand(rng, (5, 70))
    out = L.empty(70, np.float32)
    _reduce.sum_partials(cuda.to_device(part), out)
    want = np.zeros(70)
    for c in range(5):
        want += part[c]
    np.testing.assert_array_equal(host(out), want.astype(np.float32))


# --------------------------------------------------------------------------- dispatch


def test_force_device_numpy_in_numpy_out(rng):
    x = rand(rng, (5, 8), np.float32)
    with force_device("cuda"):
        y = numbanorm.layer_norm(x, 8)
    assert type(y) is np.ndarray and y.dtype == np.float32
    np.testing.assert_allclose(y, numbanorm.layer_norm(x, 8), atol=2e-6)


def test_device_array_in_device_array_out(cuda, L, rng):
    x = rand(rng, (5, 8), np.float32)
    d = cuda.to_device(x)
    y, mean, rstd = numbanorm.layer_norm(d, 8, return_stats=True)
    for a in (y, mean, rstd):
        assert L.is_device_array(a)
    assert tuple(mean.shape) == (5, 1)
    np.testing.assert_allclose(host(y), numbanorm.layer_norm(x, 8), atol=2e-6)
    gx, gw = numbanorm.rms_norm_backward(d, d, 8, L.ones(8, np.float32))
    assert L.is_device_array(gx) and L.is_device_array(gw)
    np.testing.assert_array_equal(host(d), x)  # input untouched


def test_cuda_array_interface_object_accepted(cuda, L, rng):
    x = rand(rng, (4, 6))
    w = rand(rng, 6)
    y = numbanorm.rms_norm(CAIWrapper(cuda.to_device(x)), 6, CAIWrapper(cuda.to_device(w)))
    assert L.is_device_array(y)
    np.testing.assert_allclose(host(y), numbanorm.rms_norm(x, 6, w), rtol=1e-12)


def test_mixed_host_and_device_is_a_type_error(cuda, rng):
    d = cuda.to_device(rand(rng, (3, 4)))
    with pytest.raises(TypeError) as info:
        numbanorm.layer_norm(d, 4, np.ones(4))
    msg = str(info.value)
    assert "'x'" in msg and "'weight'" in msg and "GPU" in msg and "host" in msg
    with pytest.raises(TypeError, match="'out'"):
        numbanorm.layer_norm(d, 4, out=np.empty((3, 4)))
    with pytest.raises(TypeError, match="'grad_out'"):
        numbanorm.layer_norm_backward(np.ones((3, 4)), d, 4)


def test_out_on_device_direct_cast_strided_and_in_place(cuda, L, rng):
    x = rand(rng, (6, 10), np.float32)
    want = numbanorm.layer_norm(x, 10)
    d = cuda.to_device(x)
    out = L.empty((6, 10), np.float32)
    assert numbanorm.layer_norm(d, 10, out=out) is out
    np.testing.assert_allclose(host(out), want, atol=2e-6)
    out64 = cuda.to_device(np.full((6, 20), 7.0))
    view = out64[:, ::-2]
    assert numbanorm.layer_norm(d, 10, out=view) is view
    np.testing.assert_allclose(host(out64)[:, ::-2], want, atol=2e-6)
    np.testing.assert_array_equal(host(out64)[:, -2::-2], 7.0)  # the gaps untouched
    y = numbanorm.layer_norm(d, 10, out=d)  # in place
    assert y is d
    np.testing.assert_allclose(host(d), want, atol=2e-6)


def test_failed_call_leaves_device_out_untouched(cuda, rng):
    d = cuda.to_device(rand(rng, (3, 4)))
    out = cuda.to_device(np.full((3, 4), 5.0))
    with pytest.raises(ValueError):
        numbanorm.layer_norm(d, 4, eps=-1.0, out=out)
    np.testing.assert_array_equal(host(out), 5.0)


@pytest.mark.parametrize(
    "make", [lambda a: a[:, ::2], lambda a: a[::-1, ::-1], lambda a: a[1:, 2:]], ids=["step", "negative", "slice"]
)
def test_non_contiguous_device_views(cuda, L, rng, make):
    x = rand(rng, (5, 12))
    xv = make(x)
    y = numbanorm.layer_norm(make(cuda.to_device(x)), xv.shape[-1])
    assert L.is_device_array(y)
    np.testing.assert_allclose(host(y), numbanorm.layer_norm(xv, xv.shape[-1]), rtol=1e-12, atol=1e-12)


def test_float16_and_integer_inputs(cuda, rng):
    x16 = rand(rng, (4, 9), np.float16)
    y16 = numbanorm.layer_norm(cuda.to_device(x16), 9)
    assert y16.dtype == np.float16
    np.testing.assert_allclose(host(y16).astype(np.float32), numbanorm.layer_norm(x16, 9).astype(np.float32), atol=2e-3)
    xi = rng.integers(-5, 5, (4, 9))
    with force_device("cuda"):
        yi, ri = numbanorm.rms_norm(xi, 9, return_stats=True)
    assert yi.dtype == np.float64 and ri.dtype == np.float64
    np.testing.assert_allclose(yi, numbanorm.rms_norm(xi, 9), rtol=1e-12)
    gx16, gw16, gb16 = numbanorm.layer_norm_backward(cuda.to_device(x16), cuda.to_device(x16), 9)
    assert gx16.dtype == np.float16 and gw16 is None and gb16.dtype == np.float16


def test_zero_size(cuda, L):
    for shape, ns in (((0, 5), 5), ((3, 0), 0), ((2, 0, 4), 4)):
        x = np.ones(shape, np.float32)
        y = numbanorm.layer_norm(cuda.to_device(x), ns)
        assert L.is_device_array(y) and tuple(y.shape) == shape
        gx, gw = numbanorm.rms_norm_backward(cuda.to_device(x), cuda.to_device(x), ns, L.ones(ns, np.float32))
        assert tuple(gx.shape) == shape and tuple(gw.shape) == (ns,)
        np.testing.assert_array_equal(host(gw), numbanorm.rms_norm_backward(x, x, ns, np.ones(ns, np.float32))[1])


# --------------------------------------------------------------------------- parity


def _ln_case(rng, shape, dtype, offset=0.0):
    x = rand(rng, shape, dtype, offset)
    n = shape[-1]
    return x, rand(rng, n, dtype), rand(rng, n, dtype), rand(rng, shape, dtype)


def _tol(dtype):
    return dict(rtol=1e-12, atol=1e-12) if dtype == np.float64 else dict(rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize(
    "mode,shape,dtype",
    [
        (WARP, (9, 40), np.float64),  # 2 rows per block, 5 row groups on 3 blocks
        (WARP, (7, 70), np.float32),
        (BLOCK, (5, 150), np.float64),  # one block per row, 5 rows on 3 blocks, 150 > 64 threads
        (BLOCK, (2, 2, 33), np.float32),
    ],
)
def test_layer_norm_parity(rng, mode, shape, dtype):
    x, w, b, g = _ln_case(rng, shape, dtype, offset=3.0)
    n = shape[-1]
    y0, m0, r0 = numbanorm.layer_norm(x, n, w, b, return_stats=True)
    gx0, gw0, gb0 = numbanorm.layer_norm_backward(g, x, n, w, mean=m0, rstd=r0)
    with rows_mode(mode), force_device("cuda"):
        y, m, r = numbanorm.layer_norm(x, n, w, b, return_stats=True)
        gx, gw, gb = numbanorm.layer_norm_backward(g, x, n, w, mean=m, rstd=r)
        gx2, gw2, gb2 = numbanorm.layer_norm_backward(g, x, n, w)  # statistics recomputed (stats kernel)
    for got, want in ((y, y0), (m, m0), (r, r0), (gx, gx0), (gw, gw0), (gb, gb0)):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, **_tol(dtype))
    np.testing.assert_array_equal(gx2, gx)
    np.testing.assert_array_equal(gw2, gw)
    np.testing.assert_array_equal(gb2, gb)


@pytest.mark.parametrize(
    "mode,shape,dtype",
    [(WARP, (9, 40), np.float32), (BLOCK, (5, 150), np.float64)],
)
def test_rms_norm_parity(rng, mode, shape, dtype):
    x, w, _, g = _ln_case(rng, shape, dtype)
    n = shape[-1]
    y0, r0 = numbanorm.rms_norm(x, n, w, return_stats=True)
    gx0, gw0 = numbanorm.rms_norm_backward(g, x, n, w, rstd=r0)
    with rows_mode(mode), force_device("cuda"):
        y, r = numbanorm.rms_norm(x, n, w, return_stats=True)
        gx, gw = numbanorm.rms_norm_backward(g, x, n, w, rstd=r)
        gx2, gw2 = numbanorm.rms_norm_backward(g, x, n, w)
        y_nw = numbanorm.rms_norm(x, n, eps=0.1)
    for got, want in ((y, y0), (r, r0), (gx, gx0), (gw, gw0)):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, **_tol(dtype))
    np.testing.assert_array_equal(gx2, gx)
    np.testing.assert_array_equal(gw2, gw)
    np.testing.assert_allclose(y_nw, numbanorm.rms_norm(x, n, eps=0.1), **_tol(dtype))


def test_large_offset_float32_keeps_precision(rng):
    x = rand(rng, (3, 50), np.float32, offset=1e4)
    with force_device("cuda"):
        y = numbanorm.layer_norm(x, 50)
    ref = (x - x.astype(np.float64).mean(1, keepdims=True)) / x.astype(np.float64).std(1, keepdims=True)
    assert np.abs(y - ref).max() < 1e-2


def test_nan_propagates_to_its_row_only(rng):
    x = rand(rng, (4, 20))
    x[1, 3] = np.nan
    with force_device("cuda"):
        y = numbanorm.layer_norm(x, 20)
        gx, gw, gb = numbanorm.layer_norm_backward(np.ones_like(x), x, 20, np.ones(20))
    assert np.isnan(y[1]).all() and np.isfinite(y[[0, 2, 3]]).all()
    assert np.isnan(gx[1]).all() and np.isfinite(gx[[0, 2, 3]]).all()
    assert np.isnan(gw).all() and np.isfinite(gb).all()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # simulated 1/0: NumPy scalars warn
def test_constant_rows_with_zero_eps(rng):
    x = np.ones((3, 8))
    with force_device("cuda"):
        y, m, r = numbanorm.layer_norm(x, 8, eps=0.0, return_stats=True)
    assert np.isinf(r).all() and np.isnan(y).all()  # 0 * inf, as on the CPU
    np.testing.assert_array_equal(np.isnan(numbanorm.layer_norm(x, 8, eps=0.0)), np.isnan(y))


def test_results_are_bitwise_repeatable(rng):
    x, w, b, g = _ln_case(rng, (5, 40), np.float32)
    runs = []
    for _ in range(2):
        with rows_mode(BLOCK), force_device("cuda"):
            runs.append(numbanorm.layer_norm_backward(g, x, 40, w) + (numbanorm.rms_norm(x, 40, w),))
    for a, b2 in zip(*runs):
        np.testing.assert_array_equal(a, b2)
    assert not math.isnan(float(runs[0][1].sum()))


@pytest.mark.cuda
def test_numpy_out_receives_result_when_forced_to_gpu():
    import numbanorm
    from numbanorm._dispatch import force_device

    x = np.arange(12.0).reshape(3, 4)
    expected = numbanorm.layer_norm(x, 4)
    for out in (np.zeros((3, 4)), np.zeros((3, 4), np.float32), np.zeros((4, 3)).T):
        with force_device("cuda"):
            assert numbanorm.layer_norm(x, 4, out=out) is out
        np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_backward_out_on_device_direct_cast_and_aliasing(cuda, L, rng):
    """``out=`` of the backward functions (numbanorm extension) on the GPU path: a device
    out written directly, a float64 view filled by a cast, ``out=grad_out`` in place (the
    overlap check sends it through a scratch buffer), and a NumPy out under force_device."""
    x = rand(rng, (4, 2, 6), np.float32)
    g = rand(rng, (4, 2, 6), np.float32)
    for call in (
        lambda g_, x_, **kw: numbanorm.layer_norm_backward(g_, x_, 6, **kw)[0],
        lambda g_, x_, **kw: numbanorm.group_norm_backward(g_, x_, 1, **kw)[0],
        lambda g_, x_, **kw: numbanorm.normalize_backward(g_, x_, axis=-1, **kw),
    ):
        want = call(g, x)
        dx, dg = cuda.to_device(x), cuda.to_device(g)
        out = L.empty(x.shape, np.float32)
        assert call(dg, dx, out=out) is out
        np.testing.assert_allclose(host(out), want, rtol=1e-5, atol=1e-6)
        out64 = cuda.to_device(np.full((4, 2, 12), 7.0))
        view = out64[:, :, ::2]
        assert call(dg, dx, out=view) is view
        np.testing.assert_allclose(host(out64)[:, :, ::2], want, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(host(out64)[:, :, 1::2], 7.0)
        assert call(dg, dx, out=dg) is dg
        np.testing.assert_allclose(host(dg), want, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(host(dx), x)
        hout = np.zeros(x.shape)
        with force_device("cuda"):
            assert call(g, x, out=hout) is hout
        np.testing.assert_allclose(hout, want, rtol=1e-5, atol=1e-6)


def test_may_share_memory_of_device_arrays(cuda, L):
    a = cuda.to_device(np.zeros((4, 6)))
    assert L.may_share_memory(a, a)
    assert L.may_share_memory(a[1:3], a[2:])
    assert not L.may_share_memory(a[:2], a[2:])
    assert not L.may_share_memory(a, cuda.to_device(np.zeros((4, 6))))
    assert not L.may_share_memory(a[:0], a)
