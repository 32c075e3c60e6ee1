"""One-call serial kernels for small batch_norm forwards (below ``SERIAL_THRESHOLD``, eval
mode below ``EVAL_SERIAL_THRESHOLD``).

A small call's time is mostly fixed costs: every Numba dispatch (~1 µs: typing its array
arguments), every NumPy temporary. The general entry points of :mod:`._channels` make 4-6
dispatches per forward (moments, group statistics, coefficient expansion, apply, running
update); these compiled functions make the same calls — the general path's chunk kernels
with one chunk — in a single dispatch, one function per layout (chosen by
:func:`small_kernels`: a runtime layout branch would compile both layouts' kernels into the
first call). The kernels are inlined at Numba IR level (:func:`_inlined`) rather than
called: a called kernel is compiled and emitted as its own library and then again inside
the caller that links it, so a small first call compiled five kernels twice (training,
(4, 8, 5, 5): ~3.0 -> ~2.7 CPU s); a later large call compiles the called forms. The results are the
general path's up to the last bit or two (LLVM re-optimises the kernels it inlines, and
the fast-math flags let it reassociate differently). Also the running-statistics kernels of
:mod:`.batch_norm`. Layouts: the ``(1, O, C, I)``
channels view of :mod:`.batch_norm`; ``I == 1`` (channels-last) takes the ``(1, O, C)`` kernels.
"""
import numpy as np
from numba import njit

from .. import _config
from .._config import JIT_OPTIONS
from . import _channels as ch
from . import _channels_forward as fwd


def _inlined(kernel):
    """``kernel`` inlined at Numba IR level into the one-dispatch functions below."""
    return njit(inline="always", **JIT_OPTIONS)(kernel.py_func)


_moments_inner, _moments_last, _apply_inner, _apply_last, _expand, _group_stats = map(
    _inlined, (fwd._moments_inner, fwd._moments_last, fwd._apply_inner, fwd._apply_last, fwd._expand,
               fwd._group_stats))


@njit(**JIT_OPTIONS)
def running_stats(running_mean, running_var, eps, mean, rstd):
    """Eval-mode statistics: ``mean = running_mean``, ``rstd = 1/sqrt(running_var + eps)`` (1, C)."""
    for c in range(running_mean.shape[0]):
        mean[0, c] = running_mean[c]
        rstd[0, c] = 1.0 / np.sqrt(running_var[c] + eps)


@njit(**JIT_OPTIONS)
def update_running(mean, var, count, factor, unbiased, running_mean, running_var):
    """running ← (1 − factor)·running + factor·batch, per channel, in place.

    ``mean``/``var`` are the batch mean and biased variance ``(1, C)`` over ``count`` values;
    the running variance takes the unbiased ``var · count/(count − 1)`` when ``unbiased``.
    """
    corr = count / (count - 1.0) if unbiased else 1.0
    for c in range(running_mean.shape[0]):
        running_mean[c] = (1.0 - factor) * running_mean[c] + factor * mean[0, c]
        running_var[c] = (1.0 - factor) * running_var[c] + factor * (var[0, c] * corr)


@njit(**JIT_OPTIONS, inline="always")
def _coefficients(mean, rstd, weight, bias, dtype):
    """The three (1, C) coefficient rows of :func:`._channels.normalize` as one (3, 1, C) array."""
    coef = np.empty((3, 1, mean.shape[1]), dtype)
    _expand(mean, rstd, weight, bias, coef[0], coef[1], coef[2])
    return coef


@njit(**JIT_OPTIONS, inline="always")
def _eval_stats(nc, running_mean, running_var, eps):
    mean = np.empty((1, nc))
    rstd = np.empty((1, nc))
    running_stats(running_mean, running_var, eps, mean, rstd)
    return mean, rstd


# One compiled function per layout (a runtime ``I == 1`` branch would compile the kernels of
# both layouts into every first call); the chunk kernels run inlined, with one chunk.


@njit(**JIT_OPTIONS)
def _eval_inner(x, running_mean, running_var, eps, weight, bias, out):
    """Eval-mode batch_norm of a (1, O, C, I > 1) view in one dispatch."""
    mean, rstd = _eval_stats(x.shape[2], running_mean, running_var, eps)
    cf = _coefficients(mean, rstd, weight, bias, x.dtype)
    _apply_inner(x, cf[0], cf[1], cf[2], out, np.int64(1), np.zeros(1, np.int64))


@njit(**JIT_OPTIONS)
def _eval_last(x, running_mean, running_var, eps, weight, bias, out):
    """Eval-mode batch_norm of a (1, O, C, 1) channels-last view in one dispatch."""
    nb, no, nc, ni = x.shape
    mean, rstd = _eval_stats(nc, running_mean, running_var, eps)
    cf = _coefficients(mean, rstd, weight, bias, x.dtype)
    _apply_last(x.reshape(nb, no, nc), cf[0], cf[1], cf[2], out.reshape(nb, no, nc), np.int64(1),
                np.zeros(1, np.int64))


@njit(**JIT_OPTIONS, inline="always")
def _train_stats(x, part, n, eps):
    """Mean, biased variance and rstd (1, C) from the partial sums of the (1, O, C, I) view ``x``."""
    nc = part.shape[3]
    mean = np.empty((1, nc))
    var = np.empty((1, nc))
    rstd = np.empty((1, nc))
    _group_stats(x, part[0], part[1], nc, eps, mean, var, rstd)
    return mean, var, rstd


@njit(**JIT_OPTIONS)
def _train_inner(x, ko, ki, eps, weight, bias, out, factor, unbiased, running_mean, running_var):
    """Training batch_norm of a (1, O, C, I > 1) view in one dispatch."""
    nb, no, nc, ni = x.shape
    part = np.zeros((2, 1, ko * ki, nc))
    _moments_inner(x, ko, ki, part[0], part[1], np.int64(1), np.zeros(1, np.int64))
    mean, var, rstd = _train_stats(x, part, no * ni, eps)
    cf = _coefficients(mean, rstd, weight, bias, x.dtype)
    _apply_inner(x, cf[0], cf[1], cf[2], out, np.int64(1), np.zeros(1, np.int64))
    if running_mean.shape[0]:
        update_running(mean, var, no * ni, factor, unbiased, running_mean, running_var)


@njit(**JIT_OPTIONS)
def _train_last(x, ko, ki, eps, weight, bias, out, factor, unbiased, running_mean, running_var):
    """Training batch_norm of a (1, O, C, 1) channels-last view in one dispatch (``ki`` = 1)."""
    nb, no, nc, ni = x.shape
    x3 = x.reshape(nb, no, nc)
    part = np.zeros((2, 1, ko, nc))
    scratch = np.empty((2, ko, nc), x.dtype)
    _moments_last(x3, ko, part[0], part[1], scratch[0], scratch[1], np.int64(1), np.zeros(1, np.int64))
    mean, var, rstd = _train_stats(x, part, no, eps)
    cf = _coefficients(mean, rstd, weight, bias, x.dtype)
    _apply_last(x3, cf[0], cf[1], cf[2], out.reshape(nb, no, nc), np.int64(1), np.zeros(1, np.int64))
    if running_mean.shape[0]:
        update_running(mean, var, no, factor, unbiased, running_mean, running_var)


def small_kernels(view):
    """``(eval_forward, train_forward)`` for a (1, O, C, I) view's layout, each one compiled
    dispatch taking the view-shaped arrays:

    * ``eval_forward(x, running_mean, running_var, eps, weight, bias, out)``: running
      statistics → mean/rstd, then normalize;
    * ``train_forward(x, ko, ki, eps, weight, bias, out, factor, unbiased, running_mean,
      running_var)``: :func:`._channels.stats` (``ko``/``ki`` its chunk counts), normalize
      and the running update (empty running arrays: none).

    The scratch statistics, partial sums and coefficients are allocated in compiled code (no
    NumPy temporaries)."""
    return (_eval_last, _train_last) if view[3] == 1 else (_eval_inner, _train_inner)


#: below this many elements an eval-mode forward runs :func:`small_kernels`' eval forward (serial): a
#: single element-wise pass, which a parallel launch speeds up only on larger inputs than a
#: reduction ((8, 64, 14, 14): 9.4 µs serial vs 18 µs through the general path's parallel
#: pass, 2 cores at load ~18)
EVAL_SERIAL_THRESHOLD = 4 * _config.SERIAL_THRESHOLD


def small_path(view):
    """Whether a (1, O, C, I) input of serial size takes these kernels: the general
    forward's 'generic' path (the 'rows'/'slab' paths are one dispatch already)."""
    return ch._path_of(view, view[2]) == "generic"


#: the running statistics of a call without them
NO_RUNNING = np.empty(0)
