"""The local-response-normalization layer :class:`LocalResponseNorm` (no parameters)."""
import numbanorm as _nb

from .. import _validate
from ._base import _Layer
from ._checks import _as_input, _channel_axis_arg, _size


class LocalResponseNorm(_Layer):
    """Local response normalization (``torch.nn.LocalResponseNorm``); no parameters.

    Extra keywords: ``mode`` ("across_channels" or "within_channel"), ``convention``
    ("torch" or "paper") and ``channel_axis`` (see :func:`numbanorm.local_response_norm`).
    ``dtype`` is accepted for uniformity (the layer has no parameters).

    Examples
    --------
    >>> import numpy as np, numbanorm
    >>> lrn = numbanorm.LocalResponseNorm(2)
    >>> lrn(np.ones((1, 3, 2), np.float32)).shape
    (1, 3, 2)
    """

    _param_names = ()

    def __init__(self, size, alpha=1e-4, beta=0.75, k=1.0, *, mode="across_channels", convention="torch",
                 channel_axis=1, dtype=None):
        cls = type(self).__name__
        self.size = _size(cls, size, "size")
        fn = cls + "()"
        _validate.real(fn, alpha, "alpha")
        _validate.real(fn, beta, "beta")
        _validate.real(fn, k, "k")
        self.alpha, self.beta, self.k = alpha, beta, k
        self.mode = _validate.choice(fn, mode, "mode", ("across_channels", "within_channel"))
        self.convention = _validate.choice(fn, convention, "convention", ("torch", "paper"))
        self.channel_axis = _channel_axis_arg(cls, channel_axis)
        super().__init__(dtype)

    def forward(self, x):
        x = _as_input(self, x)
        if x.ndim < 3:
            raise ValueError(
                f"LocalResponseNorm(): argument 'x' must have 3 or more dimensions (N, C, *): "
                f"Expected 3D or higher dimensionality input (got {x.ndim} dimensions)"
            )
        y = _nb.local_response_norm(
            x, self.size, self.alpha, self.beta, self.k, mode=self.mode, convention=self.convention,
            channel_axis=self.channel_axis,
        )
        self._cache = (x,)
        return y

    def backward(self, grad_out):
        (x,) = self._saved()
        gx = _nb.local_response_norm_backward(
            grad_out, x, self.size, self.alpha, self.beta, self.k, mode=self.mode,
            convention=self.convention, channel_axis=self.channel_axis,
        )
        self.grads = {}
        return gx

    def extra_repr(self):
        s = f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"
        if self.mode != "across_channels":
            s += f", mode={self.mode!r}"
        if self.convention != "torch":
            s += f", convention={self.convention!r}"
        return s
