"""The group-normalization layer :class:`GroupNorm` (statistics per sample over groups of
channels).
"""
import numpy as np

import numbanorm as _nb

from ._base import _Layer, _NormBase
from ._checks import _apply_device, _as_input, _bool, _channel_axis_arg, _device_name, _eps, _size


class GroupNorm(_Layer):
    """Group normalization (``torch.nn.GroupNorm``): statistics per sample over groups of channels.

    Examples
    --------
    >>> import numpy as np, numbanorm
    >>> gn = numbanorm.GroupNorm(1, 2, dtype=np.float64)
    >>> gn(np.array([[1.0, 3.0]])).round(4)
    array([[-1.,  1.]])
    """

    def __init__(self, num_groups, num_channels, eps=1e-5, affine=True, device=None, dtype=None, *,
                 bias=True, channel_axis=1):
        cls = type(self).__name__
        self.num_groups = _size(cls, num_groups, "num_groups")
        self.num_channels = _size(cls, num_channels, "num_channels")
        if self.num_channels % self.num_groups:
            raise ValueError(
                f"{cls}(): argument 'num_channels' must be divisible by num_groups: "
                f"num_channels ({self.num_channels}) must be divisible by num_groups ({self.num_groups})"
            )
        self.eps = _eps(cls, eps)
        self.affine = _bool(cls, affine, "affine")
        use_bias = _bool(cls, bias, "bias")
        self.channel_axis = _channel_axis_arg(cls, channel_axis)
        _device_name(cls + "()", device)
        super().__init__(dtype)
        if self.affine:
            self.weight = np.ones(self.num_channels, self.dtype)
            if use_bias:
                self.bias = np.zeros(self.num_channels, self.dtype)
        _apply_device(self, device)

    def reset_parameters(self):
        if self.weight is not None:
            self.weight = self._new_buffer("weight", 1.0, self.num_channels)
        if self.bias is not None:
            self.bias = self._new_buffer("bias", 0.0, self.num_channels)

    def forward(self, x):
        x = _as_input(self, x)
        if x.ndim < 2:
            raise ValueError(
                f"GroupNorm(): argument 'x' must be (N, C, *) with at least 2 dimensions, got {x.ndim}-D input"
            )
        ax = _NormBase._axis(self, x.ndim)
        if x.shape[ax] != self.num_channels:
            raise ValueError(
                f"GroupNorm(): argument 'x' must have num_channels={self.num_channels} channels at axis "
                f"{ax}, got {x.shape[ax]} (input shape {tuple(x.shape)})"
            )
        y, mean, rstd = _nb.group_norm(
            x, self.num_groups, self.weight, self.bias, self.eps, channel_axis=self.channel_axis, return_stats=True
        )
        self._cache = (x, mean, rstd)
        return y

    def backward(self, grad_out):
        x, mean, rstd = self._saved()
        gx, gw, gb = _nb.group_norm_backward(
            grad_out, x, self.num_groups, self.weight, eps=self.eps, mean=mean, rstd=rstd,
            channel_axis=self.channel_axis,
        )
        self._store_grads(weight=gw, bias=gb)
        return gx

    def extra_repr(self):
        return (
            f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}, "
            f"bias={self.bias is not None}"
        )
