"""``numbanorm bench`` cases for add_layer_norm (fused residual add + LayerNorm, forward and
backward), plus the unfused numbanorm composition it replaces (``np.add`` + ``layer_norm``)."""
import numpy as np

import numbanorm

from . import gpu_available, gpu_timed, make_array, to_gpu, torch_or_none
from .add_rms_norm import inputs, torch_backward, unfused_of

SHAPES = [(32, 768), (4096, 1024), (8192, 4096)]


def _numpy_forward(x, r, w):
    s = x + r
    mu = s.mean(axis=-1, keepdims=True)
    return (s - mu) / np.sqrt(s.var(axis=-1, keepdims=True) + 1e-5) * w + w, s


def forward(shape, dtype):
    """out= and residual_out= given (a training/inference loop reuses its buffers)."""
    x, r, w = inputs(shape, dtype)
    n = shape[-1]
    y, s = np.empty_like(x), np.empty_like(x)
    fns = {
        "numbanorm": lambda: numbanorm.add_layer_norm(x, r, n, w, w, out=y, residual_out=s),
        "numpy": lambda: _numpy_forward(x, r, w),
    }
    torch = torch_or_none()
    if torch is not None:
        tx, tr, tw = torch.from_numpy(x), torch.from_numpy(r), torch.from_numpy(w)
        fns["torch"] = lambda: torch.nn.functional.layer_norm(tx + tr, (n,), tw, tw)
    if gpu_available():
        dx, dr, dw, dy, ds = to_gpu(x, r, w, y, s)
        fns["numbanorm_gpu"] = gpu_timed(
            lambda: numbanorm.add_layer_norm(dx, dr, n, dw, dw, out=dy, residual_out=ds))
    return x, fns


#: ``np.add(x, r, out=s)`` then ``layer_norm(s, out=y)``
unfused = unfused_of(forward, lambda s, n, w, y: numbanorm.layer_norm(s, n, w, w, out=y))


def backward(shape, dtype):
    x, r, w = inputs(shape, dtype)
    n = shape[-1]
    gy, gs = make_array(shape, dtype, seed=3), make_array(shape, dtype, seed=4)
    _, s, mean, rstd = numbanorm.add_layer_norm(x, r, n, w, return_stats=True)
    gx = np.empty_like(x)
    fns = {"numbanorm": lambda: numbanorm.add_layer_norm_backward(gy, gs, s, n, w, mean=mean, rstd=rstd, out=gx)}
    torch = torch_or_none()
    if torch is not None:
        fns["torch"] = torch_backward(torch, lambda ts, tw: torch.nn.functional.layer_norm(ts, (n,), tw), x, r, w, gy,
                                      gs)
    if gpu_available():
        dgy, dgs, ds, dw, dm, dr = to_gpu(gy, gs, s, w, mean, rstd)
        fns["numbanorm_gpu"] = gpu_timed(
            lambda: numbanorm.add_layer_norm_backward(dgy, dgs, ds, n, dw, mean=dm, rstd=dr))
    return x, fns


CASES = [("forward", s, "float32", forward) for s in SHAPES] + [
    ("unfused np.add + layer_norm", (8192, 4096), "float32", unfused),
] + [("backward", s, "float32", backward) for s in SHAPES]
