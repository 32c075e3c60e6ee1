"""asv: StandardScaler / MinMaxScaler ``fit_transform`` on (1e6, 64) float64 against
scikit-learn's, a NumPy formula and np.copyto (the issue's targets: >= 4x scikit-learn,
<= 2.5x np.copyto)."""
from numbanorm._bench import scalers as cases

from .common import SMOKE, pick, shapes

#: append-only
SHAPES = shapes((100_000, 64), (1_000_000, 64))
SCALER_IMPLS = ["numbanorm", "copyto"] if SMOKE else ["numbanorm", "copyto", "numpy", "sklearn"]


class StandardScalerFitTransform:
    params = [SHAPES, ["float64"], SCALER_IMPLS]
    param_names = ["shape", "dtype", "impl"]
    timeout = 300

    def setup(self, shape, dtype, impl):
        self.fn = pick(cases.standard, shape, dtype, impl)
        self.fn()

    def time_fit_transform(self, shape, dtype, impl):
        self.fn()


class MinMaxScalerFitTransform:
    params = [SHAPES, ["float64"], SCALER_IMPLS]
    param_names = ["shape", "dtype", "impl"]
    timeout = 300

    def setup(self, shape, dtype, impl):
        self.fn = pick(cases.minmax, shape, dtype, impl)
        self.fn()

    def time_fit_transform(self, shape, dtype, impl):
        self.fn()
