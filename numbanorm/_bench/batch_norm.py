"""``numbanorm bench`` cases for batch_norm: training and eval forward, backward, channels-first
and channels-last, on the issue's shapes.

``shape`` is always the logical ``(N, C, *spatial)`` shape; the ``*_channels_last`` setups
build the same data as a C-contiguous ``(N, *spatial, C)`` array (``channel_axis=-1``) and
give PyTorch the matching ``channels_last`` view. The helpers here are shared with the
instance_norm and group_norm cases.
"""
import numpy as np

import numbanorm

from . import _onnxrt, gpu_available, gpu_timed, make_array, to_gpu, torch_or_none

SHAPES = [(32, 64, 56, 56), (8, 256, 28, 28), (256, 1024), (32, 8, 16)]


def data(shape, dtype, channels_last, seed=0):
    """(x, channel_axis, torch view factory): the input in the requested layout."""
    x = make_array(shape, dtype, seed=seed)
    if not channels_last:
        return x, 1, lambda t, a: t.from_numpy(a)
    x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    nd = x.ndim
    order = (0, nd - 1) + tuple(range(1, nd - 1))
    return x, -1, lambda t, a: t.from_numpy(a).permute(*order)  # logical NC..., channels-last memory


def axes(x, channel_axis):
    """The axes a per-channel statistic reduces over."""
    ax = channel_axis % x.ndim
    return tuple(d for d in range(x.ndim) if d != ax)


def per_channel(v, x, channel_axis):
    """Reshape a per-channel vector to broadcast against ``x``."""
    shape = [1] * x.ndim
    shape[channel_axis] = -1
    return v.reshape(shape)


def torch_grad(torch, ty, inputs, g):
    """A callable computing the autograd gradients of ``ty`` w.r.t. ``inputs`` for ``g``."""
    return lambda: torch.autograd.grad(ty, inputs, g, retain_graph=True)


def torch_backward(torch, norm, tview, x, w, g):
    """A callable computing the autograd gradients of ``norm(x, weight, bias)`` (bias zeros)
    w.r.t. x, weight and bias for ``g``; ``tview`` as from :func:`data`."""
    tx = tview(torch, x).detach().requires_grad_()
    tw = torch.from_numpy(w).requires_grad_()
    tb = torch.zeros(w.shape[0], dtype=tw.dtype, requires_grad=True)
    return torch_grad(torch, norm(tx, tw, tb), (tx, tw, tb), tview(torch, g))


def _numpy_forward(x, ca, w, b, training, rm, rv, eps=1e-5):
    red = axes(x, ca)
    if training:
        mean = x.mean(axis=red)
        var = x.var(axis=red)
        n = x.size // x.shape[ca]
        rm *= 0.9
        rm += 0.1 * mean
        rv *= 0.9
        rv += 0.1 * var * n / (n - 1)
    else:
        mean, var = rm, rv
    scale = w / np.sqrt(var + eps)
    return (x - per_channel(mean, x, ca)) * per_channel(scale, x, ca) + per_channel(b, x, ca)


def _numpy_backward(g, x, ca, w, eps=1e-5):
    red = axes(x, ca)
    mean = per_channel(x.mean(axis=red), x, ca)
    rstd = 1.0 / np.sqrt(per_channel(x.var(axis=red), x, ca) + eps)
    xhat = (x - mean) * rstd
    gb = g.sum(axis=red)
    gw = (g * xhat).sum(axis=red)
    n = x.size // x.shape[ca]
    gx = per_channel(w, x, ca) * rstd * (g - per_channel(gb, x, ca) / n - xhat * per_channel(gw, x, ca) / n)
    return gx, gw, gb


def _forward(shape, dtype, training, channels_last):
    x, ca, tview = data(shape, dtype, channels_last)
    c = shape[1]
    w = make_array(c, dtype, seed=1)
    b = make_array(c, dtype, seed=2)
    rm = np.zeros(c, dtype)
    rv = np.ones(c, dtype)
    out = np.empty_like(x)
    fns = {
        "numbanorm": lambda: numbanorm.batch_norm(x, rm, rv, w, b, training=training, channel_axis=ca, out=out),
        "numpy": lambda: _numpy_forward(x, ca, w, b, training, rm.copy(), rv.copy()),
    }
    torch = torch_or_none()
    if torch is not None:
        tx = tview(torch, x)
        tw, tb, trm, trv = (torch.from_numpy(a.copy()) for a in (w, b, rm, rv))
        fns["torch"] = lambda: torch.nn.functional.batch_norm(tx, trm, trv, tw, tb, training=training)
    if not training and not channels_last:  # onnxruntime's CPU BatchNormalization: inference only
        _onnxrt.add(fns, lambda: numbanorm.batch_norm(x, rm, rv, w, b, training=False), "BatchNormalization",
                    [x, w, b, rm, rv], 15, epsilon=1e-5)
    if gpu_available():
        dx, dw, db, drm, drv, dout = to_gpu(x, w, b, rm, rv, out)
        fns["numbanorm_gpu"] = gpu_timed(
            lambda: numbanorm.batch_norm(dx, drm, drv, dw, db, training=training, channel_axis=ca, out=dout)
        )
    return x, fns


def _backward(shape, dtype, training, channels_last):
    x, ca, tview = data(shape, dtype, channels_last)
    g = data(shape, dtype, channels_last, seed=3)[0]
    c = shape[1]
    w = make_array(c, dtype, seed=1)
    rm = make_array(c, dtype, seed=4)
    rv = np.ones(c, dtype)
    _, mean, rstd = numbanorm.batch_norm(x, rm.copy(), rv.copy(), w, training=training, channel_axis=ca,
                                         return_stats=True)
    kw = dict(training=training, mean=mean, rstd=rstd, channel_axis=ca)
    gx = np.empty_like(x)  # out=: timed like the forward cases, without allocating
    fns = {"numbanorm": lambda: numbanorm.batch_norm_backward(g, x, w, **kw, out=gx)}
    if training:
        fns["numpy"] = lambda: _numpy_backward(g, x, ca, w)
    torch = torch_or_none()
    if torch is not None:
        trm, trv = torch.from_numpy(rm), torch.from_numpy(rv)
        fns["torch"] = torch_backward(
            torch, lambda tx, tw, tb: torch.nn.functional.batch_norm(tx, trm, trv, tw, tb, training=training),
            tview, x, w, g)
    if gpu_available():
        dg, dx, dw, dm, dr = to_gpu(g, x, w, mean, rstd)
        fns["numbanorm_gpu"] = gpu_timed(
            lambda: numbanorm.batch_norm_backward(dg, dx, dw, training=training, mean=dm, rstd=dr, channel_axis=ca)
        )
    return x, fns


def train(shape, dtype):
    """Training forward: batch statistics + normalize + running-statistics update."""
    return _forward(shape, dtype, True, False)


def train_channels_last(shape, dtype):
    return _forward(shape, dtype, True, True)


def eval(shape, dtype):  # noqa: A001 (the mode's name)
    """Eval forward with the running statistics."""
    return _forward(shape, dtype, False, False)


def eval_channels_last(shape, dtype):
    return _forward(shape, dtype, False, True)


def backward(shape, dtype):
    """Training backward with the saved statistics."""
    return _backward(shape, dtype, True, False)


def backward_channels_last(shape, dtype):
    return _backward(shape, dtype, True, True)


def backward_eval(shape, dtype):
    """Eval-mode backward (running statistics are constants)."""
    return _backward(shape, dtype, False, False)


def _cases():
    cases = []
    for shape in SHAPES:
        last = len(shape) > 2  # (N, C) has no channels-last form of its own
        cases.append(("train", shape, "float32", train))
        if last:
            cases.append(("train channels-last", shape, "float32", train_channels_last))
        cases.append(("eval", shape, "float32", eval))
        if last:
            cases.append(("eval channels-last", shape, "float32", eval_channels_last))
        cases.append(("backward", shape, "float32", backward))
        if last:
            cases.append(("backward channels-last", shape, "float32", backward_channels_last))
        cases.append(("backward eval", shape, "float32", backward_eval))
    return cases


CASES = _cases()
