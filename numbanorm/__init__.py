"""numbanorm: fast, framework-free normalizations as Numba CPU and CUDA kernels.

Every public name is loaded on first use (PEP 562), so ``import numbanorm`` stays
fast and never imports Numba's CUDA target or CuPy. See ``docs/api.md`` for the
contract and ``README.md`` for examples.
"""
import importlib

__version__ = "0.1.0"

# public name -> submodule that defines it
_NAMES = {
    # neural-network normalizations
    "layer_norm": "_ops.layer_norm",
    "layer_norm_backward": "_ops.layer_norm",
    "rms_norm": "_ops.rms_norm",
    "rms_norm_backward": "_ops.rms_norm",
    "batch_norm": "_ops.batch_norm",
    "batch_norm_backward": "_ops.batch_norm",
    "instance_norm": "_ops.instance_norm",
    "instance_norm_backward": "_ops.instance_norm",
    "group_norm": "_ops.group_norm",
    "group_norm_backward": "_ops.group_norm",
    "local_response_norm": "_ops.local_response_norm",
    "local_response_norm_backward": "_ops.local_response_norm",
    "add_layer_norm": "_ops.add_layer_norm",
    "add_layer_norm_backward": "_ops.add_layer_norm",
    "add_rms_norm": "_ops.add_rms_norm",
    "add_rms_norm_backward": "_ops.add_rms_norm",
    "normalize": "_ops.normalize",
    "normalize_backward": "_ops.normalize",
    "weight_standardize": "_ops.weight_standardize",
    "weight_standardize_backward": "_ops.weight_standardize",
    # data scaling
    "min_max_scale": "_ops.min_max_scale",
    "standardize": "_ops.standardize",
    "StandardScaler": "scalers",
    "MinMaxScaler": "scalers",
    # layer classes
    "LayerNorm": "modules",
    "RMSNorm": "modules",
    "BatchNorm1d": "modules",
    "BatchNorm2d": "modules",
    "BatchNorm3d": "modules",
    "InstanceNorm1d": "modules",
    "InstanceNorm2d": "modules",
    "InstanceNorm3d": "modules",
    "GroupNorm": "modules",
    "LocalResponseNorm": "modules",
    "AddLayerNorm": "modules",
    "AddRMSNorm": "modules",
    # environment
    "threading_layer": "_config",
}

__all__ = sorted(_NAMES)

#: submodules reachable as attributes without an explicit import (loaded on first use)
_SUBMODULES = ("onnx",)


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    try:
        module = _NAMES[name]
    except KeyError:
        raise AttributeError(f"module 'numbanorm' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_NAMES) | set(_SUBMODULES))
