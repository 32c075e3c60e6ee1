"""asv: one training step (forward + backward) of the layer classes against torch.nn and copyto.

``impl``: ``numbanorm`` (the layer class on NumPy arrays: forward with cached statistics,
then ``backward`` storing the parameter gradients), ``torch`` (the ``torch.nn`` twin,
forward + autograd backward; skipped without PyTorch), ``copyto`` (``np.copyto`` of the
input twice: the memory-traffic floor of reading x and writing y, then reading the
gradient and writing grad_x), ``stream_copy`` (the same two copies with the all-threads
streaming copy; the faster copy is the floor).
"""
import numpy as np

from .common import shapes

LAYER_CASES = {
    "LayerNorm": (lambda mod, shape: mod.LayerNorm(shape[-1]), shapes((32, 768), (4096, 1024))),
    "BatchNorm2d": (lambda mod, shape: mod.BatchNorm2d(shape[1]), shapes((8, 64, 32, 32), (32, 128, 28, 28))),
    "GroupNorm": (lambda mod, shape: mod.GroupNorm(8, shape[1]), shapes((8, 64, 32, 32))),
}
IMPLS = ["numbanorm", "torch", "copyto", "stream_copy"]  # append-only


def _step(layer_name, shape, impl):
    make, _ = LAYER_CASES[layer_name]
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    g = rng.standard_normal(shape).astype(np.float32)
    if impl == "copyto":
        dst = np.empty_like(x)

        def run():
            np.copyto(dst, x)
            np.copyto(dst, g)

        return run
    if impl == "stream_copy":
        from numbanorm._bench._copy import stream_copy

        dst = np.empty_like(x)
        stream_copy(dst, x)  # compile outside the timing

        def run():
            stream_copy(dst, x)
            stream_copy(dst, g)

        return run
    if impl == "numbanorm":
        import numbanorm

        layer = make(numbanorm, shape)

        def run():
            layer(x)
            layer.backward(g)

        return run
    try:
        import torch
    except ImportError:
        raise NotImplementedError("torch not installed") from None
    layer = make(torch.nn, shape)
    xt = torch.from_numpy(x).requires_grad_(True)
    gt = torch.from_numpy(g)

    def run():
        xt.grad = None
        layer.zero_grad(set_to_none=True)
        layer(xt).backward(gt)

    return run


def _params(name):
    return [LAYER_CASES[name][1], IMPLS]


class LayerNormStep:
    params = _params("LayerNorm")
    param_names = ["shape", "impl"]

    def setup(self, shape, impl):
        self.fn = _step("LayerNorm", shape, impl)
        self.fn()

    def time_layer_norm_step(self, shape, impl):
        self.fn()


class BatchNorm2dStep:
    params = _params("BatchNorm2d")
    param_names = ["shape", "impl"]

    def setup(self, shape, impl):
        self.fn = _step("BatchNorm2d", shape, impl)
        self.fn()

    def time_batch_norm2d_step(self, shape, impl):
        self.fn()


class GroupNormStep:
    params = _params("GroupNorm")
    param_names = ["shape", "impl"]

    def setup(self, shape, impl):
        self.fn = _step("GroupNorm", shape, impl)
        self.fn()

    def time_group_norm_step(self, shape, impl):
        self.fn()
