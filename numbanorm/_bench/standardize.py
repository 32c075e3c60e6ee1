"""``numbanorm bench`` cases for standardize: per-feature z-scores of (1_000_000, 64) data
(axis=0, the scikit-learn layout) and per-channel z-scores of (32, 64, 56, 56) activations
(axis=(0, 2, 3)), against NumPy, PyTorch and scikit-learn's ``scale`` (2-D only)."""
import numpy as np

import numbanorm

from . import gpu_available, gpu_timed, make_array, to_gpu, torch_or_none

#: (shape, axis)
SPECS = [((1_000_000, 64), 0), ((32, 64, 56, 56), (0, 2, 3))]


def _axis(shape):
    return 0 if len(shape) == 2 else (0, 2, 3)


def _numpy(x, axis):
    mean = x.mean(axis=axis, keepdims=True)
    return (x - mean) / x.std(axis=axis, keepdims=True)


def sklearn_or_none():
    try:
        from sklearn import preprocessing
    except ImportError:
        return None
    return preprocessing


def forward(shape, dtype):
    x = make_array(shape, dtype, offset=3.0)
    axis = _axis(shape)
    out = np.empty_like(x)
    fns = {
        "numbanorm": lambda: numbanorm.standardize(x, axis=axis, out=out),
        "numpy": lambda: _numpy(x, axis),
    }
    torch = torch_or_none()
    if torch is not None:
        tx = torch.from_numpy(x)
        dims = (axis,) if isinstance(axis, int) else axis
        fns["torch"] = lambda: (tx - tx.mean(dim=dims, keepdim=True)) / tx.std(dim=dims, correction=0, keepdim=True)
    sk = sklearn_or_none()
    if sk is not None and len(shape) == 2:
        fns["sklearn"] = lambda: sk.scale(x, axis=axis)
    if gpu_available():
        dx, dout = to_gpu(x, out)
        fns["numbanorm_gpu"] = gpu_timed(lambda: numbanorm.standardize(dx, axis=axis, out=dout))
    return x, fns


CASES = [("axis0", (1_000_000, 64), "float64", forward), ("axis0", (1_000_000, 64), "float32", forward),
         ("channels", (32, 64, 56, 56), "float32", forward)]
