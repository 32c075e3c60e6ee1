"""``numbanorm bench`` cases for add_rms_norm (fused residual add + RMSNorm, forward and
backward), plus the unfused numbanorm composition it replaces (``np.add`` + ``rms_norm``)."""
import numpy as np

import numbanorm

from . import gpu_available, gpu_timed, make_array, to_gpu, torch_or_none

SHAPES = [(32, 768), (4096, 1024), (8192, 4096)]


def _numpy_forward(x, r, w):
    s = x + r
    eps = np.finfo(x.dtype).eps
    return s / np.sqrt((s * s).mean(axis=-1, keepdims=True) + eps) * w, s


def inputs(shape, dtype):
    """(x, residual, weight) of a fused add + norm case (shared with :mod:`.add_layer_norm`)."""
    return make_array(shape, dtype), make_array(shape, dtype, seed=2), make_array(shape[-1], dtype, seed=1)


def unfused_of(forward, norm):
    """The case of what a fused add + norm replaces: ``np.add(x, r, out=s)`` then
    ``norm(s, n, w, y)`` (the unfused numbanorm calls), timed against ``forward``'s baselines."""
    def unfused(shape, dtype):
        x, fns = forward(shape, dtype)
        _, r, w = inputs(shape, dtype)
        y, s = np.empty_like(x), np.empty_like(x)
        n = shape[-1]

        def run():
            np.add(x, r, out=s)
            norm(s, n, w, y)

        fns.pop("numbanorm_gpu", None)
        return x, {**fns, "numbanorm": run}
    return unfused


def torch_backward(torch, norm, x, r, w, gy, gs):
    """PyTorch autograd of ``s = x + r``, ``y = norm(s, weight)`` for the gradients ``gy``, ``gs``."""
    tx = torch.from_numpy(x).requires_grad_()
    tr = torch.from_numpy(r).requires_grad_()
    tw = torch.from_numpy(w).requires_grad_()
    ts = tx + tr
    ty = norm(ts, tw)
    tg = (torch.from_numpy(gy), torch.from_numpy(gs))
    return lambda: torch.autograd.grad((ty, ts), (tx, tw), tg, retain_graph=True)


def forward(shape, dtype):
    """out= and residual_out= given (a training/inference loop reuses its buffers)."""
    x, r, w = inputs(shape, dtype)
    n = shape[-1]
    y, s = np.empty_like(x), np.empty_like(x)
    fns = {
        "numbanorm": lambda: numbanorm.add_rms_norm(x, r, n, w, out=y, residual_out=s),
        "numpy": lambda: _numpy_forward(x, r, w),
    }
    torch = torch_or_none()
    if torch is not None:
        tx, tr, tw = torch.from_numpy(x), torch.from_numpy(r), torch.from_numpy(w)
        fns["torch"] = lambda: torch.nn.functional.rms_norm(tx + tr, (n,), tw)
    if gpu_available():
        dx, dr, dw, dy, ds = to_gpu(x, r, w, y, s)
        fns["numbanorm_gpu"] = gpu_timed(lambda: numbanorm.add_rms_norm(dx, dr, n, dw, out=dy, residual_out=ds))
    return x, fns


#: ``np.add(x, r, out=s)`` then ``rms_norm(s, out=y)``
unfused = unfused_of(forward, lambda s, n, w, y: numbanorm.rms_norm(s, n, w, out=y))


def backward(shape, dtype):
    x, r, w = inputs(shape, dtype)
    n = shape[-1]
    gy, gs = make_array(shape, dtype, seed=3), make_array(shape, dtype, seed=4)
    _, s, rstd = numbanorm.add_rms_norm(x, r, n, w, return_stats=True)
    gx = np.empty_like(x)
    fns = {"numbanorm": lambda: numbanorm.add_rms_norm_backward(gy, gs, s, n, w, rstd=rstd, out=gx)}
    torch = torch_or_none()
    if torch is not None:
        fns["torch"] = torch_backward(torch, lambda ts, tw: torch.nn.functional.rms_norm(ts, (n,), tw), x, r, w, gy, gs)
    if gpu_available():
        dgy, dgs, ds, dw, dr = to_gpu(gy, gs, s, w, rstd)
        fns["numbanorm_gpu"] = gpu_timed(lambda: numbanorm.add_rms_norm_backward(dgy, dgs, ds, n, dw, rstd=dr))
    return x, fns


CASES = [("forward", s, "float32", forward) for s in SHAPES] + [
    ("unfused np.add + rms_norm", (8192, 4096), "float32", unfused),
] + [("backward", s, "float32", backward) for s in SHAPES]
