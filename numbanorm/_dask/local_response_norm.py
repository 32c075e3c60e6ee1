"""Dask :func:`numbanorm.local_response_norm` and its backward: the windowed axes in one
chunk (the channel axis across channels; the spatial axes within a channel), each block
runs the in-memory function."""
import functools

import numpy as np

from .. import _validate
from ._graph import (
    blockwise, check_grad, check_out, dtypes, finish_grad, finish_out, like_chunks, probe_shape, rechunk,
)


def _lrn_axes(fn, x, mode, channel_axis):
    """The axes the LRN window runs over (they go in one chunk)."""
    ax = _validate.channel_axis(fn, channel_axis, x.ndim)
    if mode == "within_channel":
        return tuple(a for a in range(1, x.ndim) if a != ax)
    return (ax,)


def _lrn_block(eager, xb, size, alpha, beta, k, mode, convention, channel_axis):
    return (eager(xb, size, alpha, beta, k, mode=mode, convention=convention,
                  channel_axis=channel_axis),)


def local_response_norm(eager, x, size, alpha=1e-4, beta=0.75, k=1.0, *, mode="across_channels", convention="torch",
                        channel_axis=1, out=None):
    """Dask :func:`numbanorm.local_response_norm`: the windowed axes in one chunk, blockwise."""
    fn = "local_response_norm"
    ctype, rtype = dtypes(fn, x)
    whole = _lrn_axes(fn, x, mode, channel_axis)
    kw = dict(mode=mode, convention=convention, channel_axis=channel_axis)
    eager(np.zeros(probe_shape(x.shape, whole), x.dtype), size, alpha, beta, k, **kw)
    check_out(fn, out, x.shape, rtype)
    x = rechunk(x, whole)
    y, = blockwise(functools.partial(_lrn_block, eager, size=size, alpha=alpha, beta=beta, k=k, **kw), x,
                   [(x, tuple(range(x.ndim)))], [(rtype, x.chunks)])
    return finish_out(y, out)


def _lrn_bw_block(eager, gb, xb, size, alpha, beta, k, mode, convention, channel_axis):
    return (eager(gb, xb, size, alpha, beta, k, mode=mode, convention=convention,
                  channel_axis=channel_axis),)


def local_response_norm_backward(eager, grad_out, x, size, alpha=1e-4, beta=0.75, k=1.0, *, mode="across_channels",
                                 convention="torch", channel_axis=1, out=None):
    """Dask :func:`numbanorm.local_response_norm_backward`: the windowed axes in one chunk."""
    fn = "local_response_norm_backward"
    ctype, rtype = dtypes(fn, x)
    check_grad(fn, grad_out, x)
    whole = _lrn_axes(fn, x, mode, channel_axis)
    kw = dict(mode=mode, convention=convention, channel_axis=channel_axis)
    probe = probe_shape(x.shape, whole)
    eager(np.zeros(probe, x.dtype), np.zeros(probe, x.dtype), size, alpha, beta, k, **kw)
    x = rechunk(x, whole)
    g = like_chunks(grad_out, x.chunks)
    gx, = blockwise(functools.partial(_lrn_bw_block, eager, size=size, alpha=alpha, beta=beta, k=k, **kw), x,
                    [(g, tuple(range(x.ndim))), (x, tuple(range(x.ndim)))], [(rtype, x.chunks)])
    return finish_grad(fn, gx, out, x)
