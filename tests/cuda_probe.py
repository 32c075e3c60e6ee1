"""What a GPU-path call does, counted in the CUDA simulator (a test helper, not a test).

``with record(run=False) as rec: numbanorm.layer_norm(...)`` collects every kernel launch
(kernel name, grid, block, element count of each array argument, the stream it was given),
every stream/device synchronisation, every host→device and
device→host copy (explicit ones and the simulator's implicit transfers of NumPy kernel
arguments) and every device allocation. ``run=False`` skips the kernels' bodies, so the
launch geometry of realistic shapes (millions of elements) is recorded in milliseconds; the
results are then zeros (new device arrays are zero-filled), only the geometry and the host
work count.
"""
import contextlib
import dataclasses
import math

import numpy as np


@dataclasses.dataclass
class Launch:
    name: str
    grid: tuple
    block: tuple
    sizes: tuple
    stream: object = 0

    @property
    def blocks(self):
        return math.prod(self.grid)

    @property
    def threads(self):
        return math.prod(self.block)


@dataclasses.dataclass
class Record:
    launches: list = dataclasses.field(default_factory=list)
    h2d: int = 0
    d2h: int = 0
    allocs: list = dataclasses.field(default_factory=list)
    syncs: int = 0

    def big(self, size):
        """Launches with an array argument of at least half ``size`` elements."""
        return [lp for lp in self.launches if lp.sizes and max(lp.sizes) * 2 >= size]


def _dims(d):
    return tuple(int(v) for v in d)


@contextlib.contextmanager
def record(run=True):
    import pytest

    try:
        from numba.cuda.core import config
    except ImportError:  # pragma: no cover - older numba-cuda
        from numba.core import config
    if not config.ENABLE_CUDASIM:
        pytest.skip("launches are counted in the CUDA simulator")
    from numba import cuda
    from numba.cuda.simulator import kernel as K
    from numba.cuda.simulator.cudadrv import devicearray as D

    rec = Record()
    orig_call = K.FakeCUDAKernel.__call__
    orig_getitem = K.FakeCUDAKernel.__getitem__
    orig_sync = cuda.synchronize
    orig_stream_sync = cuda.stream.synchronize
    orig_to_device, orig_device_array = cuda.to_device, cuda.device_array
    orig_to_host = D.FakeCUDAArray.copy_to_host
    orig_copy_to_device = D.FakeCUDAArray.copy_to_device

    def call(self, *args):
        if self._device:
            return orig_call(self, *args)
        sizes = tuple(int(np.prod(a.shape)) for a in args if hasattr(a, "shape") and hasattr(a, "dtype"))
        implicit = sum(isinstance(a, np.ndarray) and a.ndim > 0 for a in args)
        rec.h2d += implicit
        rec.d2h += implicit
        stream = getattr(self, "_probe_stream", 0)
        rec.launches.append(Launch(self.fn.__name__, _dims(self.grid_dim), _dims(self.block_dim), sizes, stream))
        if run:
            return orig_call(self, *args)
        return None

    def getitem(self, config):
        self._probe_stream = config[2] if len(config) > 2 else 0
        return orig_getitem(self, config)

    def synchronize(*a, **k):
        rec.syncs += 1

    def to_device(*a, **k):
        rec.h2d += 1
        return orig_to_device(*a, **k)

    def device_array(*a, **k):
        out = orig_device_array(*a, **k)
        if not run:
            out._ary[...] = 0  # the kernels will not fill it: zeros, not garbage, downstream
        rec.allocs.append(tuple(out.shape))
        return out

    def copy_to_host(self, *a, **k):
        rec.d2h += 1
        return orig_to_host(self, *a, **k)

    def copy_to_device(self, *a, **k):
        rec.h2d += 1
        return orig_copy_to_device(self, *a, **k)

    K.FakeCUDAKernel.__call__ = call
    K.FakeCUDAKernel.__getitem__ = getitem
    cuda.synchronize = synchronize
    cuda.stream.synchronize = synchronize
    cuda.to_device, cuda.device_array = to_device, device_array
    D.FakeCUDAArray.copy_to_host = copy_to_host
    D.FakeCUDAArray.copy_to_device = copy_to_device
    try:
        yield rec
    finally:
        if not run:  # constants made while kernels did not run hold zeros: drop them
            from numbanorm._cuda import _layout

            _layout._CONSTANTS.clear()
        K.FakeCUDAKernel.__call__ = orig_call
        K.FakeCUDAKernel.__getitem__ = orig_getitem
        cuda.synchronize = orig_sync
        cuda.stream.synchronize = orig_stream_sync
        cuda.to_device, cuda.device_array = orig_to_device, orig_device_array
        D.FakeCUDAArray.copy_to_host = orig_to_host
        D.FakeCUDAArray.copy_to_device = orig_copy_to_device
