"""asv: add_rms_norm (fused residual add) forward and backward, CPU (and GPU when present)
against the baselines; out=/residual_out= preallocated."""
from numbanorm._bench import add_rms_norm as cases

from .common import DTYPES, IMPLS, ROWS_SHAPES, pick


class AddRMSNormForward:
    params = [ROWS_SHAPES, DTYPES, IMPLS]
    param_names = ["shape", "dtype", "impl"]

    def setup(self, shape, dtype, impl):
        self.fn = pick(cases.forward, shape, dtype, impl)
        self.fn()  # compile / warm up outside the timing

    def time_add_rms_norm_forward(self, shape, dtype, impl):
        self.fn()


class AddRMSNormBackward:
    params = [ROWS_SHAPES, DTYPES, IMPLS]
    param_names = ["shape", "dtype", "impl"]

    def setup(self, shape, dtype, impl):
        self.fn = pick(cases.backward, shape, dtype, impl)
        self.fn()

    def time_add_rms_norm_backward(self, shape, dtype, impl):
        self.fn()
