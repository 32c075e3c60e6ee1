"""``numbanorm bench`` cases for rms_norm (forward, backward) on the issue's shapes."""
import numpy as np

import numbanorm

from . import _onnxrt, gpu_available, gpu_timed, make_array, to_gpu, torch_or_none

SHAPES = [(32, 768), (4096, 1024), (8192, 4096)]


def _numpy_forward(x, w):
    eps = np.finfo(x.dtype).eps
    return x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + eps) * w


def _numpy_backward(g, x, w):
    eps = np.finfo(x.dtype).eps
    rstd = 1.0 / np.sqrt((x * x).mean(axis=-1, keepdims=True) + eps)
    xhat = x * rstd
    gw = g * w
    return rstd * (gw - xhat * (gw * xhat).mean(axis=-1, keepdims=True)), (g * xhat).sum(0)


def forward(shape, dtype):
    x = make_array(shape, dtype)
    n = shape[-1]
    w = make_array(n, dtype, seed=1)
    out = np.empty_like(x)
    fns = {
        "numbanorm": lambda: numbanorm.rms_norm(x, n, w, out=out),
        "numpy": lambda: _numpy_forward(x, w),
    }
    torch = torch_or_none()
    if torch is not None:
        tx, tw = torch.from_numpy(x), torch.from_numpy(w)
        fns["torch"] = lambda: torch.nn.functional.rms_norm(tx, (n,), tw)
    _onnxrt.add(fns, lambda: numbanorm.rms_norm(x, n, w), "RMSNormalization", [x, w], 23, axis=-1,
                epsilon=float(np.finfo(dtype).eps))  # numbanorm's (and torch's) default eps
    if gpu_available():
        dx, dw, dout = to_gpu(x, w, out)
        fns["numbanorm_gpu"] = gpu_timed(lambda: numbanorm.rms_norm(dx, n, dw, out=dout))
    return x, fns


def backward(shape, dtype):
    x = make_array(shape, dtype)
    g = make_array(shape, dtype, seed=3)
    n = shape[-1]
    w = make_array(n, dtype, seed=1)
    _, rstd = numbanorm.rms_norm(x, n, w, return_stats=True)
    gx = np.empty_like(x)  # out=: timed like the forward cases, without allocating
    fns = {
        "numbanorm": lambda: numbanorm.rms_norm_backward(g, x, n, w, rstd=rstd, out=gx),
        "numpy": lambda: _numpy_backward(g, x, w),
    }
    torch = torch_or_none()
    if torch is not None:
        tx = torch.from_numpy(x).requires_grad_()
        tw = torch.from_numpy(w).requires_grad_()
        ty = torch.nn.functional.rms_norm(tx, (n,), tw)
        tg = torch.from_numpy(g)
        fns["torch"] = lambda: torch.autograd.grad(ty, (tx, tw), tg, retain_graph=True)
    if gpu_available():
        dg, dx, dw, dr = to_gpu(g, x, w, rstd)
        fns["numbanorm_gpu"] = gpu_timed(lambda: numbanorm.rms_norm_backward(dg, dx, n, dw, rstd=dr))
    return x, fns


def backward_new(shape, dtype):
    """The backward returning a freshly allocated grad_x (no ``out=``), as torch's does:
    includes the first touch of the new pages (about one copy's time on this machine)."""
    x, fns = backward(shape, dtype)
    n = shape[-1]
    g, w = make_array(shape, dtype, seed=3), make_array(n, dtype, seed=1)
    _, rstd = numbanorm.rms_norm(x, n, w, return_stats=True)
    fns.pop("numbanorm_gpu", None)
    return x, {**fns, "numbanorm": lambda: numbanorm.rms_norm_backward(g, x, n, w, rstd=rstd)}


CASES = [("forward", s, "float32", forward) for s in SHAPES] + [
    ("backward", s, "float32", backward) for s in SHAPES
] + [("backward new grad_x", (8192, 4096), "float32", backward_new)]
