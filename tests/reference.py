"""Slow, obviously-correct float64 NumPy twins of every public function (bottleneck style).

Each twin has the public function's name and the formula written as plainly as
possible: no kernels, no canonical views, no cleverness. Tests compare the fast
functions with these, and with PyTorch when it is installed. Inputs are converted to
float64; results are float64.

Sections are appended per normalization; keep each self-contained.
"""
import numpy as np


def _f64(a):
    return None if a is None else np.asarray(a, dtype=np.float64)


# --- layer_norm / rms_norm -------------------------------------------------------------


def _trailing_axes(x, normalized_shape):
    k = 1 if np.ndim(normalized_shape) == 0 else len(normalized_shape)
    return tuple(range(x.ndim - k, x.ndim))


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    x = _f64(x)
    axes = _trailing_axes(x, normalized_shape)
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    y = (x - mean) / np.sqrt(var + eps)
    if weight is not None:
        y = y * _f64(weight)
    if bias is not None:
        y = y + _f64(bias)
    return y


def layer_norm_backward(grad_out, x, normalized_shape, weight=None, eps=1e-5):
    x, g = _f64(x), _f64(grad_out)
    axes = _trailing_axes(x, normalized_shape)
    n = np.prod([x.shape[a] for a in axes])
    mean = x.mean(axis=axes, keepdims=True)
    rstd = 1.0 / np.sqrt(((x - mean) ** 2).mean(axis=axes, keepdims=True) + eps)
    xhat = (x - mean) * rstd
    w = np.ones(x.shape[x.ndim - len(axes):]) if weight is None else _f64(weight)
    gw_in = g * w
    grad_x = rstd / n * (n * gw_in - gw_in.sum(axis=axes, keepdims=True)
                         - xhat * (gw_in * xhat).sum(axis=axes, keepdims=True))
    lead = tuple(range(x.ndim - len(axes)))
    grad_w = None if weight is None else (g * xhat).sum(axis=lead)
    return grad_x, grad_w, g.sum(axis=lead)


def rms_norm(x, normalized_shape, weight=None, eps=None):
    x = _f64(x)
    eps = np.finfo(np.float64).eps if eps is None else eps
    axes = _trailing_axes(x, normalized_shape)
    y = x / np.sqrt((x * x).mean(axis=axes, keepdims=True) + eps)
    return y if weight is None else y * _f64(weight)


def rms_norm_backward(grad_out, x, normalized_shape, weight=None, eps=None):
    x, g = _f64(x), _f64(grad_out)
    eps = np.finfo(np.float64).eps if eps is None else eps
    axes = _trailing_axes(x, normalized_shape)
    n = np.prod([x.shape[a] for a in axes])
    rstd = 1.0 / np.sqrt((x * x).mean(axis=axes, keepdims=True) + eps)
    xhat = x * rstd
    w = np.ones(x.shape[x.ndim - len(axes):]) if weight is None else _f64(weight)
    gw_in = g * w
    grad_x = rstd * (gw_in - xhat * (gw_in * xhat).sum(axis=axes, keepdims=True) / n)
    lead = tuple(range(x.ndim - len(axes)))
    return grad_x, None if weight is None else (g * xhat).sum(axis=lead)
