"""The batch-normalization layers :class:`BatchNorm1d`, :class:`BatchNorm2d`,
:class:`BatchNorm3d` (statistics per channel over the batch; running statistics).
"""
import numbanorm as _nb

from ._base import _NormBase
from ._checks import _as_input, _ndim_error


class _BatchNorm(_NormBase):
    _dims = ()
    _what = ""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 device=None, dtype=None, *, bias=True, channel_axis=1):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype, bias, channel_axis)

    def forward(self, x):
        x = _as_input(self, x)
        if x.ndim not in self._dims:
            raise _ndim_error(self, x, self._dims, self._what)
        ax = self._axis(x.ndim)
        if x.shape[ax] != self.num_features:
            raise ValueError(
                f"{type(self).__name__}(): argument 'x' must have num_features={self.num_features} "
                f"channels at axis {ax}, got {x.shape[ax]} (input shape {tuple(x.shape)})"
            )
        track = self.training and self.track_running_stats
        if self.momentum is None:
            factor = 1.0 / float(int(self.num_batches_tracked) + 1) if track else 0.0
        else:
            factor = float(self.momentum)
        # PyTorch: batch statistics in training, and in eval when there are no buffers.
        use_batch = self.training or self.running_mean is None
        rm = self.running_mean if (not self.training or self.track_running_stats) else None
        rv = self.running_var if (not self.training or self.track_running_stats) else None
        y, mean, rstd = _nb.batch_norm(
            x, rm, rv, self.weight, self.bias, use_batch, factor, self.eps,
            channel_axis=self.channel_axis, return_stats=True,
        )
        if track:
            self.num_batches_tracked += 1
        self._cache = (x, use_batch, rm, rv, mean, rstd)
        return y

    def backward(self, grad_out):
        x, use_batch, rm, rv, mean, rstd = self._saved()
        if use_batch:
            gx, gw, gb = _nb.batch_norm_backward(
                grad_out, x, self.weight, training=True, eps=self.eps, mean=mean, rstd=rstd,
                channel_axis=self.channel_axis,
            )
        else:
            gx, gw, gb = _nb.batch_norm_backward(
                grad_out, x, self.weight, training=False, running_mean=rm, running_var=rv,
                eps=self.eps, channel_axis=self.channel_axis,
            )
        self._store_grads(weight=gw, bias=gb)
        return gx


class BatchNorm1d(_BatchNorm):
    """Batch normalization over (N, C) or (N, C, L) input (``torch.nn.BatchNorm1d``).

    ``channel_axis=-1`` takes channels-last (N, L, C) input. In training mode the batch
    statistics normalize and (with ``track_running_stats``) update ``running_mean`` /
    ``running_var`` (unbiased) in place; in eval mode the running statistics are used.

    Examples
    --------
    >>> import numpy as np, numbanorm
    >>> bn = numbanorm.BatchNorm1d(2)
    >>> y = bn(np.array([[0.0, 1.0], [2.0, 3.0]], np.float32))
    >>> bn.running_mean, int(bn.num_batches_tracked)
    (array([0.1, 0.2], dtype=float32), 1)
    """

    _dims = (2, 3)
    _what = "2-D (N, C) or 3-D (N, C, L)"


class BatchNorm2d(_BatchNorm):
    """Batch normalization over 4-D (N, C, H, W) input (``torch.nn.BatchNorm2d``); see BatchNorm1d."""

    _dims = (4,)
    _what = "4-D (N, C, H, W)"


class BatchNorm3d(_BatchNorm):
    """Batch normalization over 5-D (N, C, D, H, W) input (``torch.nn.BatchNorm3d``); see BatchNorm1d."""

    _dims = (5,)
    _what = "5-D (N, C, D, H, W)"
