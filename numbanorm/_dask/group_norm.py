"""Dask :func:`numbanorm.group_norm` and its backward: channels and spatial dims in one
chunk, blockwise over N with the in-memory function; parameter gradients tree-summed.

Per-sample statistics (N, G) / (N, C) travel through the blocks at x's ndim, their second
dim at the channel axis: (Nb, 1, ..., Gb at channel_axis, ..., 1). The helpers for that and
:func:`grouped_backward` are shared with :mod:`.instance_norm`.
"""
import functools

import numpy as np

from .. import _validate
from ._graph import (
    aligned, blockwise, check_grad, check_out, dtypes, finish_grad, finish_outs, like_chunks, ones_chunks,
    probe_param, probe_shape, rechunk, sum_partials,
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


def _group_block(eager, xb, wb, bb, num_groups, eps, channel_axis, return_stats, nd, ax):
    r = eager(xb, num_groups, wb, bb, eps, channel_axis=channel_axis, return_stats=return_stats)
    if not return_stats:
        return (r,)
    y, m, s = r
    return y, place(m, nd, ax), place(s, nd, ax)


def group_norm(eager, x, num_groups, weight=None, bias=None, eps=1e-5, *, channel_axis=1, out=None, return_stats=False):
    """Dask :func:`numbanorm.group_norm`: channels and spatial dims in one chunk, blockwise over N."""
    fn = "group_norm"
    ctype, rtype = dtypes(fn, x)
    ax = _validate.channel_axis(fn, channel_axis, x.ndim)
    whole = tuple(range(1, x.ndim))
    eager(np.zeros(probe_shape(x.shape, whole), x.dtype), num_groups, probe_param(weight), probe_param(bias),
          eps, channel_axis=channel_axis, return_stats=return_stats)
    check_out(fn, out, x.shape, rtype)
    x = rechunk(x, whole)
    args = [(x, tuple(range(x.ndim)))]
    for p in (weight, bias):
        args.append((None, None) if p is None else (aligned(p, (ax,), x.chunks), (ax,)))
    g = int(num_groups)
    specs = [(rtype, x.chunks)]
    if return_stats:
        specs += [(ctype, sample_stat_chunks(x, ax, (g,)))] * 2
    res = blockwise(functools.partial(_group_block, eager, num_groups=num_groups, eps=eps, channel_axis=channel_axis,
                                      return_stats=return_stats, nd=x.ndim, ax=ax), x, args, specs)
    y, *res[1:] = finish_outs(res, out)
    if not return_stats:
        return y
    return y, unplace(res[1], x.shape[0], g), unplace(res[2], x.shape[0], g)


def saved_samples(fn, arg, value, n, k, x, ax, aligned_to_channels):
    """Saved (N, K) statistics placed at (0, ax) and aligned to x's blocks."""
    if tuple(value.shape) != (n, k):
        raise ValueError(f"{fn}(): argument '{arg}' must have shape {(n, k)} (as returned with "
                         f"return_stats=True), got shape {tuple(value.shape)}")
    return aligned(value, (0, ax if aligned_to_channels else None), x.chunks)


def _grouped_bw_block(eager, gb, xb, wb, mb, rb, op, num_groups, eps, channel_axis, nd, ax):
    if op == "group_norm":
        gx, gw, gbias = eager(gb, xb, num_groups, wb, eps=eps, mean=mb, rstd=rb,
                              channel_axis=channel_axis)
    else:
        gx, gw, gbias = eager(gb, xb, wb, eps=eps, mean=mb, rstd=rb, channel_axis=channel_axis)
    keep = tuple(xb.shape[ax] if a == ax else 1 for a in range(nd))
    return gx, (np.zeros(keep) if gw is None else gw.reshape(keep)), gbias.reshape(keep)


def grouped_backward(eager, fn, op, grad_out, x, num_groups, weight, eps, mean, rstd, channel_axis):
    ctype, rtype = dtypes(fn, x)
    check_grad(fn, grad_out, x)
    ax = _validate.channel_axis(fn, channel_axis, x.ndim)
    c = x.shape[ax]
    if (mean is None) != (rstd is None):
        raise ValueError(f"{fn}(): arguments 'mean' and 'rstd' must be given together, got only one")
    # group_norm: channels and spatial dims whole; instance_norm: spatial dims whole, channels chunked
    whole = tuple(a for a in range(1, x.ndim) if op == "group_norm" or a != ax)
    probe = probe_shape(x.shape, whole + (ax,))
    if op == "group_norm":
        eager(np.zeros(probe, x.dtype), np.zeros(probe, x.dtype), num_groups, probe_param(weight),
              eps=eps, channel_axis=channel_axis)
        k = int(num_groups)
    else:
        eager(np.zeros(probe, x.dtype), np.zeros(probe, x.dtype), probe_param(weight), eps=eps,
              channel_axis=channel_axis)
        k = c
    x = rechunk(x, whole)
    g = like_chunks(grad_out, x.chunks)
    args = [(g, tuple(range(x.ndim))), (x, tuple(range(x.ndim))),
            (None, None) if weight is None else (aligned(weight, (ax,), x.chunks), (ax,))]
    if mean is not None:
        per_c = op != "group_norm"
        sax = (0, ax if per_c else None)
        args += [(saved_samples(fn, "mean", mean, x.shape[0], k, x, ax, per_c), sax),
                 (saved_samples(fn, "rstd", rstd, x.shape[0], k, x, ax, per_c), sax)]
    else:
        args += [(None, None), (None, None)]
    red = tuple(a for a in range(x.ndim) if a != ax)
    pchunks = ones_chunks(x.chunks, red)
    gx, gw, gb = blockwise(functools.partial(_grouped_bw_block, eager, op=op, num_groups=num_groups, eps=eps,
                                             channel_axis=channel_axis, nd=x.ndim, ax=ax),
                           x, args, [(rtype, x.chunks), (np.float64, pchunks), (np.float64, pchunks)])
    gw = None if weight is None else sum_partials(gw, red, (c,), rtype)
    return gx, gw, sum_partials(gb, red, (c,), rtype)


def group_norm_backward(eager, grad_out, x, num_groups, weight=None, *, eps=1e-5, mean=None, rstd=None, channel_axis=1,
                        out=None):
    """Dask :func:`numbanorm.group_norm_backward`: grad_x blockwise over N, parameter grads tree-summed."""
    fn = "group_norm_backward"
    res = grouped_backward(eager, fn, "group_norm", grad_out, x, num_groups, weight, eps, mean, rstd, channel_axis)
    return finish_grad(fn, res, out, x)
