"""Dask :func:`numbanorm.batch_norm` and its backward.

Training: per-channel moments by a tree reduction of per-block partials (Chan merge), then
a blockwise normalization with the op's compute function in eval mode (the kernels of the
block's device; arguments arrive validated, the compute function first). With running
statistics the batch statistics are computed now and the running statistics (NumPy
arrays) updated in place with :mod:`numbanorm._stats_host`'s helpers, exactly as the
in-memory call; otherwise everything is lazy. :func:`running_update` and
:func:`host_running` are shared with :mod:`.instance_norm`.
"""
import functools

import numpy as np

from .. import _dispatch, _validate
from .._stats_host import batches_tracked, increment, momentum_arg, update_running
from ._graph import (
    aligned, block_device, blockwise, dask_array, dtypes, finish_grad, finish_out, finish_outs, is_dask, like_chunks,
    on_device, ones_chunks,
)
from ._stats import reduce_moments


def running_update(op, mean, var, count, momentum, num_batches_tracked, unbiased, running_mean, running_var):
    """Update the caller's (NumPy) running statistics with the in-memory op's own helpers."""
    fn = op
    mom = momentum_arg(fn, momentum)
    nbt, nbt_arr = batches_tracked(fn, num_batches_tracked)
    if count:
        factor = mom if mom is not None else 1.0 / (nbt + 1)
        cpu = _dispatch.CPU
        rm = np.asarray(running_mean)
        rv = np.asarray(running_var)
        update_running(cpu, cpu.kernels(op), np.ascontiguousarray(mean, np.float64),
                       np.ascontiguousarray(var, np.float64), count, factor, unbiased, (rm, rv),
                       (running_mean, running_var))
    increment(nbt_arr)


def host_running(fn, running_mean, running_var, update):
    if update and running_mean is not None:
        for name, a in (("running_mean", running_mean), ("running_var", running_var)):
            if not isinstance(a, np.ndarray):
                raise TypeError(
                    f"{fn}(): argument '{name}' must be a NumPy array with Dask data in training (it is "
                    f"updated in place), got {_validate.describe(a)}"
                )


def _bn_apply_block(compute, xb, mb, vb, wb, bb, ax, eps, ctype, rtype):
    """Normalize a block with fixed per-channel mean/variance (the compute function in eval mode)."""
    dev = block_device(xb)
    return (compute(dev, dev.asarray(xb), ax, False, on_device(dev, wb, ctype), on_device(dev, bb, ctype),
                    on_device(dev, mb), on_device(dev, vb), eps, ctype, rtype, False),)


def batch_norm(compute, x, ax, training, weight, bias, rm, rv, eps, ctype, rtype, return_stats, *, out=None, running):
    """Dask :func:`numbanorm.batch_norm` (arguments validated; ``running``: the caller's
    ``(running_mean, running_var, momentum, num_batches_tracked, unbiased)``).

    Training: per-channel moments by a tree reduction of per-block partials (Chan merge),
    then a blockwise normalization. With running statistics the batch statistics are
    computed now and the running statistics (NumPy arrays) updated in place, exactly as
    the in-memory call; otherwise everything is lazy. Eval: blockwise with the running
    statistics (NumPy or Dask).
    """
    fn = "batch_norm"
    da = dask_array()
    dtypes(fn, x)  # masked chunks are refused
    running_mean, running_var, momentum, num_batches_tracked, unbiased = running
    c = x.shape[ax]
    host_running(fn, running_mean, running_var, training)
    n = int(np.prod([s for a, s in enumerate(x.shape) if a != ax]))
    red = tuple(a for a in range(x.ndim) if a != ax)
    if training:
        if n and c:
            st = reduce_moments(x, red).reshape(c)
            mean = st["mean"]
            var = st["m2"] / st["n"]
            if running_mean is not None:
                mean, var = da.compute(mean, var)
                running_update(fn, mean.reshape(1, c), var.reshape(1, c), n, momentum, num_batches_tracked,
                               unbiased, running_mean, running_var)
        else:
            mean = var = np.full(c, np.nan)
            if running_mean is not None:
                running_update(fn, None, None, 0, momentum, num_batches_tracked, unbiased, running_mean,
                               running_var)
    else:
        mean, var = rm, rv
    args = [(x, tuple(range(x.ndim)))]
    for p in (mean, var, weight, bias):
        args.append((None, None) if p is None else (aligned(p, (ax,), x.chunks), (ax,)))
    block = functools.partial(_bn_apply_block, compute, ax=ax, eps=eps, ctype=ctype, rtype=rtype)
    y, = blockwise(block, x, args, [(rtype, x.chunks)])
    if not return_stats:
        return finish_out(y, out)
    mean_a = mean if is_dask(mean) else da.from_array(np.asarray(mean, np.float64))
    var_a = var if is_dask(var) else da.from_array(np.asarray(var, np.float64))
    rstd = 1.0 / da.sqrt(var_a.astype(np.float64) + eps)
    y, mean_a, rstd = finish_outs([y, mean_a.astype(ctype), rstd.astype(ctype)], out)
    return y, mean_a, rstd


def _bn_sums_block(compute, gb, xb, mb, rb, ax, nd, ctype, rtype):
    """Per-block Σdy and Σdy·x̂ per channel (eval-mode backward with the global statistics)."""
    dev = block_device(xb)
    cb = xb.shape[ax]
    stat = (1, cb)
    _, gw, gbias = compute(dev, dev.asarray(gb), dev.asarray(xb), ax, False, dev.asarray(np.ones(cb, ctype)), None,
                           None, 0.0, on_device(dev, mb, np.float64, stat), on_device(dev, rb, np.float64, stat),
                           ctype, rtype)
    keep = tuple(cb if a == ax else 1 for a in range(nd))
    return np.asarray(gbias, np.float64).reshape(keep), np.asarray(gw, np.float64).reshape(keep)


def _bn_grad_block(gb, xb, mb, rb, wb, sdy, sdyx, n, ax, rtype):
    """dx = w·r·(dy − Σdy/n − x̂·Σdy·x̂/n) per channel (NumPy glue on the block)."""
    shape = tuple(-1 if a == ax else 1 for a in range(xb.ndim))
    m = np.asarray(mb, np.float64).reshape(shape)
    r = np.asarray(rb, np.float64).reshape(shape)
    w = 1.0 if wb is None else np.asarray(wb, np.float64).reshape(shape)
    a = np.asarray(sdy, np.float64).reshape(shape) / n
    b = np.asarray(sdyx, np.float64).reshape(shape) / n
    dy = np.asarray(gb, np.float64)
    xhat = (np.asarray(xb, np.float64) - m) * r
    return ((w * r * (dy - a - xhat * b)).astype(rtype),)


def batch_norm_backward(compute, grad_out, x, ax, training, weight, rm, rv, eps, mean, rstd, ctype, rtype, *,
                        out=None):
    """Dask :func:`numbanorm.batch_norm_backward` (arguments validated; saved ``mean``/``rstd``
    float64 ``(1, C)``): per-channel sums by tree reduction, grad_x blockwise."""
    fn = "batch_norm_backward"
    da = dask_array()
    dtypes(fn, x)
    c = x.shape[ax]
    red = tuple(a for a in range(x.ndim) if a != ax)
    n = int(np.prod([s for a, s in enumerate(x.shape) if a != ax]))
    g = like_chunks(grad_out, x.chunks)
    if mean is None:
        if training:
            st = reduce_moments(x, red).reshape(c)
            mean = st["mean"]
            rstd = 1.0 / da.sqrt(st["m2"] / st["n"] + eps)
        else:
            mean = rm
            var = rv if is_dask(rv) else np.asarray(rv, np.float64)
            rstd = 1.0 / (da.sqrt(var + eps) if is_dask(var) else np.sqrt(var + eps))
    else:
        mean, rstd = mean.reshape(c), rstd.reshape(c)
    m_a = aligned(mean, (ax,), x.chunks)
    r_a = aligned(rstd, (ax,), x.chunks)
    pchunks = ones_chunks(x.chunks, red)
    sums = functools.partial(_bn_sums_block, compute, ax=ax, nd=x.ndim, ctype=ctype, rtype=rtype)
    sdy, sdyx = blockwise(sums, x, [(g, tuple(range(x.ndim))), (x, tuple(range(x.ndim))), (m_a, (ax,)), (r_a, (ax,))],
                          [(np.float64, pchunks), (np.float64, pchunks)])
    sdy = sdy.sum(axis=red, dtype=np.float64).reshape(c)
    sdyx = sdyx.sum(axis=red, dtype=np.float64).reshape(c)
    w_a = (None, None) if weight is None else (aligned(weight, (ax,), x.chunks), (ax,))
    if training:
        args = [(g, tuple(range(x.ndim))), (x, tuple(range(x.ndim))), (m_a, (ax,)), (r_a, (ax,)), w_a,
                (sdy.rechunk((x.chunks[ax],)), (ax,)), (sdyx.rechunk((x.chunks[ax],)), (ax,))]
        gx, = blockwise(functools.partial(_bn_grad_block, n=n, ax=ax, rtype=np.dtype(rtype)), x, args,
                        [(rtype, x.chunks)])
    else:
        args = [(g, tuple(range(x.ndim))), (x, tuple(range(x.ndim))), w_a, (m_a, (ax,)), (r_a, (ax,))]
        block = functools.partial(_bn_eval_grad_block, compute, ax=ax, ctype=ctype, rtype=rtype)
        gx, = blockwise(block, x, args, [(rtype, x.chunks)])
    gw = None if weight is None else sdyx.astype(rtype)
    return finish_grad(fn, (gx, gw, sdy.astype(rtype)), out, x)


def _bn_eval_grad_block(compute, gb, xb, wb, mb, rb, ax, ctype, rtype):
    dev = block_device(xb)
    stat = (1, xb.shape[ax])
    gx, _, _ = compute(dev, dev.asarray(gb), dev.asarray(xb), ax, False, on_device(dev, wb, ctype), None, None, 0.0,
                       on_device(dev, mb, np.float64, stat), on_device(dev, rb, np.float64, stat), ctype, rtype)
    return (gx,)
