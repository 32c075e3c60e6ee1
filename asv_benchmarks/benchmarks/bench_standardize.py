"""asv: standardize per feature of (1e6, 64) and per channel of (32, 64, 56, 56), CPU (and
GPU when present) against np.copyto, NumPy, PyTorch and scikit-learn (2-D)."""
from numbanorm._bench import standardize as cases

from .common import DTYPES, IMPLS, pick, shapes

#: append-only; 2-D shapes reduce over axis 0, 4-D over (0, 2, 3)
SHAPES = shapes((100_000, 64), (1_000_000, 64), (32, 64, 56, 56))
SCALING_IMPLS = IMPLS + ["sklearn"]


class StandardizeForward:
    params = [SHAPES, DTYPES, SCALING_IMPLS]
    param_names = ["shape", "dtype", "impl"]
    timeout = 300

    def setup(self, shape, dtype, impl):
        self.fn = pick(cases.forward, shape, dtype, impl)
        self.fn()

    def time_standardize(self, shape, dtype, impl):
        self.fn()
