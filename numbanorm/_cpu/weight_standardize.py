"""Weight standardization CPU kernels on the rows view.

Layout: ``w``, ``out``, ``grad_out``, ``grad_w`` are C-contiguous ``(M, N)`` arrays of the
compute dtype: M output filters (the first axis of the weight), N = the product of the
remaining axes. The same computation as a layer norm without affine parameters, so the
statistics come from ``_stats.mean_var_two_pass`` (shifted, blocked float64 sums over a row in
cache; two passes: the one-pass ``mean_var`` compiled to differently ordered sums in the
former ``prange``-over-rows kernel and its serial twin, and two passes cost little in cache); the write pass centres on the mean
rounded to the data dtype, as layer_norm does.

Thread mapping: chunks of filters (rows) taken by a pool of threads (:func:`._threads.launch_pass`:
a serial ``nogil`` chunk kernel, called once below ``SERIAL_THRESHOLD`` elements, so small and
large calls share compiled code; one thread per :data:`._threads.PASS_GRAIN` elements at most).
"""
import numpy as np
from numba import njit

from .._config import JIT_OPTIONS
from ._stats import mean_var_two_pass
from ._threads import first_chunk, later_chunk, launch_pass


@njit(nogil=True, **JIT_OPTIONS)
def _forward(w, eps, out, nch, counter):
    m, n = w.shape
    nitems = m
    chunk = first_chunk(counter, nch)
    while chunk < nch:
        for i in range(chunk * nitems // nch, (chunk + 1) * nitems // nch):
            mu, var, mu_t = mean_var_two_pass(w[i])
            r_t = w.dtype.type(1.0 / np.sqrt(var + eps))
            for j in range(n):
                out[i, j] = (w[i, j] - mu_t) * r_t
        chunk = later_chunk(counter, nch)


@njit(nogil=True, **JIT_OPTIONS)
def _backward(grad_out, w, eps, grad_w, nch, counter):
    """grad_w = rstd * (dy - mean(dy) - ŵ mean(dy ŵ)) per row (layer-norm backward, no affine)."""
    m, n = w.shape
    nitems = m
    chunk = first_chunk(counter, nch)
    while chunk < nch:
        for i in range(chunk * nitems // nch, (chunk + 1) * nitems // nch):
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
        chunk = later_chunk(counter, nch)


def forward(w, eps, out):
    """``out[i] = (w[i] - mean(w[i])) / sqrt(var(w[i]) + eps)`` for each filter row."""
    launch_pass(_forward, w.size, w.shape[0], w, eps, out)


def backward(grad_out, w, eps, grad_w):
    """Gradient of :func:`forward` with respect to ``w`` into ``grad_w`` (M, N)."""
    launch_pass(_backward, w.size, w.shape[0], grad_out, w, eps, grad_w)
