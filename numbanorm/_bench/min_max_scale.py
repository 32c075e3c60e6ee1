"""``numbanorm bench`` cases for min_max_scale: per-feature scaling of (1_000_000, 64) data
(axis=0) and per-channel scaling of (32, 64, 56, 56) activations (axis=(0, 2, 3)), against
NumPy, PyTorch and scikit-learn's ``minmax_scale`` (2-D only)."""
import numpy as np

import numbanorm

from . import gpu_available, gpu_timed, make_array, to_gpu, torch_or_none
from .standardize import _axis, sklearn_or_none


def _numpy(x, axis):
    mn = x.min(axis=axis, keepdims=True)
    return (x - mn) / (x.max(axis=axis, keepdims=True) - mn)


def forward(shape, dtype):
    x = make_array(shape, dtype)
    axis = _axis(shape)
    out = np.empty_like(x)
    fns = {
        "numbanorm": lambda: numbanorm.min_max_scale(x, axis=axis, out=out),
        "numpy": lambda: _numpy(x, axis),
    }
    torch = torch_or_none()
    if torch is not None:
        tx = torch.from_numpy(x)
        dims = (axis,) if isinstance(axis, int) else axis

        def torch_fn():
            mn = tx.amin(dim=dims, keepdim=True)
            return (tx - mn) / (tx.amax(dim=dims, keepdim=True) - mn)

        fns["torch"] = torch_fn
    sk = sklearn_or_none()
    if sk is not None and len(shape) == 2:
        fns["sklearn"] = lambda: sk.minmax_scale(x, axis=axis)
    if gpu_available():
        dx, dout = to_gpu(x, out)
        fns["numbanorm_gpu"] = gpu_timed(lambda: numbanorm.min_max_scale(dx, axis=axis, out=dout))
    return x, fns


CASES = [("axis0", (1_000_000, 64), "float64", forward), ("axis0", (1_000_000, 64), "float32", forward),
         ("channels", (32, 64, 56, 56), "float32", forward)]
