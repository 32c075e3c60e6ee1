"""One-call serial kernels for small batch_norm forwards (below ``SERIAL_THRESHOLD``, eval
mode below ``EVAL_SERIAL_THRESHOLD``).

A small call's time is mostly fixed costs: every Numba dispatch (~1 µs: typing its array
arguments), every NumPy temporary. The general entry points of :mod:`._channels` make 4-6
dispatches per forward (moments, group statistics, coefficient expansion, apply, running
update); these compiled functions make the same calls — the very serial kernels of the
general path, compiled into one function — in a single dispatch. The results are the
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

_MOM_INNER = fwd._MOM_INNER[1]
_MOM_LAST = fwd._MOM_LAST[1]
_APPLY_INNER = fwd._APPLY_INNER[1]
_APPLY_LAST = fwd._APPLY_LAST[1]
_expand = fwd._expand
_group_stats = fwd._group_stats


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


@njit(**JIT_OPTIONS)
def _apply(x, mean, rstd, weight, bias, out, coef):
    """:func:`._channels.normalize` (``coef``: its three (1, C) coefficient rows)."""
    _expand(mean, rstd, weight, bias, coef[0], coef[1], coef[2])
    nb, no, nc, ni = x.shape
    if ni == 1:
        _APPLY_LAST(x.reshape(nb, no, nc), coef[0], coef[1], coef[2], out.reshape(nb, no, nc))
    else:
        _APPLY_INNER(x, coef[0], coef[1], coef[2], out)


@njit(**JIT_OPTIONS)
def eval_forward(x, running_mean, running_var, eps, weight, bias, out):
    """Eval-mode batch_norm: running statistics → mean/rstd, then normalize (the scratch
    statistics and coefficients are allocated here: one dispatch, no NumPy temporaries)."""
    nc = x.shape[2]
    mean = np.empty((1, nc))
    rstd = np.empty((1, nc))
    running_stats(running_mean, running_var, eps, mean, rstd)
    _apply(x, mean, rstd, weight, bias, out, np.empty((3, 1, nc), x.dtype))


@njit(**JIT_OPTIONS)
def train_forward(x, ko, ki, eps, weight, bias, out, factor, unbiased, running_mean, running_var):
    """Training batch_norm (one group per channel): :func:`._channels.stats` (``ko``/``ki``
    its chunk counts, the partial sums allocated here), normalize, and the running update
    (empty running arrays: none)."""
    nb, no, nc, ni = x.shape
    part = np.zeros((2, 1, ko * ki, nc))
    if ni == 1:
        scratch = np.empty((2, ko, nc), x.dtype)
        _MOM_LAST(x.reshape(nb, no, nc), ko, part[0], part[1], scratch[0], scratch[1])
    else:
        _MOM_INNER(x, ko, ki, part[0], part[1])
    mean = np.empty((1, nc))
    var = np.empty((1, nc))
    rstd = np.empty((1, nc))
    _group_stats(x, part[0], part[1], nc, eps, mean, var, rstd)
    _apply(x, mean, rstd, weight, bias, out, np.empty((3, 1, nc), x.dtype))
    if running_mean.shape[0]:
        update_running(mean, var, no * ni, factor, unbiased, running_mean, running_var)


#: below this many elements an eval-mode forward runs :func:`eval_forward` (serial): a
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
