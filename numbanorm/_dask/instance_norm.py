"""Dask :func:`numbanorm.instance_norm` and its backward: the spatial dims in one chunk,
blockwise over N and C with the op's compute function (the kernels of the block's device;
arguments arrive validated, the compute function first). With running statistics and
``use_input_stats=True`` the per-instance statistics are computed now (tree reduction) and
the running statistics updated in place; ``y`` stays lazy. (``instance_norm_backward``
shares group_norm's validation and builder: :func:`.group_norm.grouped_backward`.)"""
import functools

import numpy as np

from ._graph import aligned, block_device, blockwise, dtypes, finish_outs, on_device, rechunk
from ._stats import reduce_moments
from .batch_norm import host_running, running_update
from .group_norm import place, sample_stat_chunks, unplace


def _instance_block(compute, xb, wb, bb, rm, rv, ax, use_input_stats, eps, ctype, rtype, return_stats, nd):
    dev = block_device(xb)
    r = compute(dev, dev.asarray(xb), ax, use_input_stats, on_device(dev, wb, ctype), on_device(dev, bb, ctype),
                on_device(dev, rm), on_device(dev, rv), eps, ctype, rtype, return_stats)
    if not return_stats:
        return (r,)
    y, m, s = r
    return y, place(m, nd, ax), place(s, nd, ax)


def instance_norm(compute, x, ax, use_input_stats, weight, bias, rm, rv, eps, ctype, rtype, return_stats, *,
                  out=None, running):
    """Dask :func:`numbanorm.instance_norm` (arguments validated): spatial dims in one chunk,
    blockwise over N and C.

    ``running``: the caller's ``(running_mean, running_var, momentum, num_batches_tracked,
    unbiased)``. With running statistics and ``use_input_stats=True`` the per-instance
    statistics are computed now and the running statistics updated in place; ``y`` stays lazy.
    """
    fn = "instance_norm"
    dtypes(fn, x)  # masked chunks are refused
    running_mean, running_var, momentum, num_batches_tracked, unbiased = running
    host_running(fn, running_mean, running_var, use_input_stats)
    whole = tuple(a for a in range(1, x.ndim) if a != ax)
    x = rechunk(x, whole)
    c = x.shape[ax]
    if use_input_stats and running_mean is not None:
        if x.size:
            st = reduce_moments(x, whole).compute()  # per (n, c), now: for the in-place update
            s = int(np.prod([x.shape[a] for a in whole]))
            nn_ = st["n"].reshape(x.shape[0], c)
            var = st["m2"].reshape(x.shape[0], c) / np.where(nn_ > 0, nn_, 1.0)
            mean = st["mean"].reshape(x.shape[0], c)
        else:
            mean = var = None
            s = 0
        running_update(fn, mean, var, s, momentum, num_batches_tracked, unbiased, running_mean, running_var)
    rm_b, rv_b = (None, None) if use_input_stats else (rm, rv)
    args = [(x, tuple(range(x.ndim)))]
    for p in (weight, bias, rm_b, rv_b):
        args.append((None, None) if p is None else (aligned(p, (ax,), x.chunks), (ax,)))
    specs = [(rtype, x.chunks)]
    if return_stats:
        specs += [(ctype, sample_stat_chunks(x, ax, x.chunks[ax]))] * 2
    block = functools.partial(_instance_block, compute, ax=ax, use_input_stats=use_input_stats, eps=eps, ctype=ctype,
                              rtype=rtype, return_stats=return_stats, nd=x.ndim)
    y, *res = finish_outs(blockwise(block, x, args, specs), out)
    if not return_stats:
        return y
    return y, unplace(res[0], x.shape[0], c), unplace(res[1], x.shape[0], c)
