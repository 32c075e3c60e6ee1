"""Fused residual add + LayerNorm (``h = x + residual; y = layer_norm(h)``), forward and
backward (onnxruntime's SkipLayerNormalization without the skip bias). Canonical view:
rows ``(M, N)``; the shared code is in :mod:`._fused`."""
from . import _fused, _lowp

_OP = "add_layer_norm"


def add_layer_norm(x, residual, normalized_shape, weight=None, bias=None, eps=1e-5, *, weight_offset=0.0,
                   casting=None, residual_dtype=None, out=None, residual_out=None, return_stats=False):
    r"""``s = x + residual`` and ``y = layer_norm(s)`` in one pass over memory.

    .. math:: s = x + r,\qquad y = \frac{s - \mathrm{E}[s]}{\sqrt{\mathrm{Var}[s] + \epsilon}}
              \cdot (o + w) + b

    Parameters are those of :func:`numbanorm.add_rms_norm` plus ``bias`` (shape
    ``normalized_shape``) and ``eps`` (default 1e-5, as ``layer_norm``).

    Returns
    -------
    y : array, dtype of ``x`` (bfloat16/float16 data: 16-bit kernels, no float32 copy)
    s : array, ``residual_dtype``
    mean, rstd : arrays of ``s``'s statistics, only with ``return_stats=True``

    Examples
    --------
    >>> import numpy as np, numbanorm
    >>> y, s = numbanorm.add_layer_norm(np.array([[1.0, 2.0, 3.0]]), np.ones((1, 3)), 3)
    >>> s, y.round(4)
    (array([[2., 3., 4.]]), array([[-1.2247,  0.    ,  1.2247]]))
    """
    if not (weight_offset or casting is not None or residual_dtype is not None or return_stats is not False):
        res = _fused.plain_add(True, x, residual, normalized_shape, weight, bias, eps, out, residual_out)
        if res is not None:
            return res
    if _lowp.wanted(x, casting):  # bfloat16 / float16 data: the 16-bit kernels (no float32 copy)
        return _lowp.rows_forward(_OP, True, x, residual, normalized_shape, weight, bias, eps,
                                  weight_offset=weight_offset, casting=casting, residual_dtype=residual_dtype,
                                  out=out, residual_out=residual_out, return_stats=return_stats, add=True)
    return _fused.forward(_OP, True, x, residual, normalized_shape, weight, bias, eps,
                          weight_offset=weight_offset, casting=casting, residual_dtype=residual_dtype, out=out,
                          residual_out=residual_out, return_stats=return_stats)


def add_layer_norm_backward(grad_y, grad_s, s, normalized_shape, weight=None, *, eps=1e-5, mean=None, rstd=None,
                            y=None, bias=None, weight_offset=0.0, out=None):
    r"""Gradients of :func:`add_layer_norm` given the gradients of both its outputs.

    With :math:`\hat s = (s - \mu)\,r`, :math:`g = (o + w)\,dy`:

    .. math:: dx = dr = r \left(g - \overline{g} - \hat s\,\overline{g \hat s}\right) + ds,\quad
              dw = \sum_{rows} dy\,\hat s,\quad db = \sum_{rows} dy

    Parameters are those of :func:`numbanorm.add_rms_norm_backward` plus ``mean`` (saved
    with ``rstd``; not needed with ``y``) and ``bias`` (only with ``y``:
    ``ŝ = (y − b) / (o + w)``).

    Returns
    -------
    grad_x : array
        The gradient with respect to ``x`` and to ``residual`` (equal; one array).
    grad_weight : array, or None without ``weight``
    grad_bias : array

    Examples
    --------
    >>> import numpy as np, numbanorm
    >>> s = np.array([[1.0, 2.0, 4.0]])
    >>> gx, gw, gb = numbanorm.add_layer_norm_backward(np.ones_like(s), 2 * np.ones_like(s), s, 3)
    >>> gx.round(6), gb
    (array([[2., 2., 2.]]), array([1., 1., 1.]))
    """
    res = _fused.plain_backward(True, grad_y, grad_s, s, normalized_shape, weight, eps, (mean, rstd), y, bias,
                                weight_offset, out)
    if res is not None:  # a plain NumPy call: the checks above stand for the general ones
        return res
    bw = _lowp.rows_backward if _lowp.wanted_backward(y if s is None else s, grad_y, grad_s) else _fused.backward
    return bw(_OP + "_backward", True, grad_y, grad_s, s, normalized_shape, weight, eps=eps,
              mean=mean, rstd=rstd, y=y, bias=bias, weight_offset=weight_offset, out=out)
