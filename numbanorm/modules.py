"""Layer classes: PyTorch-style normalization layers over numbanorm's functions.

Every layer holds its parameters (``weight``, ``bias``) and buffers (``running_mean``,
``running_var``, ``num_batches_tracked``) as plain arrays: NumPy arrays on the host, Numba
device arrays after ``.to("cuda")``. Calling a layer runs the forward function with
``return_stats=True`` and caches what the backward pass needs; ``backward(grad_out)``
returns ``grad_x`` for the LAST forward and stores the parameter gradients on the layer.

Conventions (shared by every layer)
-----------------------------------
* Constructors take PyTorch's arguments, in PyTorch's order and with its defaults
  (``device`` and ``dtype`` included), plus keyword-only ``channel_axis`` (1 = channels
  first, -1 = channels last) for the channel-wise layers. ``dtype=None`` is float32.
* ``layer(x)`` (= ``layer.forward(x)``) accepts what the functions accept (NumPy, GPU or
  Dask arrays). ``x`` is cached by reference: do not modify it in place before
  ``backward``.
* ``layer.backward(grad_out) -> grad_x``. Parameter gradients go to the dict
  ``layer.grads`` (keys are the parameter names, ``"weight"`` and ``"bias"``), also
  readable as ``layer.weight_grad`` / ``layer.bias_grad``. Each ``backward`` OVERWRITES
  them (gradients of the last forward; no accumulation); ``zero_grad()`` clears them.
  Gradients have the layer's dtype and live on the layer's device.
* ``parameters()`` is the list of the existing parameter arrays (in state-dict order);
  update them in place (``p -= lr * g``) to train. ``named_parameters()``, ``buffers()``,
  ``named_buffers()`` as in PyTorch.
* ``train(mode=True)`` / ``eval()`` set ``layer.training`` and return the layer.
* ``state_dict()`` returns an ordered dict of host NumPy copies with PyTorch's key names
  (``weight``, ``bias``, ``running_mean``, ``running_var``, ``num_batches_tracked`` as a
  0-d int64 array); ``load_state_dict(sd, strict=True)`` copies values in place (cast
  to the layer's dtype) from NumPy arrays, PyTorch CPU tensors or GPU arrays, checks
  every key and shape before writing anything, and returns ``(missing_keys,
  unexpected_keys)``. A missing ``num_batches_tracked`` is allowed (kept), as PyTorch
  does for state dicts without version metadata. Key / shape mismatches raise
  :class:`StateDictError`, a subclass of both ``ValueError`` and ``RuntimeError`` (what
  PyTorch raises).
* ``to(device=None, dtype=None)``, ``cpu()``, ``cuda()``, ``float()``, ``double()``
  move or cast parameters, buffers and stored gradients and return the layer; the
  forward cache is dropped. ``num_batches_tracked`` always stays a host counter.
* BatchNorm in training mode with ``track_running_stats`` updates the running statistics
  in place and increments ``num_batches_tracked`` exactly as ``torch.nn.BatchNormXd``
  (``momentum=None``: cumulative average with factor ``1 / num_batches_tracked``). As in
  PyTorch, InstanceNorm never increments its ``num_batches_tracked`` buffer.
* A forward that raises changes nothing (counters are incremented after success).
"""
import collections
import collections.abc
import numbers
import operator
import warnings

import numpy as np

import numbanorm as _nb

from . import _dispatch, _validate

__all__ = [
    "LayerNorm",
    "RMSNorm",
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNorm3d",
    "InstanceNorm1d",
    "InstanceNorm2d",
    "InstanceNorm3d",
    "GroupNorm",
    "LocalResponseNorm",
    "StateDictError",
]

_PARAM_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))

IncompatibleKeys = collections.namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class StateDictError(ValueError, RuntimeError):
    """Raised by ``load_state_dict`` for missing/unexpected keys and shape mismatches."""


# --------------------------------------------------------------------------------------
# argument checks (constructor)


def _bool(cls, value, arg):
    return _validate.flag(cls + "()", value, arg)


def _size(cls, value, arg):
    return _validate.positive_int(cls + "()", value, arg)


def _eps(cls, value, allow_none=False):
    if value is None and allow_none:
        return None
    return _validate.eps(cls + "()", value)


def _momentum(cls, value):
    if value is None:
        return None
    m = _validate.real(cls + "()", value, "momentum")
    if not 0.0 <= m <= 1.0:
        raise ValueError(f"{cls}(): argument 'momentum' must be None or a number in [0, 1], got {m}")
    return value


def _shape(cls, value):
    fn = cls + "()"
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{fn}: argument 'normalized_shape' must be an int or a tuple of ints, got {value!r}")
    if isinstance(value, numbers.Integral):
        shape = (operator.index(value),)
    else:
        try:
            shape = tuple(value)
        except TypeError:
            raise TypeError(
                f"{fn}: argument 'normalized_shape' must be an int or a tuple of ints, "
                f"got {_validate.describe(value)}"
            ) from None
        for d in shape:
            if isinstance(d, (bool, np.bool_)) or not isinstance(d, numbers.Integral):
                raise TypeError(
                    f"{fn}: argument 'normalized_shape' must be an int or a tuple of ints, got {value!r}"
                )
        shape = tuple(operator.index(d) for d in shape)
    if len(shape) == 0:
        raise ValueError(f"{fn}: argument 'normalized_shape' must have at least one dimension, got ()")
    if any(d < 1 for d in shape):
        raise ValueError(f"{fn}: argument 'normalized_shape' must contain sizes >= 1, got {shape}")
    return shape


def _dtype(cls, value):
    if value is None:
        return np.dtype(np.float32)
    try:
        dt = np.dtype(value)
    except TypeError:
        raise TypeError(
            f"{cls}(): argument 'dtype' must be float16, float32 or float64, got {value!r}"
        ) from None
    if dt not in _PARAM_DTYPES:
        raise TypeError(f"{cls}(): argument 'dtype' must be float16, float32 or float64, got {dt}")
    return dt


def _device_name(fn, device):
    if device is None:
        return None
    if not isinstance(device, str):
        # torch.device and similar objects print as "cpu" / "cuda" / "cuda:0"
        if type(device).__name__ == "device" and hasattr(device, "type"):
            device = str(device)
        else:
            raise TypeError(f"{fn}: argument 'device' must be 'cpu' or 'cuda', got {device!r}")
    name = device.lower()
    if name == "cpu":
        return "cpu"
    if name in ("cuda", "gpu", "cuda:0"):
        return "cuda"
    raise ValueError(f"{fn}: argument 'device' must be 'cpu' or 'cuda', got {device!r}")


def _channel_axis_arg(cls, value):
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{cls}(): argument 'channel_axis' must be an integer, got {value!r}")
    try:
        ax = operator.index(value)
    except TypeError:
        raise TypeError(
            f"{cls}(): argument 'channel_axis' must be an integer, got {_validate.describe(value)}"
        ) from None
    if ax == 0:
        raise ValueError(
            f"{cls}(): argument 'channel_axis' must be a non-batch axis (1 = channels-first, "
            f"-1 = channels-last), got 0"
        )
    return ax


# --------------------------------------------------------------------------------------
# array helpers (host NumPy / Numba device arrays)


def _is_gpu(a):
    return a is not None and _dispatch._is_gpu(a)


def _to_host(a):
    """A host NumPy array from a NumPy array, a GPU array or a CPU torch tensor."""
    if hasattr(a, "detach") and hasattr(a, "cpu") and hasattr(a, "numpy"):  # a torch tensor
        return a.detach().cpu().numpy()
    if _is_gpu(a):
        if hasattr(a, "copy_to_host"):
            return a.copy_to_host()
        if hasattr(a, "get"):  # CuPy
            return a.get()
        from numba import cuda

        return cuda.as_cuda_array(a).copy_to_host()
    return np.asarray(a)


def _to_device(a):
    from numba import cuda

    return cuda.to_device(np.ascontiguousarray(a))


def _place(host, device):
    return _to_device(host) if device == "cuda" else host


def _cast(a, dtype, device):
    """``a`` (a gradient) as an array of ``dtype`` on ``device`` (no copy when it already is)."""
    if a is None:
        return None
    if device == "cpu" and type(a) is np.ndarray:
        return a if a.dtype == dtype else a.astype(dtype)
    if a.dtype == dtype and _is_gpu(a) == (device == "cuda"):
        return a
    return _place(_to_host(a).astype(dtype), device)


def _as_input(layer, a, arg="x"):
    """A layer's input as an array (array_likes through ``np.asarray``).

    None, strings, dicts, other non-arrays and masked arrays are a ``TypeError`` naming
    the layer, as the functions do for their arguments.
    """
    if hasattr(a, "shape") and hasattr(a, "ndim"):
        if type(a) is not np.ndarray:
            _validate.check_array_like(type(layer).__name__, arg, a)
        return a
    return _validate.array(type(layer).__name__, arg, _dispatch.CPU, a)


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


def _require_cuda(fn):
    try:
        from numba import cuda
    except Exception as e:  # pragma: no cover - numba always has cuda (or the simulator)
        raise RuntimeError(f"{fn}: Numba's CUDA support is not importable ({e})") from None
    if not cuda.is_available():
        raise RuntimeError(
            f"{fn}: no CUDA GPU is available (set NUMBA_ENABLE_CUDASIM=1 to use Numba's simulator)"
        )


def _apply_device(layer, device):
    dev = _device_name(f"{type(layer).__name__}()", device)
    if dev == "cuda":
        layer.to("cuda")


def _ndim_error(layer, x, dims, what):
    want = " or ".join(f"{d}D" for d in dims)
    return ValueError(
        f"{type(layer).__name__}(): argument 'x' must be {what}: expected {want} input "
        f"(got {x.ndim}D input)"
    )


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
# channel-wise layers: BatchNorm, InstanceNorm


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


# --------------------------------------------------------------------------------------
# GroupNorm, LocalResponseNorm


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
