"""The layer base classes: :class:`_Layer` (parameters, buffers, train/eval modes, gradients,
state dicts, devices and dtypes, repr: the conventions of :mod:`numbanorm.modules`) and
:class:`_NormBase` (``num_features`` channels with optional affine parameters and running
statistics: the base of BatchNorm and InstanceNorm), with :class:`StateDictError`.
"""
import collections
import collections.abc

import numpy as np

from .. import _validate
from ._checks import _apply_device, _bool, _cast, _channel_axis_arg, _device_name, _dtype, _eps, _is_gpu
from ._checks import _momentum, _place, _require_cuda, _size, _to_host


# --------------------------------------------------------------------------------------
# state dicts


IncompatibleKeys = collections.namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class StateDictError(ValueError, RuntimeError):
    """Raised by ``load_state_dict`` for missing/unexpected keys and shape mismatches."""


# --------------------------------------------------------------------------------------
# base class


class _Layer:
    """Parameters, buffers, modes, gradients, state dicts and devices (see module doc)."""

    _param_names = ("weight", "bias")
    _buffer_names = ()

    def __init__(self, dtype):
        self.training = True
        self.dtype = _dtype(type(self).__name__, dtype)
        self.device = "cpu"
        self.grads = {}
        self._cache = None
        for name in self._param_names:
            setattr(self, name, None)
        for name in self._buffer_names:
            setattr(self, name, None)

    # -- modes ------------------------------------------------------------------------
    def train(self, mode=True):
        """Set training mode (``mode=False``: evaluation); returns the layer."""
        self.training = _validate.flag(type(self).__name__ + ".train()", mode, "mode")
        return self

    def eval(self):
        """Evaluation mode (``train(False)``); returns the layer."""
        return self.train(False)

    # -- calling ------------------------------------------------------------------------
    def __call__(self, x):
        return self.forward(x)

    def forward(self, x):  # pragma: no cover - overridden
        raise NotImplementedError

    def backward(self, grad_out):  # pragma: no cover - overridden
        raise NotImplementedError

    def _saved(self):
        if self._cache is None:
            raise RuntimeError(
                f"{type(self).__name__}.backward(): no saved forward pass; call the layer on an "
                "input first (the cache is dropped by to()/cpu()/cuda())"
            )
        return self._cache

    def _store_grads(self, **grads):
        new = {}
        for name in self._param_names:
            if getattr(self, name) is not None and grads.get(name) is not None:
                new[name] = _cast(grads[name], self.dtype, self.device)
        self.grads = new

    @property
    def weight_grad(self):
        """Gradient of the loss w.r.t. ``weight`` from the last ``backward`` (or None)."""
        return self.grads.get("weight")

    @property
    def bias_grad(self):
        """Gradient of the loss w.r.t. ``bias`` from the last ``backward`` (or None)."""
        return self.grads.get("bias")

    def zero_grad(self):
        """Forget stored parameter gradients (PyTorch's ``set_to_none=True``)."""
        self.grads = {}

    # -- parameters and buffers ---------------------------------------------------------
    def named_parameters(self):
        return [(n, getattr(self, n)) for n in self._param_names if getattr(self, n) is not None]

    def parameters(self):
        """The parameter arrays (weight, bias) that exist, in state-dict order."""
        return [p for _, p in self.named_parameters()]

    def named_buffers(self):
        out = []
        for n in self._buffer_names:
            v = getattr(self, n)
            if v is not None:
                out.append((n, v))
        return out

    def buffers(self):
        return [b for _, b in self.named_buffers()]

    def _new_buffer(self, name, value, shape):
        return _place(np.full(shape, value, dtype=self.dtype), self.device)

    # -- state dict ---------------------------------------------------------------------
    def state_dict(self):
        """Ordered dict of host NumPy copies under PyTorch's key names."""
        sd = collections.OrderedDict()
        for name, v in self.named_parameters() + self.named_buffers():
            sd[name] = np.array(_to_host(v), copy=True)
        return sd

    def load_state_dict(self, state_dict, strict=True):
        """Copy parameters and buffers from ``state_dict`` (PyTorch key names).

        Every key, shape and dtype is checked before anything is written. Returns
        ``IncompatibleKeys(missing_keys, unexpected_keys)``.
        """
        fn = f"{type(self).__name__}.load_state_dict()"
        if not isinstance(state_dict, collections.abc.Mapping):
            raise TypeError(f"{fn}: argument 'state_dict' must be a mapping, got {type(state_dict).__name__}")
        strict = _validate.flag(fn, strict, "strict")
        current = collections.OrderedDict(self.named_parameters() + self.named_buffers())
        missing = [k for k in current if k not in state_dict and k != "num_batches_tracked"]
        unexpected = [k for k in state_dict if k not in current]
        if strict and (missing or unexpected):
            parts = []
            if missing:
                parts.append("Missing key(s) in state_dict: " + ", ".join(f'"{k}"' for k in missing))
            if unexpected:
                parts.append("Unexpected key(s) in state_dict: " + ", ".join(f'"{k}"' for k in unexpected))
            raise StateDictError(f"{fn}: error(s) in loading state_dict for {type(self).__name__}: " + ". ".join(parts))
        staged = []
        for name, cur in current.items():
            if name not in state_dict:
                continue
            if _validate.is_masked(state_dict[name]):
                raise TypeError(
                    f"{fn}: entry '{name}' must not be a masked array (masks are not honoured), "
                    "got a MaskedArray; pass .filled(value) or np.asarray(...)"
                )
            value = _to_host(state_dict[name])
            if value.dtype.kind not in "fiub":
                raise TypeError(f"{fn}: entry '{name}' must be a real array, got dtype {value.dtype}")
            if tuple(value.shape) != tuple(cur.shape):
                raise StateDictError(
                    f"{fn}: size mismatch for {name}: copying a param with shape {tuple(value.shape)} "
                    f"from checkpoint, the shape in current layer is {tuple(cur.shape)}"
                )
            staged.append((name, value))
        for name, value in staged:
            cur = current[name]
            if name == "num_batches_tracked":
                cur[...] = np.asarray(value, dtype=np.int64)
            elif _is_gpu(cur):
                cur.copy_to_device(np.ascontiguousarray(value, dtype=cur.dtype))
            else:
                np.copyto(cur, value, casting="unsafe")
        return IncompatibleKeys(missing, unexpected)

    # -- devices and dtypes -------------------------------------------------------------
    def to(self, device=None, dtype=None):
        """Move to ``device`` ("cpu" or "cuda") and/or cast to ``dtype``; returns the layer."""
        fn = f"{type(self).__name__}.to()"
        if isinstance(device, (type, np.dtype)) and dtype is None:  # layer.to(np.float64)
            device, dtype = None, device
        dev = _device_name(fn, device) or self.device
        dt = self.dtype if dtype is None else _dtype(f"{type(self).__name__}.to", dtype)
        if dev == "cuda" and self.device != "cuda":
            _require_cuda(fn)
        names = [n for n in self._param_names + self._buffer_names if n != "num_batches_tracked"]
        moved = {}
        for name in names:
            v = getattr(self, name)
            if v is not None:
                moved[name] = _cast(v, dt, dev) if (dev != self.device or v.dtype != dt) else v
        grads = {k: _cast(g, dt, dev) for k, g in self.grads.items()}
        for name, v in moved.items():
            setattr(self, name, v)
        self.grads = grads
        self.device, self.dtype = dev, dt
        self._cache = None
        return self

    def cpu(self):
        return self.to("cpu")

    def cuda(self):
        return self.to("cuda")

    def float(self):
        return self.to(dtype=np.float32)

    def double(self):
        return self.to(dtype=np.float64)

    def half(self):
        return self.to(dtype=np.float16)

    # -- repr -----------------------------------------------------------------------------
    def extra_repr(self):  # pragma: no cover - overridden
        return ""

    def _extra_tail(self):
        tail = ""
        ca = getattr(self, "channel_axis", 1)
        if ca != 1:
            tail += f", channel_axis={ca}"
        if self.dtype != np.float32 and self._param_names:
            tail += f", dtype={self.dtype.name}"
        return tail

    def __repr__(self):
        return f"{type(self).__name__}({self.extra_repr()}{self._extra_tail()})"


# --------------------------------------------------------------------------------------
# channel-wise layers with running statistics (BatchNorm, InstanceNorm)


class _NormBase(_Layer):
    """``num_features`` channels with optional affine parameters and running statistics."""

    _buffer_names = ("running_mean", "running_var", "num_batches_tracked")
    _default_affine = True
    _default_track = True

    def __init__(self, num_features, eps, momentum, affine, track_running_stats, device, dtype, bias, channel_axis):
        cls = type(self).__name__
        self.num_features = _size(cls, num_features, "num_features")
        self.eps = _eps(cls, eps)
        self.momentum = _momentum(cls, momentum)
        self.affine = _bool(cls, affine, "affine")
        use_bias = _bool(cls, bias, "bias")
        self.track_running_stats = _bool(cls, track_running_stats, "track_running_stats")
        self.channel_axis = _channel_axis_arg(cls, channel_axis)
        _device_name(cls + "()", device)
        super().__init__(dtype)
        c = self.num_features
        if self.affine:
            self.weight = np.ones(c, self.dtype)
            if use_bias:
                self.bias = np.zeros(c, self.dtype)
        if self.track_running_stats:
            self.running_mean = np.zeros(c, self.dtype)
            self.running_var = np.ones(c, self.dtype)
            self.num_batches_tracked = np.zeros((), np.int64)
        _apply_device(self, device)

    def reset_running_stats(self):
        if self.track_running_stats:
            self.running_mean = self._new_buffer("running_mean", 0.0, self.num_features)
            self.running_var = self._new_buffer("running_var", 1.0, self.num_features)
            self.num_batches_tracked[...] = 0

    def reset_parameters(self):
        self.reset_running_stats()
        if self.weight is not None:
            self.weight = self._new_buffer("weight", 1.0, self.num_features)
        if self.bias is not None:
            self.bias = self._new_buffer("bias", 0.0, self.num_features)

    def _axis(self, ndim):
        ax = self.channel_axis
        if not -ndim <= ax < ndim or ax % ndim == 0:
            raise ValueError(
                f"{type(self).__name__}(): channel_axis={ax} is not a channel axis of a {ndim}-D input"
            )
        return ax % ndim

    def extra_repr(self):
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
            f"bias={self.bias is not None}, track_running_stats={self.track_running_stats}"
        )
