"""ONNX's normalization operators on numbanorm's kernels.

One function per ONNX operator, with ONNX's input order, attribute names and defaults,
broadcasting of ``Scale``/``B`` and extra outputs; each calls numbanorm's public
functions (CPU or CUDA kernels, chosen from the arrays as everywhere in numbanorm):

=============================  ==========================================================
``layer_normalization``        LayerNormalization (opset 17): ``Y, Mean, InvStdDev``
``rms_normalization``          RMSNormalization (opset 23)
``batch_normalization``        BatchNormalization (opset 15): inference, or
                               ``training_mode=1`` → ``Y, running_mean, running_var``
``instance_normalization``     InstanceNormalization
``group_normalization``        GroupNormalization: opset 18 per-group ``scale``/``bias``
                               of shape ``(num_groups,)`` or opset 21 per-channel ``(C,)``
``lrn``                        LRN (ONNX's window for even sizes)
``lp_normalization``           LpNormalization (``p`` 1 or 2; a zero vector gives 0)
``mean_variance_normalization``  MeanVarianceNormalization
=============================  ==========================================================

:func:`reference_ops` returns them as ``onnx.reference.op_run.OpRun`` classes, so a whole
ONNX model's normalizations run on numbanorm's kernels::

    from onnx.reference import ReferenceEvaluator
    sess = ReferenceEvaluator(model, new_ops=numbanorm.onnx.reference_ops())

``onnx`` is needed only for :func:`reference_ops` (``pip install numbanorm[onnx]``).

Differences from ONNX's own reference implementation, all within float rounding:
statistics are accumulated in float64 (ONNX: in the stash type, float32), and
``MeanVarianceNormalization`` divides by the standard deviation where ONNX divides by
``std + 1e-9`` (the same for every position whose deviation is not ~1e-9 or below;
a constant position gives 0 in both). NaN in ``MeanVarianceNormalization``'s input is
left out of the statistics (numbanorm's ``standardize``), where ONNX propagates it.
``LpNormalization`` divides by ``max(norm, tiny)`` (the smallest normal number of the
compute dtype), so a zero vector gives 0 as in ONNX's reference and a vector whose norm is
subnormal is scaled by ``1 / tiny`` instead of ``1 / norm``.
"""
import sys

import numpy as np

from ._ops.batch_norm import batch_norm
from ._ops.group_norm import group_norm
from ._ops.instance_norm import instance_norm
from ._ops.layer_norm import layer_norm
from ._ops.local_response_norm import local_response_norm
from ._ops.normalize import normalize
from ._ops.rms_norm import rms_norm
from ._ops.standardize import standardize

#: ONNX TensorProto element types of the ``stash_type`` attribute
_STASH = {1: np.dtype(np.float32), 11: np.dtype(np.float64)}


def _axis(fn, axis, ndim):
    axis = int(axis)
    if not -ndim <= axis < ndim:
        raise ValueError(f"{fn}(): attribute 'axis' must be an axis of the {ndim}-D input, got {axis}")
    return axis % ndim


def _stash(fn, X, stash_type):
    """(X in the compute precision the stash type asks for, dtype to cast the result to)."""
    try:
        st = _STASH[int(stash_type)]
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{fn}(): attribute 'stash_type' must be 1 (float32) or 11 (float64), "
                         f"got {stash_type!r}") from None
    dt = np.dtype(X.dtype)
    if dt == st or dt.kind != "f" or (st == np.float32 and dt.itemsize < 4):
        return X, None  # float16/bfloat16 are computed in float32 already
    return X.astype(st), dt


def _cast(a, dtype):
    return a if dtype is None else a.astype(dtype)


def _xp(a):
    """The array module of ``a`` for the small host-side parameter reshapes: CuPy for CuPy
    arrays (their parameters stay on the GPU), else NumPy."""
    cupy = sys.modules.get("cupy")
    return cupy if cupy is not None and isinstance(a, cupy.ndarray) else np


def _param(fn, arg, value, shape):
    """An ONNX Scale/B input broadcast (unidirectionally) to ``shape``."""
    if value is None:
        return None
    if tuple(getattr(value, "shape", ())) == tuple(shape):
        return value
    try:
        xp = _xp(value)
        return xp.broadcast_to(xp.asarray(value), shape)
    except ValueError:
        raise ValueError(f"{fn}(): input '{arg}' must broadcast to shape {tuple(shape)}, "
                         f"got shape {np.shape(value)}") from None


def layer_normalization(X, Scale, B=None, *, axis=-1, epsilon=1e-5, stash_type=1):
    r"""ONNX ``LayerNormalization``: normalize over the dims ``axis ... rank-1``.

    .. math:: Y = \frac{X - \mathrm{E}[X]}{\sqrt{\mathrm{Var}[X] + \epsilon}} \cdot Scale + B

    Returns ``(Y, Mean, InvStdDev)``, the statistics shaped ``X.shape[:axis] + (1,) * k``
    in the stash type (float32 by default).

    Examples
    --------
    >>> import numpy as np
    >>> from numbanorm import onnx
    >>> y, mean, inv = onnx.layer_normalization(np.array([[1., 2., 3.]]), np.ones(3))
    >>> y.round(4), mean, inv.round(4)
    (array([[-1.2247,  0.    ,  1.2247]]), array([[2.]], dtype=float32), array([[1.2247]], dtype=float32))
    """
    fn = "layer_normalization"
    ax = _axis(fn, axis, len(X.shape))
    nshape = tuple(X.shape[ax:])
    work, back = _stash(fn, X, stash_type)
    y, mean, rstd = layer_norm(work, nshape, _param(fn, "Scale", Scale, nshape), _param(fn, "B", B, nshape),
                               float(epsilon), return_stats=True)
    st = _STASH[int(stash_type)]
    return _cast(y, back), mean.astype(st, copy=False), rstd.astype(st, copy=False)


def rms_normalization(X, scale, *, axis=-1, epsilon=1e-5, stash_type=1):
    r"""ONNX ``RMSNormalization``: :math:`Y = X / \sqrt{\mathrm{E}[X^2] + \epsilon} \cdot scale`
    over the dims ``axis ... rank-1``.

    Examples
    --------
    >>> import numpy as np
    >>> from numbanorm import onnx
    >>> onnx.rms_normalization(np.array([[3., 4.]]), np.ones(2), epsilon=0.0).round(4)
    array([[0.8485, 1.1314]])
    """
    fn = "rms_normalization"
    ax = _axis(fn, axis, len(X.shape))
    nshape = tuple(X.shape[ax:])
    work, back = _stash(fn, X, stash_type)
    return _cast(rms_norm(work, nshape, _param(fn, "scale", scale, nshape), float(epsilon)), back)


def batch_normalization(X, scale, B, input_mean, input_var, *, epsilon=1e-5, momentum=0.9, training_mode=0):
    r"""ONNX ``BatchNormalization`` over ``(N, C, D1, ...)``.

    Inference (``training_mode=0``): ``Y`` from ``input_mean``/``input_var``. Training:
    ``Y`` from the batch mean and biased variance, plus ``running_mean = input_mean *
    momentum + mean * (1 - momentum)`` and likewise ``running_var`` with the biased batch
    variance (ONNX's update; the inputs are not modified).

    Examples
    --------
    >>> import numpy as np
    >>> from numbanorm import onnx
    >>> x = np.array([[1.0], [3.0]])
    >>> y, rm, rv = onnx.batch_normalization(x, np.ones(1), np.zeros(1), np.zeros(1), np.ones(1),
    ...                                      epsilon=0.0, training_mode=1)
    >>> y.ravel(), rm, rv
    (array([-1.,  1.]), array([0.2]), array([1.]))
    """
    if not int(training_mode):
        return batch_norm(X, input_mean, input_var, scale, B, False, eps=float(epsilon))
    dt = np.result_type(np.float32, X.dtype) if np.dtype(X.dtype).kind == "f" else np.float64
    xp = _xp(input_mean)
    rm = xp.array(input_mean, dtype=dt)  # copies: ONNX returns the updated statistics
    rv = xp.array(input_var, dtype=dt)
    y = batch_norm(X, rm, rv, scale, B, True, 1.0 - float(momentum), float(epsilon), unbiased_running_var=False)
    return y, rm, rv


def instance_normalization(input, scale, B, *, epsilon=1e-5):
    r"""ONNX ``InstanceNormalization``: per sample and channel over the spatial dims.

    Examples
    --------
    >>> import numpy as np
    >>> from numbanorm import onnx
    >>> onnx.instance_normalization(np.array([[[1.0, 3.0]]]), np.ones(1), np.zeros(1), epsilon=0.0)
    array([[[-1.,  1.]]])
    """
    return instance_norm(input, None, None, scale, B, True, eps=float(epsilon))


def group_normalization(X, scale, bias, *, num_groups, epsilon=1e-5, stash_type=1):
    r"""ONNX ``GroupNormalization``: ``num_groups`` groups of channels of ``(N, C, ...)``.

    ``scale``/``bias`` of shape ``(num_groups,)`` (opset 18: one value per group) or
    ``(C,)`` (opset 21: one per channel).

    Examples
    --------
    >>> import numpy as np
    >>> from numbanorm import onnx
    >>> x = np.array([[[1.0], [3.0], [5.0], [5.0]]])          # (N, C, L), two groups
    >>> onnx.group_normalization(x, np.ones(2), np.array([0.0, 1.0]), num_groups=2).ravel().round(4)
    array([-1.,  1.,  1.,  1.])
    """
    fn = "group_normalization"
    g = int(num_groups)
    c = X.shape[1] if len(X.shape) > 1 else 0
    params = []
    for arg, p in (("scale", scale), ("bias", bias)):
        xp = _xp(p)
        p = xp.asarray(p)
        if p.shape == (g,) and g != c and g > 0 and c % g == 0:
            p = xp.repeat(p, c // g)  # opset 18: per-group values
        elif p.shape != (c,):
            raise ValueError(f"{fn}(): input '{arg}' must have shape ({g},) (per group) or ({c},) (per channel), "
                             f"got shape {p.shape}")
        params.append(p)
    work, back = _stash(fn, X, stash_type)
    return _cast(group_norm(work, g, params[0], params[1], float(epsilon)), back)


def lrn(X, *, size, alpha=1e-4, beta=0.75, bias=1.0):
    r"""ONNX ``LRN`` across channels of ``(N, C, D1, ...)``.

    .. math:: Y_c = X_c / \left(bias + \frac{\alpha}{size} \sum_{i=c-\lfloor (size-1)/2 \rfloor}^{
              c+\lceil (size-1)/2 \rceil} X_i^2\right)^{\beta}

    Examples
    --------
    >>> import numpy as np
    >>> from numbanorm import onnx
    >>> onnx.lrn(np.array([[[1.0], [1.0], [0.0], [2.0]]]), size=2, alpha=2.0, beta=1.0).ravel().round(4)
    array([0.3333, 0.5   , 0.    , 0.4   ])
    """
    return local_response_norm(X, int(size), float(alpha), float(beta), float(bias), convention="onnx")


def lp_normalization(input, *, axis=-1, p=2):
    r"""ONNX ``LpNormalization``: ``input / ||input||_p`` along ``axis`` (``p`` 1 or 2);
    a zero vector gives zeros, as ONNX's reference does.

    Examples
    --------
    >>> import numpy as np
    >>> from numbanorm import onnx
    >>> onnx.lp_normalization(np.array([[3.0, 4.0], [0.0, 0.0]]))
    array([[0.6, 0.8],
           [0. , 0. ]])
    """
    fn = "lp_normalization"
    if int(p) not in (1, 2):
        raise ValueError(f"{fn}(): attribute 'p' must be 1 or 2, got {p!r}")
    ax = _axis(fn, axis, len(input.shape))
    dt = np.dtype(input.dtype)
    # the smallest normal number of the compute dtype (its reciprocal is finite): a zero
    # vector gives 0 * (1 / tiny) = 0, every norm above it divides as x / norm
    tiny = float(np.finfo(np.float64 if dt == np.float64 or dt.kind != "f" else np.float32).tiny)
    return normalize(input, float(int(p)), ax, tiny)


def mean_variance_normalization(X, *, axes=(0, 2, 3)):
    r"""ONNX ``MeanVarianceNormalization``: :math:`(X - \mathrm{E}[X]) / \sqrt{\mathrm{Var}[X]}`
    over ``axes`` (biased variance); a constant position gives 0.

    Examples
    --------
    >>> import numpy as np
    >>> from numbanorm import onnx
    >>> onnx.mean_variance_normalization(np.array([[1.0, 3.0]]), axes=[1])
    array([[-1.,  1.]])
    """
    return standardize(X, tuple(int(a) for a in axes))


_OPS = None


def reference_ops():
    """The operators above as ``onnx.reference.op_run.OpRun`` classes for
    ``onnx.reference.ReferenceEvaluator(model, new_ops=reference_ops())``.

    Examples
    --------
    >>> import numbanorm.onnx
    >>> sorted(cl.__name__ for cl in numbanorm.onnx.reference_ops())[:3]
    ['BatchNormalization', 'GroupNormalization', 'InstanceNormalization']
    """
    global _OPS
    if _OPS is None:
        from onnx.reference.op_run import OpRun

        def op(name, run):
            return type(name, (OpRun,), {"op_domain": "", "_run": run, "__module__": __name__,
                                         "__doc__": f"ONNX {name} on numbanorm's kernels."})

        def ln(self, X, Scale, B=None, axis=None, epsilon=None, stash_type=None):
            return layer_normalization(X, Scale, B, axis=axis, epsilon=epsilon, stash_type=stash_type)

        def rms(self, X, scale, axis=None, epsilon=None, stash_type=None):
            return (rms_normalization(X, scale, axis=axis, epsilon=epsilon, stash_type=stash_type),)

        def bn(self, X, scale, B, input_mean, input_var, epsilon=None, momentum=None, training_mode=None):
            r = batch_normalization(X, scale, B, input_mean, input_var, epsilon=epsilon,
                                    momentum=0.9 if momentum is None else momentum, training_mode=training_mode or 0)
            return r if isinstance(r, tuple) else (r,)

        def inorm(self, input, scale, B, epsilon=None):
            return (instance_normalization(input, scale, B, epsilon=epsilon),)

        def gn(self, X, scale, bias, epsilon=None, num_groups=None, stash_type=None):
            return (group_normalization(X, scale, bias, num_groups=num_groups, epsilon=epsilon,
                                        stash_type=1 if stash_type is None else stash_type),)

        def lrn_(self, X, alpha=None, beta=None, bias=None, size=None):
            return (lrn(X, size=size, alpha=alpha, beta=beta, bias=bias),)

        def lp(self, input, axis=None, p=None):
            return (lp_normalization(input, axis=axis, p=p),)

        def mvn(self, X, axes=None):
            return (mean_variance_normalization(X, axes=(0, 2, 3) if axes is None else axes),)

        _OPS = [op("LayerNormalization", ln), op("RMSNormalization", rms), op("BatchNormalization", bn),
                op("InstanceNormalization", inorm), op("GroupNormalization", gn), op("LRN", lrn_),
                op("LpNormalization", lp), op("MeanVarianceNormalization", mvn)]
    return list(_OPS)
