"""Dask :func:`numbanorm.normalize` and its backward: ``axis`` in one chunk, every other axis
keeps its chunks, each block runs the in-memory function."""
import functools
import operator

import numpy as np

from ._graph import (
    blockwise, check_grad, check_out, dtypes, finish_grad, finish_out, like_chunks, probe_shape, rechunk,
)


def _norm_axis(eager, fn, x, p, axis, eps):
    """The normalized axis, once ``eager`` has validated the arguments on a small probe
    (every axis cut to at most 2: none of normalize's checks depends on a size)."""
    probe = np.zeros(probe_shape(x.shape, ()), x.dtype)
    if fn == "normalize":
        eager(probe, p, axis, eps)
    else:
        eager(probe, probe, p, axis, eps)
    return operator.index(axis) % max(x.ndim, 1)


def _normalize_block(eager, xb, p, axis, eps):
    return (eager(xb, p, axis, eps),)


def normalize(eager, x, p=2.0, axis=1, eps=1e-12, *, out=None):
    """Dask :func:`numbanorm.normalize`: ``axis`` in one chunk, blockwise."""
    fn = "normalize"
    ctype, rtype = dtypes(fn, x)
    ax = _norm_axis(eager, fn, x, p, axis, eps)
    check_out(fn, out, x.shape, rtype)
    x = rechunk(x, (ax,))
    y, = blockwise(functools.partial(_normalize_block, eager, p=p, axis=axis, eps=eps), x, [(x, tuple(range(x.ndim)))],
                   [(rtype, x.chunks)])
    return finish_out(y, out)


def _normalize_bw_block(eager, gb, xb, p, axis, eps):
    return (eager(gb, xb, p, axis, eps),)


def normalize_backward(eager, grad_out, x, p=2.0, axis=1, eps=1e-12, out=None):
    """Dask :func:`numbanorm.normalize_backward`: ``axis`` in one chunk, blockwise."""
    fn = "normalize_backward"
    ctype, rtype = dtypes(fn, x)
    check_grad(fn, grad_out, x)
    ax = _norm_axis(eager, fn, x, p, axis, eps)
    x = rechunk(x, (ax,))
    g = like_chunks(grad_out, x.chunks)
    gx, = blockwise(functools.partial(_normalize_bw_block, eager, p=p, axis=axis, eps=eps), x,
                    [(g, tuple(range(x.ndim))), (x, tuple(range(x.ndim)))], [(rtype, x.chunks)])
    return finish_grad(fn, gx, out, x)
