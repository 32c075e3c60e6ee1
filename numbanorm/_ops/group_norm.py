"""Group normalization (Wu & He 2018), forward and backward.

Semantics follow ``torch.nn.functional.group_norm``: the C channels are split into
``num_groups`` consecutive groups; statistics (mean, biased variance) per sample and group
over the group's channels and all spatial positions; per-channel affine parameters.
Canonical view: ``(N, O, C, I)`` with O = prod(dims between batch and channel axis), I =
prod(dims after the channel axis): channels-first gives rows ``(N·G, C/G·spatial)``
(O = 1), channels-last gives ``(N, spatial, C)`` (I = 1) whose per-(n, group) statistics the
kernels gather directly from the strided pattern — never a transposed copy.

The backward here is shared with :mod:`.instance_norm` (GroupNorm with one channel per group).
"""
import numpy as np

from .. import _dispatch, _pool, _validate
from . import _plain
from ._common import Output, canonical, prod, stat_result
from .batch_norm import F64, check_grad, saved_stats

_OP = "group_norm"


def group_view(shape, ax):
    """(N, O, C, I) view of an input with channels on axis ``ax``."""
    return shape[0], prod(shape[1:ax]), shape[ax], prod(shape[ax + 1:])


def num_groups_arg(fn, value, c):
    g = _validate.positive_int(fn, value, "num_groups")
    if c % g:
        raise ValueError(
            f"{fn}(): argument 'num_groups' must divide the number of channels {c}, got {g}"
        )
    return g


def grouped_forward(fn, dev, kern, xa, ax, groups, w, b, eps, out, out_a, ctype, rtype):
    """Normalize per (n, group) on the (N, O, C, I) view. Returns (y, mean, rstd, var, view)."""
    view = group_view(xa.shape, ax)
    nb, o, c, i = view
    res = Output(dev, out, out_a, xa.shape, view, ctype, rtype, inputs=(xa, w, b), inplace=True)
    mean = dev.empty((nb, groups), F64)
    rstd = dev.empty((nb, groups), F64)
    var = dev.empty((nb, groups), F64)
    if nb and c:
        if o * i:
            w = dev.xp.ones(c, ctype) if w is None else w
            b = dev.xp.zeros(c, ctype) if b is None else b
            kern.forward(canonical(dev, xa, view, ctype), groups, eps, w, b, res.buf, mean, rstd, var)
        else:
            for a in (mean, rstd, var):
                kern.fill(a, float("nan"))
    return res.result(), mean, rstd, var, view


def grouped_backward(fn, dev, grad_out, x, groups, weight, eps, mean, rstd, channel_axis, out):
    """Shared body of group_norm_backward / instance_norm_backward (``groups`` None = C)."""
    xa = _validate.array(fn, "x", dev, x)
    ga = _validate.array(fn, "grad_out", dev, grad_out)
    ctype, rtype = _validate.float_dtypes(fn, "x", xa.dtype)
    check_grad(fn, ga, xa)
    ax = _validate.channel_axis(fn, channel_axis, xa.ndim)
    view = group_view(xa.shape, ax)
    nb, o, c, i = view
    per_channel = groups is None
    groups = c if per_channel else num_groups_arg(fn, groups, c)
    eps = _validate.eps(fn, eps)
    w = _validate.param(fn, "weight", dev, weight, (c,), ctype)
    mean, rstd = saved_stats(fn, dev, mean, rstd, (nb, groups), (nb, groups))
    out_a = _validate.out(fn, dev, out, xa.shape, rtype)
    op = fn[: -len("_backward")]
    if dev.deferred:
        return dev.build("grouped_backward", _compute_backward, fn, op, ga, xa, ax, None if per_channel else groups,
                         w, eps, mean, rstd, ctype, rtype, out=out)
    return _compute_backward(dev, op, ga, xa, ax, groups, w, eps, mean, rstd, ctype, rtype, out=out, out_a=out_a)


def _compute_backward(dev, op, ga, xa, ax, groups, w, eps, mean, rstd, ctype, rtype, *, out=None, out_a=None):
    """The kernels of :func:`grouped_backward` (``op``: "group_norm" or "instance_norm") for
    validated arguments: ``groups`` the group count, None for one per channel (instance
    norm: a Dask block's own channels); ``mean``/``rstd`` float64 ``(N, groups)`` arrays or
    None. Also the Dask builder's per-block task."""
    view = group_view(xa.shape, ax)
    nb, o, c, i = view
    groups = c if groups is None else groups
    kern = dev.kernels(op)
    res = Output(dev, out, out_a, xa.shape, view, ctype, rtype, inputs=(xa, ga, w, mean, rstd))
    grad_x = res.buf
    grad_w = dev.zeros(c, ctype)
    grad_b = dev.zeros(c, ctype)
    if nb and c and o * i:
        x4 = canonical(dev, xa, view, ctype)
        if mean is None:
            mean = dev.empty((nb, groups), F64)
            rstd = dev.empty((nb, groups), F64)
            kern.stats(x4, groups, eps, mean, rstd, dev.empty((nb, groups), F64))
        wk = dev.xp.ones(c, ctype) if w is None else w
        kern.backward(canonical(dev, ga, view, ctype), x4, wk, mean, rstd, True, grad_x, grad_w, grad_b)
    grad_w = None if w is None else stat_result(dev, grad_w, (c,), rtype)
    return res.result(), grad_w, stat_result(dev, grad_b, (c,), rtype)


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5, *, channel_axis=1, out=None,
               return_stats=False):
    r"""Group normalization: statistics per sample over groups of channels and all positions.

    .. math:: y_{n,c,\dots} = \frac{x_{n,c,\dots} - \mu_{n,g}}{\sqrt{\sigma^2_{n,g} + \epsilon}}
              \cdot w_c + b_c,\qquad g = \lfloor c / (C/G) \rfloor

    with mean and biased variance over the C/G channels of group g and every spatial position.
    One group is LayerNorm over (C, spatial) (with per-channel affine parameters); C groups
    is InstanceNorm.

    Parameters
    ----------
    x : array_like
        Input ``(N, C, *spatial)``, or channels-last ``(N, *spatial, C)`` with
        ``channel_axis=-1``; NumPy, GPU or Dask array.
    num_groups : int
        Number of groups G >= 1; must divide C.
    weight, bias : arrays of shape ``(C,)``, optional
        Per-channel affine parameters.
    eps : float
        Added to the variance, >= 0.
    channel_axis : int
        Axis of the channels: 1 (channels-first, default) or -1 (channels-last).
    out : array, optional
        Receives the result (may be ``x``).
    return_stats : bool
        Also return ``mean`` and ``rstd = 1/sqrt(var + eps)`` of shape ``(N, G)`` (as
        ``torch.native_group_norm``), for :func:`group_norm_backward`.

    Returns
    -------
    y : array like ``x``
    mean, rstd : arrays of shape ``(N, num_groups)``, only with ``return_stats=True``

    Examples
    --------
    >>> import numpy as np, numbanorm
    >>> x = np.array([[[1.0, 3.0], [5.0, 7.0]]])       # (N=1, C=2, L=2)
    >>> numbanorm.group_norm(x, 1, eps=0.0)
    array([[[-1.34164079, -0.4472136 ],
            [ 0.4472136 ,  1.34164079]]])
    """
    if return_stats is False and type(num_groups) is int:
        ax = _plain.channels(x, channel_axis, eps, out, weight, bias)
        if ax is not None and num_groups >= 1 and x.shape[ax] % num_groups == 0:
            return _plain_forward(x, ax, num_groups, weight, bias, eps, out)
    fn = _OP
    dev = _dispatch.device_of(fn, x=x, weight=weight, bias=bias, out=out)
    xa = _validate.array(fn, "x", dev, x)
    ctype, rtype = _validate.float_dtypes(fn, "x", xa.dtype)
    ax = _validate.channel_axis(fn, channel_axis, xa.ndim)
    c = xa.shape[ax]
    groups = num_groups_arg(fn, num_groups, c)
    eps = _validate.eps(fn, eps)
    return_stats = _validate.flag(fn, return_stats, "return_stats")
    w = _validate.param(fn, "weight", dev, weight, (c,), ctype)
    b = _validate.param(fn, "bias", dev, bias, (c,), ctype)
    out_a = _validate.out(fn, dev, out, xa.shape, rtype)
    if dev.deferred:
        return dev.build("group_norm", _compute, xa, ax, groups, w, b, eps, ctype, rtype, return_stats, out=out)
    return _compute(dev, xa, ax, groups, w, b, eps, ctype, rtype, return_stats, out=out, out_a=out_a)


def _compute(dev, xa, ax, groups, w, b, eps, ctype, rtype, return_stats, *, out=None, out_a=None):
    """The kernels of :func:`group_norm` for validated arguments (``ax`` the channel axis,
    ``groups`` the checked group count, ``w``/``b`` contiguous ``(C,)`` ``ctype`` arrays or
    None, ``out_a`` the checked ``out=``), nothing checked again; also the Dask builder's
    per-block task."""
    y, mean, rstd, _, view = grouped_forward(_OP, dev, dev.kernels(_OP), xa, ax, groups, w, b, eps,
                                             out, out_a, ctype, rtype)
    if not return_stats:
        return y
    sshape = (view[0], groups)
    return y, stat_result(dev, mean, sshape, ctype), stat_result(dev, rstd, sshape, ctype)


#: per (shape, channel axis, groups) of plain calls: the (N, O, C, I) view and, when the
#: rows path's serial kernel runs it, the (N, C, I) view to call that kernel on directly
#: (I > 1) or the (N, C) view of its I = 1 kernel (else None each)
_PLANS = {}


def _plan(shape, ax, groups):
    view = group_view(shape, ax)
    rows = flat = None
    if _dispatch.CPU.kernels(_OP).small_rows(view, groups):
        if view[3] == 1:
            flat = (view[0], view[2])
        else:
            rows = (view[0], view[2], view[3])
    if len(_PLANS) >= 256:
        _PLANS.clear()
    plan = _PLANS[shape, ax, groups] = (view, rows, flat)
    return plan


def _plain_forward(x, ax, groups, weight, bias, eps, out):
    """:func:`group_norm` for a call the ``_plain`` checks accepted: the general path's
    kernel without its checks (small calls are dominated by them)."""
    view, rows, flat = _PLANS.get((x.shape, ax, groups)) or _plan(x.shape, ax, groups)
    nb, c = view[0], view[2]
    dt = x.dtype
    y = _pool.empty(x.shape, dt) if out is None else out  # recycled, as the general path's
    st = np.empty((3, nb, groups))
    w = np.ones(c, dt) if weight is None else weight
    b = np.zeros(c, dt) if bias is None else bias
    kern = _dispatch.CPU.kernels(_OP)
    if rows is not None:  # what kern.forward runs for it, without its path choice
        kern.rows_forward_serial(x.reshape(rows), groups, eps, w, b, y.reshape(rows), st[0], st[1], st[2],
                                 np.empty((nb, c, 3), dt))
    elif flat is not None:  # (N, C): the rows path's I = 1 kernel
        kern.flat_rows_forward_serial(x.reshape(flat), groups, eps, w, b, y.reshape(flat), st[0], st[1], st[2])
    else:
        kern.forward(x.reshape(view), groups, eps, w, b, y.reshape(view), st[0], st[1], st[2])
    return y


def group_norm_backward(grad_out, x, num_groups, weight=None, *, eps=1e-5, mean=None, rstd=None,
                        channel_axis=1, out=None):
    r"""Gradients of :func:`group_norm` with respect to ``x``, ``weight`` and ``bias``.

    Per (sample, group) of M values, with :math:`\hat x = (x - \mu)\,r` and
    :math:`\hat g = w_c\,dy`:

    .. math:: dx = r\left(\hat g - \overline{\hat g} - \hat x\,\overline{\hat g\,\hat x}\right),\quad
              dw_c = \sum dy\,\hat x,\quad db_c = \sum dy

    with the sums for ``dw``/``db`` over the batch and spatial positions of channel c.

    Parameters
    ----------
    grad_out : array, shape of ``x``
        Gradient of the loss with respect to the output.
    x, num_groups, weight, eps, channel_axis
        As given to :func:`group_norm`.
    mean, rstd : arrays of shape ``(N, num_groups)``, optional
        Saved statistics from ``group_norm(..., return_stats=True)``; recomputed when
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
    >>> x = np.array([[[1.0, 3.0], [5.0, 7.0]]])
    >>> gx, gw, gb = numbanorm.group_norm_backward(np.ones_like(x), x, 1)
    >>> bool(np.abs(gx).max() < 1e-12), gb
    (True, array([2., 2.]))
    """
    fn = _OP + "_backward"
    dev = _dispatch.device_of(fn, x=x, grad_out=grad_out, weight=weight, mean=mean, rstd=rstd, out=out)
    if num_groups is None:
        raise TypeError(f"{fn}(): argument 'num_groups' must be an integer >= 1, got None")
    return grouped_backward(fn, dev, grad_out, x, num_groups, weight, eps, mean, rstd,
                            channel_axis, out)
