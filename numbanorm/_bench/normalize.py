"""``numbanorm bench`` cases for normalize (p=2): rows (8192, 4096) along the last axis,
and along the channels of (32, 64, 56, 56)."""
import numpy as np

import numbanorm

from . import gpu_available, gpu_timed, make_array, to_gpu, torch_or_none

CASES_SPEC = [((8192, 4096), -1), ((32, 64, 56, 56), 1)]


def _axis(shape):
    return -1 if len(shape) == 2 else 1


def _numpy_forward(x, axis, eps=1e-12):
    return x / np.maximum(np.sqrt((x * x).sum(axis=axis, keepdims=True)), eps)


def _numpy_backward(g, x, axis, eps=1e-12):
    n = np.sqrt((x * x).sum(axis=axis, keepdims=True))
    d = np.maximum(n, eps)
    return g / d - (g * x).sum(axis=axis, keepdims=True) / (d * d) * (n >= eps) * x / n


def forward(shape, dtype):
    x = make_array(shape, dtype)
    axis = _axis(shape)
    out = np.empty_like(x)
    fns = {
        "numbanorm": lambda: numbanorm.normalize(x, 2.0, axis, out=out),
        "numpy": lambda: _numpy_forward(x, axis),
    }
    torch = torch_or_none()
    if torch is not None:
        tx = torch.from_numpy(x)
        tout = torch.from_numpy(out)
        fns["torch"] = lambda: torch.nn.functional.normalize(tx, 2.0, axis, out=tout)
    if gpu_available():
        dx, dout = to_gpu(x, out)
        fns["numbanorm_gpu"] = gpu_timed(lambda: numbanorm.normalize(dx, 2.0, axis, out=dout))
    return x, fns


def backward(shape, dtype):
    x = make_array(shape, dtype)
    g = make_array(shape, dtype, seed=3)
    axis = _axis(shape)
    gx = np.empty_like(x)  # out=: timed like the forward cases, without allocating
    fns = {
        "numbanorm": lambda: numbanorm.normalize_backward(g, x, 2.0, axis, out=gx),
        "numpy": lambda: _numpy_backward(g, x, axis),
    }
    torch = torch_or_none()
    if torch is not None:
        tx = torch.from_numpy(x).requires_grad_()
        ty = torch.nn.functional.normalize(tx, 2.0, axis)
        tg = torch.from_numpy(g)
        fns["torch"] = lambda: torch.autograd.grad(ty, (tx,), tg, retain_graph=True)
    if gpu_available():
        dg, dx = to_gpu(g, x)
        fns["numbanorm_gpu"] = gpu_timed(lambda: numbanorm.normalize_backward(dg, dx, 2.0, axis))
    return x, fns


CASES = [("forward", s, "float32", forward) for s, _ in CASES_SPEC] + [
    ("backward", s, "float32", backward) for s, _ in CASES_SPEC
]
