"""BatchNorm CPU kernels on the channels view ``(1, O, C, I)``.

Layout: ``x``/``out``/``grad_out``/``grad_x`` are C-contiguous ``(1, O, C, I)`` arrays of the
compute dtype (NCHW: O = N, I = H·W; channels-last: O = N·H·W, I = 1); statistics are
float64 ``(1, C)`` arrays; running statistics float64 ``(C,)`` arrays.

BatchNorm is the grouped-statistics core of :mod:`._channels` with B = 1 and one group per
channel: ``stats``, ``normalize``, ``forward`` and ``backward`` are those kernels (their
thread mapping: a fixed grid of chunks of O and I, float64 partial sums per chunk merged in
chunk order; element-wise passes over chunks of O; both run on the :mod:`._threads` pool). This module adds the running
statistics (the eval-mode ``rstd`` and PyTorch's in-place update) and the one-dispatch
forwards of small calls, all in :mod:`._channels_small`.
"""
from ._channels import backward, chunking, fill, forward, normalize, normalize_running, stats  # noqa: F401
from ._channels_small import running_stats, update_running  # noqa: F401  (entry points)
from ._channels_small import EVAL_SERIAL_THRESHOLD, NO_RUNNING, small_kernels, small_path  # noqa: F401
