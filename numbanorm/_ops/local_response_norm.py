"""Local response normalization (Krizhevsky et al. 2012), forward and backward.

Two modes and three conventions:

* ``mode="across_channels"`` (inter-channel, AlexNet): the window runs over ``size``
  neighbouring channels at each spatial position.
* ``mode="within_channel"`` (intra-channel): the window is a ``size x ... x size``
  neighbourhood on each channel's spatial map (1-D, 2-D, 3-D or more spatial dims).
* ``convention="torch"``: exactly ``torch.nn.functional.local_response_norm`` — window
  ``i - size//2 ... i + (size-1)//2`` per windowed axis with zero padding, alpha divided by
  the number of window positions (``size`` across channels, ``size**ndim_spatial`` within).
* ``convention="paper"``: ``b = a / (k + alpha * sum a**2) ** beta`` over
  ``i - size//2 ... i + size//2`` (integer division) clipped to the valid range, alpha not
  divided (for even sizes the window holds ``size + 1`` positions).
* ``convention="onnx"``: ONNX's ``LRN`` operator — as ``"torch"`` (alpha divided by the
  number of window positions) but with the window ``i - (size-1)//2 ... i + size//2``,
  which for even sizes is torch's mirrored (``numbanorm.onnx.lrn`` uses it).

Negative bases: ``k + alpha * sum`` raised to a non-integer power is undefined for a
negative base. ``k < 0`` with a non-integer ``beta`` makes the base negative wherever the
window is all zeros, so it is refused with a ``ValueError``. A negative ``alpha`` is
allowed (as in torch); where it makes the base negative with non-integer ``beta`` the
output is NaN, as in torch. A zero base gives ``x / 0`` (inf, or NaN for ``x = 0``).

Canonical views (see ``numbanorm/_cpu/local_response_norm.py``): ``(outer, L, inner)``
with the windowed axes inside ``L``.
"""
from .. import _dispatch, _validate
from ._common import Output, canonical, prod

_OP = "local_response_norm"
MODES = ("across_channels", "within_channel")
CONVENTIONS = ("torch", "paper", "onnx")


def _plan(fn, shape, size, alpha, beta, k, mode, convention, channel_axis):
    """Validate the parameters for an ``x`` of ``shape``; return them checked as
    ``(size, alpha, beta, k, mode, convention, channel axis)`` (see :func:`_layout`)."""
    ndim = len(shape)
    size = _validate.positive_int(fn, size, "size")
    alpha = _validate.real(fn, alpha, "alpha")
    beta = _validate.real(fn, beta, "beta")
    k = _validate.real(fn, k, "k")
    mode = _validate.choice(fn, mode, "mode", MODES)
    convention = _validate.choice(fn, convention, "convention", CONVENTIONS)
    ca = _validate.channel_axis(fn, channel_axis, ndim)
    if k < 0 and not float(beta).is_integer():
        raise ValueError(
            f"{fn}(): argument 'k' must be >= 0 when beta is not an integer (the base "
            f"k + alpha * sum(x**2) would be negative, giving NaN), got k={k} with beta={beta}"
        )
    if mode != "across_channels":
        if ndim < 3:
            raise ValueError(
                f"{fn}(): argument 'x' must have at least one spatial dimension (N, C, *spatial) "
                f"for mode='within_channel', got shape {tuple(shape)}"
            )
        if ca not in (1, ndim - 1):
            raise ValueError(
                f"{fn}(): argument 'channel_axis' must be 1 or -1 for mode='within_channel' "
                f"(channels first or last), got {channel_axis}"
            )
    return size, alpha, beta, k, mode, convention, ca


def _layout(shape, size, alpha, mode, convention, ca):
    """The kernels' view of checked parameters (:func:`_plan`) on an ``x`` of ``shape``:
    ``(shape3, sp, lo, hi, alpha')``, nothing checked."""
    ndim = len(shape)
    if convention == "torch":
        lo, hi = size // 2, (size - 1) // 2
    elif convention == "onnx":  # ONNX LRN: floor((size-1)/2) before, ceil((size-1)/2) after
        lo, hi = (size - 1) // 2, size // 2
    else:
        lo = hi = size // 2
    divided = convention != "paper"
    if mode == "across_channels":
        a = alpha / size if divided else alpha
        shape3 = (prod(shape[:ca]), shape[ca], prod(shape[ca + 1:]))
        sp = (shape[ca],)
    else:
        if ca == 1:
            sp = tuple(shape[2:])
            shape3 = (shape[0] * shape[1], prod(sp), 1)
        else:
            sp = tuple(shape[1:-1])
            shape3 = (shape[0], prod(sp), shape[ndim - 1])
        a = alpha / size ** len(sp) if divided else alpha
    return shape3, sp, lo, hi, a


def local_response_norm(x, size, alpha=1e-4, beta=0.75, k=1.0, *, mode="across_channels",
                        convention="torch", channel_axis=1, out=None):
    r"""Local response normalization across channels or within each channel's map.

    .. math:: y_i = \frac{x_i}{\left(k + \alpha' \sum_{j \in W(i)} x_j^2\right)^{\beta}}

    ``convention="torch"``: :math:`W(i) = i - \lfloor size/2 \rfloor \ldots
    i + \lfloor (size-1)/2 \rfloor` (zero padded) and :math:`\alpha' = \alpha / size`
    (across channels) or :math:`\alpha / size^{d}` (within channel, d spatial dims), exactly
    ``torch.nn.functional.local_response_norm``. ``convention="paper"``:
    :math:`W(i) = i - \lfloor n/2 \rfloor \ldots i + \lfloor n/2 \rfloor` clipped to the
    valid range and :math:`\alpha' = \alpha` (Krizhevsky et al. 2012).
    ``convention="onnx"``: ONNX's ``LRN``, :math:`W(i) = i - \lfloor (size-1)/2 \rfloor
    \ldots i + \lceil (size-1)/2 \rceil` with torch's :math:`\alpha'`. Within a channel
    the window is the product of these windows along every spatial axis.

    Parameters
    ----------
    x : array_like
        Input ``(N, C, *spatial)`` (``channel_axis=1``) or ``(N, *spatial, C)``
        (``channel_axis=-1``); NumPy, GPU or Dask array. At least 2-D (3-D for
        ``mode="within_channel"``).
    size : int
        Window size (>= 1); may exceed the number of channels.
    alpha, beta, k : float
        Scale, exponent and additive constant. ``k < 0`` with a non-integer ``beta`` is a
        ``ValueError`` (the base would be negative); a negative base from a negative
        ``alpha`` gives NaN (torch's behaviour).
    mode : {"across_channels", "within_channel"}
    convention : {"torch", "paper", "onnx"}
    channel_axis : int
        Axis of the channels (1 or -1; any non-batch axis for ``"across_channels"``).
    out : array, optional
        Receives the result (may be ``x``).

    Returns
    -------
    y : array like ``x`` (float16 → float16, integers → float64)

    Examples
    --------
    >>> import numpy as np, numbanorm
    >>> x = np.array([1.0, 1.0, 0.0, 2.0]).reshape(1, 4, 1)   # (N, C, L)
    >>> numbanorm.local_response_norm(x, 2, alpha=1.0, beta=1.0, k=0.0,
    ...                               convention="paper").ravel()
    array([0.5, 0.5, 0. , 0.5])
    >>> numbanorm.local_response_norm(x, 2, alpha=1.0, beta=1.0, k=1.0).ravel().round(4)
    array([0.6667, 0.5   , 0.    , 0.6667])
    """
    fn = _OP
    dev = _dispatch.device_of(fn, x=x, out=out)
    xa = _validate.array(fn, "x", dev, x)
    ctype, rtype = _validate.float_dtypes(fn, "x", xa.dtype)
    params = _plan(fn, tuple(xa.shape), size, alpha, beta, k, mode, convention, channel_axis)
    out_a = _validate.out(fn, dev, out, xa.shape, rtype)
    if dev.deferred:
        return dev.build("local_response_norm", _compute, xa, params, ctype, rtype, out=out)
    return _compute(dev, xa, params, ctype, rtype, out=out, out_a=out_a)


def _compute(dev, xa, params, ctype, rtype, *, out=None, out_a=None):
    """The kernel of :func:`local_response_norm` for validated arguments (``params`` as
    :func:`_plan` returns them, ``xa`` ``dev``'s array, ``out_a`` the checked ``out=``),
    nothing checked again; also the Dask builder's per-block task."""
    size, alpha, beta, k, mode, convention, ca = params
    shape3, sp, lo, hi, a = _layout(tuple(xa.shape), size, alpha, mode, convention, ca)
    res = Output(dev, out, out_a, xa.shape, shape3, ctype, rtype, inputs=(xa,), inplace=True)
    if res.buf.size:
        dev.kernels(_OP).forward(canonical(dev, xa, shape3, ctype), sp, lo, hi, a, k, beta, res.buf)
    return res.result()


def local_response_norm_backward(grad_out, x, size, alpha=1e-4, beta=0.75, k=1.0, *,
                                 mode="across_channels", convention="torch", channel_axis=1, out=None):
    r"""Gradient of :func:`local_response_norm` with respect to ``x``.

    With :math:`s_i = k + \alpha' \sum_{j \in W(i)} x_j^2`:

    .. math:: \frac{\partial L}{\partial x_j} = dy_j\, s_j^{-\beta}
              - 2 \alpha' \beta\, x_j \sum_{i:\ j \in W(i)} dy_i\, x_i\, s_i^{-\beta - 1}

    (the sum runs over the transposed window, which differs from :math:`W` for even sizes
    in the torch convention). Matches torch autograd of ``local_response_norm``.

    Parameters
    ----------
    grad_out : array, shape of ``x``
        Gradient of the loss with respect to the output.
    x, size, alpha, beta, k, mode, convention, channel_axis
        As given to :func:`local_response_norm`.
    out : array, optional
        Receives ``grad_x`` (shape of ``x``) and is returned in its place (may be
        ``grad_out``); a numbanorm extension of the API so training loops can reuse the
        gradient buffer.

    Returns
    -------
    grad_x : array like ``x``

    Examples
    --------
    >>> import numpy as np, numbanorm
    >>> x = np.array([[1.0, 2.0]]).reshape(1, 2, 1)
    >>> numbanorm.local_response_norm_backward(np.ones_like(x), x, 1, alpha=1.0, beta=1.0).ravel()
    array([ 0.  , -0.12])
    """
    fn = _OP + "_backward"
    dev = _dispatch.device_of(fn, x=x, grad_out=grad_out, out=out)
    xa = _validate.array(fn, "x", dev, x)
    ga = _validate.array(fn, "grad_out", dev, grad_out)
    ctype, rtype = _validate.float_dtypes(fn, "x", xa.dtype)
    _validate.float_dtypes(fn, "grad_out", ga.dtype)
    if tuple(ga.shape) != tuple(xa.shape):
        raise ValueError(
            f"{fn}(): argument 'grad_out' must have the shape of x {tuple(xa.shape)}, got shape {tuple(ga.shape)}"
        )
    params = _plan(fn, tuple(xa.shape), size, alpha, beta, k, mode, convention, channel_axis)
    out_a = _validate.out(fn, dev, out, xa.shape, rtype)
    if dev.deferred:
        return dev.build("local_response_norm_backward", _compute_backward, ga, xa, params, ctype, rtype, out=out)
    return _compute_backward(dev, ga, xa, params, ctype, rtype, out=out, out_a=out_a)


def _compute_backward(dev, ga, xa, params, ctype, rtype, *, out=None, out_a=None):
    """The kernel of :func:`local_response_norm_backward` for validated arguments (as in
    :func:`_compute`); also the Dask builder's per-block task."""
    size, alpha, beta, k, mode, convention, ca = params
    shape3, sp, lo, hi, a = _layout(tuple(xa.shape), size, alpha, mode, convention, ca)
    res = Output(dev, out, out_a, xa.shape, shape3, ctype, rtype, inputs=(xa, ga))
    if res.buf.size:
        dev.kernels(_OP).backward(canonical(dev, ga, shape3, ctype), canonical(dev, xa, shape3, ctype),
                                  sp, lo, hi, a, k, beta, res.buf)
    return res.result()
