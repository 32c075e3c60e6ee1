"""Instance normalization (Ulyanov et al. 2016), forward and backward.

Semantics follow ``torch.nn.functional.instance_norm``: statistics per sample and channel
over the spatial positions (GroupNorm with one channel per group); with running statistics
given, ``use_input_stats=True`` also updates them in place with the batch average of the
per-instance mean and unbiased variance, and ``use_input_stats=False`` normalizes with them.
Canonical view: ``(N, O, C, I)`` as in :mod:`.group_norm` (channels-first rows
``(N·C, spatial)``, channels-last ``(N, spatial, C)`` without transposing).
"""
from .. import _dispatch, _validate
from . import _plain
from . import group_norm as _group_norm
from ._common import Output, canonical, stat_result
from .batch_norm import F64, factor, increment, running_norm_args, update_running
from .group_norm import group_view, grouped_backward, grouped_forward

_OP = "instance_norm"


def instance_norm(x, running_mean=None, running_var=None, weight=None, bias=None, use_input_stats=True,
                  momentum=0.1, eps=1e-5, *, channel_axis=1, out=None, return_stats=False,
                  num_batches_tracked=None, unbiased_running_var=True):
    r"""Instance normalization: statistics per sample and channel over the spatial positions.

    .. math:: y_{n,c,\dots} = \frac{x_{n,c,\dots} - \mu_{n,c}}{\sqrt{\sigma^2_{n,c} + \epsilon}}
              \cdot w_c + b_c

    With ``use_input_stats=True`` and running statistics given, they are updated in place as
    ``torch.nn.functional.instance_norm`` does: with ``m = momentum`` and S spatial positions,

    .. math:: \hat\mu_c \leftarrow (1-m)\,\hat\mu_c + m\,\tfrac1N\textstyle\sum_n \mu_{n,c},\qquad
              \hat\sigma^2_c \leftarrow (1-m)\,\hat\sigma^2_c
              + m\,\tfrac1N\textstyle\sum_n \tfrac{S}{S-1}\sigma^2_{n,c}

    ``use_input_stats=False`` normalizes every sample with the running statistics.

    Parameters
    ----------
    x : array_like
        Input ``(N, C, *spatial)``, or channels-last ``(N, *spatial, C)`` with
        ``channel_axis=-1``; NumPy, GPU or Dask array.
    running_mean, running_var : arrays of shape ``(C,)``, optional
        Running statistics (both or neither); updated in place (in the caller's arrays and
        dtype) when ``use_input_stats=True``, required when it is False.
    weight, bias : arrays of shape ``(C,)``, optional
        Per-channel affine parameters.
    use_input_stats : bool
        Normalize with each instance's statistics (True) or with the running ones.
    momentum : float or None
        Weight of the new statistic in the running update (PyTorch convention); ``None`` is
        the cumulative moving average with factor ``1 / (num_batches_tracked + 1)``, as in
        :func:`batch_norm`.
    eps : float
        Added to the variance, >= 0.
    channel_axis : int
        Axis of the channels: 1 (channels-first, default) or -1 (channels-last).
    out : array, optional
        Receives the result (may be ``x``).
    return_stats : bool
        Also return ``mean`` and ``rstd = 1/sqrt(var + eps)`` of shape ``(N, C)`` (the
        running statistics repeated per sample when ``use_input_stats=False``), for
        :func:`instance_norm_backward`.
    num_batches_tracked, unbiased_running_var
        As in :func:`batch_norm` (``momentum=1 - p, unbiased_running_var=False`` gives
        PaddlePaddle's update with its momentum ``p``).

    Returns
    -------
    y : array like ``x``
    mean, rstd : arrays of shape ``(N, C)``, only with ``return_stats=True``

    Notes
    -----
    With ``use_input_stats=True`` one spatial position per instance is a ``ValueError``
    (PyTorch's rule); so is ``use_input_stats=False`` without running statistics. A call
    that raises leaves the running statistics untouched.

    Examples
    --------
    >>> import numpy as np, numbanorm
    >>> x = np.array([[[1.0, 3.0], [10.0, 30.0]]])      # (N=1, C=2, L=2)
    >>> numbanorm.instance_norm(x, eps=0.0)
    array([[[-1.,  1.],
            [-1.,  1.]]])
    """
    if (running_mean is None and running_var is None and use_input_stats is True and return_stats is False
            and num_batches_tracked is None and (unbiased_running_var is True or unbiased_running_var is False)
            and _plain.real_or_none(momentum)):
        # no running statistics: GroupNorm with one channel per group, through its fast path
        # (the general path runs the same kernels on the same view; the checks cost ~2x a
        # (32, 8, 16) call's kernel)
        ax = _plain.channels(x, channel_axis, eps, out, weight, bias)
        if ax is not None and x.size > x.shape[0] * x.shape[ax]:  # > 1 spatial value (else: the error)
            return _group_norm._plain_forward(x, ax, x.shape[ax], weight, bias, eps, out)
    fn = _OP
    dev = _dispatch.device_of(fn, x=x, running_mean=running_mean, running_var=running_var,
                              weight=weight, bias=bias, out=out)
    xa = _validate.array(fn, "x", dev, x)
    ctype, rtype = _validate.float_dtypes(fn, "x", xa.dtype)
    ax, use_input_stats, mom, eps, return_stats, unbiased, _, rm, rv, w, b, count, nbt_arr, out_a = running_norm_args(
        fn, dev, xa, group_view, "use_input_stats", use_input_stats,
        "spatial element per instance when use_input_stats=True", channel_axis, momentum, eps, return_stats,
        unbiased_running_var, running_mean, running_var, weight, bias, num_batches_tracked, out, ctype, rtype)
    if dev.deferred:  # the running statistics' update: once, by the builder (with the batch statistics)
        return dev.build("instance_norm", _compute, xa, ax, use_input_stats, w, b, rm, rv, eps, ctype, rtype,
                         return_stats, out=out, running=(running_mean, running_var, momentum, num_batches_tracked,
                                                         unbiased))
    update = (mom, count, nbt_arr, unbiased, running_mean, running_var) if use_input_stats and rm is not None else None
    return _compute(dev, xa, ax, use_input_stats, w, b, rm, rv, eps, ctype, rtype, return_stats, out=out,
                    out_a=out_a, update=update)


def _compute(dev, xa, ax, use_input_stats, w, b, rm, rv, eps, ctype, rtype, return_stats, *, out=None, out_a=None,
             update=None):
    """The kernels of :func:`instance_norm` for validated arguments, nothing checked again.

    ``w``/``b``: contiguous ``(C,)`` ``ctype`` arrays or None; ``rm``/``rv``: the running
    statistics as ``dev``'s arrays (used when not ``use_input_stats``); ``update``:
    ``(momentum, count, num_batches_tracked array, unbiased, running_mean, running_var)``
    checked, to update the running statistics in place with the batch statistics, or None.
    Also the Dask builder's per-block task (which updates the running statistics itself).
    """
    fn = _OP
    nb, o, c, i = group_view(xa.shape, ax)
    s = o * i
    kern = dev.kernels(_OP)
    if use_input_stats:
        y, mean, rstd, var, _ = grouped_forward(fn, dev, kern, xa, ax, c, w, b, eps, out, out_a, ctype, rtype)
        if update is not None:
            mom, count, nbt_arr, unbiased, running_mean, running_var = update
            if nb and c and s:
                update_running(dev, kern, mean, var, s, factor(mom, count, nbt_arr), unbiased, (rm, rv),
                               (running_mean, running_var))
            increment(nbt_arr)
    else:
        view = (nb, o, c, i)
        res = Output(dev, out, out_a, xa.shape, view, ctype, rtype, inputs=(xa, w, b, rm, rv), inplace=True)
        mean = dev.empty((nb, c), F64)
        rstd = dev.empty((nb, c), F64)
        if nb and c:
            kern.running_stats(dev.contiguous(rm, F64), dev.contiguous(rv, F64), eps, mean, rstd)
            if s:
                wk = dev.xp.ones(c, ctype) if w is None else w
                bk = dev.xp.zeros(c, ctype) if b is None else b
                kern.normalize(canonical(dev, xa, view, ctype), mean, rstd, wk, bk, res.buf)
        y = res.result()
    if not return_stats:
        return y
    return y, stat_result(dev, mean, (nb, c), ctype), stat_result(dev, rstd, (nb, c), ctype)


def instance_norm_backward(grad_out, x, weight=None, *, eps=1e-5, mean=None, rstd=None, channel_axis=1,
                           out=None):
    r"""Gradients of :func:`instance_norm` (``use_input_stats=True``) w.r.t. ``x``, ``weight``, ``bias``.

    Per (sample, channel) over its S spatial values, with :math:`\hat x = (x - \mu)\,r`:

    .. math:: dx = w_c\,r\left(dy - \overline{dy} - \hat x\,\overline{dy\,\hat x}\right),\quad
              dw_c = \sum_{n,s} dy\,\hat x,\quad db_c = \sum_{n,s} dy

    Parameters
    ----------
    grad_out : array, shape of ``x``
        Gradient of the loss with respect to the output.
    x, weight, eps, channel_axis
        As given to :func:`instance_norm`.
    mean, rstd : arrays of shape ``(N, C)``, optional
        Saved statistics from ``instance_norm(..., return_stats=True)``; recomputed when
        omitted (give both or neither).
    out : array, optional
        Receives ``grad_x`` (shape of ``x``) and is returned in its place (may be
        ``grad_out``); a numbanorm extension of the API so training loops can reuse the
        gradient buffer.

    Returns
    -------
    grad_x : array like ``x``
    grad_weight : array of shape ``(C,)``, or None when ``weight`` is None
    grad_bias : array of shape ``(C,)``

    Examples
    --------
    >>> import numpy as np, numbanorm
    >>> x = np.array([[[1.0, 3.0], [10.0, 30.0]]])
    >>> gx, gw, gb = numbanorm.instance_norm_backward(np.ones_like(x), x)
    >>> bool(np.abs(gx).max() < 1e-12), gb
    (True, array([2., 2.]))
    """
    fn = _OP + "_backward"
    dev = _dispatch.device_of(fn, x=x, grad_out=grad_out, weight=weight, mean=mean, rstd=rstd, out=out)
    return grouped_backward(fn, dev, grad_out, x, None, weight, eps, mean, rstd,
                            channel_axis, out)
