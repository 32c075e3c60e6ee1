"""Lp normalization along one axis, forward and backward.

Semantics follow ``torch.nn.functional.normalize``: ``y = x / max(||x||_p, eps)`` with
the norm over ``axis`` (torch's ``dim``) as ``torch.linalg.vector_norm`` defines it for any
real ``p``: ``inf`` (max |x|), ``-inf`` (min |x|), ``0`` (the count of nonzeros, which has
no gradient), ``p < 0`` (``(sum |x|**p)**(1/p)``, 0 when an element is 0); a 0-d input is
one vector of one element along ``axis`` 0 or -1 (other axes: ``AxisError``); the gradient
is torch autograd's (the ``eps`` clamp passes the gradient through the norm where
``norm >= eps`` and blocks it where ``norm < eps``, giving ``dy / eps``).

Canonical views: rows ``(M, N)`` when ``axis`` is the last axis (or only size-1 axes
follow it); channels ``(outer, C, inner)`` otherwise, with C the normalized axis.
"""
import math
import numbers
import operator

import numpy as np

from .. import _dispatch, _validate
from . import _lowp
from ._common import Output, canonical, prod

_OP = "normalize"


def _p(fn, p):
    """Any real p but NaN: inf, -inf (min |x|), 0 (count of nonzeros), p < 0 (torch's norms)."""
    if isinstance(p, (bool, np.bool_)) or not isinstance(p, numbers.Real):
        raise TypeError(
            f"{fn}(): argument 'p' must be a real number (inf and -inf allowed), got {_validate.describe(p)}"
        )
    p = float(p)
    if math.isnan(p):
        raise ValueError(f"{fn}(): argument 'p' must be a real number (inf and -inf allowed), got {p}")
    return p


def _axis(fn, axis, ndim):
    """The normalized axis; a 0-d input is one vector of one element along axis 0 or -1 (torch)."""
    if isinstance(axis, (bool, np.bool_)):
        raise TypeError(f"{fn}(): argument 'axis' must be an integer, got {_validate.describe(axis)}")
    try:
        ax = operator.index(axis)
    except TypeError:
        raise TypeError(f"{fn}(): argument 'axis' must be an integer, got {_validate.describe(axis)}") from None
    dims = max(ndim, 1)
    if not -dims <= ax < dims:
        raise np.exceptions.AxisError(
            f"{fn}(): argument 'axis' must be an axis of the {ndim}-D input "
            f"(-{dims} <= axis < {dims}), got {axis}"
        )
    return ax % dims


def _views(shape, ax):
    """(outer, C, inner) around axis ``ax`` (a 0-d input: one vector of one element)."""
    shape = shape or (1,)
    return prod(shape[:ax]), shape[ax], prod(shape[ax + 1:])


def normalize(x, p=2.0, axis=1, eps=1e-12, *, out=None):
    r"""Lp normalization of the vectors along ``axis``.

    .. math:: y = \frac{x}{\max(\lVert x \rVert_p,\ \epsilon)},\qquad
              \lVert x \rVert_p = \Big(\sum_i |x_i|^p\Big)^{1/p}

    exactly like ``torch.nn.functional.normalize(x, p, dim=axis, eps)``.

    Parameters
    ----------
    x : array_like
        Input of any shape; NumPy (CPU kernels), GPU array (CUDA kernels) or Dask array.
        A 0-d input is one vector of one element (``axis`` 0 or -1, as torch).
    p : float
        The exponent, any real number: ``inf`` (maximum norm), ``-inf`` (min |x|), ``0``
        (the number of nonzero elements), ``p < 0`` (``(sum |x|**p)**(1/p)``, 0 when an
        element is 0, so ``y = x / eps`` there), as ``torch.linalg.vector_norm``. NaN is
        a ``ValueError``.
    axis : int
        The axis to normalize along (negative counts from the end). Default 1 (torch's
        ``dim=1``).
    eps : float
        Lower bound of the divisor, >= 0.
    out : array, optional
        Receives the result (may be ``x``).

    Returns
    -------
    y : array like ``x`` (float16 → float16, bfloat16 → bfloat16, integers → float64;
        16-bit data along the last axis are read and written without a float32 copy)

    Examples
    --------
    >>> import numpy as np, numbanorm
    >>> numbanorm.normalize(np.array([[3.0, 4.0], [0.0, 0.0]]), axis=-1)
    array([[0.6, 0.8],
           [0. , 0. ]])
    >>> numbanorm.normalize(np.array([[1.0, -3.0]]), p=1, axis=1)
    array([[ 0.25, -0.75]])
    """
    fn = _OP
    dev = _dispatch.device_of(fn, x=x, out=out)
    xa = _validate.array(fn, "x", dev, x)
    ctype, rtype = _validate.float_dtypes(fn, "x", xa.dtype)
    if rtype.itemsize == 2 and not dev.deferred:  # bfloat16 / float16 along the last axis: 16-bit kernels
        y = _lowp.normalize(fn, x, p, axis, eps, out, _p, _axis)
        if y is not None:
            return y
    p = _p(fn, p)
    ax = _axis(fn, axis, xa.ndim)
    eps = _validate.eps(fn, eps)
    out_a = _validate.out(fn, dev, out, xa.shape, rtype)
    if dev.deferred:
        return dev.build("normalize", _compute, xa, p, ax, eps, ctype, rtype, out=out)
    return _compute(dev, xa, p, ax, eps, ctype, rtype, out=out, out_a=out_a)


def _compute(dev, xa, p, ax, eps, ctype, rtype, *, out=None, out_a=None):
    """The kernels of :func:`normalize` for validated arguments (``p`` a float, ``ax`` a
    non-negative axis, ``xa`` ``dev``'s array, ``out_a`` the checked ``out=``), nothing
    checked again; also the Dask builder's per-block task (16-bit blocks normalized along
    their last axis take the 16-bit kernel, as the in-memory call on them does)."""
    outer, c_len, inner = _views(tuple(xa.shape), ax)
    if inner == 1 and xa.ndim and _lowp.fmt(xa.dtype) is not None:
        return _lowp.normalize_compute(dev, xa, p, ax, eps, out=out, out_a=out_a)
    kern = dev.kernels(_OP)
    if inner == 1:
        res = Output(dev, out, out_a, xa.shape, (outer, c_len), ctype, rtype, inputs=(xa,), inplace=True)
        if res.buf.size:
            kern.forward_rows(canonical(dev, xa, (outer, c_len), ctype), p, eps, res.buf)
    else:
        res = Output(dev, out, out_a, xa.shape, (outer, c_len, inner), ctype, rtype, inputs=(xa,), inplace=True)
        if res.buf.size:
            kern.forward_channels(canonical(dev, xa, (outer, c_len, inner), ctype), p, eps, res.buf)
    return res.result()


def normalize_backward(grad_out, x, p=2.0, axis=1, eps=1e-12, *, out=None):
    r"""Gradient of :func:`normalize` with respect to ``x`` (torch autograd semantics).

    With :math:`n = \lVert x \rVert_p`, :math:`d = \max(n, \epsilon)`:

    .. math:: \frac{\partial L}{\partial x_j} = \frac{dy_j}{d}
              - [n \ge \epsilon]\,\frac{\sum_i dy_i x_i}{d^2}\,\frac{\partial n}{\partial x_j}

    where :math:`\partial n / \partial x_j` is :math:`x_j / n` for p = 2,
    :math:`\mathrm{sign}(x_j)` for p = 1, :math:`\mathrm{sign}(x_j)` shared equally among the
    entries attaining the maximum (minimum) for p = inf (-inf), 0 for p = 0, and
    :math:`\mathrm{sign}(x_j) |x_j|^{p-1} n^{1-p}` otherwise (0 where :math:`x_j = 0`).
    Below ``eps`` the result is ``grad_out / eps``.

    Parameters
    ----------
    grad_out : array, shape of ``x``
        Gradient of the loss with respect to the output.
    x, p, axis, eps
        As given to :func:`normalize`.
    out : array, optional
        Receives ``grad_x`` (shape of ``x``) and is returned in its place (may be
        ``grad_out``); a numbanorm extension of the API so training loops can reuse the
        gradient buffer.

    Returns
    -------
    grad_x : array like ``x`` (16-bit ``x`` along the last axis: read and written without
        a float32 copy, ``grad_x`` rounded once)

    Examples
    --------
    >>> import numpy as np, numbanorm
    >>> x = np.array([[3.0, 4.0]])
    >>> numbanorm.normalize_backward(np.array([[1.0, 0.0]]), x, axis=-1)
    array([[ 0.128, -0.096]])
    """
    fn = _OP + "_backward"
    dev = _dispatch.device_of(fn, x=x, grad_out=grad_out, out=out)
    xa = _validate.array(fn, "x", dev, x)
    ctype, rtype = _validate.float_dtypes(fn, "x", xa.dtype)
    if rtype.itemsize == 2 and not dev.deferred:  # bfloat16 / float16 along the last axis: 16-bit kernels
        _validate.check_array_like(fn, "grad_out", grad_out)
        gx = _lowp.normalize_backward(fn, grad_out, x, p, axis, eps, out, _p, _axis)
        if gx is not None:
            return gx
    ga = _validate.array(fn, "grad_out", dev, grad_out)
    _validate.float_dtypes(fn, "grad_out", ga.dtype)
    if tuple(ga.shape) != tuple(xa.shape):
        raise ValueError(
            f"{fn}(): argument 'grad_out' must have the shape of x {tuple(xa.shape)}, got shape {tuple(ga.shape)}"
        )
    p = _p(fn, p)
    ax = _axis(fn, axis, xa.ndim)
    eps = _validate.eps(fn, eps)
    out_a = _validate.out(fn, dev, out, xa.shape, rtype)
    if dev.deferred:
        return dev.build("normalize_backward", _compute_backward, ga, xa, p, ax, eps, ctype, rtype, out=out)
    return _compute_backward(dev, ga, xa, p, ax, eps, ctype, rtype, out=out, out_a=out_a)


def _compute_backward(dev, ga, xa, p, ax, eps, ctype, rtype, *, out=None, out_a=None):
    """The kernels of :func:`normalize_backward` for validated arguments (as in
    :func:`_compute`); also the Dask builder's per-block task."""
    outer, c_len, inner = _views(tuple(xa.shape), ax)
    if inner == 1 and xa.ndim and _lowp.fmt(xa.dtype) is not None:
        return _lowp.normalize_backward_compute(dev, ga, xa, p, ax, eps, out=out, out_a=out_a)
    kern = dev.kernels(_OP)
    shape2 = (outer, c_len) if inner == 1 else (outer, c_len, inner)
    res = Output(dev, out, out_a, xa.shape, shape2, ctype, rtype, inputs=(xa, ga))
    grad_x = res.buf
    if grad_x.size:
        x2 = canonical(dev, xa, shape2, ctype)
        g2 = canonical(dev, ga, shape2, ctype)
        if inner == 1:
            kern.backward_rows(g2, x2, p, eps, grad_x)
        else:
            kern.backward_channels(g2, x2, p, eps, grad_x)
    return res.result()
