"""``numbanorm bench`` cases for instance_norm (forward, backward), channels-first and
channels-last (see :mod:`.batch_norm` for the layouts)."""
import numpy as np

import numbanorm

from . import _onnxrt, gpu_available, gpu_timed, make_array, to_gpu, torch_or_none
from .batch_norm import data, torch_backward
from .group_norm import _numpy_backward as _grouped_backward
from .group_norm import _numpy_forward as _grouped_forward
from .group_norm import layout_cases, layouts

SHAPES = [(32, 64, 56, 56), (8, 256, 28, 28), (32, 8, 16)]


def _forward(shape, dtype, channels_last):
    x, ca, tview = data(shape, dtype, channels_last)
    c = shape[1]
    w = make_array(c, dtype, seed=1)
    b = make_array(c, dtype, seed=2)
    out = np.empty_like(x)
    fns = {
        "numbanorm": lambda: numbanorm.instance_norm(x, None, None, w, b, channel_axis=ca, out=out),
        "numpy": lambda: _grouped_forward(x, ca, c, w, b),
    }
    torch = torch_or_none()
    if torch is not None:
        tx = tview(torch, x)
        tw, tb = torch.from_numpy(w), torch.from_numpy(b)
        fns["torch"] = lambda: torch.nn.functional.instance_norm(tx, None, None, tw, tb)
    if not channels_last:  # ONNX's normalizations are channels-first
        _onnxrt.add(fns, lambda: numbanorm.instance_norm(x, None, None, w, b), "InstanceNormalization", [x, w, b],
                    17, epsilon=1e-5)
    if gpu_available():
        dx, dw, db, dout = to_gpu(x, w, b, out)
        fns["numbanorm_gpu"] = gpu_timed(
            lambda: numbanorm.instance_norm(dx, None, None, dw, db, channel_axis=ca, out=dout)
        )
    return x, fns


def _backward(shape, dtype, channels_last):
    x, ca, tview = data(shape, dtype, channels_last)
    g = data(shape, dtype, channels_last, seed=3)[0]
    c = shape[1]
    w = make_array(c, dtype, seed=1)
    _, mean, rstd = numbanorm.instance_norm(x, weight=w, channel_axis=ca, return_stats=True)
    gx = np.empty_like(x)  # out=: timed like the forward cases, without allocating
    fns = {
        "numbanorm": lambda: numbanorm.instance_norm_backward(g, x, w, mean=mean, rstd=rstd, channel_axis=ca,
                                                              out=gx),
        "numpy": lambda: _grouped_backward(g, x, ca, c, w),
    }
    torch = torch_or_none()
    if torch is not None:
        def norm(tx, tw, tb):
            return torch.nn.functional.instance_norm(tx, None, None, tw, tb)

        fns["torch"] = torch_backward(torch, norm, tview, x, w, g)
    if gpu_available():
        dg, dx, dw, dm, dr = to_gpu(g, x, w, mean, rstd)
        fns["numbanorm_gpu"] = gpu_timed(
            lambda: numbanorm.instance_norm_backward(dg, dx, dw, mean=dm, rstd=dr, channel_axis=ca)
        )
    return x, fns


forward, forward_channels_last = layouts(_forward)
backward, backward_channels_last = layouts(_backward)
CASES = layout_cases(SHAPES, forward, forward_channels_last, backward, backward_channels_last)
