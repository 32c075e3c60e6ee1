"""``numbanorm bench`` cases for local_response_norm (size 5; across channels and within
channel; forward and backward) on (32, 64, 56, 56) and AlexNet's first LRN (8, 96, 55, 55).

PyTorch has no within-channel LRN; its baseline there is the same computation built from
torch ops (zero pad, ``avg_pool2d`` of the squares), which is what a PyTorch user writes.
"""
import numpy as np

import numbanorm

from . import _onnxrt, gpu_available, gpu_timed, make_array, to_gpu, torch_or_none

SHAPES = [(32, 64, 56, 56), (8, 96, 55, 55)]
SIZE, ALPHA, BETA, K = 5, 1e-4, 0.75, 1.0


def _numpy_window_sum(sq, axes):
    lo, hi = SIZE // 2, (SIZE - 1) // 2
    for ax in axes:
        n = sq.shape[ax]
        pad = [(0, 0)] * sq.ndim
        pad[ax] = (lo, hi)
        p = np.pad(sq, pad)
        sq = sum(np.take(p, np.arange(d, d + n), axis=ax) for d in range(SIZE))
    return sq


def _numpy_forward(x, axes, nwin):
    s = _numpy_window_sum(x * x, axes)
    return x / (K + ALPHA / nwin * s) ** BETA


def _numpy_backward(g, x, axes, nwin):
    a = ALPHA / nwin
    base = K + a * _numpy_window_sum(x * x, axes)
    t = g * x * base ** (-BETA - 1)
    lo, hi = SIZE // 2, (SIZE - 1) // 2
    # transposed window: swap the padding
    u = t
    for ax in axes:
        n = u.shape[ax]
        pad = [(0, 0)] * u.ndim
        pad[ax] = (hi, lo)
        p = np.pad(u, pad)
        u = sum(np.take(p, np.arange(d, d + n), axis=ax) for d in range(SIZE))
    return g * base ** -BETA - 2 * a * BETA * x * u


def _torch_fn(torch, mode):
    F = torch.nn.functional
    if mode == "across_channels":
        return lambda tx: F.local_response_norm(tx, SIZE, ALPHA, BETA, K)
    lo, hi = SIZE // 2, (SIZE - 1) // 2
    return lambda tx: tx / (K + ALPHA * F.avg_pool2d(F.pad(tx * tx, (lo, hi, lo, hi)), SIZE, stride=1)) ** BETA


def _setup_forward(shape, dtype, mode):
    x = make_array(shape, dtype)
    out = np.empty_like(x)
    axes, nwin = ((1,), SIZE) if mode == "across_channels" else ((2, 3), SIZE * SIZE)
    fns = {
        "numbanorm": lambda: numbanorm.local_response_norm(x, SIZE, ALPHA, BETA, K, mode=mode, out=out),
        "numpy": lambda: _numpy_forward(x, axes, nwin),
    }
    torch = torch_or_none()
    if torch is not None:
        tx = torch.from_numpy(x)
        f = _torch_fn(torch, mode)
        fns["torch"] = lambda: f(tx)
    if mode == "across_channels":  # ONNX's LRN (odd sizes: the same window as torch's)
        _onnxrt.add(fns, lambda: numbanorm.local_response_norm(x, SIZE, ALPHA, BETA, K, mode=mode), "LRN", [x], 17,
                    size=SIZE, alpha=ALPHA, beta=BETA, bias=K)
    if gpu_available():
        dx, dout = to_gpu(x, out)
        fns["numbanorm_gpu"] = gpu_timed(
            lambda: numbanorm.local_response_norm(dx, SIZE, ALPHA, BETA, K, mode=mode, out=dout))
    return x, fns


def _setup_backward(shape, dtype, mode):
    x = make_array(shape, dtype)
    g = make_array(shape, dtype, seed=3)
    axes, nwin = ((1,), SIZE) if mode == "across_channels" else ((2, 3), SIZE * SIZE)
    gx = np.empty_like(x)  # out=: timed like the forward cases, without allocating
    fns = {
        "numbanorm": lambda: numbanorm.local_response_norm_backward(g, x, SIZE, ALPHA, BETA, K, mode=mode,
                                                                    out=gx),
        "numpy": lambda: _numpy_backward(g, x, axes, nwin),
    }
    torch = torch_or_none()
    if torch is not None:
        tx = torch.from_numpy(x).requires_grad_()
        ty = _torch_fn(torch, mode)(tx)
        tg = torch.from_numpy(g)
        fns["torch"] = lambda: torch.autograd.grad(ty, (tx,), tg, retain_graph=True)
    if gpu_available():
        dg, dx = to_gpu(g, x)
        fns["numbanorm_gpu"] = gpu_timed(
            lambda: numbanorm.local_response_norm_backward(dg, dx, SIZE, ALPHA, BETA, K, mode=mode))
    return x, fns


def forward(shape, dtype):
    return _setup_forward(shape, dtype, "across_channels")


def forward_within(shape, dtype):
    return _setup_forward(shape, dtype, "within_channel")


def backward(shape, dtype):
    return _setup_backward(shape, dtype, "across_channels")


def backward_within(shape, dtype):
    return _setup_backward(shape, dtype, "within_channel")


CASES = (
    [("across forward", s, "float32", forward) for s in SHAPES]
    + [("within forward", s, "float32", forward_within) for s in SHAPES]
    + [("across backward", s, "float32", backward) for s in SHAPES]
    + [("within backward", s, "float32", backward_within) for s in SHAPES]
)
