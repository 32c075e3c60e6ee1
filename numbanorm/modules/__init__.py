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

Layout
------
One private module per family, all re-exported here (import the classes from
``numbanorm`` or ``numbanorm.modules``; the submodules are not public):
``_rows`` (LayerNorm, RMSNorm, AddLayerNorm, AddRMSNorm), ``_batch_norm``,
``_instance_norm``, ``_group_norm``, ``_local_response_norm``; the shared base classes
in ``_base`` and the argument checks and array helpers in ``_checks``.
"""
from ._base import IncompatibleKeys, StateDictError
from ._batch_norm import BatchNorm1d, BatchNorm2d, BatchNorm3d
from ._group_norm import GroupNorm
from ._instance_norm import InstanceNorm1d, InstanceNorm2d, InstanceNorm3d
from ._local_response_norm import LocalResponseNorm
from ._rows import AddLayerNorm, AddRMSNorm, LayerNorm, RMSNorm

__all__ = [
    "LayerNorm",
    "RMSNorm",
    "AddLayerNorm",
    "AddRMSNorm",
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

# The classes keep ``numbanorm.modules`` as their home (as before the split into
# submodules), so pickles and reprs do not depend on the private layout.
for _cls in (LayerNorm, RMSNorm, AddLayerNorm, AddRMSNorm, BatchNorm1d, BatchNorm2d, BatchNorm3d, InstanceNorm1d,
             InstanceNorm2d, InstanceNorm3d, GroupNorm, LocalResponseNorm, StateDictError, IncompatibleKeys):
    _cls.__module__ = __name__
del _cls
