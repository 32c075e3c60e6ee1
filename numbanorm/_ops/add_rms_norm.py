"""Fused residual add + RMSNorm (the pre-norm transformer block's ``h = x + residual;
y = rms_norm(h)``), forward and backward. Canonical view: rows ``(M, N)``; the shared
code is in :mod:`._fused`."""
from . import _fused, _lowp

_OP = "add_rms_norm"


def add_rms_norm(x, residual, normalized_shape, weight=None, eps=None, *, weight_offset=0.0, casting=None,
                 residual_dtype=None, out=None, residual_out=None, return_stats=False, quantize=None):
    r"""``s = x + residual`` and ``y = rms_norm(s)`` in one pass over memory.

    .. math:: s = x + r,\qquad y = \frac{s}{\sqrt{\mathrm{E}[s^2] + \epsilon}} \cdot (o + w)

    Each element of ``x`` and ``residual`` is read once and ``y`` and ``s`` are written
    once (FlashInfer's ``fused_add_rmsnorm``, vLLM's ``fused_add_rms_norm``, Liger's
    ``LigerFusedAddRMSNorm``).

    Parameters
    ----------
    x, residual : array_like, same shape
        The block's output and the residual stream.
    normalized_shape : int or tuple of int
        The trailing dims to normalize over.
    weight : array of shape ``normalized_shape``, optional
    eps : float or None
        None = the machine epsilon of the compute dtype (``torch.nn.functional.rms_norm``).
    weight_offset : float
        ``o``: the weight applied is ``o + w`` (Gemma checkpoints: 1.0). Default 0.
    casting : None, "gemma", "llama" or "none"
        Where half-precision data is rounded (see ``README.md``, "Transformer fusions");
        None = "gemma" = computed in float32, rounded once. No effect on float32/float64.
    residual_dtype : dtype, optional
        dtype of ``s`` (e.g. float32 for a float32 residual stream with float16 ``x``/``y``);
        default: ``x``'s and ``residual``'s promoted dtype. The sum is computed in the wider
        of that and ``x``'s compute dtype.
    out : array, optional
        Receives ``y`` (may be ``x``).
    residual_out : array, optional
        Receives ``s``; may be ``residual`` itself (in place) or ``x``, not ``out``.
    return_stats : bool
        Also return ``rstd`` of ``s`` (shaped ``x.shape[:-k] + (1,) * k``).
    quantize : None, "int8" or "float8_e4m3"
        As :func:`numbanorm.rms_norm`: ``y`` is returned quantized as ``q, scale``
        (``out=`` is the ``q`` buffer); ``s`` is written in full.

    Returns
    -------
    y : array, dtype of ``x`` (bfloat16/float16 data: 16-bit kernels, no float32 copy)
    s : array, ``residual_dtype``
    rstd : array, only with ``return_stats=True``

    With ``quantize``: ``(q, scale, s)`` (``+ (rstd,)``), ``scale`` per row shaped
    ``x.shape[:-k] + (1,) * k``.

    Examples
    --------
    >>> import numpy as np, numbanorm
    >>> x, r = np.array([[1.0, 2.0]]), np.array([[2.0, 2.0]])
    >>> y, s = numbanorm.add_rms_norm(x, r, 2, eps=0.0)
    >>> s, y.round(4)
    (array([[3., 4.]]), array([[0.8485, 1.1314]]))
    """
    if not (weight_offset or casting is not None or residual_dtype is not None or return_stats is not False
            or quantize is not None):
        res = _fused.plain_add(False, x, residual, normalized_shape, weight, None, eps, out, residual_out)
        if res is not None:
            return res
    if quantize is not None or _lowp.wanted(x, casting):  # 16-bit data / quantized outputs (extensions)
        return _lowp.rows_forward(_OP, False, x, residual, normalized_shape, weight, None, eps,
                                  weight_offset=weight_offset, casting=casting, residual_dtype=residual_dtype,
                                  out=out, residual_out=residual_out, return_stats=return_stats, add=True,
                                  quantize=quantize)
    return _fused.forward(_OP, False, x, residual, normalized_shape, weight, None, eps,
                          weight_offset=weight_offset, casting=casting, residual_dtype=residual_dtype, out=out,
                          residual_out=residual_out, return_stats=return_stats)


def add_rms_norm_backward(grad_y, grad_s, s, normalized_shape, weight=None, *, eps=None, rstd=None, y=None,
                          weight_offset=0.0, out=None):
    r"""Gradients of :func:`add_rms_norm` given the gradients of both its outputs.

    With :math:`\hat s = s\,r`, :math:`g = (o + w)\,dy`:

    .. math:: dx = dr = r \left(g - \hat s\,\overline{g \hat s}\right) + ds,\quad
              dw = \sum_{rows} dy\,\hat s

    Parameters
    ----------
    grad_y : array
        Gradient of the loss with respect to ``y``.
    grad_s : array or None
        Gradient with respect to the residual output ``s`` (None: ``s`` unused downstream).
    s : array or None
        The forward's ``s``; None when ``y`` is given (memory-saving form).
    normalized_shape, weight, eps, weight_offset
        As given to :func:`add_rms_norm`.
    rstd : array, optional
        Saved from the forward (``return_stats=True``); required with ``y``.
    y : array, optional
        The forward's output: ``ŝ = y / (o + w)`` is recovered from it, so ``s`` need
        not be kept. Where ``o + w = 0`` ``ŝ`` is unknown: the entries that depend on it
        (``grad_x`` and ``grad_weight`` of those columns) are NaN, all others exact.
    out : array, optional
        Receives ``grad_x`` (may be ``grad_y``).

    Returns
    -------
    grad_x : array
        The gradient with respect to ``x`` *and* to ``residual`` (they are equal: one
        array is returned; copy it if both need their own buffer).
    grad_weight : array, or None without ``weight``

    Examples
    --------
    >>> import numpy as np, numbanorm
    >>> s = np.array([[3.0, 4.0]])
    >>> gx, gw = numbanorm.add_rms_norm_backward(np.array([[1.0, 0.0]]), np.ones((1, 2)), s, 2, eps=0.0)
    >>> gx.round(4)
    array([[1.181 , 0.8642]])
    """
    res = _fused.plain_backward(False, grad_y, grad_s, s, normalized_shape, weight, eps, (rstd,), y, None,
                                weight_offset, out)
    if res is not None:  # a plain NumPy call: the checks above stand for the general ones
        return res
    bw = _lowp.rows_backward if _lowp.wanted_backward(y if s is None else s, grad_y, grad_s) else _fused.backward
    return bw(_OP + "_backward", False, grad_y, grad_s, s, normalized_shape, weight, eps=eps,
              rstd=rstd, y=y, weight_offset=weight_offset, out=out)
