"""asv: local_response_norm (size 5) forward and backward, across channels and within
channel, CPU (and GPU when present) against np.copyto, NumPy and PyTorch CPU."""
from numbanorm._bench import local_response_norm as cases

from .common import DTYPES, IMPLS, pick, shapes

#: (N, C, H, W) shapes — append-only (asv keys results by parameter values)
SHAPES = shapes((32, 64, 56, 56), (8, 96, 55, 55))
MODES = ["across_channels", "within_channel"]


def _setup(kind, shape, mode, dtype, impl):
    setup = getattr(cases, kind if mode == "across_channels" else kind + "_within")
    fn = pick(setup, shape, dtype, impl)
    fn()  # compile / warm up outside the timing
    return fn


class LocalResponseNormForward:
    params = [SHAPES, MODES, DTYPES, IMPLS]
    param_names = ["shape", "mode", "dtype", "impl"]

    def setup(self, shape, mode, dtype, impl):
        self.fn = _setup("forward", shape, mode, dtype, impl)

    def time_local_response_norm_forward(self, shape, mode, dtype, impl):
        self.fn()


class LocalResponseNormBackward:
    params = [SHAPES, MODES, DTYPES, IMPLS]
    param_names = ["shape", "mode", "dtype", "impl"]

    def setup(self, shape, mode, dtype, impl):
        self.fn = _setup("backward", shape, mode, dtype, impl)

    def time_local_response_norm_backward(self, shape, mode, dtype, impl):
        self.fn()
