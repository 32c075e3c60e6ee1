"""Dask :func:`numbanorm.layer_norm` and its backward: the normalized trailing dims in one
chunk, every other axis keeps its chunks, each block runs the op's compute function (the
kernels of the block's device; results equal the in-memory ones bit for bit); parameter
gradients are per-block partials added by a Dask tree sum.

The builders get validated arguments (``weight``/``bias`` flat ``(N,)`` arrays of the
compute dtype, saved ``mean``/``rstd`` flat ``(M,)``) and the compute function first.
"""
import functools

import numpy as np

from ._graph import (
    aligned, blockwise, block_device, dtypes, finish_grad, finish_outs, like_chunks, on_device, ones_chunks,
    rechunk, stat_chunks, sum_partials,
)


def trail_axes(x, nshape):
    """The trailing axes of ``x`` that ``nshape`` spans."""
    return tuple(range(x.ndim - len(nshape), x.ndim))


def flat_param(p, x):
    """A flat validated parameter as one chunk: (array, axes) for :func:`blockwise`."""
    return (None, None) if p is None else (aligned(p, (None,), x.chunks), (None,))


def flat_rows(s, x, trail):
    """Saved flat ``(M,)`` row statistics aligned to x's blocks (trailing axes of size 1)."""
    if s is None:
        return None, None
    lead = tuple(x.shape[: x.ndim - len(trail)])
    rows = tuple(None if a in trail else a for a in range(x.ndim))
    return aligned(s.reshape(lead + (1,) * len(trail)), rows, x.chunks), rows


def _ln_block(compute, xb, wb, bb, nshape, eps, ctype, rtype, return_stats):
    dev = block_device(xb)
    r = compute(dev, dev.asarray(xb), nshape, on_device(dev, wb, ctype), on_device(dev, bb, ctype), eps, ctype,
                rtype, return_stats)
    return r if return_stats else (r,)


def layer_norm(compute, x, nshape, weight, bias, eps, ctype, rtype, return_stats, *, out=None):
    """Dask :func:`numbanorm.layer_norm` (arguments validated): the normalized trailing dims in
    one chunk, blockwise."""
    dtypes("layer_norm", x)  # masked chunks are refused
    trail = trail_axes(x, nshape)
    x = rechunk(x, trail)
    args = [(x, tuple(range(x.ndim))), flat_param(weight, x), flat_param(bias, x)]
    specs = [(rtype, x.chunks)]
    if return_stats:
        specs += [(ctype, stat_chunks(x, trail))] * 2
    block = functools.partial(_ln_block, compute, nshape=nshape, eps=eps, ctype=ctype, rtype=rtype,
                              return_stats=return_stats)
    res = finish_outs(blockwise(block, x, args, specs), out)
    return (res[0], res[1], res[2]) if return_stats else res[0]


def _ln_bw_block(compute, gb, xb, wb, mb, rb, nshape, eps, ctype, rtype, nd):
    dev = block_device(xb)
    gx, gw, gbias = compute(dev, dev.asarray(gb), dev.asarray(xb), nshape, on_device(dev, wb, ctype), eps,
                            on_device(dev, mb, ctype, (-1,)), on_device(dev, rb, ctype, (-1,)), ctype, rtype)
    keep = (1,) * (nd - len(nshape)) + tuple(nshape)
    return gx, (np.zeros(keep) if gw is None else gw.reshape(keep)), gbias.reshape(keep)


def layer_norm_backward(compute, grad_out, x, nshape, weight, eps, mean, rstd, ctype, rtype, *, out=None):
    """Dask :func:`numbanorm.layer_norm_backward` (arguments validated): grad_x blockwise,
    parameter grads tree-summed."""
    fn = "layer_norm_backward"
    dtypes(fn, x)
    trail = trail_axes(x, nshape)
    x = rechunk(x, trail)
    g = like_chunks(grad_out, x.chunks)
    lead_axes = tuple(a for a in range(x.ndim) if a not in trail)
    args = [(g, tuple(range(x.ndim))), (x, tuple(range(x.ndim))), flat_param(weight, x),
            flat_rows(mean, x, trail), flat_rows(rstd, x, trail)]
    pchunks = ones_chunks(x.chunks, lead_axes)
    block = functools.partial(_ln_bw_block, compute, nshape=nshape, eps=eps, ctype=ctype, rtype=rtype, nd=x.ndim)
    gx, gw, gb = blockwise(block, x, args, [(rtype, x.chunks), (np.float64, pchunks), (np.float64, pchunks)])
    gw = None if weight is None else sum_partials(gw, lead_axes, nshape, rtype)
    return finish_grad(fn, (gx, gw, sum_partials(gb, lead_axes, nshape, rtype)), out, x)
