"""Weight standardization CPU kernels on the rows view.

Layout: ``w``, ``out``, ``grad_out``, ``grad_w`` are C-contiguous ``(M, N)`` arrays of the
compute dtype: M output filters (the first axis of the weight), N = the product of the
remaining axes. The same computation as a layer norm without affine parameters, so the
statistics come from ``_stats.mean_var_two_pass`` (shifted, blocked float64 sums over a row in
cache; two passes: the one-pass ``mean_var`` compiles to differently ordered sums in the
``prange``-over-rows kernel and its serial twin); the write pass centres on the mean
rounded to the data dtype, as layer_norm does.

Thread mapping: one ``prange`` over filters (rows); serial twins below
``SERIAL_THRESHOLD`` elements.
"""
import numpy as np
from numba import prange

from .. import _config
from .._config import JIT_OPTIONS
from ._stats import mean_var_two_pass


def _forward(w, eps, out):
    m, n = w.shape
    for i in prange(m):
        mu, var, mu_t = mean_var_two_pass(w[i])
        r_t = w.dtype.type(1.0 / np.sqrt(var + eps))
        for j in range(n):
            out[i, j] = (w[i, j] - mu_t) * r_t


def _backward(grad_out, w, eps, grad_w):
    """grad_w = rstd * (dy - mean(dy) - ŵ mean(dy ŵ)) per row (layer-norm backward, no affine)."""
    m, n = w.shape
    for i in prange(m):
        mu, var, _ = mean_var_two_pass(w[i])
        r = 1.0 / np.sqrt(var + eps)
        a = np.float64(0.0)
        b = np.float64(0.0)
        for j in range(n):
            dy = np.float64(grad_out[i, j])
            a += dy
            b += dy * ((w[i, j] - mu) * r)
        a /= n
        b /= n
        for j in range(n):
            grad_w[i, j] = r * (grad_out[i, j] - a - (w[i, j] - mu) * r * b)


_opts = JIT_OPTIONS
_forward_par, _forward_ser = _config.twins(_forward)
_backward_par, _backward_ser = _config.twins(_backward)


def forward(w, eps, out):
    """``out[i] = (w[i] - mean(w[i])) / sqrt(var(w[i]) + eps)`` for each filter row."""
    if w.size < _config.SERIAL_THRESHOLD:
        _forward_ser(w, eps, out)
    else:
        with _config.KERNEL_LOCK:
            _forward_par(w, eps, out)


def backward(grad_out, w, eps, grad_w):
    """Gradient of :func:`forward` with respect to ``w`` into ``grad_w`` (M, N)."""
    if w.size < _config.SERIAL_THRESHOLD:
        _backward_ser(grad_out, w, eps, grad_w)
    else:
        with _config.KERNEL_LOCK:
            _backward_par(grad_out, w, eps, grad_w)
