"""Dask :func:`numbanorm.layer_norm` and its backward: the normalized trailing dims in one
chunk, every other axis keeps its chunks, each block runs the in-memory function (results
equal the in-memory ones bit for bit); parameter gradients are per-block partials added by
a Dask tree sum."""
import functools

import numpy as np

from ._graph import (
    aligned, blockwise, check_grad, check_out, dtypes, finish_grad, finish_outs, like_chunks, ones_chunks,
    probe_param, probe_shape, rechunk, saved_rows, stat_chunks, sum_partials, trailing,
)


def _ln_block(eager, xb, wb, bb, normalized_shape, eps, return_stats):
    r = eager(xb, normalized_shape, wb, bb, eps, return_stats=return_stats)
    return r if return_stats else (r,)


def layer_norm(eager, x, normalized_shape, weight=None, bias=None, eps=1e-5, *, out=None, return_stats=False):
    """Dask :func:`numbanorm.layer_norm`: the normalized trailing dims in one chunk, blockwise."""
    fn = "layer_norm"
    nshape, trail = trailing(fn, x, normalized_shape)
    ctype, rtype = dtypes(fn, x)
    eager(np.zeros(probe_shape(x.shape, trail), x.dtype), normalized_shape, probe_param(weight),
          probe_param(bias), eps, return_stats=return_stats)
    check_out(fn, out, x.shape, rtype)
    x = rechunk(x, trail)
    args = [(x, tuple(range(x.ndim)))]
    for p in (weight, bias):
        args.append((None, None) if p is None else (aligned(p, trail, x.chunks), trail))
    specs = [(rtype, x.chunks)]
    if return_stats:
        specs += [(ctype, stat_chunks(x, trail))] * 2
    res = blockwise(functools.partial(_ln_block, eager, normalized_shape=nshape, eps=eps, return_stats=return_stats),
                    x, args, specs)
    res = finish_outs(res, out)
    return (res[0], res[1], res[2]) if return_stats else res[0]


def _ln_bw_block(eager, gb, xb, wb, mb, rb, normalized_shape, eps, nd, k):
    gx, gw, gbias = eager(gb, xb, normalized_shape, wb, eps=eps, mean=mb, rstd=rb)
    lead = nd - k
    keep = (1,) * lead + tuple(normalized_shape)
    return gx, (np.zeros(keep) if gw is None else gw.reshape(keep)), gbias.reshape(keep)


def layer_norm_backward(eager, grad_out, x, normalized_shape, weight=None, *, eps=1e-5, mean=None, rstd=None, out=None):
    """Dask :func:`numbanorm.layer_norm_backward`: grad_x blockwise, parameter grads tree-summed."""
    fn = "layer_norm_backward"
    nshape, trail = trailing(fn, x, normalized_shape)
    ctype, rtype = dtypes(fn, x)
    check_grad(fn, grad_out, x)
    if (mean is None) != (rstd is None):
        raise ValueError(f"{fn}(): arguments 'mean' and 'rstd' must be given together, got only one")
    probe = probe_shape(x.shape, trail)
    eager(np.zeros(probe, grad_out.dtype if hasattr(grad_out, "dtype") else x.dtype),
          np.zeros(probe, x.dtype), normalized_shape, probe_param(weight), eps=eps)
    x = rechunk(x, trail)
    g = like_chunks(grad_out, x.chunks)
    lead_axes = tuple(a for a in range(x.ndim) if a not in trail)
    args = [(g, tuple(range(x.ndim))), (x, tuple(range(x.ndim))),
            (None, None) if weight is None else (aligned(weight, trail, x.chunks), trail)]
    if mean is not None:
        args += [(saved_rows(fn, "mean", mean, x, trail), tuple(None if a in trail else a for a in range(x.ndim))),
                 (saved_rows(fn, "rstd", rstd, x, trail), tuple(None if a in trail else a for a in range(x.ndim)))]
    else:
        args += [(None, None), (None, None)]
    pchunks = ones_chunks(x.chunks, lead_axes)
    gx, gw, gb = blockwise(functools.partial(_ln_bw_block, eager, normalized_shape=nshape, eps=eps, nd=x.ndim,
                                             k=len(trail)),
                           x, args, [(rtype, x.chunks), (np.float64, pchunks), (np.float64, pchunks)])
    gw = None if weight is None else sum_partials(gw, lead_axes, nshape, rtype)
    return finish_grad(fn, (gx, gw, sum_partials(gb, lead_axes, nshape, rtype)), out, x)
