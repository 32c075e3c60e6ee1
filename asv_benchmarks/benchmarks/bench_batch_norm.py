"""asv: batch_norm training/eval forward and backward, channels-first and channels-last,
CPU (and GPU when present) against np.copyto, NumPy and PyTorch CPU."""
from numbanorm._bench import batch_norm as cases

from .common import DTYPES, IMPLS, pick, shapes

#: logical (N, C, *spatial) shapes — append-only (asv keys results by parameter values)
SHAPES = shapes((32, 64, 56, 56), (8, 256, 28, 28), (256, 1024), (32, 8, 16))
LAYOUTS = ["channels_first", "channels_last"]


def _setup(kind, shape, layout, dtype, impl):
    if layout == "channels_last":
        if len(shape) == 2:
            raise NotImplementedError("(N, C) has no channels-last layout of its own")
        kind += "_channels_last"
    fn = pick(getattr(cases, kind), shape, dtype, impl)
    fn()  # compile / warm up outside the timing
    return fn


class BatchNormTrain:
    """Training forward: batch statistics, normalize, running-statistics update."""

    params = [SHAPES, LAYOUTS, DTYPES, IMPLS]
    param_names = ["shape", "layout", "dtype", "impl"]

    def setup(self, shape, layout, dtype, impl):
        self.fn = _setup("train", shape, layout, dtype, impl)

    def time_batch_norm_train(self, shape, layout, dtype, impl):
        self.fn()


class BatchNormEval:
    params = [SHAPES, LAYOUTS, DTYPES, IMPLS]
    param_names = ["shape", "layout", "dtype", "impl"]

    def setup(self, shape, layout, dtype, impl):
        self.fn = _setup("eval", shape, layout, dtype, impl)

    def time_batch_norm_eval(self, shape, layout, dtype, impl):
        self.fn()


class BatchNormBackward:
    params = [SHAPES, LAYOUTS, DTYPES, IMPLS]
    param_names = ["shape", "layout", "dtype", "impl"]

    def setup(self, shape, layout, dtype, impl):
        self.fn = _setup("backward", shape, layout, dtype, impl)

    def time_batch_norm_backward(self, shape, layout, dtype, impl):
        self.fn()


class BatchNormBackwardEval:
    params = [SHAPES, DTYPES, IMPLS]
    param_names = ["shape", "dtype", "impl"]

    def setup(self, shape, dtype, impl):
        self.fn = _setup("backward_eval", shape, "channels_first", dtype, impl)

    def time_batch_norm_backward_eval(self, shape, dtype, impl):
        self.fn()
