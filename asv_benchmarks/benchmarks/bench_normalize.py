"""asv: normalize (p=2) forward and backward along the last axis of (M, N) rows and along
the channels of (N, C, H, W), CPU (and GPU when present) against the baselines."""
from numbanorm._bench import normalize as cases

from .common import DTYPES, IMPLS, pick, shapes

#: append-only; 2-D shapes normalize along the last axis, 4-D along axis 1
SHAPES = shapes((8192, 4096), (32, 64, 56, 56))


class NormalizeForward:
    params = [SHAPES, DTYPES, IMPLS]
    param_names = ["shape", "dtype", "impl"]

    def setup(self, shape, dtype, impl):
        self.fn = pick(cases.forward, shape, dtype, impl)
        self.fn()

    def time_normalize_forward(self, shape, dtype, impl):
        self.fn()


class NormalizeBackward:
    params = [SHAPES, DTYPES, IMPLS]
    param_names = ["shape", "dtype", "impl"]

    def setup(self, shape, dtype, impl):
        self.fn = pick(cases.backward, shape, dtype, impl)
        self.fn()

    def time_normalize_backward(self, shape, dtype, impl):
        self.fn()
