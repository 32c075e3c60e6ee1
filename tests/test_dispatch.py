"""Device choice without a GPU: NumPy -> CPU; GPU-looking objects are refused when mixed."""
import numpy as np
import pytest

from numbanorm import _dispatch, layer_norm, rms_norm_backward


class FakeGpuArray:
    """Looks like a GPU array to the dispatch layer (its instances expose
    __cuda_array_interface__; the memory it names is never read: mixing is refused first)."""

    shape = (3, 4)
    dtype = np.dtype(np.float32)

    @property
    def __cuda_array_interface__(self):
        return {"shape": self.shape, "typestr": "<f4", "data": (0, False), "version": 3}


def test_numpy_goes_to_cpu():
    x = np.ones((2, 3))
    assert _dispatch.device_of("f", x=x, weight=None).name == "cpu"
    assert _dispatch.device_of("f", x=[1, 2]).name == "cpu"


def test_gpu_object_detected_by_interface_and_dask_by_type():
    assert _dispatch._where(FakeGpuArray()) == "cuda"
    assert _dispatch._where(np.ones(2)) == "cpu"
    assert _dispatch._where([1.0]) == "cpu"
    assert _dispatch._where(None) is None
    da = pytest.importorskip("dask.array")
    assert _dispatch._where(da.ones(3)) == "dask"


@pytest.mark.parametrize(
    "call,names",
    [
        (lambda g: layer_norm(np.ones((3, 4), np.float32), 4, g), ["'x'", "'weight'", "GPU", "host"]),
        (lambda g: layer_norm(g, 4, np.ones(4, np.float32)), ["'x'", "'weight'"]),
        (lambda g: layer_norm(np.ones((3, 4)), 4, out=g), ["'out'"]),
        (lambda g: rms_norm_backward(g, np.ones((3, 4)), 4), ["'grad_out'", "'x'"]),
    ],
)
def test_mixed_devices_are_a_type_error_naming_arguments(call, names):
    with pytest.raises(TypeError) as info:
        call(FakeGpuArray())
    for n in names:
        assert n in str(info.value)


def test_force_device_validates_name():
    with pytest.raises(ValueError, match="force_device"):
        with _dispatch.force_device("tpu"):
            pass


def test_import_does_not_load_cuda_or_cupy():
    import subprocess
    import sys

    code = (
        "import sys, time; t = time.perf_counter(); import numbanorm; dt = time.perf_counter() - t; "
        "import numpy as np; numbanorm.layer_norm(np.ones((2, 3)), 3); "
        "print(dt, 'numba.cuda' in sys.modules, 'cupy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert float(out[0]) < 0.5
    assert out[1:] == ["False", "False"]
