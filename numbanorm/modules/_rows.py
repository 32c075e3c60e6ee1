"""The row-normalization layers (statistics per row over the trailing ``normalized_shape``
dims): :class:`LayerNorm`, :class:`RMSNorm` and their fused residual-add twins
:class:`AddLayerNorm`, :class:`AddRMSNorm` (pre-norm transformer blocks).
"""
import numpy as np

import numbanorm as _nb

from .. import _validate
from ._base import _Layer
from ._checks import _apply_device, _as_input, _bool, _device_name, _eps, _shape


# --------------------------------------------------------------------------------------
# LayerNorm / RMSNorm


class LayerNorm(_Layer):
    r"""Layer normalization over the trailing ``normalized_shape`` dims (``torch.nn.LayerNorm``).

    .. math:: y = \frac{x - \mathrm{E}[x]}{\sqrt{\mathrm{Var}[x] + \epsilon}} \cdot w + b

    Parameters
    ----------
    normalized_shape : int or tuple of int
    eps : float, default 1e-5
    elementwise_affine : bool, default True
        Learnable ``weight`` (ones) and ``bias`` (zeros) of shape ``normalized_shape``.
    bias : bool, default True
        With ``elementwise_affine``, whether ``bias`` exists.
    device : "cpu" or "cuda", optional
    dtype : float16/32/64, default float32
        The parameters' dtype.

    Examples
    --------
    >>> import numpy as np, numbanorm
    >>> ln = numbanorm.LayerNorm(3)
    >>> y = ln(np.array([[1.0, 2.0, 3.0]], np.float32))
    >>> gx = ln.backward(np.ones_like(y))
    >>> ln.bias_grad
    array([1., 1., 1.], dtype=float32)
    """

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True, device=None, dtype=None):
        cls = type(self).__name__
        self.normalized_shape = _shape(cls, normalized_shape)
        self.eps = _eps(cls, eps)
        self.elementwise_affine = _bool(cls, elementwise_affine, "elementwise_affine")
        use_bias = _bool(cls, bias, "bias")
        _device_name(cls + "()", device)
        super().__init__(dtype)
        if self.elementwise_affine:
            self.weight = np.ones(self.normalized_shape, self.dtype)
            if use_bias:
                self.bias = np.zeros(self.normalized_shape, self.dtype)
        _apply_device(self, device)

    def reset_parameters(self):
        if self.weight is not None:
            self.weight = self._new_buffer("weight", 1.0, self.normalized_shape)
        if self.bias is not None:
            self.bias = self._new_buffer("bias", 0.0, self.normalized_shape)

    def forward(self, x):
        x = _as_input(self, x)
        y, mean, rstd = _nb.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps, return_stats=True)
        self._cache = (x, mean, rstd)
        return y

    def backward(self, grad_out):
        x, mean, rstd = self._saved()
        gx, gw, gb = _nb.layer_norm_backward(
            grad_out, x, self.normalized_shape, self.weight, eps=self.eps, mean=mean, rstd=rstd
        )
        self._store_grads(weight=gw, bias=gb)
        return gx

    def extra_repr(self):
        return (
            f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}, "
            f"bias={self.bias is not None}"
        )


class RMSNorm(_Layer):
    r"""Root-mean-square normalization (``torch.nn.RMSNorm``).

    .. math:: y = \frac{x}{\sqrt{\mathrm{E}[x^2] + \epsilon}} \cdot w

    ``eps=None`` is the machine epsilon of the compute dtype (PyTorch's rule).

    Examples
    --------
    >>> import numpy as np, numbanorm
    >>> rn = numbanorm.RMSNorm(2, eps=0.0, dtype=np.float64)
    >>> rn(np.array([[3.0, 4.0]])).round(4)
    array([[0.8485, 1.1314]])
    """

    _param_names = ("weight",)

    def __init__(self, normalized_shape, eps=None, elementwise_affine=True, device=None, dtype=None):
        cls = type(self).__name__
        self.normalized_shape = _shape(cls, normalized_shape)
        self.eps = _eps(cls, eps, allow_none=True)
        self.elementwise_affine = _bool(cls, elementwise_affine, "elementwise_affine")
        _device_name(cls + "()", device)
        super().__init__(dtype)
        if self.elementwise_affine:
            self.weight = np.ones(self.normalized_shape, self.dtype)
        _apply_device(self, device)

    def reset_parameters(self):
        if self.weight is not None:
            self.weight = self._new_buffer("weight", 1.0, self.normalized_shape)

    def forward(self, x):
        x = _as_input(self, x)
        y, rstd = _nb.rms_norm(x, self.normalized_shape, self.weight, self.eps, return_stats=True)
        self._cache = (x, rstd)
        return y

    def backward(self, grad_out):
        x, rstd = self._saved()
        gx, gw = _nb.rms_norm_backward(grad_out, x, self.normalized_shape, self.weight, eps=self.eps, rstd=rstd)
        self._store_grads(weight=gw)
        return gx

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"


# --------------------------------------------------------------------------------------
# fused residual add + norm (pre-norm transformer blocks)


class _AddNorm:
    """``(y, s) = layer(x, residual)`` with ``s = x + residual``; ``backward(grad_y,
    grad_s=None)`` returns the gradient w.r.t. ``x``, which is also the gradient w.r.t.
    ``residual`` (one array). ``memory_efficient=True`` keeps ``y`` instead of ``s`` for
    the backward (x̂ recomputed from ``y``; needs nonzero weights)."""

    def _init_add(self, weight_offset, memory_efficient):
        cls = type(self).__name__
        self.weight_offset = _validate.real(cls, weight_offset, "weight_offset")
        self.memory_efficient = _bool(cls, memory_efficient, "memory_efficient")

    def __call__(self, x, residual):
        return self.forward(x, residual)

    def _keep(self, y, s, stats):
        self._cache = ((None, y) if self.memory_efficient else (s, None)) + tuple(stats)


class AddRMSNorm(_AddNorm, RMSNorm):
    r"""Fused residual add + RMSNorm layer (:func:`numbanorm.add_rms_norm`).

    Constructor arguments of :class:`RMSNorm` plus ``weight_offset`` (Gemma: 1.0; the
    weight applied is ``weight_offset + weight``) and ``memory_efficient``.

    Examples
    --------
    >>> import numpy as np, numbanorm
    >>> layer = numbanorm.AddRMSNorm(2, eps=0.0, dtype=np.float64)
    >>> y, s = layer(np.array([[1.0, 2.0]]), np.array([[2.0, 2.0]]))
    >>> s, y.round(4)
    (array([[3., 4.]]), array([[0.8485, 1.1314]]))
    >>> gx = layer.backward(np.ones_like(y), np.ones_like(s))
    """

    def __init__(self, normalized_shape, eps=None, elementwise_affine=True, device=None, dtype=None, *,
                 weight_offset=0.0, memory_efficient=False):
        self._init_add(weight_offset, memory_efficient)
        super().__init__(normalized_shape, eps, elementwise_affine, device, dtype)

    def forward(self, x, residual):
        x, residual = _as_input(self, x), _as_input(self, residual, "residual")
        y, s, rstd = _nb.add_rms_norm(x, residual, self.normalized_shape, self.weight, self.eps,
                                      weight_offset=self.weight_offset, return_stats=True)
        self._keep(y, s, (rstd,))
        return y, s

    def backward(self, grad_y, grad_s=None):
        s, y, rstd = self._saved()
        gx, gw = _nb.add_rms_norm_backward(grad_y, grad_s, s, self.normalized_shape, self.weight, eps=self.eps,
                                           rstd=rstd, y=y, weight_offset=self.weight_offset)
        self._store_grads(weight=gw)
        return gx


class AddLayerNorm(_AddNorm, LayerNorm):
    r"""Fused residual add + LayerNorm layer (:func:`numbanorm.add_layer_norm`).

    Constructor arguments of :class:`LayerNorm` plus ``weight_offset`` and
    ``memory_efficient``.

    Examples
    --------
    >>> import numpy as np, numbanorm
    >>> layer = numbanorm.AddLayerNorm(3, dtype=np.float64)
    >>> y, s = layer(np.array([[1.0, 2.0, 3.0]]), np.ones((1, 3)))
    >>> y.round(4)
    array([[-1.2247,  0.    ,  1.2247]])
    """

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True, device=None, dtype=None, *,
                 weight_offset=0.0, memory_efficient=False):
        self._init_add(weight_offset, memory_efficient)
        super().__init__(normalized_shape, eps, elementwise_affine, bias, device, dtype)

    def forward(self, x, residual):
        x, residual = _as_input(self, x), _as_input(self, residual, "residual")
        y, s, mean, rstd = _nb.add_layer_norm(x, residual, self.normalized_shape, self.weight, self.bias, self.eps,
                                              weight_offset=self.weight_offset, return_stats=True)
        self._keep(y, s, (mean, rstd))
        return y, s

    def backward(self, grad_y, grad_s=None):
        s, y, mean, rstd = self._saved()
        gx, gw, gb = _nb.add_layer_norm_backward(
            grad_y, grad_s, s, self.normalized_shape, self.weight, eps=self.eps, mean=None if y is not None else mean,
            rstd=rstd, y=y, bias=self.bias if y is not None else None, weight_offset=self.weight_offset)
        self._store_grads(weight=gw, bias=gb)
        return gx
