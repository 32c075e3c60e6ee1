"""``numbanorm bench`` cases for weight_standardize on a (256, 256, 3, 3) conv weight;
the PyTorch baseline is timm's StdConv2d computation (``F.batch_norm`` over the weight
reshaped to (1, C_out, -1))."""
import numpy as np

import numbanorm

from . import gpu_available, gpu_timed, make_array, to_gpu, torch_or_none

SHAPES = [(256, 256, 3, 3)]
EPS = 1e-5


def _numpy_forward(w):
    w2 = w.reshape(w.shape[0], -1)
    mean = w2.mean(axis=1, keepdims=True)
    return ((w2 - mean) / np.sqrt(w2.var(axis=1, keepdims=True) + EPS)).reshape(w.shape)


def _numpy_backward(g, w):
    w2 = w.reshape(w.shape[0], -1)
    g2 = g.reshape(w2.shape)
    rstd = 1.0 / np.sqrt(w2.var(axis=1, keepdims=True) + EPS)
    what = (w2 - w2.mean(axis=1, keepdims=True)) * rstd
    gw = rstd * (g2 - g2.mean(axis=1, keepdims=True) - what * (g2 * what).mean(axis=1, keepdims=True))
    return gw.reshape(w.shape)


def _torch_ws(torch, tw):
    return torch.nn.functional.batch_norm(tw.reshape(1, tw.shape[0], -1), None, None, training=True,
                                          momentum=0.0, eps=EPS).reshape_as(tw)


def forward(shape, dtype):
    w = make_array(shape, dtype)
    out = np.empty_like(w)
    fns = {
        "numbanorm": lambda: numbanorm.weight_standardize(w, EPS, out=out),
        "numpy": lambda: _numpy_forward(w),
    }
    torch = torch_or_none()
    if torch is not None:
        tw = torch.from_numpy(w)
        fns["torch"] = lambda: _torch_ws(torch, tw)
    if gpu_available():
        dw, dout = to_gpu(w, out)
        fns["numbanorm_gpu"] = gpu_timed(lambda: numbanorm.weight_standardize(dw, EPS, out=dout))
    return w, fns


def backward(shape, dtype):
    w = make_array(shape, dtype)
    g = make_array(shape, dtype, seed=3)
    gx = np.empty_like(w)  # out=: timed like the forward cases, without allocating
    fns = {
        "numbanorm": lambda: numbanorm.weight_standardize_backward(g, w, EPS, out=gx),
        "numpy": lambda: _numpy_backward(g, w),
    }
    torch = torch_or_none()
    if torch is not None:
        tw = torch.from_numpy(w).requires_grad_()
        ty = _torch_ws(torch, tw)
        tg = torch.from_numpy(g)
        fns["torch"] = lambda: torch.autograd.grad(ty, (tw,), tg, retain_graph=True)
    if gpu_available():
        dg, dw = to_gpu(g, w)
        fns["numbanorm_gpu"] = gpu_timed(lambda: numbanorm.weight_standardize_backward(dg, dw, EPS))
    return w, fns


CASES = [("forward", s, "float32", forward) for s in SHAPES] + [
    ("backward", s, "float32", backward) for s in SHAPES
]
