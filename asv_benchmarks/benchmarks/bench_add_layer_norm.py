"""asv: add_layer_norm (fused residual add) forward and backward, CPU (and GPU when present)
against the baselines; out=/residual_out= preallocated."""
from numbanorm._bench import add_layer_norm as cases

from .common import DTYPES, IMPLS, ROWS_SHAPES, pick


class AddLayerNormForward:
    params = [ROWS_SHAPES, DTYPES, IMPLS]
    param_names = ["shape", "dtype", "impl"]

    def setup(self, shape, dtype, impl):
        self.fn = pick(cases.forward, shape, dtype, impl)
        self.fn()  # compile / warm up outside the timing

    def time_add_layer_norm_forward(self, shape, dtype, impl):
        self.fn()


class AddLayerNormBackward:
    params = [ROWS_SHAPES, DTYPES, IMPLS]
    param_names = ["shape", "dtype", "impl"]

    def setup(self, shape, dtype, impl):
        self.fn = pick(cases.backward, shape, dtype, impl)
        self.fn()

    def time_add_layer_norm_backward(self, shape, dtype, impl):
        self.fn()
