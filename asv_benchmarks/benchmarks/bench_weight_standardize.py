"""asv: weight_standardize forward and backward on conv weights, CPU (and GPU when
present) against np.copyto, NumPy and PyTorch (timm's StdConv2d computation)."""
from numbanorm._bench import weight_standardize as cases

from .common import DTYPES, IMPLS, pick, shapes

#: (C_out, C_in, kH, kW) — append-only
SHAPES = shapes((256, 256, 3, 3))


class WeightStandardizeForward:
    params = [SHAPES, DTYPES, IMPLS]
    param_names = ["shape", "dtype", "impl"]

    def setup(self, shape, dtype, impl):
        self.fn = pick(cases.forward, shape, dtype, impl)
        self.fn()

    def time_weight_standardize_forward(self, shape, dtype, impl):
        self.fn()


class WeightStandardizeBackward:
    params = [SHAPES, DTYPES, IMPLS]
    param_names = ["shape", "dtype", "impl"]

    def setup(self, shape, dtype, impl):
        self.fn = pick(cases.backward, shape, dtype, impl)
        self.fn()

    def time_weight_standardize_backward(self, shape, dtype, impl):
        self.fn()
