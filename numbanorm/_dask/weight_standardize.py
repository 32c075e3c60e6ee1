"""Dask :func:`numbanorm.weight_standardize` and its backward: each filter (the first axis)
in one block, each block runs the in-memory function."""
import functools

import numpy as np

from ._graph import (
    blockwise, check_grad, check_out, dtypes, finish_grad, finish_out, like_chunks, probe_shape, rechunk,
)


def _ws_block(eager, wb, eps):
    return (eager(wb, eps),)


def weight_standardize(eager, weight, eps=1e-5, *, out=None):
    """Dask :func:`numbanorm.weight_standardize`: each filter (first axis) in one block."""
    fn = "weight_standardize"
    ctype, rtype = dtypes(fn, weight)
    whole = tuple(range(1, weight.ndim))
    eager(np.zeros(probe_shape(weight.shape, whole), weight.dtype), eps)
    check_out(fn, out, weight.shape, rtype)
    w = rechunk(weight, whole)
    y, = blockwise(functools.partial(_ws_block, eager, eps=eps), w, [(w, tuple(range(w.ndim)))], [(rtype, w.chunks)])
    return finish_out(y, out)


def _ws_bw_block(eager, gb, wb, eps):
    return (eager(gb, wb, eps),)


def weight_standardize_backward(eager, grad_out, weight, eps=1e-5, out=None):
    """Dask :func:`numbanorm.weight_standardize_backward`: each filter in one block."""
    fn = "weight_standardize_backward"
    ctype, rtype = dtypes(fn, weight)
    check_grad(fn, grad_out, weight)
    whole = tuple(range(1, weight.ndim))
    probe = probe_shape(weight.shape, whole)
    eager(np.zeros(probe, weight.dtype), np.zeros(probe, weight.dtype), eps)
    w = rechunk(weight, whole)
    g = like_chunks(grad_out, w.chunks)
    gw, = blockwise(functools.partial(_ws_bw_block, eager, eps=eps), w,
                    [(g, tuple(range(w.ndim))), (w, tuple(range(w.ndim)))],
                    [(rtype, w.chunks)])
    return finish_grad(fn, gw, out, weight)
