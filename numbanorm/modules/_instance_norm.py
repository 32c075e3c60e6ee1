"""The instance-normalization layers :class:`InstanceNorm1d`, :class:`InstanceNorm2d`,
:class:`InstanceNorm3d` (statistics per sample and channel; batched or unbatched input).
"""
import warnings

import numbanorm as _nb

from ._base import _NormBase
from ._checks import _as_input, _ndim_error


class _InstanceNorm(_NormBase):
    _no_batch_dim = 0
    _what = ""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=False, track_running_stats=False,
                 device=None, dtype=None, *, bias=True, channel_axis=1):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype, bias, channel_axis)

    def forward(self, x):
        x = _as_input(self, x)
        k = self._no_batch_dim
        if x.ndim not in (k, k + 1):
            raise _ndim_error(self, x, (k, k + 1), self._what)
        xb = x.reshape((1,) + tuple(x.shape)) if x.ndim == k else x
        ax = self._axis(xb.ndim)
        if xb.shape[ax] != self.num_features:
            if self.affine or self.track_running_stats:
                raise ValueError(
                    f"{type(self).__name__}(): argument 'x' must have num_features={self.num_features} "
                    f"channels at axis {ax - (x.ndim == k)}, got {xb.shape[ax]} (input shape {tuple(x.shape)})"
                )
            warnings.warn(
                f"input's size at dim={ax - (x.ndim == k)} does not match num_features. You can silence "
                "this warning by not passing in num_features, which is not used because affine=False",
                stacklevel=2,
            )
        use_input_stats = self.training or not self.track_running_stats
        momentum = 0.0 if self.momentum is None else float(self.momentum)
        res = _nb.instance_norm(
            xb, self.running_mean, self.running_var, self.weight, self.bias, use_input_stats, momentum,
            self.eps, channel_axis=self.channel_axis, return_stats=use_input_stats,
        )
        if use_input_stats:
            y, mean, rstd = res
        else:
            y, mean, rstd = res, None, None
        self._cache = (xb, x.ndim == k, use_input_stats, self.running_mean, self.running_var, mean, rstd)
        return y.reshape(tuple(x.shape)) if x.ndim == k else y

    def backward(self, grad_out):
        xb, unbatched, use_input_stats, rm, rv, mean, rstd = self._saved()
        g = _as_input(self, grad_out, "grad_out")
        if unbatched:
            g = g.reshape(tuple(xb.shape)) if tuple(g.shape) == tuple(xb.shape[1:]) else g
        if use_input_stats:
            gx, gw, gb = _nb.instance_norm_backward(
                g, xb, self.weight, eps=self.eps, mean=mean, rstd=rstd, channel_axis=self.channel_axis
            )
        else:
            # running statistics: a fixed per-channel affine map, as BatchNorm in eval mode
            gx, gw, gb = _nb.batch_norm_backward(
                g, xb, self.weight, training=False, running_mean=rm, running_var=rv, eps=self.eps,
                channel_axis=self.channel_axis,
            )
        self._store_grads(weight=gw, bias=gb)
        return gx.reshape(tuple(xb.shape[1:])) if unbatched else gx


class InstanceNorm1d(_InstanceNorm):
    """Instance normalization over (N, C, L) or unbatched (C, L) input (``torch.nn.InstanceNorm1d``).

    Statistics per sample and channel over L. With ``track_running_stats`` the running
    statistics are updated in training and used in eval mode (as PyTorch).

    Examples
    --------
    >>> import numpy as np, numbanorm
    >>> inorm = numbanorm.InstanceNorm1d(1, dtype=np.float64)
    >>> inorm(np.array([[[1.0, 3.0]]])).round(4)
    array([[[-1.,  1.]]])
    """

    _no_batch_dim = 2
    _what = "3-D (N, C, L) or unbatched 2-D (C, L)"


class InstanceNorm2d(_InstanceNorm):
    """Instance normalization over (N, C, H, W) or (C, H, W) input (``torch.nn.InstanceNorm2d``)."""

    _no_batch_dim = 3
    _what = "4-D (N, C, H, W) or unbatched 3-D (C, H, W)"


class InstanceNorm3d(_InstanceNorm):
    """Instance normalization over (N, C, D, H, W) or (C, D, H, W) input (``torch.nn.InstanceNorm3d``)."""

    _no_batch_dim = 4
    _what = "5-D (N, C, D, H, W) or unbatched 4-D (C, D, H, W)"
