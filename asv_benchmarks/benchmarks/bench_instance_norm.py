"""asv: instance_norm forward and backward, channels-first and channels-last,
CPU (and GPU when present) against np.copyto, NumPy and PyTorch CPU."""
from numbanorm._bench import instance_norm as cases

from .common import DTYPES, IMPLS, pick, shapes

#: logical (N, C, *spatial) shapes — append-only (asv keys results by parameter values)
SHAPES = shapes((32, 64, 56, 56), (8, 256, 28, 28), (32, 8, 16))
LAYOUTS = ["channels_first", "channels_last"]


def _setup(kind, shape, layout, dtype, impl):
    if layout == "channels_last":
        kind += "_channels_last"
    fn = pick(getattr(cases, kind), shape, dtype, impl)
    fn()  # compile / warm up outside the timing
    return fn


class InstanceNormForward:
    params = [SHAPES, LAYOUTS, DTYPES, IMPLS]
    param_names = ["shape", "layout", "dtype", "impl"]

    def setup(self, shape, layout, dtype, impl):
        self.fn = _setup("forward", shape, layout, dtype, impl)

    def time_instance_norm_forward(self, shape, layout, dtype, impl):
        self.fn()


class InstanceNormBackward:
    params = [SHAPES, LAYOUTS, DTYPES, IMPLS]
    param_names = ["shape", "layout", "dtype", "impl"]

    def setup(self, shape, layout, dtype, impl):
        self.fn = _setup("backward", shape, layout, dtype, impl)

    def time_instance_norm_backward(self, shape, layout, dtype, impl):
        self.fn()
