"""Arrays of other libraries: device from their memory, same type out, zero-copy out=.

Every public function, forward and backward, runs once per array kind (PyTorch CPU, JAX
CPU, ``array_api_strict`` on a non-default device, and, under the CUDA simulator, an
object exposing ``__cuda_array_interface__`` and PyTorch CPU tensors forced through the GPU
kernels); each result's type, device, dtype and values are checked against the NumPy call.
A kind whose library is not installed is skipped. The torch CUDA and CuPy paths need a GPU.

The JAX cases run in a child pytest process (``test_jax_cases_in_a_subprocess``): JAX starts
threads when it creates its first array, and later tests that fork (multiprocessing, Dask)
could deadlock in a process where JAX runs.
"""
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

import numbanorm
from numbanorm import _dispatch, _interop

RNG = np.random.default_rng(7)
IN_JAX_CHILD = os.environ.get("NUMBANORM_TEST_JAX") == "1"


def _arr(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


X2, W4, B4 = _arr(5, 4), _arr(4) + 1, _arr(4)
X4, W3, B3 = _arr(2, 3, 2, 2), _arr(3) + 1, _arr(3)
X6, W6 = _arr(2, 6, 3), _arr(6) + 1
G2, G4, G6 = _arr(5, 4), _arr(2, 3, 2, 2), _arr(2, 6, 3)
RM, RV = _arr(3), np.abs(_arr(3)) + 0.5
CONV = _arr(3, 2, 2, 2)

# name -> (function, positional NumPy arrays, keyword NumPy arrays, other keywords)
CALLS = {
    "layer_norm": (numbanorm.layer_norm, (X2, 4, W4, B4), {}, {"return_stats": True}),
    "layer_norm_backward": (numbanorm.layer_norm_backward, (G2, X2, 4, W4), {}, {}),
    "rms_norm": (numbanorm.rms_norm, (X2, 4, W4), {}, {"return_stats": True}),
    "rms_norm_backward": (numbanorm.rms_norm_backward, (G2, X2, 4, W4), {}, {}),
    "batch_norm": (numbanorm.batch_norm, (X4, RM, RV, W3, B3), {}, {"training": False, "return_stats": True}),
    "batch_norm_backward": (numbanorm.batch_norm_backward, (G4, X4, W3), {}, {}),
    "instance_norm": (numbanorm.instance_norm, (X4,), {"weight": W3, "bias": B3}, {"return_stats": True}),
    "instance_norm_backward": (numbanorm.instance_norm_backward, (G4, X4, W3), {}, {}),
    "group_norm": (numbanorm.group_norm, (X6, 3, W6), {}, {"return_stats": True}),
    "group_norm_backward": (numbanorm.group_norm_backward, (G6, X6, 3, W6), {}, {}),
    "local_response_norm": (numbanorm.local_response_norm, (X4, 3), {}, {}),
    "local_response_norm_backward": (numbanorm.local_response_norm_backward, (G4, X4, 3), {}, {}),
    "normalize": (numbanorm.normalize, (X2,), {}, {}),
    "normalize_backward": (numbanorm.normalize_backward, (G2, X2), {}, {}),
    "weight_standardize": (numbanorm.weight_standardize, (CONV,), {}, {}),
    "weight_standardize_backward": (numbanorm.weight_standardize_backward, (CONV, CONV), {}, {}),
    "min_max_scale": (numbanorm.min_max_scale, (X2,), {}, {}),
    "standardize": (numbanorm.standardize, (X2,), {}, {}),
}


class Kind:
    """How to make an array of one library from NumPy, read it back and check it."""

    def __init__(self, name, make, back, is_kind, device=lambda a: "cpu"):
        self.name, self.make, self.back, self.is_kind, self.device = name, make, back, is_kind, device

    def convert(self, value):
        return self.make(value) if isinstance(value, np.ndarray) else value


def _torch_kind():
    torch = pytest.importorskip("torch")
    return Kind("torch", lambda a: torch.from_numpy(a.copy()), lambda t: t.numpy(),
                lambda t: isinstance(t, torch.Tensor), lambda t: str(t.device))


def _jax_kind():
    pytest.importorskip("jax")
    import jax
    import jax.numpy as jnp

    return Kind("jax", jnp.asarray, np.asarray, lambda a: isinstance(a, jax.Array),
                lambda a: str(next(iter(a.devices())).platform))


def _strict_kind():
    xs = pytest.importorskip("array_api_strict")
    dev = xs.Device("device1")  # not the default device: results must come back on it
    return Kind("array_api_strict", lambda a: xs.asarray(a, device=dev), np.from_dlpack,
                lambda a: type(a) is type(xs.asarray(1.0)), lambda a: str(a.device))


KINDS = {"torch": _torch_kind, "jax": _jax_kind, "array_api_strict": _strict_kind}


@pytest.fixture(params=[k for k in KINDS if k != "jax" or IN_JAX_CHILD], scope="module")
def kind(request):
    return KINDS[request.param]()


def _leaves(r):
    return list(r) if isinstance(r, tuple) else [r]


def _check_same(kind, ref, got, device):
    ref, got = _leaves(ref), _leaves(got)
    assert len(ref) == len(got)
    for r, g in zip(ref, got):
        if r is None:
            assert g is None
            continue
        assert kind.is_kind(g), f"expected a {kind.name} array, got {type(g)}"
        assert kind.device(g) == device
        gv = kind.back(g)
        assert gv.dtype == r.dtype and gv.shape == r.shape
        np.testing.assert_allclose(gv, r, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", list(CALLS))
def test_every_function_round_trips(kind, name):
    fn, args, kwargs, other = CALLS[name]
    ref = fn(*args, **kwargs, **other)
    conv_args = [kind.convert(a) for a in args]
    got = fn(*conv_args, **{k: kind.convert(v) for k, v in kwargs.items()}, **other)
    _check_same(kind, ref, got, kind.device(conv_args[0]))


@pytest.mark.parametrize("name", list(CALLS))
def test_every_function_writes_out_where_writable(kind, name):
    fn, args, kwargs, other = CALLS[name]
    ref = _leaves(fn(*args, **kwargs, **other))[0]
    out = kind.make(np.zeros_like(ref))
    call = lambda: fn(*[kind.convert(a) for a in args], **{k: kind.convert(v) for k, v in kwargs.items()},
                      **other, out=out)
    if kind.name == "jax":
        with pytest.raises(TypeError, match="JAX arrays are immutable"):
            call()
        return
    got = call()
    assert _leaves(got)[0] is out
    np.testing.assert_allclose(kind.back(out), ref, rtol=1e-5, atol=1e-5)


def test_batch_norm_training_updates_foreign_running_stats_in_place(torch):
    rm, rv = torch.zeros(3), torch.ones(3)
    ref_m, ref_v = np.zeros(3, np.float32), np.ones(3, np.float32)
    y = numbanorm.batch_norm(torch.from_numpy(X4), rm, rv, training=True, num_batches_tracked=torch.zeros(1, dtype=torch.int64))
    numbanorm.batch_norm(X4, ref_m, ref_v, training=True)
    assert isinstance(y, torch.Tensor)
    np.testing.assert_allclose(rm.numpy(), ref_m, rtol=1e-6)
    np.testing.assert_allclose(rv.numpy(), ref_v, rtol=1e-6)


def test_torch_out_is_written_and_returned(torch):
    x = torch.from_numpy(X2.copy())
    out = torch.empty(4, 5).t()  # a strided view: written through its zero-copy NumPy view
    y = numbanorm.layer_norm(x, 4, out=out)
    assert y is out
    np.testing.assert_allclose(out.numpy(), numbanorm.layer_norm(X2, 4), rtol=1e-6)
    gx = torch.empty(5, 4)
    res = numbanorm.layer_norm_backward(torch.from_numpy(G2), x, 4, out=gx)
    assert res[0] is gx
    np.testing.assert_allclose(gx.numpy(), numbanorm.layer_norm_backward(G2, X2, 4)[0], rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not IN_JAX_CHILD, reason="runs in test_jax_cases_in_a_subprocess")
def test_jax_out_is_a_type_error_saying_immutable():
    pytest.importorskip("jax")
    import jax.numpy as jnp

    x = jnp.asarray(X2)
    with pytest.raises(TypeError, match="out.*JAX arrays are immutable"):
        numbanorm.layer_norm(x, 4, out=jnp.zeros((5, 4), jnp.float32))
    with pytest.raises(TypeError, match="immutable"):
        numbanorm.normalize_backward(x, x, out=x)
    rm, rv = jnp.zeros(3), jnp.ones(3)  # updated in place when training: refused, unchanged
    with pytest.raises(ValueError, match="running_mean.*writeable"):
        numbanorm.batch_norm(jnp.asarray(X4), rm, rv, training=True)
    assert float(rm.sum()) == 0.0 and float(rv.sum()) == 3.0


@pytest.mark.skipif(IN_JAX_CHILD, reason="this is the child")
def test_jax_cases_in_a_subprocess():
    if importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed")
    env = dict(os.environ, NUMBANORM_TEST_JAX="1")
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__, "-k", "jax and not subprocess"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert " passed" in res.stdout and " skipped" not in res.stdout, res.stdout[-2000:]


def test_torch_requires_grad_strided_integer_and_bool(torch):
    x = torch.from_numpy(X2.copy()).requires_grad_()
    y = numbanorm.layer_norm(x, 4)  # read through .detach()
    assert isinstance(y, torch.Tensor) and not y.requires_grad
    np.testing.assert_allclose(y.numpy(), numbanorm.layer_norm(X2, 4), rtol=1e-6)
    big = torch.from_numpy(_arr(5, 8))
    view = big[:, ::2]  # non-contiguous: DLPack carries the strides
    np.testing.assert_allclose(numbanorm.rms_norm(view, 4).numpy(), numbanorm.rms_norm(big.numpy()[:, ::2], 4), rtol=1e-6)
    ints = torch.arange(12).reshape(3, 4)
    r = numbanorm.normalize(ints)
    assert r.dtype == torch.float64
    np.testing.assert_allclose(r.numpy(), numbanorm.normalize(np.arange(12).reshape(3, 4)))
    assert numbanorm.standardize(torch.ones(3, 2, dtype=torch.bool)).dtype == torch.float64


def test_mixed_libraries_follow_x(torch):
    w = torch.from_numpy(W4)
    y = numbanorm.layer_norm(X2, 4, w)
    assert type(y) is np.ndarray
    np.testing.assert_allclose(y, numbanorm.layer_norm(X2, 4, W4), rtol=1e-6)
    y = numbanorm.layer_norm(torch.from_numpy(X2), 4, W4, torch.from_numpy(B4))
    assert isinstance(y, torch.Tensor)
    np.testing.assert_allclose(y.numpy(), numbanorm.layer_norm(X2, 4, W4, B4), rtol=1e-6)


def test_mixed_devices_are_refused_naming_both(torch):
    class Gpu:  # CUDA memory per DLPack
        def __dlpack_device__(self):
            return (2, 0)

    with pytest.raises(TypeError, match=r"'x' on host, 'weight' on GPU"):
        numbanorm.layer_norm(torch.from_numpy(X2), 4, Gpu())


def test_device_comes_from_memory_not_class(torch):
    assert _dispatch._where(torch.zeros(2)) == "cpu"  # class property that raises on CPU tensors
    assert hasattr(type(torch.zeros(2)), "__cuda_array_interface__")

    class DLCuda:
        def __dlpack_device__(self):
            return (2, 0)

    class DLCpu(DLCuda):
        __cuda_array_interface__ = property(lambda self: 1 / 0)

        def __dlpack_device__(self):
            return (1, 0)

    class CAIOnInstance:
        def __init__(self):
            self.__cuda_array_interface__ = {"shape": (1,), "typestr": "<f4", "data": (0, False), "version": 3}

    class Metal:
        def __dlpack_device__(self):
            return (8, 0)

    assert _dispatch._where(DLCuda()) == "cuda"
    assert _dispatch._where(DLCpu()) == "cpu"
    assert _dispatch._where(CAIOnInstance()) == "cuda"
    with pytest.raises(TypeError, match="argument 'x' must be in host or CUDA memory, got an array in Metal"):
        numbanorm.normalize(Metal())


def test_every_kind_in_host_memory_goes_to_the_cpu(kind):
    a = kind.make(X2)
    assert _dispatch._where(a) == "cpu"
    assert _interop.kind(a) == {"array_api_strict": "array_api"}.get(kind.name, kind.name)


def test_kinds():
    assert _interop.kind(np.ones(2)) == "numpy"
    assert _interop.kind([1.0]) == "numpy"
    assert _interop.kind(np.ones(2).view(np.recarray)) == "numpy"


# --------------------------------------------------------------------------- GPU path (simulator)


class CudaObject:
    """A foreign CUDA array: only ``__cuda_array_interface__`` on the instance (under the
    simulator it describes host memory)."""

    def __init__(self, a):
        self._a = a
        self.__cuda_array_interface__ = {
            "shape": a.shape, "typestr": a.dtype.str, "data": (a.ctypes.data, False),
            "strides": None, "version": 3,
        }


@pytest.mark.cuda
def test_cuda_interface_object_round_trips_to_device_arrays():
    from numbanorm._cuda import _layout

    x, w = CudaObject(X2.copy()), CudaObject(W4.copy())
    y, mean, rstd = numbanorm.layer_norm(x, 4, w, return_stats=True)
    assert _layout.is_device_array(y) and _layout.is_device_array(rstd)
    np.testing.assert_allclose(y.copy_to_host(), numbanorm.layer_norm(X2, 4, W4), rtol=1e-5, atol=1e-6)
    gx, gw, gb = numbanorm.layer_norm_backward(CudaObject(G2.copy()), x, 4, w)
    ref = numbanorm.layer_norm_backward(G2, X2, 4, W4)
    for g, r in zip((gx, gw, gb), ref):
        np.testing.assert_allclose(g.copy_to_host(), r, rtol=1e-4, atol=1e-5)


@pytest.mark.cuda
def test_torch_forced_through_the_gpu_kernels_comes_back_as_torch(torch):
    x = torch.from_numpy(X4.copy())
    rm, rv = torch.zeros(3), torch.ones(3)
    ref_m, ref_v = np.zeros(3, np.float32), np.ones(3, np.float32)
    out = torch.empty(X4.shape)
    with _dispatch.force_device("cuda"):
        y = numbanorm.batch_norm(x, rm, rv, training=True, out=out)
        gx, gw, gb = numbanorm.batch_norm_backward(torch.from_numpy(G4), x, torch.from_numpy(W3))
    ref = numbanorm.batch_norm(X4, ref_m, ref_v, training=True)
    assert y is out
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(rm.numpy(), ref_m, rtol=1e-5)
    np.testing.assert_allclose(rv.numpy(), ref_v, rtol=1e-5)
    for g, r in zip((gx, gw, gb), numbanorm.batch_norm_backward(G4, X4, W3)):
        assert isinstance(g, torch.Tensor)
        np.testing.assert_allclose(g.numpy(), r, rtol=1e-4, atol=1e-5)


@pytest.mark.cuda
def test_cupy_round_trips():
    cupy = pytest.importorskip("cupy")
    x = cupy.asarray(X2)
    y = numbanorm.layer_norm(x, 4)
    assert isinstance(y, cupy.ndarray)
    np.testing.assert_allclose(y.get(), numbanorm.layer_norm(X2, 4), rtol=1e-5, atol=1e-6)
