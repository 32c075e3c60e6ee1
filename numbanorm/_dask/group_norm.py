"""Dask :func:`numbanorm.group_norm` and its backward: channels and spatial dims in one
chunk, blockwise over N with the op's compute function (the kernels of the block's device);
parameter gradients tree-summed. Arguments arrive validated, the compute function first.

Per-sample statistics (N, G) / (N, C) travel through the blocks at x's ndim, their second
dim at the channel axis: (Nb, 1, ..., Gb at channel_axis, ..., 1). The helpers for that are
shared with :mod:`.instance_norm`; :func:`grouped_backward` builds both backwards
(``group_norm_backward`` and ``instance_norm_backward``, whose shared validation hands over
here).
"""
import functools

import numpy as np

from ._graph import (
    aligned, block_device, blockwise, dtypes, finish_grad, finish_outs, like_chunks, on_device, ones_chunks, rechunk,
    sum_partials,
)


def place(a, nd, ax):
    """An (Nb, K) per-block statistic as an nd-dim block with K at axis ``ax``."""
    shape = [1] * nd
    shape[0] = a.shape[0]
    shape[ax] = a.shape[1]
    return np.asarray(a).reshape(shape)


def sample_stat_chunks(x, ax, second_chunks):
    return tuple(x.chunks[0] if a == 0 else second_chunks if a == ax else (1,) * len(x.chunks[a])
                 for a in range(x.ndim))


def unplace(a, n, k):
    return a.reshape(n, k)


def _group_block(compute, xb, wb, bb, ax, groups, eps, ctype, rtype, return_stats, nd):
    dev = block_device(xb)
    r = compute(dev, dev.asarray(xb), ax, groups, on_device(dev, wb, ctype), on_device(dev, bb, ctype), eps, ctype,
                rtype, return_stats)
    if not return_stats:
        return (r,)
    y, m, s = r
    return y, place(m, nd, ax), place(s, nd, ax)


def group_norm(compute, x, ax, groups, weight, bias, eps, ctype, rtype, return_stats, *, out=None):
    """Dask :func:`numbanorm.group_norm` (arguments validated): channels and spatial dims in one
    chunk, blockwise over N."""
    dtypes("group_norm", x)  # masked chunks are refused
    x = rechunk(x, tuple(range(1, x.ndim)))
    args = [(x, tuple(range(x.ndim)))]
    for p in (weight, bias):
        args.append((None, None) if p is None else (aligned(p, (ax,), x.chunks), (ax,)))
    specs = [(rtype, x.chunks)]
    if return_stats:
        specs += [(ctype, sample_stat_chunks(x, ax, (groups,)))] * 2
    block = functools.partial(_group_block, compute, ax=ax, groups=groups, eps=eps, ctype=ctype, rtype=rtype,
                              return_stats=return_stats, nd=x.ndim)
    y, *res = finish_outs(blockwise(block, x, args, specs), out)
    if not return_stats:
        return y
    return y, unplace(res[0], x.shape[0], groups), unplace(res[1], x.shape[0], groups)


def _grouped_bw_block(compute, gb, xb, wb, mb, rb, op, ax, groups, eps, ctype, rtype, nd):
    dev = block_device(xb)
    stat = None if mb is None else (xb.shape[0], -1)
    gx, gw, gbias = compute(dev, op, dev.asarray(gb), dev.asarray(xb), ax, groups, on_device(dev, wb, ctype), eps,
                            on_device(dev, mb, np.float64, stat), on_device(dev, rb, np.float64, stat), ctype, rtype)
    keep = tuple(xb.shape[ax] if a == ax else 1 for a in range(nd))
    return gx, (np.zeros(keep) if gw is None else gw.reshape(keep)), gbias.reshape(keep)


def grouped_backward(compute, fn, op, grad_out, x, ax, groups, weight, eps, mean, rstd, ctype, rtype, *, out=None):
    """Dask ``group_norm_backward`` / ``instance_norm_backward`` (``op``; arguments validated;
    ``groups`` None: one per channel, the channels chunked as x's): grad_x blockwise,
    parameter grads tree-summed."""
    dtypes(fn, x)
    c = x.shape[ax]
    per_c = groups is None
    # group_norm: channels and spatial dims whole; instance_norm: spatial dims whole, channels chunked
    x = rechunk(x, tuple(a for a in range(1, x.ndim) if not per_c or a != ax))
    g = like_chunks(grad_out, x.chunks)
    args = [(g, tuple(range(x.ndim))), (x, tuple(range(x.ndim))),
            (None, None) if weight is None else (aligned(weight, (ax,), x.chunks), (ax,))]
    sax = (0, ax if per_c else None)
    for s in (mean, rstd):
        args.append((None, None) if s is None else (aligned(s, sax, x.chunks), sax))
    red = tuple(a for a in range(x.ndim) if a != ax)
    pchunks = ones_chunks(x.chunks, red)
    block = functools.partial(_grouped_bw_block, compute, op=op, ax=ax, groups=groups, eps=eps, ctype=ctype,
                              rtype=rtype, nd=x.ndim)
    gx, gw, gb = blockwise(block, x, args, [(rtype, x.chunks), (np.float64, pchunks), (np.float64, pchunks)])
    gw = None if weight is None else sum_partials(gw, red, (c,), rtype)
    return finish_grad(fn, (gx, gw, sum_partials(gb, red, (c,), rtype)), out, x)
