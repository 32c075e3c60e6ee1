"""Dask :func:`numbanorm.rms_norm` and its backward: the normalized trailing dims in one
chunk, blockwise with the op's compute function (the kernels of the block's device);
grad_weight tree-summed from per-block partials. Arguments arrive validated (as in
:mod:`.layer_norm`, whose helpers these builders share)."""
import functools

import numpy as np

from ._graph import (
    blockwise, block_device, dtypes, finish_grad, finish_outs, like_chunks, on_device, ones_chunks, rechunk,
    stat_chunks, sum_partials,
)
from .layer_norm import flat_param, flat_rows, trail_axes


def _rms_block(compute, xb, wb, nshape, eps, ctype, rtype, return_stats):
    dev = block_device(xb)
    r = compute(dev, dev.asarray(xb), nshape, on_device(dev, wb, ctype), eps, ctype, rtype, return_stats)
    return r if return_stats else (r,)


def rms_norm(compute, x, nshape, weight, eps, ctype, rtype, return_stats, *, out=None):
    """Dask :func:`numbanorm.rms_norm` (arguments validated): trailing dims in one chunk, blockwise."""
    dtypes("rms_norm", x)  # masked chunks are refused
    trail = trail_axes(x, nshape)
    x = rechunk(x, trail)
    args = [(x, tuple(range(x.ndim))), flat_param(weight, x)]
    specs = [(rtype, x.chunks)]
    if return_stats:
        specs.append((ctype, stat_chunks(x, trail)))
    block = functools.partial(_rms_block, compute, nshape=nshape, eps=eps, ctype=ctype, rtype=rtype,
                              return_stats=return_stats)
    res = finish_outs(blockwise(block, x, args, specs), out)
    return (res[0], res[1]) if return_stats else res[0]


def _rms_bw_block(compute, gb, xb, wb, rb, nshape, eps, ctype, rtype, nd):
    dev = block_device(xb)
    gx, gw = compute(dev, dev.asarray(gb), dev.asarray(xb), nshape, on_device(dev, wb, ctype), eps,
                     on_device(dev, rb, ctype, (-1,)), ctype, rtype)
    keep = (1,) * (nd - len(nshape)) + tuple(nshape)
    return gx, (np.zeros(keep) if gw is None else gw.reshape(keep))


def rms_norm_backward(compute, grad_out, x, nshape, weight, eps, rstd, ctype, rtype, *, out=None):
    """Dask :func:`numbanorm.rms_norm_backward` (arguments validated): grad_x blockwise,
    grad_weight tree-summed."""
    fn = "rms_norm_backward"
    dtypes(fn, x)
    trail = trail_axes(x, nshape)
    x = rechunk(x, trail)
    g = like_chunks(grad_out, x.chunks)
    lead_axes = tuple(a for a in range(x.ndim) if a not in trail)
    args = [(g, tuple(range(x.ndim))), (x, tuple(range(x.ndim))), flat_param(weight, x), flat_rows(rstd, x, trail)]
    pchunks = ones_chunks(x.chunks, lead_axes)
    block = functools.partial(_rms_bw_block, compute, nshape=nshape, eps=eps, ctype=ctype, rtype=rtype, nd=x.ndim)
    gx, gw = blockwise(block, x, args, [(rtype, x.chunks), (np.float64, pchunks)])
    return finish_grad(fn, (gx, (None if weight is None else sum_partials(gw, lead_axes, nshape, rtype))), out, x)
