"""Root-mean-square normalization (Zhang & Sennrich 2019), forward and backward.

Semantics follow ``torch.nn.functional.rms_norm``: ``eps=None`` is the machine epsilon
of the compute dtype (float32 for float16 input). Canonical view: rows ``(M, N)``.
"""
import numpy as np

from .. import _dispatch, _pool, _validate
from . import _fused, _lowp
from ._common import Output, canonical, prod, stat_result
from .layer_norm import _saved_stat, _stat_shape

_OP = "rms_norm"


_MACHINE_EPS = {np.dtype(t): float(np.finfo(t).eps) for t in (np.float32, np.float64)}


def _eps(fn, eps, ctype):
    return _MACHINE_EPS[ctype] if eps is None else _validate.eps(fn, eps)


def rms_norm(x, normalized_shape, weight=None, eps=None, *, out=None, return_stats=False, weight_offset=0.0,
             casting=None, quantize=None):
    r"""Root-mean-square normalization over the trailing ``normalized_shape`` dimensions.

    .. math:: y = \frac{x}{\sqrt{\mathrm{E}[x^2] + \epsilon}} \cdot w

    Parameters
    ----------
    x : array_like
        Input; NumPy (CPU kernels), GPU array (CUDA kernels) or Dask array.
    normalized_shape : int or tuple of int
        The trailing dims of ``x`` to normalize over.
    weight : array of shape ``normalized_shape``, optional
        Elementwise scale.
    eps : float or None
        Added to the mean square; None = ``np.finfo(compute dtype).eps`` (torch).
    out : array, optional
        Receives the result (may be ``x``).
    return_stats : bool
        Also return ``rstd = 1/sqrt(E[x²] + eps)`` shaped ``x.shape[:-k] + (1,) * k``.
    weight_offset : float
        The weight applied is ``weight_offset + weight`` (Gemma: 1.0); default 0.
    casting : None, "gemma", "llama" or "none"
        Where half-precision data is rounded (README "Transformer fusions"); None =
        "gemma": computed in float32, rounded once. No effect on float32/float64 data.
    quantize : None, "int8" or "float8_e4m3"
        Dynamic per-row symmetric quantization of ``y`` (vLLM's
        ``rms_norm_dynamic_per_token_quant``) in the same pass, no full-precision ``y``
        written: ``scale = max|y| / qmax`` per row (qmax 127, or 448 for
        ``ml_dtypes.float8_e4m3fn``), ``q = round(y / scale)`` (half to even, clipped to
        ±qmax; e4m3fn: nearest even). Returns ``(q, scale)``, ``q * scale ≈ y``; ``out=``
        is then the ``q`` buffer (int8 / float8_e4m3fn, shape of ``x``). A row of zeros
        has ``scale = 0`` and ``q = 0``; a row with NaN has ``scale = NaN``.

    Returns
    -------
    y : array like ``x`` (bfloat16/float16 in → the same out, computed in float32 from
        the 16-bit data without a float32 copy)
    q, scale : with ``quantize``: the codes (shape of ``x``) and the per-row scales
        (``x.shape[:-k] + (1,) * k``, float32; float64 for float64 data) in place of ``y``
    rstd : array, only with ``return_stats=True`` (float32 for 16-bit data), last

    Examples
    --------
    >>> import numpy as np, numbanorm
    >>> numbanorm.rms_norm(np.array([[3.0, 4.0]]), 2, eps=0.0).round(4)
    array([[0.8485, 1.1314]])
    """
    if (quantize is None and not weight_offset and casting is None and return_stats is False
            and (n := _validate.plain_rows(x, normalized_shape, eps, out, weight))):
        return _plain(x, n, weight, eps, out)
    if quantize is not None or _lowp.wanted(x, casting):  # 16-bit data / quantized outputs (extensions)
        return _lowp.rows_forward(_OP, False, x, None, normalized_shape, weight, None, eps,
                                  weight_offset=weight_offset, casting=casting, out=out, return_stats=return_stats,
                                  quantize=quantize)
    if weight_offset or casting is not None:  # weight conventions (numbanorm extension)
        return _fused.forward(_OP, False, x, None, normalized_shape, weight, None, eps, weight_offset=weight_offset,
                              casting=casting, out=out, return_stats=return_stats, add=False)
    fn = _OP
    dev = _dispatch.device_of(fn, x=x, weight=weight, out=out)
    xa = _validate.array(fn, "x", dev, x)
    ctype, rtype = _validate.float_dtypes(fn, "x", xa.dtype)
    nshape = _validate.normalized_shape(fn, xa.shape, normalized_shape)
    eps = _eps(fn, eps, ctype)
    return_stats = _validate.flag(fn, return_stats, "return_stats")
    w = _validate.param(fn, "weight", dev, weight, nshape, ctype)
    out_a = _validate.out(fn, dev, out, xa.shape, rtype)
    if dev.deferred:
        return dev.build("rms_norm", _compute, xa, nshape, w, eps, ctype, rtype, return_stats, out=out)
    return _compute(dev, xa, nshape, w, eps, ctype, rtype, return_stats, out=out, out_a=out_a)


def _compute(dev, xa, nshape, w, eps, ctype, rtype, return_stats, *, out=None, out_a=None):
    """The kernels of :func:`rms_norm` for validated arguments, nothing checked again.

    ``xa``: ``dev``'s array; ``w``: a flat contiguous ``ctype`` array or None; ``eps`` a
    float; ``out_a``: the checked ``out=`` as ``dev``'s array. Also the Dask builder's
    per-block task (16-bit blocks take the 16-bit kernels, as the in-memory call does).
    """
    if _lowp.fmt(xa.dtype) is not None:
        return _lowp.rows_compute(dev, False, False, None, xa, None, nshape, w, None, eps, 0.0, ctype, xa.dtype,
                                  None, None, return_stats, out=out, out_a=out_a)
    n = prod(nshape)
    m = prod(xa.shape) // n if n else prod(xa.shape[: xa.ndim - len(nshape)])
    res = Output(dev, out, out_a, xa.shape, (m, n), ctype, rtype, inputs=(xa, w), inplace=True)
    rstd = dev.empty(m, ctype) if return_stats else dev.scratch("rms.rstd", (m,), ctype)
    if m and n:
        w = dev.xp.ones(n, ctype) if w is None else w
        dev.kernels(_OP).forward(canonical(dev, xa, (m, n), ctype), w, eps, res.buf, rstd)
    y = res.result()
    if not return_stats:
        return y
    return y, stat_result(dev, rstd, _stat_shape(xa.shape, len(nshape)))


def _plain(x, n, weight, eps, out):
    """:func:`rms_norm` for a call :func:`_validate.plain_rows` accepted, without re-checking."""
    m = x.size // n
    dt = x.dtype
    y = _pool.empty_like(x) if out is None else out
    rows = x.ndim == 2
    _dispatch.CPU.kernels(_OP).forward(
        x if rows else x.reshape(m, n), np.ones(n, dt) if weight is None else weight,
        _MACHINE_EPS[dt] if eps is None else eps, y if rows else y.reshape(m, n), np.empty(m, dt),
    )
    return y


def rms_norm_backward(grad_out, x, normalized_shape, weight=None, *, eps=None, rstd=None, out=None, y=None,
                      weight_offset=0.0):
    r"""Gradients of :func:`rms_norm` with respect to ``x`` and ``weight``.

    With :math:`r = 1/\sqrt{\overline{x^2} + \epsilon}`, :math:`\hat x = x r`,
    :math:`g = w \cdot dy` per row:

    .. math:: dx = r \left(g - \hat x\,\overline{g \hat x}\right),\quad
              dw = \sum_{rows} dy\,\hat x

    Parameters
    ----------
    grad_out : array, shape of ``x``
    x, normalized_shape, weight, eps
        As given to :func:`rms_norm`.
    rstd : array, optional
        Saved from ``rms_norm(..., return_stats=True)``; recomputed when omitted.
    out : array, optional
        Receives ``grad_x`` (shape of ``x``) and is returned in its place (may be
        ``grad_out``); a numbanorm extension of the API so training loops can reuse the
        gradient buffer.
    y : array, optional
        Memory-saving form: pass ``x=None``, the forward's output ``y`` and ``rstd``;
        ``x̂ = y / w`` is recovered from them. Where a weight is 0 the entries that depend
        on the unknown ``x̂`` (``grad_x`` and ``grad_weight`` of those columns) are NaN,
        all other entries are exact.
    weight_offset : float
        As given to :func:`rms_norm`.

    Returns
    -------
    grad_x : array like ``x``
    grad_weight : array of shape ``normalized_shape``, or None when ``weight`` is None

    Examples
    --------
    >>> import numpy as np, numbanorm
    >>> x = np.array([[3.0, 4.0]])
    >>> gx, gw = numbanorm.rms_norm_backward(np.array([[1.0, 0.0]]), x, 2, eps=0.0)
    >>> gx.round(4), gw
    (array([[ 0.181 , -0.1358]]), None)
    """
    if (out is None and y is None and type(weight_offset) in (float, int) and weight_offset == 0
            and (n := _validate.plain_rows_backward(grad_out, x, normalized_shape, eps, weight, (rstd,)))):
        return _plain_backward(grad_out, x, n, weight, eps, rstd)
    if _lowp.wanted_backward(x if y is None else y, grad_out):  # 16-bit data: no float32 copy
        return _lowp.rows_backward(_OP + "_backward", False, grad_out, None, x, normalized_shape, weight, eps=eps,
                                   rstd=rstd, y=y, weight_offset=weight_offset, out=out, add=False)
    if y is not None or weight_offset:  # memory-saving form / weight offset
        return _fused.backward(_OP + "_backward", False, grad_out, None, x, normalized_shape, weight, eps=eps,
                               rstd=rstd, y=y, weight_offset=weight_offset, out=out, add=False)
    fn = _OP + "_backward"
    dev = _dispatch.device_of(fn, x=x, grad_out=grad_out, weight=weight, rstd=rstd, out=out)
    xa = _validate.array(fn, "x", dev, x)
    ga = _validate.array(fn, "grad_out", dev, grad_out)
    ctype, rtype = _validate.float_dtypes(fn, "x", xa.dtype)
    _validate.float_dtypes(fn, "grad_out", ga.dtype)
    if tuple(ga.shape) != tuple(xa.shape):
        raise ValueError(
            f"{fn}(): argument 'grad_out' must have the shape of x {tuple(xa.shape)}, got shape {tuple(ga.shape)}"
        )
    nshape = _validate.normalized_shape(fn, xa.shape, normalized_shape)
    eps = _eps(fn, eps, ctype)
    n = prod(nshape)
    m = prod(xa.shape) // n if n else prod(xa.shape[: xa.ndim - len(nshape)])
    w = _validate.param(fn, "weight", dev, weight, nshape, ctype)
    if rstd is not None:
        rstd = _saved_stat(fn, "rstd", dev, rstd, xa.shape, len(nshape), m, ctype)
    out_a = _validate.out(fn, dev, out, xa.shape, rtype)
    if dev.deferred:
        return dev.build("rms_norm_backward", _compute_backward, ga, xa, nshape, w, eps, rstd, ctype, rtype, out=out)
    return _compute_backward(dev, ga, xa, nshape, w, eps, rstd, ctype, rtype, out=out, out_a=out_a)


def _compute_backward(dev, ga, xa, nshape, w, eps, rstd, ctype, rtype, *, out=None, out_a=None):
    """The kernels of :func:`rms_norm_backward` for validated arguments (``rstd`` a flat
    contiguous ``ctype`` array or None; the rest as in :func:`_compute`); also the Dask
    builder's per-block task. Returns ``(grad_x, grad_weight)``."""
    n = prod(nshape)
    m = prod(xa.shape) // n if n else prod(xa.shape[: xa.ndim - len(nshape)])
    kern = dev.kernels(_OP)
    res = Output(dev, out, out_a, xa.shape, (m, n), ctype, rtype, inputs=(xa, ga, w, rstd))
    grad_x = res.buf
    grad_w = dev.zeros(n, ctype)
    if m and n:
        x2 = canonical(dev, xa, (m, n), ctype)
        if rstd is None:
            rstd = dev.scratch("rms.rstd", (m,), ctype)
            kern.stats(x2, eps, rstd)
        wk = dev.xp.ones(n, ctype) if w is None else w
        kern.backward(canonical(dev, ga, (m, n), ctype), x2, wk, rstd, grad_x, grad_w)
    return res.result(), None if w is None else stat_result(dev, grad_w, nshape, rtype)


def _plain_backward(ga, xa, n, w, eps, rstd):
    """:func:`rms_norm_backward` for a call :func:`_validate.plain_rows_backward` accepted:
    :func:`_compute_backward` on the CPU without the checks before it."""
    if rstd is not None:
        rstd = rstd.reshape(xa.size // n)
    return _compute_backward(_dispatch.CPU, ga, xa, (n,), w, _eps("rms_norm_backward", eps, xa.dtype), rstd,
                             xa.dtype, xa.dtype)
