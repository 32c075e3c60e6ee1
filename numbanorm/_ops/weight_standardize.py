"""Weight standardization (Qiao et al. 2019, "Micro-Batch Training with Batch-Channel
Normalization and Weight Standardization"), forward and backward.

Each output filter of a weight (the slice ``weight[i]`` along the first axis) is
standardized over all its remaining axes::

    w_hat = (w - mean(w)) / sqrt(var(w) + eps)

with the **biased** variance and ``eps`` inside the square root, as timm's ``StdConv2d``
(``F.batch_norm`` over ``weight.reshape(1, out_channels, -1)``) computes it. (The paper's
reference code divides by the unbiased standard deviation plus ``eps``; for a 3x3 conv
filter over 256 input channels the two differ by a factor sqrt(N / (N - 1)) ≈ 1.0002.)
Used with GroupNorm for small-batch training. Canonical view: rows ``(M, N)`` with
M = ``weight.shape[0]`` and N = the product of the other dims.
"""
from .. import _dispatch, _validate
from ._common import Output, canonical, prod

_OP = "weight_standardize"


def _rows(fn, shape):
    if len(shape) == 0:
        raise ValueError(
            f"{fn}(): argument 'weight' must have at least 1 dimension (output filters first), got a 0-d array"
        )
    m = shape[0]
    return m, prod(shape[1:])


def weight_standardize(weight, eps=1e-5, *, out=None):
    r"""Standardize each output filter of a (convolution) weight.

    .. math:: \hat w_{i} = \frac{w_{i} - \mathrm{E}[w_{i}]}{\sqrt{\mathrm{Var}[w_{i}] + \epsilon}}

    per filter ``i`` (first axis), with mean and biased variance over all remaining axes
    (timm's ``StdConv2d``; the variance is biased and ``eps`` sits inside the root).

    Parameters
    ----------
    weight : array_like
        Weight of shape ``(out_channels, ...)``, e.g. ``(C_out, C_in, kH, kW)``; NumPy, GPU
        or Dask array.
    eps : float
        Added to the variance, >= 0.
    out : array, optional
        Receives the result (may be ``weight``).

    Returns
    -------
    array like ``weight`` (float16 → float16, integers → float64)

    Examples
    --------
    >>> import numpy as np, numbanorm
    >>> w = np.array([[[1.0, 3.0]], [[2.0, 2.0]]])          # (C_out=2, C_in=1, k=2)
    >>> numbanorm.weight_standardize(w, eps=0.0)
    array([[[-1.,  1.]],
    <BLANKLINE>
           [[nan, nan]]])
    >>> numbanorm.weight_standardize(w).round(4)
    array([[[-1.,  1.]],
    <BLANKLINE>
           [[ 0.,  0.]]])
    """
    fn = _OP
    dev = _dispatch.device_of(fn, weight=weight, out=out)
    wa = _validate.array(fn, "weight", dev, weight)
    ctype, rtype = _validate.float_dtypes(fn, "weight", wa.dtype)
    m, n = _rows(fn, tuple(wa.shape))
    eps = _validate.eps(fn, eps)
    out_a = _validate.out(fn, dev, out, wa.shape, rtype)
    if dev.deferred:
        return dev.build("weight_standardize", _compute, wa, eps, ctype, rtype, out=out)
    return _compute(dev, wa, eps, ctype, rtype, out=out, out_a=out_a)


def _compute(dev, wa, eps, ctype, rtype, *, out=None, out_a=None):
    """The kernel of :func:`weight_standardize` for validated arguments (``wa`` ``dev``'s
    array of at least 1 dim, ``out_a`` the checked ``out=``), nothing checked again; also
    the Dask builder's per-block task."""
    m, n = wa.shape[0], prod(wa.shape[1:])
    res = Output(dev, out, out_a, wa.shape, (m, n), ctype, rtype, inputs=(wa,), inplace=True)
    if m and n:
        dev.kernels(_OP).forward(canonical(dev, wa, (m, n), ctype), eps, res.buf)
    return res.result()


def weight_standardize_backward(grad_out, weight, eps=1e-5, *, out=None):
    r"""Gradient of :func:`weight_standardize` with respect to ``weight``.

    Per filter of N elements with :math:`r = 1/\sqrt{\mathrm{Var}[w] + \epsilon}` and
    :math:`\hat w = (w - \mathrm{E}[w])\,r` (a layer-norm backward without affine):

    .. math:: \frac{\partial L}{\partial w} = r\left(dy - \overline{dy}
              - \hat w\,\overline{dy\,\hat w}\right)

    Parameters
    ----------
    grad_out : array, shape of ``weight``
        Gradient of the loss with respect to the standardized weight.
    weight, eps
        As given to :func:`weight_standardize`.
    out : array, optional
        Receives ``grad_weight`` (shape of ``weight``) and is returned in its place (may be
        ``grad_out``); a numbanorm extension of the API so training loops can reuse the
        gradient buffer.

    Returns
    -------
    grad_weight : array like ``weight``

    Examples
    --------
    >>> import numpy as np, numbanorm
    >>> w = np.array([[1.0, 2.0, 4.0]])
    >>> g = numbanorm.weight_standardize_backward(np.ones_like(w), w)
    >>> bool(np.abs(g).max() < 1e-12)  # a constant shift of the output is invisible
    True
    """
    fn = _OP + "_backward"
    dev = _dispatch.device_of(fn, weight=weight, grad_out=grad_out, out=out)
    wa = _validate.array(fn, "weight", dev, weight)
    ga = _validate.array(fn, "grad_out", dev, grad_out)
    ctype, rtype = _validate.float_dtypes(fn, "weight", wa.dtype)
    _validate.float_dtypes(fn, "grad_out", ga.dtype)
    if tuple(ga.shape) != tuple(wa.shape):
        raise ValueError(
            f"{fn}(): argument 'grad_out' must have the shape of weight {tuple(wa.shape)}, got shape {tuple(ga.shape)}"
        )
    m, n = _rows(fn, tuple(wa.shape))
    eps = _validate.eps(fn, eps)
    out_a = _validate.out(fn, dev, out, wa.shape, rtype)
    if dev.deferred:
        return dev.build("weight_standardize_backward", _compute_backward, ga, wa, eps, ctype, rtype, out=out)
    return _compute_backward(dev, ga, wa, eps, ctype, rtype, out=out, out_a=out_a)


def _compute_backward(dev, ga, wa, eps, ctype, rtype, *, out=None, out_a=None):
    """The kernel of :func:`weight_standardize_backward` for validated arguments (as in
    :func:`_compute`); also the Dask builder's per-block task."""
    m, n = wa.shape[0], prod(wa.shape[1:])
    res = Output(dev, out, out_a, wa.shape, (m, n), ctype, rtype, inputs=(wa, ga))
    if m and n:
        dev.kernels(_OP).backward(canonical(dev, ga, (m, n), ctype), canonical(dev, wa, (m, n), ctype), eps, res.buf)
    return res.result()
