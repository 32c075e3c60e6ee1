"""Fast-path checks of the channel normalizations' calls (batch_norm, group_norm).

Small calls are dominated by argument checking (``batch_norm`` eval on (32, 8, 16): ~40 of
its ~50 µs were validation, device dispatch and output bookkeeping), so, as
``_validate.plain_rows`` does for the row ops, these functions answer in a few attribute
tests whether a call is *plain*: every check of the general path would pass with nothing
to convert. The public function then runs the kernels directly. False / None never means
an error: the call takes the general path, which then passes or raises the usual message.
"""
import math

import numpy as np

from .. import _dispatch

F32 = np.dtype(np.float32)
F64 = np.dtype(np.float64)
_NDARRAY = np.ndarray
_MAY_SHARE = np.may_share_memory
_INF = math.inf


def _param_ok(a, dt, c1):
    return a is None or (type(a) is _NDARRAY and a.dtype is dt and a.shape == c1 and a.flags.c_contiguous)


def _apart(out, owns, a):
    """Whether ``a`` shares no memory with ``out`` (``owns``: ``out`` owns its data). Two
    distinct arrays that each own their data are disjoint (a flag test, ~4x cheaper than
    ``np.may_share_memory``, which answers the rest)."""
    return (owns and a is not out and a.flags.owndata) or not _MAY_SHARE(out, a)


def channels(x, channel_axis, eps, out, weight, bias, others=()):
    """The channel axis (1 or ``x.ndim - 1``) of a plain call, else None.

    Plain: ``x`` a non-empty C-contiguous float32/float64 NumPy array of at least 2 dims,
    ``channel_axis`` the int 1 or -1, ``eps`` a float >= 0, ``weight``/``bias`` None or
    C-contiguous ``(C,)`` arrays of x's dtype, ``out`` None or a writeable C-contiguous
    array of x's shape and dtype that is ``x`` itself or shares no memory with ``x``, the
    parameters or ``others`` (arrays the call reads or writes besides: running
    statistics), and no device forced.
    """
    if type(x) is not _NDARRAY or type(eps) is not float or not 0.0 <= eps < _INF:
        return None
    dt = x.dtype
    shape = x.shape
    if (dt is not F32 and dt is not F64) or len(shape) < 2 or not x.size:
        return None
    if channel_axis == 1 and type(channel_axis) is int:
        ax = 1
    elif channel_axis == -1 and type(channel_axis) is int:
        ax = len(shape) - 1
    else:
        return None
    c1 = (shape[ax],)
    if not (_param_ok(weight, dt, c1) and _param_ok(bias, dt, c1)):
        return None
    if out is not None:
        if type(out) is not _NDARRAY or out.dtype is not dt or out.shape != shape:
            return None
        flags = out.flags
        owns = flags.owndata
        if not (flags.c_contiguous and flags.writeable) or (out is not x and not _apart(out, owns, x)):
            return None
        for a in (weight, bias) + tuple(others):
            if a is not None and not _apart(out, owns, a):
                return None
    if not x.flags.c_contiguous or _dispatch._FORCED.get() is not None:
        return None
    return ax


def running(running_mean, running_var, c, training):
    """Whether the running statistics of a plain batch_norm call are plain: both None
    (training only) or both C-contiguous float32/float64 NumPy arrays of shape ``(C,)``
    (the kernels take them as they are), writeable and disjoint when training (they are
    updated in place)."""
    if running_mean is None and running_var is None:
        return training
    c1 = (c,)
    for a in (running_mean, running_var):
        dt = a.dtype if type(a) is _NDARRAY else None
        if (dt is not F32 and dt is not F64) or a.shape != c1 or not a.flags.c_contiguous:
            return False
        if training and not a.flags.writeable:
            return False
    return not (training and _MAY_SHARE(running_mean, running_var))


def real_or_none(value):
    """Whether ``value`` is None or a finite Python float (a plain ``momentum``)."""
    return value is None or (type(value) is float and math.isfinite(value))


def grads(grad_out, x, channel_axis, eps, out, weight, saved):
    """The channel axis of a plain channel backward with saved statistics, else None.

    Plain: :func:`channels` of ``x``, ``channel_axis``, ``eps``, ``weight``; ``grad_out`` a
    C-contiguous NumPy array of x's shape and dtype; the ``saved`` statistics C-contiguous
    float32/float64 NumPy arrays of shape ``(C,)``; ``out`` None or a writeable C-contiguous
    array of x's shape and dtype sharing no memory with any of them (the general path
    writes an overlapping ``out`` through a scratch buffer).
    """
    ax = channels(x, channel_axis, eps, None, weight, None)
    if ax is None or type(grad_out) is not _NDARRAY or grad_out.dtype is not x.dtype:
        return None
    if grad_out.shape != x.shape or not grad_out.flags.c_contiguous:
        return None
    c1 = (x.shape[ax],)
    for a in saved:
        dt = a.dtype if type(a) is _NDARRAY else None
        if (dt is not F32 and dt is not F64) or a.shape != c1 or not a.flags.c_contiguous:
            return None
    if out is not None:
        if type(out) is not _NDARRAY or out.dtype is not x.dtype or out.shape != x.shape:
            return None
        flags = out.flags
        if not (flags.c_contiguous and flags.writeable):
            return None
        owns = flags.owndata
        for a in (x, grad_out, weight) + tuple(saved):
            if a is not None and not _apart(out, owns, a):
                return None
    return ax
