"""Dask :func:`numbanorm.rms_norm` and its backward: the normalized trailing dims in one
chunk, blockwise with the in-memory function; grad_weight tree-summed from per-block partials."""
import functools

import numpy as np

from ._graph import (
    aligned, blockwise, check_grad, check_out, dtypes, finish_grad, finish_outs, like_chunks, ones_chunks,
    probe_param, probe_shape, rechunk, saved_rows, stat_chunks, sum_partials, trailing,
)


def _rms_block(eager, xb, wb, normalized_shape, eps, return_stats):
    r = eager(xb, normalized_shape, wb, eps, return_stats=return_stats)
    return r if return_stats else (r,)


def rms_norm(eager, x, normalized_shape, weight=None, eps=None, *, out=None, return_stats=False):
    """Dask :func:`numbanorm.rms_norm`: the normalized trailing dims in one chunk, blockwise."""
    fn = "rms_norm"
    nshape, trail = trailing(fn, x, normalized_shape)
    ctype, rtype = dtypes(fn, x)
    eager(np.zeros(probe_shape(x.shape, trail), x.dtype), normalized_shape, probe_param(weight), eps,
          return_stats=return_stats)
    check_out(fn, out, x.shape, rtype)
    x = rechunk(x, trail)
    args = [(x, tuple(range(x.ndim))), (None, None) if weight is None else (aligned(weight, trail, x.chunks), trail)]
    specs = [(rtype, x.chunks)]
    if return_stats:
        specs.append((ctype, stat_chunks(x, trail)))
    res = blockwise(functools.partial(_rms_block, eager, normalized_shape=nshape, eps=eps, return_stats=return_stats),
                    x, args, specs)
    res = finish_outs(res, out)
    return (res[0], res[1]) if return_stats else res[0]


def _rms_bw_block(eager, gb, xb, wb, rb, normalized_shape, eps, nd, k):
    gx, gw = eager(gb, xb, normalized_shape, wb, eps=eps, rstd=rb)
    keep = (1,) * (nd - k) + tuple(normalized_shape)
    return gx, (np.zeros(keep) if gw is None else gw.reshape(keep))


def rms_norm_backward(eager, grad_out, x, normalized_shape, weight=None, *, eps=None, rstd=None, out=None):
    """Dask :func:`numbanorm.rms_norm_backward`: grad_x blockwise, grad_weight tree-summed."""
    fn = "rms_norm_backward"
    nshape, trail = trailing(fn, x, normalized_shape)
    ctype, rtype = dtypes(fn, x)
    check_grad(fn, grad_out, x)
    probe = probe_shape(x.shape, trail)
    eager(np.zeros(probe, x.dtype), np.zeros(probe, x.dtype), normalized_shape, probe_param(weight),
          eps=eps)
    x = rechunk(x, trail)
    g = like_chunks(grad_out, x.chunks)
    lead_axes = tuple(a for a in range(x.ndim) if a not in trail)
    args = [(g, tuple(range(x.ndim))), (x, tuple(range(x.ndim))),
            (None, None) if weight is None else (aligned(weight, trail, x.chunks), trail)]
    if rstd is not None:
        args.append((saved_rows(fn, "rstd", rstd, x, trail), tuple(None if a in trail else a for a in range(x.ndim))))
    else:
        args.append((None, None))
    pchunks = ones_chunks(x.chunks, lead_axes)
    gx, gw = blockwise(functools.partial(_rms_bw_block, eager, normalized_shape=nshape, eps=eps, nd=x.ndim,
                                         k=len(trail)),
                       x, args, [(rtype, x.chunks), (np.float64, pchunks)])
    return finish_grad(fn, (gx, (None if weight is None else sum_partials(gw, lead_axes, nshape, rtype))), out, x)
