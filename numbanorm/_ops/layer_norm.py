"""Layer normalization (Ba, Kiros & Hinton 2016), forward and backward.

Semantics follow ``torch.nn.functional.layer_norm``: statistics over the trailing
``normalized_shape`` dims, biased variance, ``eps`` inside the square root.
Canonical view: rows ``(M, N)``, M = prod(leading dims), N = prod(normalized_shape).
"""
import numpy as np

from .. import _dispatch, _pool, _validate
from . import _fused, _lowp
from ._common import Output, canonical, prod, stat_result
from ._rows import saved_stat as _saved_stat, stat_shape as _stat_shape  # noqa: F401 - rms_norm's too

_OP = "layer_norm"


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5, *, out=None, return_stats=False,
               weight_offset=0.0, casting=None):
    r"""Layer normalization over the trailing ``normalized_shape`` dimensions.

    .. math:: y = \frac{x - \mathrm{E}[x]}{\sqrt{\mathrm{Var}[x] + \epsilon}} \cdot w + b

    with mean and biased variance over the last ``len(normalized_shape)`` dims.

    Parameters
    ----------
    x : array_like
        Input; NumPy (CPU kernels) or GPU array (CUDA kernels) or Dask array.
    normalized_shape : int or tuple of int
        The trailing dims of ``x`` to normalize over.
    weight, bias : array of shape ``normalized_shape``, optional
        Elementwise affine parameters.
    eps : float
        Added to the variance, >= 0.
    out : array, optional
        Receives the result (may be ``x``).
    return_stats : bool
        Also return ``mean`` and ``rstd = 1/sqrt(var + eps)``, shaped
        ``x.shape[:-k] + (1,) * k``, for :func:`layer_norm_backward`.
    weight_offset : float
        The weight applied is ``weight_offset + weight`` (Gemma: 1.0); default 0.
    casting : None, "gemma", "llama" or "none"
        Where half-precision data is rounded (README "Transformer fusions"); None =
        "gemma": computed in float32, rounded once. No effect on float32/float64 data.

    Returns
    -------
    y : array like ``x`` (float16 → float16, bfloat16 → bfloat16: computed in float32
        from the 16-bit data without a float32 copy; integers → float64)
    mean, rstd : arrays, only with ``return_stats=True`` (float32 for 16-bit data)

    Examples
    --------
    >>> import numpy as np, numbanorm
    >>> x = np.array([[1.0, 2.0, 3.0], [2.0, 2.0, 2.0]])
    >>> numbanorm.layer_norm(x, 3).round(4)
    array([[-1.2247,  0.    ,  1.2247],
           [ 0.    ,  0.    ,  0.    ]])
    """
    if (not weight_offset and casting is None and return_stats is False
            and (n := _validate.plain_rows(x, normalized_shape, eps, out, weight, bias))):
        return _plain(x, n, weight, bias, eps, out)
    if _lowp.wanted(x, casting):  # bfloat16 / float16 data: the 16-bit kernels (no float32 copy)
        return _lowp.rows_forward(_OP, True, x, None, normalized_shape, weight, bias, eps,
                                  weight_offset=weight_offset, casting=casting, out=out, return_stats=return_stats)
    if weight_offset or casting is not None:  # weight conventions (numbanorm extension)
        return _fused.forward(_OP, True, x, None, normalized_shape, weight, bias, eps, weight_offset=weight_offset,
                              casting=casting, out=out, return_stats=return_stats, add=False)
    fn = _OP
    dev = _dispatch.device_of(fn, x=x, weight=weight, bias=bias, out=out)
    xa = _validate.array(fn, "x", dev, x)
    ctype, rtype = _validate.float_dtypes(fn, "x", xa.dtype)
    nshape = _validate.normalized_shape(fn, xa.shape, normalized_shape)
    eps = _validate.eps(fn, eps)
    return_stats = _validate.flag(fn, return_stats, "return_stats")
    w = _validate.param(fn, "weight", dev, weight, nshape, ctype)
    b = _validate.param(fn, "bias", dev, bias, nshape, ctype)
    out_a = _validate.out(fn, dev, out, xa.shape, rtype)
    if dev.deferred:
        return dev.build("layer_norm", _compute, xa, nshape, w, b, eps, ctype, rtype, return_stats, out=out)
    return _compute(dev, xa, nshape, w, b, eps, ctype, rtype, return_stats, out=out, out_a=out_a)


def _compute(dev, xa, nshape, w, b, eps, ctype, rtype, return_stats, *, out=None, out_a=None):
    """The kernels of :func:`layer_norm` for validated arguments, nothing checked again.

    ``xa``: ``dev``'s array (CPU or CUDA); ``w``/``b``: flat contiguous ``ctype`` arrays or
    None; ``out_a``: the checked ``out=`` as ``dev``'s array (``out`` the caller's). Also the
    per-block task of the Dask builder (16-bit blocks take the 16-bit kernels, as the
    in-memory call on them does). Returns what :func:`layer_norm` returns.
    """
    if _lowp.fmt(xa.dtype) is not None:
        return _lowp.rows_compute(dev, True, False, None, xa, None, nshape, w, b, eps, 0.0, ctype, xa.dtype,
                                  None, None, return_stats, out=out, out_a=out_a)
    n = prod(nshape)
    m = prod(xa.shape) // n if n else prod(xa.shape[: xa.ndim - len(nshape)])
    res = Output(dev, out, out_a, xa.shape, (m, n), ctype, rtype, inputs=(xa, w, b), inplace=True)
    # statistics the caller does not get back: a reused buffer on the GPU
    mean = dev.empty(m, ctype) if return_stats else dev.scratch("ln.mean", (m,), ctype)
    rstd = dev.empty(m, ctype) if return_stats else dev.scratch("ln.rstd", (m,), ctype)
    if m and n:
        w = dev.xp.ones(n, ctype) if w is None else w
        b = dev.xp.zeros(n, ctype) if b is None else b
        dev.kernels(_OP).forward(canonical(dev, xa, (m, n), ctype), w, b, eps, res.buf, mean, rstd)
    y = res.result()
    if not return_stats:
        return y
    sshape = _stat_shape(xa.shape, len(nshape))
    return y, stat_result(dev, mean, sshape), stat_result(dev, rstd, sshape)


def _plain(x, n, weight, bias, eps, out):
    """:func:`layer_norm` for a call :func:`_validate.plain_rows` accepted: what the general
    path does for it, without re-checking (small calls are dominated by the checks)."""
    m = x.size // n
    dt = x.dtype
    y = _pool.empty_like(x) if out is None else out
    stats = np.empty((2, m), dt)
    rows = x.ndim == 2
    _dispatch.CPU.kernels(_OP).forward(
        x if rows else x.reshape(m, n), np.ones(n, dt) if weight is None else weight,
        np.zeros(n, dt) if bias is None else bias, eps, y if rows else y.reshape(m, n), stats[0], stats[1],
    )
    return y


def layer_norm_backward(grad_out, x, normalized_shape, weight=None, *, eps=1e-5, mean=None, rstd=None,
                        out=None, y=None, bias=None, weight_offset=0.0):
    r"""Gradients of :func:`layer_norm` with respect to ``x``, ``weight`` and ``bias``.

    With :math:`\hat x = (x - \mu)\,r` and :math:`g = w \cdot dy` per row of N elements:

    .. math:: dx = r \left(g - \overline{g} - \hat x\,\overline{g \hat x}\right),\quad
              dw = \sum_{rows} dy\,\hat x,\quad db = \sum_{rows} dy

    Parameters
    ----------
    grad_out : array, shape of ``x``
        Gradient of the loss with respect to the output.
    x, normalized_shape, weight, eps
        As given to :func:`layer_norm`.
    mean, rstd : arrays, optional
        Saved statistics from ``layer_norm(..., return_stats=True)``; recomputed when
        omitted (give both or neither).
    out : array, optional
        Receives ``grad_x`` (shape of ``x``) and is returned in its place (may be
        ``grad_out``); a numbanorm extension of the API so training loops can reuse the
        gradient buffer.
    y, bias : arrays, optional
        Memory-saving form (Apex's ``memory_efficient=True``): pass ``x=None`` and the
        forward's output ``y`` (plus its ``bias``) and ``rstd``; ``x̂ = (y − b) / w`` is
        recovered from them. Where a weight is 0, ``x̂`` is unknown: the entries that
        depend on it (``grad_x`` and ``grad_weight`` of those columns) are NaN, all other
        entries are exact.
    weight_offset : float
        As given to :func:`layer_norm` (the weight applied was ``weight_offset + weight``).

    Returns
    -------
    grad_x : array like ``x``
    grad_weight : array of shape ``normalized_shape``, or None when ``weight`` is None
    grad_bias : array of shape ``normalized_shape``

    Examples
    --------
    >>> import numpy as np, numbanorm
    >>> x = np.array([[1.0, 2.0, 4.0]])
    >>> gx, gw, gb = numbanorm.layer_norm_backward(np.ones_like(x), x, 3)
    >>> bool(np.abs(gx).max() < 1e-12), gb
    (True, array([1., 1., 1.]))
    """
    if (out is None and y is None and bias is None and type(weight_offset) in (float, int) and weight_offset == 0
            and (n := _validate.plain_rows_backward(grad_out, x, normalized_shape, eps, weight, (mean, rstd)))):
        return _plain_backward(grad_out, x, n, weight, eps, mean, rstd)
    if _lowp.wanted_backward(x if y is None else y, grad_out):  # 16-bit data: no float32 copy
        return _lowp.rows_backward(_OP + "_backward", True, grad_out, None, x, normalized_shape, weight, eps=eps,
                                   mean=mean, rstd=rstd, y=y, bias=bias, weight_offset=weight_offset, out=out,
                                   add=False)
    if y is not None or bias is not None or weight_offset:  # memory-saving form / weight offset
        return _fused.backward(_OP + "_backward", True, grad_out, None, x, normalized_shape, weight, eps=eps,
                               mean=mean, rstd=rstd, y=y, bias=bias, weight_offset=weight_offset, out=out, add=False)
    fn = _OP + "_backward"
    dev = _dispatch.device_of(fn, x=x, grad_out=grad_out, weight=weight, mean=mean, rstd=rstd, out=out)
    xa = _validate.array(fn, "x", dev, x)
    ga = _validate.array(fn, "grad_out", dev, grad_out)
    ctype, rtype = _validate.float_dtypes(fn, "x", xa.dtype)
    _validate.float_dtypes(fn, "grad_out", ga.dtype)
    if tuple(ga.shape) != tuple(xa.shape):
        raise ValueError(
            f"{fn}(): argument 'grad_out' must have the shape of x {tuple(xa.shape)}, got shape {tuple(ga.shape)}"
        )
    nshape = _validate.normalized_shape(fn, xa.shape, normalized_shape)
    eps = _validate.eps(fn, eps)
    n = prod(nshape)
    m = prod(xa.shape) // n if n else prod(xa.shape[: xa.ndim - len(nshape)])
    w = _validate.param(fn, "weight", dev, weight, nshape, ctype)
    if (mean is None) != (rstd is None):
        raise ValueError(f"{fn}(): arguments 'mean' and 'rstd' must be given together, got only one")
    if mean is not None:
        mean = _saved_stat(fn, "mean", dev, mean, xa.shape, len(nshape), m, ctype)
        rstd = _saved_stat(fn, "rstd", dev, rstd, xa.shape, len(nshape), m, ctype)
    out_a = _validate.out(fn, dev, out, xa.shape, rtype)
    if dev.deferred:
        return dev.build("layer_norm_backward", _compute_backward, ga, xa, nshape, w, eps, mean, rstd, ctype, rtype,
                         out=out)
    return _compute_backward(dev, ga, xa, nshape, w, eps, mean, rstd, ctype, rtype, out=out, out_a=out_a)


def _compute_backward(dev, ga, xa, nshape, w, eps, mean, rstd, ctype, rtype, *, out=None, out_a=None):
    """The kernels of :func:`layer_norm_backward` for validated arguments (``mean``/``rstd``
    flat contiguous ``ctype`` arrays or None; the rest as in :func:`_compute`); also the
    Dask builder's per-block task. Returns ``(grad_x, grad_weight, grad_bias)``."""
    n = prod(nshape)
    m = prod(xa.shape) // n if n else prod(xa.shape[: xa.ndim - len(nshape)])
    kern = dev.kernels(_OP)
    res = Output(dev, out, out_a, xa.shape, (m, n), ctype, rtype, inputs=(xa, ga, w, mean, rstd))
    grad_x = res.buf
    grad_w = dev.zeros(n, ctype)
    grad_b = dev.zeros(n, ctype)
    if m and n:
        x2 = canonical(dev, xa, (m, n), ctype)
        if mean is None:
            mean = dev.scratch("ln.mean", (m,), ctype)
            rstd = dev.scratch("ln.rstd", (m,), ctype)
            kern.stats(x2, eps, mean, rstd)
        wk = dev.xp.ones(n, ctype) if w is None else w
        kern.backward(canonical(dev, ga, (m, n), ctype), x2, wk, mean, rstd, grad_x, grad_w, grad_b)
    grad_w = None if w is None else stat_result(dev, grad_w, nshape, rtype)
    return res.result(), grad_w, stat_result(dev, grad_b, nshape, rtype)


def _plain_backward(ga, xa, n, w, eps, mean, rstd):
    """:func:`layer_norm_backward` for a call :func:`_validate.plain_rows_backward`
    accepted: :func:`_compute_backward` on the CPU without the checks before it (small
    calls are dominated by the checks)."""
    if mean is not None:
        m = xa.size // n
        mean, rstd = mean.reshape(m), rstd.reshape(m)
    return _compute_backward(_dispatch.CPU, ga, xa, (n,), w, eps, mean, rstd, xa.dtype, xa.dtype)
