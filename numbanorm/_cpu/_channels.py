"""Grouped channel statistics on the ``(B, O, C, I)`` view: the CPU core of BatchNorm,
InstanceNorm and GroupNorm.

Layout: ``x`` (and ``out``, ``grad_out``, ``grad_x``) is a C-contiguous ``(B, O, C, I)``
array of the compute dtype (float32 or float64); statistics are float64 ``(B, G)`` arrays,
per ``(b, g)`` over the ``O × I`` positions of the ``C // G`` channels of group ``g``:

* BatchNorm: ``B = 1``, ``G = C`` (NCHW: ``O = N, I = H·W``; channels-last ``O = N·H·W, I = 1``);
* InstanceNorm: ``B = N``, ``G = C``;  GroupNorm: ``B = N``, ``G = num_groups``
  (channels-first: ``O = 1, I = spatial`` = rows ``(N·G, C/G·spatial)``;
  channels-last: ``O = spatial, I = 1``).

No layout is ever transposed: with ``I = 1`` (channels-last) the inner loops run over the
contiguous channels, otherwise over the contiguous ``I`` positions of one ``(b, o, c)`` row.

Three kernel families, chosen from the shape only (never the thread count), so results are
reproducible on any machine:

* **rows** (``O = 1``, ``I > 1``, at least ``ROWS_MIN`` rows: GroupNorm/InstanceNorm
  channels-first): chunks
  of the ``B·G`` rows; a row (its C/G channel rows) is read from memory once for its
  statistics and normalized while it is still in cache; the backward likewise, with
  per-``(b, c)`` float64 sums for grad_weight/grad_bias added over ``b`` in order. The
  forward also takes 2-D ``(N, C)`` GroupNorm inputs (``O = I = 1``, ``G < C``; a group is
  ``C/G`` contiguous channels) with a kernel of its own (:func:`_flat_rows`); their
  backward stays on the slab path.
* **slab** (``I = 1``, ``B >= SLAB_MIN_BATCH``: channels-last GroupNorm/InstanceNorm): chunks
  of the ``B`` samples, each ``(O, C)`` slab reduced per channel (inner loop
  over the contiguous channels) and normalized while it is in cache.
* **runs** (BatchNorm channels-first training: ``B = 1``, ``O > 1``, ``I > 1``, at
  least ``RUNS_MIN`` channels of at most ``RUNS_BYTES`` of dy and x each, run strides that
  do not pile a channel's runs into a few cache sets): chunks of the
  channels; a channel's O runs of I values are reduced, then normalized (backward: its dx
  written) while they are in cache, as the rows kernels do.
* **generic** (BatchNorm, and whatever the others do not take): a reduction over a fixed
  grid of ``B × KO × KI`` work items (chunks of O and I) writing float64 partial sums
  ``(B, KO·KI, C)`` that are merged in item order (deterministic, no atomics) by one
  finishing dispatch (statistics and the pass's coefficients), then one element-wise pass
  over chunks of rows. The forward of an ``I = 1`` input (BatchNorm of ``(N, C)`` and of
  channels-last data) runs these steps in one launch (:mod:`._channels_last`): the thread
  that finishes the last partial merges them, and each thread then normalizes the rows it
  reduced, still in its cache (bitwise the same results; (256, 1024) 124 -> 99 µs).

Numerics. Statistics are shifted sums: each ``(b, c)`` channel (rows kernels: each ``(b, g)``
group) is shifted by its first element ``K`` and one pass accumulates ``Σ(x−K)`` and
``Σ(x−K)²``. Runs of ``BLOCK`` values are summed in the data dtype (vector registers, no
conversions) and those run sums in float64, so statistics cost one read of the data at memory
speed while float32 data with a large common offset keeps its precision (``x − K`` is exact
there). Channels are merged into groups with Chan's formula
``M2 = Σ M2_c + n Σ (μ_c − μ_g)²``. The element-wise passes run in the data dtype as
``(x − μ_hi)·s + (h − μ_lo·s)`` with ``μ = μ_hi + μ_lo`` split into its data-dtype rounding
and the float64 remainder (the same split keeps the backward's ``Σ dy·(x − μ)`` exact to
float64).

Threads: every kernel is a serial chunk kernel compiled ``nogil=True`` that takes chunks of
its work items from a shared counter; :func:`._threads.launch_pass` runs it on a pool of
Python threads, at most one per :data:`._threads.PASS_GRAIN` elements (a helper costs more
than it saves on a smaller pass), or calls it once (one chunk) below ``SERIAL_THRESHOLD``
elements or two grains, so a small and a large call share their compiled code (a ``prange``
kernel is four LLVM modules, each re-optimising the inlined loop body: about half of a large
first call's compile time).

This module holds the entry points (``stats``, ``normalize``, ``forward``, ``backward``,
``fill``) and the choice of kernel family; the kernels are in :mod:`._channels_forward`
(statistics and normalize passes) and :mod:`._channels_grad` (backward).
"""
import math

import numpy as np

from .. import _config
from .._config import REDUCE_CHUNKS
from ._channels_forward import BLOCK  # noqa: F401  (documented above)
from ._channels_forward import _apply_inner, _apply_last, _expand, _finish, _group_stats, _moments_inner, _moments_last
from ._channels_forward import _rows_forward, _rows_forward_flat, _running_coefficients, _runs_forward, _slab_forward
from ._channels_grad import _grad_apply_inner, _grad_apply_last, _grad_eval_inner, _grad_eval_last, _grad_finish
from ._channels_grad import _grad_moments_inner, _grad_moments_last, _grad_prepare, _param_grads
from ._channels_grad import _rows_backward, _runs_backward, _slab_backward
from ._channels_last import _last_forward
from ._threads import SERIAL_COUNTER
from ._threads import launch_pass as launch  # at most one thread per PASS_GRAIN elements

#: the fused kernels parallelize over rows / samples: they need at least this many of them.
ROWS_MIN = 8
SLAB_MIN_BATCH = 8

#: the BatchNorm NCHW per-channel kernels (:func:`._channels_grad._runs_backward`,
#: :func:`._channels_forward._runs_forward`) take channels whose dy and x (2·O·I values) fit
#: in this many bytes (in this Xeon's
#: 1.25 MiB L2 between its two passes; where they do not, its second pass reads what the
#: generic path's second pass reads), at least RUNS_MIN channels (its work items), and
#: run strides that spread a channel's O runs over the cache sets (:func:`_runs`)
RUNS_BYTES = 1 << 20
RUNS_MIN = 8

#: cache sets of 64-byte lines whose period the run-stride rule of :func:`_runs` assumes
#: (a 64 KiB period: L2s of 1-2 MiB at 16-20 ways), and the most runs one set may get
RUNS_SETS = 1024
RUNS_PER_SET = 8


def chunking(b, o, i):
    """(KO, KI): how many chunks of the O and I axes each of the B slices is cut into.

    Depends on the shape only (so reductions are reproducible on any thread count):
    about ``REDUCE_CHUNKS`` work items in all, chunks of I no shorter than 2048 elements,
    channels-last chunks (I = 1) no shorter than 64 rows (their partial rows cost a merge).
    """
    per_b = max(1, REDUCE_CHUNKS // b)
    if i == 1:
        return max(1, min(per_b, o // 64)), 1
    ko = min(o, per_b)
    return ko, max(1, min(-(-per_b // ko), i // 2048))


# --- entry points ------------------------------------------------------------------------


def _partials(x):
    """Chunk counts and zeroed float64 partial-sum buffers (B, KO·KI, C) for ``x``."""
    nb, no, nc, ni = x.shape
    ko, ki = chunking(nb, no, ni)
    return ko, ki, np.zeros((nb, ko * ki, nc)), np.zeros((nb, ko * ki, nc))


def _path(x, groups):
    """'rows', 'slab' or 'generic' for a (B, O, C, I) input (see the module docstring)."""
    return _path_of(x.shape, groups)


def _path_of(shape, groups):
    """:func:`_path` of a (B, O, C, I) shape."""
    nb, no, nc, ni = shape
    if no == 1 and ni > 1 and nb * groups >= ROWS_MIN:
        return "rows"
    if ni == 1 and nb >= SLAB_MIN_BATCH:
        return "slab"
    return "generic"


def _runs(x, groups):
    """Whether a training forward/backward takes the per-channel kernels (module doc, **runs**).

    Also the stride rule: a channel's O runs start ``C·I·itemsize`` bytes apart, and with a
    stride that is a multiple of 64 KiB they all map to the same cache sets, which then
    thrash between the kernel's two passes ((128, 64, 16, 16): 1.2-1.4x the generic path's
    time). The runs' starts fall on ``RUNS_SETS / gcd(stride in lines, RUNS_SETS)``
    distinct sets; at most ``RUNS_PER_SET`` runs may share one."""
    nb, no, nc, ni = x.shape
    if not (nb == 1 and groups == nc and no > 1 and ni > 1 and nc >= RUNS_MIN
            and 2 * no * ni * x.itemsize <= RUNS_BYTES):
        return False
    sets = RUNS_SETS // math.gcd((nc * ni * x.itemsize // 64) % RUNS_SETS, RUNS_SETS)
    return -(-no // sets) <= RUNS_PER_SET


def _flat_rows(shape, groups):
    """Whether the forward runs a (B, O, C, I) ``shape`` on the rows path's I = 1 kernel:
    2-D (N, C) GroupNorm inputs (O = I = 1, each group a contiguous run of channels; the
    slab path's per-channel merges cost ~4x on (256, 1024)). Not BatchNorm/InstanceNorm
    (one channel per group), nor the backward (its slab path)."""
    nb, no, nc, ni = shape
    return no == 1 and ni == 1 and nb * groups >= ROWS_MIN and groups < nc


def _forward_path(x, groups):
    """:func:`_path` for the forward (see :func:`_flat_rows`)."""
    return "rows" if _flat_rows(x.shape, groups) else _path(x, groups)


def _moments(x):
    """The generic path's partial sums of ``x`` (B, O, C, I): (Σ(x−K), Σ(x−K)²) partials
    (B, KO·KI, C) each."""
    nb, no, nc, ni = x.shape
    ko, ki, p1, p2 = _partials(x)
    if ni == 1:
        scratch = np.empty((2, nb * ko, nc), x.dtype)
        launch(_moments_last, x.size, nb * ko, x.reshape(nb, no, nc), ko, p1, p2, scratch[0], scratch[1])
    else:
        launch(_moments_inner, x.size, nb * ko * ki, x, ko, ki, p1, p2)
    return p1, p2


def stats(x, groups, eps, mean, rstd, var):
    """Per-(b, g) float64 ``mean``, ``rstd`` and biased ``var`` ``(B, G)`` of ``x`` (B, O, C, I)."""
    p1, p2 = _moments(x)
    _group_stats(x, p1, p2, groups, eps, mean, var, rstd)


def _apply(x, coef, out):
    """The generic element-wise pass with the (3, B, C) coefficients of :func:`_expand`."""
    nb, no, nc, ni = x.shape
    if ni == 1:
        launch(_apply_last, x.size, nb * no, x.reshape(nb, no, nc), coef[0], coef[1], coef[2],
               out.reshape(nb, no, nc))
    else:
        launch(_apply_inner, x.size, nb * no * nc, x, coef[0], coef[1], coef[2], out)


def normalize(x, mean, rstd, weight, bias, out):
    """out = (x − mean)·rstd·weight + bias with per-(b, g) float64 ``mean``/``rstd``."""
    coef = np.empty((3, x.shape[0], x.shape[2]), x.dtype)
    _expand(mean, rstd, weight, bias, coef[0], coef[1], coef[2])
    _apply(x, coef, out)


def normalize_running(x, running_mean, running_var, eps, weight, bias, out):
    """Eval-mode BatchNorm of the (1, O, C, I) ``x`` with the (C,) float32/float64 running
    statistics: :func:`normalize` of their mean and ``1/sqrt(var + eps)``, the coefficients
    computed in one dispatch."""
    coef = np.empty((3, 1, x.shape[2]), x.dtype)
    _running_coefficients(running_mean, running_var, eps, weight, bias, coef)
    _apply(x, coef, out)


def small_rows(shape, groups):
    """Whether :func:`forward` runs a (B, O, C, I) ``shape`` in one call of the rows path's
    kernel, which small callers may then call directly as :func:`rows_forward_serial` on
    the (B, C, I) view (with a (B, C, 3) ``coef`` scratch of the data dtype), or with
    I = 1 (always O = 1 there) as :func:`flat_rows_forward_serial` on the (B, C) view."""
    if math.prod(shape) >= _config.SERIAL_THRESHOLD:
        return False
    return _flat_rows(shape, groups) or _path_of(shape, groups) == "rows"


def rows_forward_serial(x, groups, eps, weight, bias, out, mean, rstd, var, coef):
    """The rows path's kernel on the (B, C, I > 1) view, in one call (one chunk)."""
    _rows_forward(x, groups, eps, weight, bias, out, mean, rstd, var, coef, 1, SERIAL_COUNTER)


def flat_rows_forward_serial(x, groups, eps, weight, bias, out, mean, rstd, var):
    """The rows path's I = 1 kernel (:func:`_flat_rows`) on the (B, C) view, in one call."""
    _rows_forward_flat(x, groups, eps, weight, bias, out, mean, rstd, var, 1, SERIAL_COUNTER)


def forward(x, groups, eps, weight, bias, out, mean, rstd, var):
    """Statistics of ``x`` per (b, g) into ``mean``/``rstd``/``var``, then normalize into ``out``."""
    nb, no, nc, ni = x.shape
    path = _forward_path(x, groups)
    if path == "rows" and ni == 1:
        launch(_rows_forward_flat, x.size, nb * groups, x.reshape(nb, nc), groups, eps, weight, bias,
               out.reshape(nb, nc), mean, rstd, var)
    elif path == "rows":
        launch(_rows_forward, x.size, nb * groups, x.reshape(nb, nc, ni), groups, eps, weight, bias,
               out.reshape(nb, nc, ni), mean, rstd, var, np.empty((nb, nc, 3), x.dtype))
    elif path == "generic" and _runs(x, groups):
        launch(_runs_forward, x.size, nc, x, eps, weight, bias, out, mean, rstd, var, np.empty((nc, 3), x.dtype))
    elif path == "slab":
        launch(_slab_forward, x.size, nb, x.reshape(nb, no, nc), groups, eps, weight, bias, out.reshape(nb, no, nc),
               mean, rstd, var, np.empty((nb, 3, nc)), np.empty((nb, 5, nc), x.dtype))
    elif ni == 1:  # the generic path's steps in one launch (see _channels_last)
        ko, _, p1, p2 = _partials(x)
        scratch = np.empty((2, nb * ko, nc), x.dtype)
        launch(_last_forward, x.size, nb * ko, x, ko, p1, p2, scratch[0], scratch[1], groups, eps, weight, bias,
               out, mean, var, rstd, np.empty((3, nb, nc), x.dtype), np.zeros(2, np.int64))
    else:  # statistics and coefficients in one finishing dispatch
        p1, p2 = _moments(x)
        coef = np.empty((3, nb, nc), x.dtype)
        _finish(x, p1, p2, groups, eps, mean, var, rstd, weight, bias, coef)
        _apply(x, coef, out)


def backward(grad_out, x, weight, mean, rstd, training, grad_x, grad_weight, grad_bias):
    """``grad_x`` (B, O, C, I), ``grad_weight``/``grad_bias`` (C,) from per-(b, g) float64 stats.

    ``training=False`` treats ``mean``/``rstd`` as constants (BatchNorm in eval mode).
    """
    path = _path(x, mean.shape[1]) if training else "generic"
    if path == "generic" and training and _runs(x, mean.shape[1]):
        nc = x.shape[2]
        sum1 = np.zeros((1, nc))
        sum2 = np.zeros((1, nc))
        launch(_runs_backward, x.size, nc, grad_out, x, weight, mean, rstd, grad_x, sum1, sum2,
               np.empty((nc, 4), x.dtype))
        _param_grads(sum1, sum2, rstd, grad_weight, grad_bias)
        return
    if path == "generic":
        _generic_backward(grad_out, x, weight, mean, rstd, training, grad_x, grad_weight, grad_bias)
        return
    nb, no, nc, ni = x.shape
    sum1 = np.zeros((nb, nc))
    sum2 = np.zeros((nb, nc))
    if path == "rows":
        shape3 = (nb, nc, ni)
        launch(_rows_backward, x.size, nb * mean.shape[1], grad_out.reshape(shape3), x.reshape(shape3), weight,
               mean, rstd, grad_x.reshape(shape3), sum1, sum2, np.empty((nb, nc, 4), x.dtype))
    elif path == "slab":
        shape3 = (nb, no, nc)
        launch(_slab_backward, x.size, nb, grad_out.reshape(shape3), x.reshape(shape3), weight, mean, rstd,
               grad_x.reshape(shape3), sum1, sum2, np.empty((nb, 6, nc), x.dtype))
    _param_grads(sum1, sum2, rstd, grad_weight, grad_bias)


def _generic_backward(grad_out, x, weight, mean, rstd, training, grad_x, grad_weight, grad_bias):
    """:func:`backward` on the generic path: a reduction pass (Σdy, Σdy·(x − μ) partials;
    with constant statistics fused with dx = alpha·dy) and, in training, the dx pass; the
    small per-(b, c) steps in two dispatches (:func:`._channels_grad._grad_prepare` and
    :func:`._channels_grad._grad_finish`)."""
    nb, no, nc, ni = x.shape
    count = no * ni
    ko, ki, q1, q2 = _partials(x)
    sums = np.zeros((2, nb, nc))
    coef = np.empty((4, nb, nc), x.dtype)  # μ_hi, alpha, beta, gamma per (b, c)
    _grad_prepare(weight, mean, rstd, count, training, coef, sums)
    m_bc, alpha, beta, gamma = coef
    last = ni == 1
    if last:
        shape3 = (nb, no, nc)
        dy_v, x_v, dx_v = (a.reshape(shape3) for a in (grad_out, x, grad_x))
        scratch = np.empty((2, nb * ko, nc), x.dtype)
    else:
        dy_v, x_v, dx_v = grad_out, x, grad_x
    if training:
        if last:
            launch(_grad_moments_last, x.size, nb * ko, dy_v, x_v, m_bc, ko, q1, q2, scratch[0], scratch[1])
        else:
            launch(_grad_moments_inner, x.size, nb * ko * ki, dy_v, x_v, m_bc, ko, ki, q1, q2)
        _grad_finish(q1, q2, weight, mean, rstd, count, True, coef, sums, grad_weight, grad_bias)
        if last:
            launch(_grad_apply_last, x.size, nb * no, dy_v, x_v, m_bc, alpha, beta, gamma, dx_v)
        else:
            launch(_grad_apply_inner, x.size, nb * no * nc, dy_v, x_v, m_bc, alpha, beta, gamma, dx_v)
    else:  # constant statistics: dx = r·w·dy, fused with the parameter-gradient sums
        if last:
            launch(_grad_eval_last, x.size, nb * ko, dy_v, x_v, m_bc, alpha, ko, q1, q2, dx_v, scratch[0],
                   scratch[1])
        else:
            launch(_grad_eval_inner, x.size, nb * ko * ki, dy_v, x_v, m_bc, alpha, ko, ki, q1, q2, dx_v)
        _grad_finish(q1, q2, weight, mean, rstd, count, False, coef, sums, grad_weight, grad_bias)


def fill(a, value):
    """a[...] = value (statistics of empty slices)."""
    a[...] = value
