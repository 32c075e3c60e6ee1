"""asv: add_rms_norm_backward / add_layer_norm_backward called WITHOUT saved statistics
(no ``rstd=`` / ``mean=``: the backward recomputes them from ``s``), CPU (and GPU when
present) against the baselines; ``out=`` preallocated.

``bench_add_rms_norm`` / ``bench_add_layer_norm`` pass the forward's statistics; this call
also runs the statistics pass and the fused backward kernel as its only consumer, the form
that once ran ~80x slower (issue 11: a refcount pair per element in ``_cpu/_rows_grad``)
without the saved-statistics benchmarks showing it.
"""
import numpy as np

import numbanorm
from numbanorm._bench import gpu_available, gpu_timed, make_array, to_gpu, torch_or_none
from numbanorm._bench.add_rms_norm import inputs, torch_backward

from .common import DTYPES, IMPLS, ROWS_SHAPES, pick


def _case(shape, dtype, centered):
    """(x, {impl: fn}) of the fused-add backward without statistics (``centered``: LayerNorm)."""
    x, r, w = inputs(shape, dtype)
    n = shape[-1]
    gy, gs = make_array(shape, dtype, seed=3), make_array(shape, dtype, seed=4)
    s = x + r
    gx = np.empty_like(x)
    op = numbanorm.add_layer_norm_backward if centered else numbanorm.add_rms_norm_backward
    fns = {"numbanorm": lambda: op(gy, gs, s, n, w, out=gx)}
    torch = torch_or_none()
    if torch is not None:
        F = torch.nn.functional
        norm = (lambda ts, tw: F.layer_norm(ts, (n,), tw)) if centered else (lambda ts, tw: F.rms_norm(ts, (n,), tw))
        fns["torch"] = torch_backward(torch, norm, x, r, w, gy, gs)
    if gpu_available():
        dgy, dgs, ds, dw = to_gpu(gy, gs, s, w)
        fns["numbanorm_gpu"] = gpu_timed(lambda: op(dgy, dgs, ds, n, dw))
    return x, fns


def add_rms(shape, dtype):
    return _case(shape, dtype, False)


def add_layer(shape, dtype):
    return _case(shape, dtype, True)


class AddRMSNormBackwardNoStats:
    params = [ROWS_SHAPES, DTYPES, IMPLS]
    param_names = ["shape", "dtype", "impl"]

    def setup(self, shape, dtype, impl):
        self.fn = pick(add_rms, shape, dtype, impl)
        self.fn()  # compile / warm up outside the timing

    def time_add_rms_norm_backward_nostats(self, shape, dtype, impl):
        self.fn()


class AddLayerNormBackwardNoStats:
    params = [ROWS_SHAPES, DTYPES, IMPLS]
    param_names = ["shape", "dtype", "impl"]

    def setup(self, shape, dtype, impl):
        self.fn = pick(add_layer, shape, dtype, impl)
        self.fn()

    def time_add_layer_norm_backward_nostats(self, shape, dtype, impl):
        self.fn()
