"""Dask :func:`numbanorm.instance_norm` and its backward: the spatial dims in one chunk,
blockwise over N and C with the in-memory function. With running statistics and
``use_input_stats=True`` the per-instance statistics are computed now (tree reduction) and
the running statistics updated in place; ``y`` stays lazy."""
import functools

import numpy as np

from .. import _validate
from ._graph import aligned, blockwise, check_out, dtypes, finish_grad, finish_outs, probe_param, probe_shape, rechunk
from ._stats import reduce_moments
from .batch_norm import host_running, running_update
from .group_norm import grouped_backward, place, sample_stat_chunks, unplace


def _instance_block(eager, xb, wb, bb, rm, rv, use_input_stats, eps, channel_axis, return_stats, nd, ax):
    r = eager(xb, rm, rv, wb, bb, use_input_stats=use_input_stats, eps=eps,
              channel_axis=channel_axis, return_stats=return_stats)
    if not return_stats:
        return (r,)
    y, m, s = r
    return y, place(m, nd, ax), place(s, nd, ax)


def instance_norm(eager, x, running_mean=None, running_var=None, weight=None, bias=None, use_input_stats=True,
                  momentum=0.1, eps=1e-5, *, channel_axis=1, out=None, return_stats=False, num_batches_tracked=None,
                  unbiased_running_var=True):
    """Dask :func:`numbanorm.instance_norm`: spatial dims in one chunk, blockwise over N and C.

    With running statistics and ``use_input_stats=True`` the per-instance statistics are
    computed now and the running statistics updated in place; ``y`` stays lazy.
    """
    fn = "instance_norm"
    ctype, rtype = dtypes(fn, x)
    ax = _validate.channel_axis(fn, channel_axis, x.ndim)
    whole = tuple(a for a in range(1, x.ndim) if a != ax)
    probe = np.zeros(probe_shape(x.shape, whole + (ax,)), x.dtype)
    prm = None if running_mean is None else np.array(probe_param(running_mean), copy=True)
    prv = None if running_var is None else np.array(probe_param(running_var), copy=True)
    eager(probe, prm, prv, probe_param(weight), probe_param(bias), use_input_stats, momentum, eps,
          channel_axis=channel_axis, return_stats=return_stats,
          num_batches_tracked=None if hasattr(num_batches_tracked, "shape") else num_batches_tracked,
          unbiased_running_var=unbiased_running_var)
    use_input_stats = bool(use_input_stats)
    host_running(fn, running_mean, running_var, use_input_stats)
    check_out(fn, out, x.shape, rtype)
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
        running_update("instance_norm", mean, var, s, momentum, num_batches_tracked, bool(unbiased_running_var),
                       running_mean, running_var)
    rm_b, rv_b = (None, None) if use_input_stats else (running_mean, running_var)
    args = [(x, tuple(range(x.ndim)))]
    for p in (weight, bias, rm_b, rv_b):
        args.append((None, None) if p is None else (aligned(p, (ax,), x.chunks), (ax,)))
    specs = [(rtype, x.chunks)]
    if return_stats:
        specs += [(ctype, sample_stat_chunks(x, ax, x.chunks[ax]))] * 2
    res = blockwise(functools.partial(_instance_block, eager, use_input_stats=use_input_stats, eps=eps,
                                      channel_axis=channel_axis, return_stats=return_stats, nd=x.ndim, ax=ax),
                    x, args, specs)
    y, *res[1:] = finish_outs(res, out)
    if not return_stats:
        return y
    return y, unplace(res[1], x.shape[0], c), unplace(res[2], x.shape[0], c)


def instance_norm_backward(eager, grad_out, x, weight=None, *, eps=1e-5, mean=None, rstd=None, channel_axis=1,
                           out=None):
    """Dask :func:`numbanorm.instance_norm_backward`: grad_x blockwise, parameter grads tree-summed."""
    fn = "instance_norm_backward"
    res = grouped_backward(eager, fn, "instance_norm", grad_out, x, None, weight, eps, mean, rstd, channel_axis)
    return finish_grad(fn, res, out, x)
