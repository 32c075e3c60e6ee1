"""Batch normalization (Ioffe & Szegedy 2015), forward and backward.

Semantics follow ``torch.nn.functional.batch_norm`` (and ``torch.nn.BatchNorm{1,2,3}d`` for
the running statistics). Statistics are per channel over every other axis.
Canonical view: channels ``(1, O, C, I)`` with O = prod(dims before the channel axis),
I = prod(dims after it): NCHW gives O = N, I = H·W; channels-last (``channel_axis=-1``) gives
O = N·H·W, I = 1. Both are plain reshapes, never transposed copies.

The running-statistics helpers (shared with :mod:`.instance_norm` and the Dask builders)
live in :mod:`numbanorm._stats_host`.
"""
import numpy as np

from .. import _config, _dispatch, _interop, _pool, _validate
from .._stats_host import batches_tracked, factor, increment, momentum_arg, update_running  # noqa: F401 - also instance_norm's
from . import _plain
from ._common import Output, canonical, check_disjoint, prod, stat_result

_OP = "batch_norm"
F64 = _validate.F64


def channel_view(shape, ax):
    """(O, C, I): the dims before the channel axis, the channels, the dims after it."""
    return prod(shape[:ax]), shape[ax], prod(shape[ax + 1:])


def check_grad(fn, ga, xa):
    """grad_out: a real array of x's shape."""
    _validate.float_dtypes(fn, "grad_out", ga.dtype)
    if tuple(ga.shape) != tuple(xa.shape):
        raise ValueError(
            f"{fn}(): argument 'grad_out' must have the shape of x {tuple(xa.shape)}, "
            f"got shape {tuple(ga.shape)}"
        )


def running_stats(fn, dev, running_mean, running_var, c, update):
    """Validate running statistics: both or neither, shape (C,), floating dtype.

    With ``update=True`` (training) they must be writeable arrays, because they are updated
    in place. Returns the pair as arrays of the device (the caller's own arrays, not copies)
    or ``(None, None)``.
    """
    if (running_mean is None) != (running_var is None):
        given = "running_mean" if running_var is None else "running_var"
        raise ValueError(
            f"{fn}(): arguments 'running_mean' and 'running_var' must be given together, "
            f"got only '{given}'"
        )
    if running_mean is None:
        return None, None
    arrays = []
    for name, value in (("running_mean", running_mean), ("running_var", running_var)):
        if update and not (hasattr(value, "shape") and hasattr(value, "dtype")):
            raise TypeError(
                f"{fn}(): argument '{name}' must be an array (it is updated in place when "
                f"training), got {_validate.describe(value)}"
            )
        a = _validate.array(fn, name, dev, value)
        if a.dtype.kind != "f":
            raise TypeError(f"{fn}(): argument '{name}' must be a floating array, got dtype {a.dtype}")
        if tuple(a.shape) != (c,):
            raise ValueError(
                f"{fn}(): argument '{name}' must be an array of shape ({c},) (one value per "
                f"channel), got shape {tuple(a.shape)}"
            )
        if update and not _validate._writeable(a):
            raise ValueError(f"{fn}(): argument '{name}' must be a writeable array, got a read-only array")
        arrays.append(a)
    return tuple(arrays)


def saved_stats(fn, dev, mean, rstd, shape, view_shape):
    """Saved mean/rstd for a backward: both or neither, of ``shape``; float64 ``view_shape``."""
    if (mean is None) != (rstd is None):
        raise ValueError(f"{fn}(): arguments 'mean' and 'rstd' must be given together, got only one")
    if mean is None:
        return None, None
    out = []
    for name, value in (("mean", mean), ("rstd", rstd)):
        a = _validate.array(fn, name, dev, value)
        if a.dtype.kind != "f":
            raise TypeError(f"{fn}(): argument '{name}' must be a floating array, got dtype {a.dtype}")
        if tuple(a.shape) != tuple(shape):
            raise ValueError(
                f"{fn}(): argument '{name}' must have shape {tuple(shape)} (as returned with "
                f"return_stats=True), got shape {tuple(a.shape)}"
            )
        out.append(dev.contiguous(a, F64).reshape(view_shape))
    return tuple(out)


def running_norm_args(fn, dev, xa, view_of, mode_name, mode, per_value, channel_axis, momentum, eps, return_stats,
                      unbiased, running_mean, running_var, weight, bias, num_batches_tracked, out, ctype, rtype):
    """The checks of a norm with running statistics (batch_norm, instance_norm), in order.

    ``view_of(shape, ax)``: the op's canonical view, whose last three entries are
    (O, C, I) (statistics over O·I values each); ``mode``: the flag ``mode_name``
    (``training`` / ``use_input_stats``): batch statistics, with the running ones updated,
    or the running ones; ``per_value``: what one statistic needs more than one of, as the
    error names it. Returns ``(ax, mode, momentum, eps, return_stats, unbiased, view,
    running_mean, running_var, weight, bias, count, num_batches_tracked array, out)``
    checked (arrays as ``dev``'s).
    """
    ax = _validate.channel_axis(fn, channel_axis, xa.ndim)
    mode = _validate.flag(fn, mode, mode_name)
    mom = momentum_arg(fn, momentum)
    eps = _validate.eps(fn, eps)
    return_stats = _validate.flag(fn, return_stats, "return_stats")
    unbiased = _validate.flag(fn, unbiased, "unbiased_running_var")
    view = view_of(xa.shape, ax)
    c = view[-2]
    rm, rv = running_stats(fn, dev, running_mean, running_var, c, update=mode)
    if mode and view[-3] * view[-1] == 1:
        raise ValueError(f"{fn}(): argument 'x' must have more than 1 {per_value}, got shape {tuple(xa.shape)}")
    if not mode and rm is None:
        raise ValueError(
            f"{fn}(): arguments 'running_mean' and 'running_var' are required when {mode_name}=False, got None"
        )
    w = _validate.param(fn, "weight", dev, weight, (c,), ctype)
    b = _validate.param(fn, "bias", dev, bias, (c,), ctype)
    count, nbt_arr = batches_tracked(fn, num_batches_tracked)
    out_a = _validate.out(fn, dev, out, xa.shape, rtype)
    if mode:
        check_disjoint(fn, dev, out=out_a, running_mean=rm, running_var=rv)
    return ax, mode, mom, eps, return_stats, unbiased, view, rm, rv, w, b, count, nbt_arr, out_a


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
               eps=1e-5, *, channel_axis=1, out=None, return_stats=False, num_batches_tracked=None,
               unbiased_running_var=True):
    r"""Batch normalization: per-channel statistics over the batch and spatial axes.

    .. math:: y = \frac{x - \mathrm{E}[x]}{\sqrt{\mathrm{Var}[x] + \epsilon}} \cdot w + b

    In training the batch mean and *biased* variance of each channel are used and the running
    statistics, when given, are updated in place exactly as PyTorch does:

    .. math:: \hat\mu \leftarrow (1 - m)\,\hat\mu + m\,\mu_B,\qquad
              \hat\sigma^2 \leftarrow (1 - m)\,\hat\sigma^2 + m\,\tfrac{n}{n-1}\,\sigma_B^2

    with ``n`` the number of values per channel. ``training=False`` normalizes with the
    running statistics instead.

    Parameters
    ----------
    x : array_like
        Input ``(N, C, *spatial)``, or channels-last ``(N, *spatial, C)`` with
        ``channel_axis=-1``; NumPy, GPU or Dask array.
    running_mean, running_var : arrays of shape ``(C,)`` or None
        Running statistics. Updated in place (in the caller's arrays, in their own dtype) when
        ``training=True``; required when ``training=False``.
    weight, bias : arrays of shape ``(C,)``, optional
        Per-channel affine parameters.
    training : bool
        Normalize with batch statistics (and update the running ones) or with the running ones.
    momentum : float or None
        Weight of the new batch statistic in the running update (PyTorch convention).
        ``None``: cumulative moving average, factor ``1 / (num_batches_tracked + 1)``.
    eps : float
        Added to the variance, >= 0.
    channel_axis : int
        Axis of the channels: 1 (channels-first, default) or -1 (channels-last).
    out : array, optional
        Receives the result (may be ``x``).
    return_stats : bool
        Also return ``mean`` and ``rstd = 1/sqrt(var + eps)`` of shape ``(C,)``: the batch
        statistics in training, the running ones otherwise (for :func:`batch_norm_backward`).
    num_batches_tracked : int or 1-element integer array, optional
        The number of batches already folded into the running statistics (PyTorch's
        ``BatchNorm.num_batches_tracked`` buffer before this step; None means 0). It sets the
        factor of ``momentum=None``. An array (host or device, whatever the device of ``x``)
        is incremented in place after each training step with running statistics, as
        PyTorch increments its buffer; an int is not.
    unbiased_running_var : bool
        Update the running variance with the unbiased batch variance (PyTorch, default) or
        the biased one (PaddlePaddle).

    Returns
    -------
    y : array like ``x``
    mean, rstd : arrays of shape ``(C,)``, only with ``return_stats=True``

    Notes
    -----
    PaddlePaddle's update ``running = p · running + (1 − p) · batch`` with its ``momentum=p``
    and a biased running variance is reproduced by
    ``batch_norm(..., training=True, momentum=1 - p, unbiased_running_var=False)``.

    Raises ``ValueError`` for one value per channel in training (PyTorch's rule), for
    ``training=False`` without running statistics and for wrongly sized running statistics
    or affine parameters; running statistics are left untouched by any call that raises.
    An empty batch leaves the running statistics as they are. A 1-D empty ``x`` (shape
    ``(0,)``) returns an empty result, as torch does (parameters of any length, untouched).

    Examples
    --------
    >>> import numpy as np, numbanorm
    >>> x = np.array([[1.0, 10.0], [3.0, 30.0]])          # (N=2, C=2)
    >>> rm, rv = np.zeros(2), np.ones(2)
    >>> numbanorm.batch_norm(x, rm, rv, training=True, eps=0.0)
    array([[-1., -1.],
           [ 1.,  1.]])
    >>> rm, rv                                            # 0.1 · mean, 0.9 + 0.1 · unbiased var
    (array([0.2, 2. ]), array([ 1.1, 20.9]))
    """
    if (return_stats is False and num_batches_tracked is None and (training is True or training is False)
            and (unbiased_running_var is True or unbiased_running_var is False) and _plain.real_or_none(momentum)):
        ax = _plain.channels(x, channel_axis, eps, out, weight, bias, (running_mean, running_var))
        if ax is not None and _plain.running(running_mean, running_var, x.shape[ax], training):
            y = _plain_forward(x, ax, running_mean, running_var, weight, bias, training, momentum, eps, out,
                               unbiased_running_var)
            if y is not None:
                return y
    fn = _OP
    dev = _dispatch.device_of(fn, x=x, running_mean=running_mean, running_var=running_var,
                              weight=weight, bias=bias, out=out)
    xa = _validate.array(fn, "x", dev, x)
    ctype, rtype = _validate.float_dtypes(fn, "x", xa.dtype)
    if xa.ndim == 1 and xa.shape[0] == 0 and not dev.deferred:
        return _empty_1d(fn, dev, xa, running_mean, running_var, weight, bias, training, momentum, eps,
                         out, return_stats, num_batches_tracked, unbiased_running_var, ctype, rtype)
    ax, training, mom, eps, return_stats, unbiased, _, rm, rv, w, b, count, nbt_arr, out_a = running_norm_args(
        fn, dev, xa, channel_view, "training", training, "value per channel when training", channel_axis, momentum,
        eps, return_stats, unbiased_running_var, running_mean, running_var, weight, bias, num_batches_tracked, out,
        ctype, rtype)
    if dev.deferred:  # the batch statistics and the running statistics' update: by the builder
        return dev.build("batch_norm", _compute, xa, ax, training, w, b, rm, rv, eps, ctype, rtype, return_stats,
                         out=out, running=(running_mean, running_var, momentum, num_batches_tracked, unbiased))
    update = (mom, count, nbt_arr, unbiased, running_mean, running_var) if training and rm is not None else None
    return _compute(dev, xa, ax, training, w, b, rm, rv, eps, ctype, rtype, return_stats, out=out, out_a=out_a,
                    update=update)


def _compute(dev, xa, ax, training, w, b, rm, rv, eps, ctype, rtype, return_stats, *, out=None, out_a=None,
             update=None):
    """The kernels of :func:`batch_norm` for validated arguments, nothing checked again.

    ``w``/``b``: contiguous ``(C,)`` ``ctype`` arrays or None; ``rm``/``rv``: the running
    statistics as ``dev``'s arrays (normalized with when not ``training``); ``update``:
    ``(momentum, count, num_batches_tracked array, unbiased, running_mean, running_var)``
    checked, to update the running statistics in place with the batch statistics, or None.
    Also the Dask builder's per-block task (eval mode with the merged batch statistics).
    """
    o, c, i = channel_view(xa.shape, ax)
    n = o * i
    kern = dev.kernels(_OP)
    view = (1, o, c, i)
    res = Output(dev, out, out_a, xa.shape, view, ctype, rtype, inputs=(xa, w, b, rm, rv), inplace=True)
    mean = dev.empty((1, c), F64)
    rstd = dev.empty((1, c), F64)
    w = dev.xp.ones(c, ctype) if w is None else w
    b = dev.xp.zeros(c, ctype) if b is None else b
    x4 = canonical(dev, xa, view, ctype) if n and c else None
    if training:
        var = dev.empty((1, c), F64)
        if n and c:
            kern.forward(x4, c, eps, w, b, res.buf, mean, rstd, var)
        elif c:
            kern.fill(mean, np.nan)
            kern.fill(rstd, np.nan)
    else:
        if c:
            kern.running_stats(dev.contiguous(rm, F64), dev.contiguous(rv, F64), eps, mean, rstd)
        if n and c:
            kern.normalize(x4, mean, rstd, w, b, res.buf)
    y = res.result()
    if update is not None:
        mom, count, nbt_arr, unbiased, running_mean, running_var = update
        if n and c:
            update_running(dev, kern, mean, var, n, factor(mom, count, nbt_arr), unbiased, (rm, rv),
                           (running_mean, running_var))
        increment(nbt_arr)
    if not return_stats:
        return y
    return y, stat_result(dev, mean, (c,), ctype), stat_result(dev, rstd, (c,), ctype)


#: per (shape, channel axis) of plain calls: the view, C, values per channel, whether the
#: one-dispatch kernels apply (training, eval), the training one's chunk counts and those
#: kernels for the layout (shape-only facts, recomputed on every small call otherwise)
_PLANS = {}


def _plan(shape, ax):
    o, c, i = channel_view(shape, ax)
    view = (1, o, c, i)
    kern = _dispatch.CPU.kernels(_OP)
    size = prod(shape)
    small = (size < _config.SERIAL_THRESHOLD and kern.small_path(view), size < kern.EVAL_SERIAL_THRESHOLD)
    plan = (view, c, o * i, small) + kern.chunking(1, o, i) + kern.small_kernels(view)
    if len(_PLANS) >= 256:
        _PLANS.clear()
    _PLANS[shape, ax] = plan
    return plan


def _plain_forward(x, ax, rm, rv, weight, bias, training, momentum, eps, out, unbiased):
    """:func:`batch_norm` for a call the ``_plain`` checks accepted: the general path's
    kernels without its checks (small calls are dominated by them). None for a training
    call with one value per channel (the general path raises)."""
    plan = _PLANS.get((x.shape, ax)) or _plan(x.shape, ax)
    view, c, n, small, ko, ki, small_eval, small_train = plan
    if training and n == 1:
        return None
    dt = x.dtype
    kern = _dispatch.CPU.kernels(_OP)
    y = np.empty(x.shape, dt) if out is None else out
    w = np.ones(c, dt) if weight is None else weight
    b = np.zeros(c, dt) if bias is None else bias
    x4, y4 = x.reshape(view), y.reshape(view)
    factor = 1.0 if momentum is None else momentum  # num_batches_tracked None: 1 / (0 + 1)
    if small[training is False]:  # one dispatch: the general path's serial kernels, compiled together
        if not training:
            small_eval(x4, rm, rv, eps, w, b, y4)
        elif rm is None:
            small_train(x4, ko, ki, eps, w, b, y4, factor, unbiased, kern.NO_RUNNING, kern.NO_RUNNING)
        else:
            small_train(x4, ko, ki, eps, w, b, y4, factor, unbiased, rm, rv)
        return y
    if training:
        mean = np.empty((1, c))
        rstd = np.empty((1, c))
        var = np.empty((1, c))
        kern.forward(x4, c, eps, w, b, y4, mean, rstd, var)
        if rm is not None:
            update_running(_dispatch.CPU, kern, mean, var, n, factor, unbiased, (rm, rv), (rm, rv))
    else:
        kern.normalize_running(x4, rm, rv, eps, w, b, y4)
    return y


def _empty_1d(fn, dev, xa, running_mean, running_var, weight, bias, training, momentum, eps, out,
              return_stats, num_batches_tracked, unbiased, ctype, rtype):
    """``batch_norm`` of a 1-D empty ``x`` (shape (0,)): an empty result, as torch returns.

    There is no channel axis, so the parameters are checked as 1-D real arrays of any
    length (torch does not look at them either) and nothing is updated.
    """
    _validate.flag(fn, training, "training")
    momentum_arg(fn, momentum)
    _validate.eps(fn, eps)
    return_stats = _validate.flag(fn, return_stats, "return_stats")
    _validate.flag(fn, unbiased, "unbiased_running_var")
    batches_tracked(fn, num_batches_tracked)
    if (running_mean is None) != (running_var is None):
        raise ValueError(
            f"{fn}(): arguments 'running_mean' and 'running_var' must be given together, got only one"
        )
    if not training and running_mean is None:
        raise ValueError(
            f"{fn}(): arguments 'running_mean' and 'running_var' are required when "
            "training=False, got None"
        )
    for name, value in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight),
                        ("bias", bias)):
        if value is not None:
            a = _validate.array(fn, name, dev, value)
            if a.dtype.kind not in "fiub" or len(a.shape) != 1:
                raise TypeError(f"{fn}(): argument '{name}' must be a 1-D real array, got {_validate.describe(a)}")
    out_a = _validate.out(fn, dev, out, xa.shape, rtype)
    y = Output(dev, out, out_a, xa.shape, xa.shape, ctype, rtype).result()
    if not return_stats:
        return y
    return y, stat_result(dev, dev.empty(0, ctype), (0,)), stat_result(dev, dev.empty(0, ctype), (0,))


def batch_norm_backward(grad_out, x, weight=None, *, training=True, running_mean=None, running_var=None,
                        eps=1e-5, mean=None, rstd=None, channel_axis=1, out=None):
    r"""Gradients of :func:`batch_norm` with respect to ``x``, ``weight`` and ``bias``.

    Per channel, over its ``n`` values, with :math:`\hat x = (x - \mu)\,r`:

    .. math:: dx = w\,r\left(dy - \overline{dy} - \hat x\,\overline{dy\,\hat x}\right),\quad
              dw = \sum dy\,\hat x,\quad db = \sum dy

    in training (batch statistics depend on ``x``); with ``training=False`` the running
    statistics are constants and :math:`dx = w\,r\,dy`.

    Parameters
    ----------
    grad_out : array, shape of ``x``
        Gradient of the loss with respect to the output.
    x, weight, eps, channel_axis
        As given to :func:`batch_norm`.
    training : bool
        Whether the forward normalized with batch statistics (True) or running ones.
    running_mean, running_var : arrays of shape ``(C,)``, optional
        The running statistics of an eval-mode forward (``training=False``), used when
        ``mean``/``rstd`` are not given.
    mean, rstd : arrays of shape ``(C,)``, optional
        Saved statistics from ``batch_norm(..., return_stats=True)``; recomputed when omitted
        (give both or neither).
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
    >>> x = np.array([[1.0, 10.0], [3.0, 30.0]])
    >>> gx, gw, gb = numbanorm.batch_norm_backward(np.ones_like(x), x)
    >>> bool(np.abs(gx).max() < 1e-12), gb
    (True, array([2., 2.]))
    """
    if running_mean is None and running_var is None and mean is not None and (training is True or training is False):
        ax = _plain.grads(grad_out, x, channel_axis, eps, out, weight, (mean, rstd))
        if ax is not None:
            return _plain_backward(grad_out, x, ax, weight, training, mean, rstd, out)
    fn = _OP + "_backward"
    dev = _dispatch.device_of(fn, x=x, grad_out=grad_out, weight=weight, running_mean=running_mean,
                              running_var=running_var, mean=mean, rstd=rstd, out=out)
    xa = _validate.array(fn, "x", dev, x)
    ga = _validate.array(fn, "grad_out", dev, grad_out)
    ctype, rtype = _validate.float_dtypes(fn, "x", xa.dtype)
    check_grad(fn, ga, xa)
    ax = _validate.channel_axis(fn, channel_axis, xa.ndim)
    training = _validate.flag(fn, training, "training")
    eps = _validate.eps(fn, eps)
    c = channel_view(xa.shape, ax)[1]
    w = _validate.param(fn, "weight", dev, weight, (c,), ctype)
    rm, rv = running_stats(fn, dev, running_mean, running_var, c, update=False)
    mean, rstd = saved_stats(fn, dev, mean, rstd, (c,), (1, c))
    if not training and mean is None and rm is None:
        raise ValueError(
            f"{fn}(): with training=False, arguments 'running_mean' and 'running_var' (or the "
            "saved 'mean' and 'rstd') are required, got None"
        )

    out_a = _validate.out(fn, dev, out, xa.shape, rtype)
    if dev.deferred:
        return dev.build("batch_norm_backward", _compute_backward, ga, xa, ax, training, w, rm, rv, eps, mean, rstd,
                         ctype, rtype, out=out)
    return _compute_backward(dev, ga, xa, ax, training, w, rm, rv, eps, mean, rstd, ctype, rtype, out=out,
                             out_a=out_a)


def _compute_backward(dev, ga, xa, ax, training, w, rm, rv, eps, mean, rstd, ctype, rtype, *, out=None, out_a=None):
    """The kernels of :func:`batch_norm_backward` for validated arguments (``mean``/``rstd``
    float64 ``(1, C)`` saved statistics or None; the rest as in :func:`_compute`); also the
    Dask builder's per-block task (eval mode with the global statistics)."""
    o, c, i = channel_view(xa.shape, ax)
    n = o * i
    kern = dev.kernels(_OP)
    view = (1, o, c, i)
    res = Output(dev, out, out_a, xa.shape, view, ctype, rtype, inputs=(xa, ga, w, rm, rv, mean, rstd))
    grad_x = res.buf
    grad_w = dev.zeros(c, ctype)
    grad_b = dev.zeros(c, ctype)
    if n and c:
        x4 = canonical(dev, xa, view, ctype)
        if mean is None:
            mean = dev.empty((1, c), F64)
            rstd = dev.empty((1, c), F64)
            if training:
                kern.stats(x4, c, eps, mean, rstd, dev.empty((1, c), F64))
            else:
                kern.running_stats(dev.contiguous(rm, F64), dev.contiguous(rv, F64), eps, mean, rstd)
        wk = dev.xp.ones(c, ctype) if w is None else w
        kern.backward(canonical(dev, ga, view, ctype), x4, wk, mean, rstd, training, grad_x, grad_w, grad_b)
    grad_w = None if w is None else stat_result(dev, grad_w, (c,), rtype)
    return res.result(), grad_w, stat_result(dev, grad_b, (c,), rtype)


def _plain_backward(g, x, ax, weight, training, mean, rstd, out):
    """:func:`batch_norm_backward` for a call the ``_plain`` checks accepted (saved
    statistics): the general path's kernels without its checks."""
    o, c, i = channel_view(x.shape, ax)
    view = (1, o, c, i)
    dt = x.dtype
    gx = _pool.empty(x.shape, dt) if out is None else out
    gw = np.zeros(c, dt)
    gb = np.zeros(c, dt)
    _dispatch.CPU.kernels(_OP).backward(g.reshape(view), x.reshape(view), np.ones(c, dt) if weight is None else weight,
                                        np.ascontiguousarray(mean, F64).reshape(1, c),
                                        np.ascontiguousarray(rstd, F64).reshape(1, c), training, gx.reshape(view), gw,
                                        gb)
    return gx, (None if weight is None else gw), gb
