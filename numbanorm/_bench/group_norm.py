"""``numbanorm bench`` cases for group_norm (forward, backward), channels-first and channels-last.

``shape`` is the logical ``(N, C, *spatial)`` shape (see :mod:`.batch_norm` for the layouts);
32 groups on the large shapes, as in the issue's targets.
"""
import numpy as np

import numbanorm

from . import _onnxrt, gpu_available, gpu_timed, make_array, to_gpu, torch_or_none
from .batch_norm import data, per_channel, torch_backward

SHAPES = [(32, 64, 56, 56), (8, 256, 28, 28), (32, 8, 16)]


def groups_for(shape):
    return min(32, shape[1] // 2)


def _grouped(x, ca, groups):
    """A (N, G, rest) view of channels-first data (NumPy baselines use channels-first only)."""
    return np.moveaxis(x, ca, 1).reshape(x.shape[0], groups, -1)


def _numpy_forward(x, ca, groups, w, b, eps=1e-5):
    xg = _grouped(x, ca, groups)
    mean = xg.mean(axis=2, keepdims=True)
    var = xg.var(axis=2, keepdims=True)
    y = np.moveaxis(((xg - mean) / np.sqrt(var + eps)).reshape(np.moveaxis(x, ca, 1).shape), 1, ca)
    return y * per_channel(w, x, ca) + per_channel(b, x, ca)


def _numpy_backward(g, x, ca, groups, w, eps=1e-5):
    xg = _grouped(x, ca, groups)
    mean = xg.mean(axis=2, keepdims=True)
    rstd = 1.0 / np.sqrt(xg.var(axis=2, keepdims=True) + eps)
    xhat = (xg - mean) * rstd
    wg = _grouped(g * per_channel(w, x, ca), ca, groups)
    m = xg.shape[2]
    gx = rstd * (wg - wg.sum(2, keepdims=True) / m - xhat * (wg * xhat).sum(2, keepdims=True) / m)
    red = tuple(d for d in range(x.ndim) if d != ca % x.ndim)
    xh = np.moveaxis(xhat.reshape(np.moveaxis(x, ca, 1).shape), 1, ca)
    return gx, (g * xh).sum(axis=red), g.sum(axis=red)


def layouts(build):
    """The (channels-first, channels-last) case functions ``(shape, dtype)`` of
    ``build(shape, dtype, channels_last)`` (shared with :mod:`.instance_norm`)."""
    def first(shape, dtype):
        return build(shape, dtype, False)

    def last(shape, dtype):
        return build(shape, dtype, True)
    return first, last


def layout_cases(shapes, forward, forward_channels_last, backward, backward_channels_last):
    """``CASES``: the four layouts and directions of every shape, float32."""
    return [
        case
        for shape in shapes
        for case in (
            ("forward", shape, "float32", forward),
            ("forward channels-last", shape, "float32", forward_channels_last),
            ("backward", shape, "float32", backward),
            ("backward channels-last", shape, "float32", backward_channels_last),
        )
    ]


def _forward(shape, dtype, channels_last):
    x, ca, tview = data(shape, dtype, channels_last)
    c = shape[1]
    groups = groups_for(shape)
    w = make_array(c, dtype, seed=1)
    b = make_array(c, dtype, seed=2)
    out = np.empty_like(x)
    fns = {
        "numbanorm": lambda: numbanorm.group_norm(x, groups, w, b, channel_axis=ca, out=out),
        "numpy": lambda: _numpy_forward(x, ca, groups, w, b),
    }
    torch = torch_or_none()
    if torch is not None:
        tx = tview(torch, x)
        tw, tb = torch.from_numpy(w), torch.from_numpy(b)
        fns["torch"] = lambda: torch.nn.functional.group_norm(tx, groups, tw, tb)
    if not channels_last:  # opset 21: per-channel scale and bias
        _onnxrt.add(fns, lambda: numbanorm.group_norm(x, groups, w, b), "GroupNormalization", [x, w, b], 21,
                    num_groups=groups, epsilon=1e-5)
    if gpu_available():
        dx, dw, db, dout = to_gpu(x, w, b, out)
        fns["numbanorm_gpu"] = gpu_timed(lambda: numbanorm.group_norm(dx, groups, dw, db, channel_axis=ca, out=dout))
    return x, fns


def _backward(shape, dtype, channels_last):
    x, ca, tview = data(shape, dtype, channels_last)
    g = data(shape, dtype, channels_last, seed=3)[0]
    c = shape[1]
    groups = groups_for(shape)
    w = make_array(c, dtype, seed=1)
    _, mean, rstd = numbanorm.group_norm(x, groups, w, channel_axis=ca, return_stats=True)
    gx = np.empty_like(x)  # out=: timed like the forward cases, without allocating
    fns = {
        "numbanorm": lambda: numbanorm.group_norm_backward(g, x, groups, w, mean=mean, rstd=rstd, channel_axis=ca,
                                                           out=gx),
        "numpy": lambda: _numpy_backward(g, x, ca, groups, w),
    }
    torch = torch_or_none()
    if torch is not None:
        def norm(tx, tw, tb):
            return torch.nn.functional.group_norm(tx, groups, tw, tb)

        fns["torch"] = torch_backward(torch, norm, tview, x, w, g)
    if gpu_available():
        dg, dx, dw, dm, dr = to_gpu(g, x, w, mean, rstd)
        fns["numbanorm_gpu"] = gpu_timed(
            lambda: numbanorm.group_norm_backward(dg, dx, groups, dw, mean=dm, rstd=dr, channel_axis=ca)
        )
    return x, fns


forward, forward_channels_last = layouts(_forward)
backward, backward_channels_last = layouts(_backward)
CASES = layout_cases(SHAPES, forward, forward_channels_last, backward, backward_channels_last)
