"""Dask :func:`numbanorm.batch_norm` and its backward.

Training: per-channel moments by a tree reduction of per-block partials (Chan merge), then
a blockwise normalization with the in-memory function in eval mode. With running
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
    aligned, blockwise, check_grad, check_out, dask_array, dtypes, finish_grad, finish_out, finish_outs,
    is_dask, like_chunks, ones_chunks, probe_param, probe_shape,
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


def _bn_apply_block(eager, xb, mb, vb, wb, bb, eps, channel_axis):
    """Normalize a block with fixed per-channel mean/variance (the in-memory eval path)."""
    return (eager(xb, mb, vb, wb, bb, training=False, eps=eps, channel_axis=channel_axis),)


def batch_norm(eager, x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5, *,
               channel_axis=1, out=None, return_stats=False, num_batches_tracked=None, unbiased_running_var=True):
    """Dask :func:`numbanorm.batch_norm`.

    Training: per-channel moments by a tree reduction of per-block partials (Chan merge),
    then a blockwise normalization. With running statistics the batch statistics are
    computed now and the running statistics (NumPy arrays) updated in place, exactly as
    the in-memory call; otherwise everything is lazy. Eval: blockwise with the running
    statistics (NumPy or Dask).
    """
    fn = "batch_norm"
    da = dask_array()
    ctype, rtype = dtypes(fn, x)
    ax = _validate.channel_axis(fn, channel_axis, x.ndim)
    c = x.shape[ax]
    probe = np.zeros(probe_shape(x.shape, (ax,)), x.dtype)
    prm = None if running_mean is None else np.array(probe_param(running_mean), copy=True)
    prv = None if running_var is None else np.array(probe_param(running_var), copy=True)
    eager(probe, prm, prv, probe_param(weight), probe_param(bias), training, momentum, eps,
          channel_axis=channel_axis, return_stats=return_stats,
          num_batches_tracked=None if hasattr(num_batches_tracked, "shape") else num_batches_tracked,
          unbiased_running_var=unbiased_running_var)
    training = bool(training)
    n = int(np.prod([s for a, s in enumerate(x.shape) if a != ax]))
    if training and n == 1:
        raise ValueError(
            f"{fn}(): argument 'x' must have more than 1 value per channel when training, got shape {tuple(x.shape)}"
        )
    host_running(fn, running_mean, running_var, training)
    check_out(fn, out, x.shape, rtype)
    red = tuple(a for a in range(x.ndim) if a != ax)
    if training:
        if n and c:
            st = reduce_moments(x, red).reshape(c)
            mean = st["mean"]
            var = st["m2"] / st["n"]
            if running_mean is not None:
                mean, var = da.compute(mean, var)
                running_update("batch_norm", mean.reshape(1, c), var.reshape(1, c), n, momentum,
                               num_batches_tracked, bool(unbiased_running_var), running_mean, running_var)
        else:
            mean = var = np.full(c, np.nan)
            if running_mean is not None:
                running_update("batch_norm", None, None, 0, momentum, num_batches_tracked,
                               bool(unbiased_running_var), running_mean, running_var)
    else:
        mean, var = running_mean, running_var
    args = [(x, tuple(range(x.ndim)))]
    for p in (mean, var, weight, bias):
        args.append((None, None) if p is None else (aligned(p, (ax,), x.chunks), (ax,)))
    y, = blockwise(functools.partial(_bn_apply_block, eager, eps=eps, channel_axis=channel_axis), x, args,
                   [(rtype, x.chunks)])
    if not return_stats:
        return finish_out(y, out)
    mean_a = mean if is_dask(mean) else da.from_array(np.asarray(mean, np.float64))
    var_a = var if is_dask(var) else da.from_array(np.asarray(var, np.float64))
    rstd = 1.0 / da.sqrt(var_a.astype(np.float64) + eps)
    y, mean_a, rstd = finish_outs([y, mean_a.astype(ctype), rstd.astype(ctype)], out)
    return y, mean_a, rstd


def _bn_sums_block(eager, gb, xb, mb, rb, channel_axis, nd, ax, c):
    """Per-block Σdy and Σdy·x̂ per channel (eval-mode backward with the global statistics)."""
    cb = xb.shape[ax]
    _, gw, gbias = eager(gb, xb, np.ones(cb, np.float64 if xb.dtype == np.float64 else np.float32),
                         training=False, mean=mb, rstd=rb, channel_axis=channel_axis)
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


def batch_norm_backward(eager, grad_out, x, weight=None, *, training=True, running_mean=None, running_var=None,
                        eps=1e-5, mean=None, rstd=None, channel_axis=1, out=None):
    """Dask :func:`numbanorm.batch_norm_backward`: per-channel sums by tree reduction, grad_x blockwise."""
    fn = "batch_norm_backward"
    da = dask_array()
    ctype, rtype = dtypes(fn, x)
    check_grad(fn, grad_out, x)
    ax = _validate.channel_axis(fn, channel_axis, x.ndim)
    c = x.shape[ax]
    probe = probe_shape(x.shape, (ax,))
    eager(np.zeros(probe, x.dtype), np.zeros(probe, x.dtype), probe_param(weight),
          training=training, running_mean=probe_param(running_mean), running_var=probe_param(running_var),
          eps=eps, mean=probe_param(mean), rstd=probe_param(rstd), channel_axis=channel_axis)
    training = bool(training)
    red = tuple(a for a in range(x.ndim) if a != ax)
    n = int(np.prod([s for a, s in enumerate(x.shape) if a != ax]))
    g = like_chunks(grad_out, x.chunks)
    if mean is None:
        if training:
            st = reduce_moments(x, red).reshape(c)
            mean = st["mean"]
            rstd = 1.0 / da.sqrt(st["m2"] / st["n"] + eps)
        else:
            mean = running_mean
            rv = running_var if is_dask(running_var) else np.asarray(running_var, np.float64)
            rstd = 1.0 / (da.sqrt(rv + eps) if is_dask(rv) else np.sqrt(rv + eps))
    m_a = aligned(mean, (ax,), x.chunks)
    r_a = aligned(rstd, (ax,), x.chunks)
    pchunks = ones_chunks(x.chunks, red)
    sdy, sdyx = blockwise(functools.partial(_bn_sums_block, eager, channel_axis=channel_axis, nd=x.ndim, ax=ax, c=c), x,
                          [(g, tuple(range(x.ndim))), (x, tuple(range(x.ndim))), (m_a, (ax,)), (r_a, (ax,))],
                          [(np.float64, pchunks), (np.float64, pchunks)])
    sdy = sdy.sum(axis=red, dtype=np.float64).reshape(c)
    sdyx = sdyx.sum(axis=red, dtype=np.float64).reshape(c)
    if training:
        args = [(g, tuple(range(x.ndim))), (x, tuple(range(x.ndim))), (m_a, (ax,)), (r_a, (ax,)),
                (None, None) if weight is None else (aligned(weight, (ax,), x.chunks), (ax,)),
                (sdy.rechunk((x.chunks[ax],)), (ax,)), (sdyx.rechunk((x.chunks[ax],)), (ax,))]
        gx, = blockwise(functools.partial(_bn_grad_block, n=n, ax=ax, rtype=np.dtype(rtype)), x, args,
                        [(rtype, x.chunks)])
    else:
        args = [(g, tuple(range(x.ndim))), (x, tuple(range(x.ndim))),
                (None, None) if weight is None else (aligned(weight, (ax,), x.chunks), (ax,)),
                (m_a, (ax,)), (r_a, (ax,))]
        gx, = blockwise(functools.partial(_bn_eval_grad_block, eager, channel_axis=channel_axis), x, args,
                        [(rtype, x.chunks)])
    gw = None if weight is None else sdyx.astype(rtype)
    return finish_grad(fn, (gx, gw, sdy.astype(rtype)), out, x)


def _bn_eval_grad_block(eager, gb, xb, wb, mb, rb, channel_axis):
    gx, _, _ = eager(gb, xb, wb, training=False, mean=mb, rstd=rb, channel_axis=channel_axis)
    return (gx,)
