"""``numbanorm bench`` cases for layer_norm (forward, backward) on the issue's shapes."""
import numpy as np

import numbanorm

from . import _onnxrt, gpu_available, gpu_timed, make_array, to_gpu, torch_or_none

SHAPES = [(32, 768), (4096, 1024), (8192, 4096)]


def _numpy_forward(x, w, b, eps=1e-5):
    mean = x.mean(axis=-1, keepdims=True)
    var = x.var(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


def _numpy_backward(g, x, w, eps=1e-5):
    mean = x.mean(axis=-1, keepdims=True)
    rstd = 1.0 / np.sqrt(x.var(axis=-1, keepdims=True) + eps)
    xhat = (x - mean) * rstd
    gw = g * w
    gx = rstd * (gw - gw.mean(axis=-1, keepdims=True) - xhat * (gw * xhat).mean(axis=-1, keepdims=True))
    return gx, (g * xhat).sum(0), g.sum(0)


def forward(shape, dtype):
    x = make_array(shape, dtype)
    n = shape[-1]
    w = make_array(n, dtype, seed=1)
    b = make_array(n, dtype, seed=2)
    out = np.empty_like(x)
    fns = {
        "numbanorm": lambda: numbanorm.layer_norm(x, n, w, b, out=out),
        "numpy": lambda: _numpy_forward(x, w, b),
    }
    torch = torch_or_none()
    if torch is not None:
        tx, tw, tb = (torch.from_numpy(a) for a in (x, w, b))
        fns["torch"] = lambda: torch.nn.functional.layer_norm(tx, (n,), tw, tb)
    _onnxrt.add(fns, lambda: numbanorm.layer_norm(x, n, w, b), "LayerNormalization", [x, w, b], 17, axis=-1,
                epsilon=1e-5)
    if gpu_available():
        dx, dw, db, dout = to_gpu(x, w, b, out)
        fns["numbanorm_gpu"] = gpu_timed(lambda: numbanorm.layer_norm(dx, n, dw, db, out=dout))
    return x, fns


def backward(shape, dtype):
    x = make_array(shape, dtype)
    g = make_array(shape, dtype, seed=3)
    n = shape[-1]
    w = make_array(n, dtype, seed=1)
    _, mean, rstd = numbanorm.layer_norm(x, n, w, return_stats=True)
    gx = np.empty_like(x)  # out=: timed like the forward cases, without allocating
    fns = {
        "numbanorm": lambda: numbanorm.layer_norm_backward(g, x, n, w, mean=mean, rstd=rstd, out=gx),
        "numpy": lambda: _numpy_backward(g, x, w),
    }
    torch = torch_or_none()
    if torch is not None:
        tx = torch.from_numpy(x).requires_grad_()
        tw = torch.from_numpy(w).requires_grad_()
        tb = torch.zeros(n, dtype=tw.dtype, requires_grad=True)
        ty = torch.nn.functional.layer_norm(tx, (n,), tw, tb)
        tg = torch.from_numpy(g)
        fns["torch"] = lambda: torch.autograd.grad(ty, (tx, tw, tb), tg, retain_graph=True)
    if gpu_available():
        dg, dx, dw, dm, dr = to_gpu(g, x, w, mean, rstd)
        fns["numbanorm_gpu"] = gpu_timed(
            lambda: numbanorm.layer_norm_backward(dg, dx, n, dw, mean=dm, rstd=dr)
        )
    return x, fns


def backward_new(shape, dtype):
    """The backward returning a freshly allocated grad_x (no ``out=``), as torch's does:
    includes the first touch of the new pages (about one copy's time on this machine)."""
    x, fns = backward(shape, dtype)
    n = shape[-1]
    g, w = make_array(shape, dtype, seed=3), make_array(n, dtype, seed=1)
    _, mean, rstd = numbanorm.layer_norm(x, n, w, return_stats=True)
    fns.pop("numbanorm_gpu", None)
    return x, {**fns, "numbanorm": lambda: numbanorm.layer_norm_backward(g, x, n, w, mean=mean, rstd=rstd)}


CASES = [("forward", s, "float32", forward) for s in SHAPES] + [
    ("backward", s, "float32", backward) for s in SHAPES
] + [("backward new grad_x", (8192, 4096), "float32", backward_new)] + [("forward", (8192, 4096), "float64", forward)]
