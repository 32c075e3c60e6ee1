"""Lp normalization CUDA kernels (twin of ``numbanorm/_cpu/normalize.py``).

Launchers ``forward_rows``, ``backward_rows``, ``forward_channels``, ``backward_channels``
have the CPU entry points' names and signatures and take Numba device arrays.

The kernels live in :mod:`._normalize_rows` and :mod:`._normalize_channels`, their shared
element terms in :mod:`._normalize_terms`; this module picks and launches them.

Thread mapping:

* rows ``(M, N)`` (``_layout.launch_rows``): one warp per row for ``N <= warp_row_max``
  (lane ``l`` handles columns ``l, l+32, ...``, coalesced), one block per row above;
  grid-stride over rows. The norm is reduced in float64 with ``_reduce.warp_sum`` /
  ``block_sum`` (``warp_max`` / ``block_max`` for p = inf, NaN-propagating); the write
  pass re-reads the row (L1/L2).
* channels ``(outer, C, inner)``: one thread per column ``(o, j)``, grid-stride over the
  ``outer * inner`` columns; consecutive threads take consecutive ``j`` (coalesced); each
  thread loops over C (norm, then write; the backward adds the ``sum dy x`` loop). With
  too few columns to fill the device (fewer than ``2 * SM`` blocks, e.g. ``(1_000_000, 64)``
  along axis 0) the forward cuts C into chunks instead: per-chunk partials
  (``_chan_partial``, grid ``(column blocks, chunks)``), merged in chunk order
  (``_chan_finish``), then the write pass on the same grid (``_chan_apply``).

``pk``: 0 → p = 2, 1 → p = 1, 2 → p = inf, 3 → other p (p < 0 included), 4 → p = -inf
(the maximum of -|x|, reduced with the max reductions), 5 → p = 0 (count of nonzeros). The backward is torch's
autograd of ``x / norm(x).clamp_min(eps)`` (see the CPU module). Deterministic: the
reductions' order depends only on the launch shape; no atomics.
"""

import functools
import math

from . import _layout, _plan
from ._normalize_channels import _chan_finish, _chan_grad_finish, channel_kernels, fits32
from ._normalize_rows import row_kernels
from ._normalize_terms import (  # noqa: F401 - the element terms, re-exported for _rows_lowp
    FIXED, P0, P1, P2, PGEN, PINF, PNINF, SUMS, _acc, _clamp, _dnorm, _finish, _init, _is_tie,
)


@functools.lru_cache(maxsize=None)
def kernels(fixed, fp64=False):
    """Every normalize kernel for one p kind (``fixed`` in :data:`FIXED`, names ending
    ``_p2`` / ``_p1`` / ``_pinf``) or for all the others (``None``: the kind is the ``pk`` argument):
    :func:`._normalize_rows.row_kernels` and :func:`._normalize_channels.channel_kernels`."""
    return {**row_kernels(fixed, fp64), **channel_kernels(fixed, fp64)}


#: rows of at least this many elements take the runtime-kind kernels (64-bit in-row
#: bounds) whatever p is
ROW32 = 2**31


def _kernels(pk, dtype, n=0):
    return kernels(pk if pk in FIXED and n < ROW32 else None, dtype == "float64")


# ------------------------------------------------------------------- launchers


def _pkind(p):
    if p == 2.0:
        return P2
    if p == 1.0:
        return P1
    if p == math.inf:
        return PINF
    if p == -math.inf:
        return PNINF
    if p == 0.0:
        return P0
    return PGEN


def _flat(a):
    return a.reshape(a.size)


def _row_kernel(which, p, dtype, m, n):
    """The launch-configured rows ``which`` kernel ("forward" / "backward"); rows of
    >= ROW32 elements take the runtime-kind kernels (64-bit in-row bounds)."""
    warp, blocks, threads = _layout.launch_rows(m, n)
    k = _kernels(_pkind(p), dtype, n)[f"rows_{which}_{'warp' if warp else 'block'}"]
    return k[blocks, threads, _layout.stream()]


def forward_rows(x, p, eps, out):
    """``out[i] = x[i] / max(||x[i]||_p, eps)`` for each row of the (M, N) array ``x``."""
    m, n = x.shape
    if m == 0 or n == 0:
        return
    _row_kernel("forward", p, x.dtype, m, n)(_flat(x), m, n, _pkind(p), float(p), float(eps), _flat(out))


def backward_rows(grad_out, x, p, eps, grad_x):
    """Gradient of :func:`forward_rows` with respect to ``x`` into ``grad_x`` (M, N)."""
    m, n = x.shape
    if m == 0 or n == 0:
        return
    _row_kernel("backward", p, x.dtype, m, n)(_flat(grad_out), _flat(x), m, n, _pkind(p), float(p), float(eps),
                                              _flat(grad_x))


def forward_channels(x, p, eps, out):
    """``out[o, :, j] = x[o, :, j] / max(||x[o, :, j]||_p, eps)`` on (outer, C, inner)."""
    outer, _, inner = x.shape
    if x.size == 0:
        return
    blocks, threads = _layout.launch_1d(outer * inner)
    c_len = x.shape[1]
    if blocks < 2 * _plan.sm_count() and c_len >= 64:
        _forward_channels_split(x, p, eps, out)
        return
    # the fixed kinds' 32-bit in-column offsets: columns that do not fit take the runtime kind
    ks = _kernels(_pkind(p), x.dtype) if fits32(c_len, inner) else kernels(None, x.dtype == "float64")
    ks["chan_forward"][blocks, threads, _layout.stream()](_flat(x), *x.shape, _pkind(p), float(p), float(eps), _flat(out))


def _forward_channels_split(x, p, eps, out):
    """Few columns (e.g. ``(1_000_000, 64)`` along axis 0): C is cut into chunks so that
    about ``partial_blocks`` blocks share the reduction (a serial walk over C per thread
    would run on one block); partials merged in chunk order, then a parallel write pass."""
    outer, c_len, inner = x.shape
    grid, threads, chunks = _layout.launch_partials(c_len, outer * inner)
    part = _layout.scratch("nz.part", (chunks, outer * inner), "float64")
    den = _layout.scratch("nz.den", (outer * inner,), "float64")
    _kernels(_pkind(p), x.dtype)["chan_partial"][grid, threads, _layout.stream()](_flat(x), *x.shape, _pkind(p), float(p), part)
    blocks, tpb = _layout.launch_1d(outer * inner)
    _chan_finish[blocks, tpb, _layout.stream()](part, _pkind(p), float(p), float(eps), den)
    kernels(None, x.dtype == "float64")["chan_apply"][grid, threads, _layout.stream()](_flat(x), *x.shape, den, _flat(out))


def backward_channels(grad_out, x, p, eps, grad_x):
    """Gradient of :func:`forward_channels` with respect to ``x`` into ``grad_x``."""
    outer, c_len, inner = x.shape
    if x.size == 0:
        return
    if _pkind(p) in SUMS and c_len >= 64:
        _backward_channels_split(grad_out, x, p, eps, grad_x)
        return
    blocks, threads = _layout.launch_1d(outer * inner)
    # the fixed kinds' 32-bit in-column offsets: columns that do not fit take the runtime kind
    ks = _kernels(_pkind(p), x.dtype) if fits32(c_len, inner) else kernels(None, x.dtype == "float64")
    ks["chan_backward"][blocks, threads, _layout.stream()](
        _flat(grad_out), _flat(x), *x.shape, _pkind(p), float(p), float(eps), _flat(grad_x))


def _backward_channels_split(grad_out, x, p, eps, grad_x):
    """p = 2 or 1 with C >= 64: partials of (norm, Σ dy·x) per (chunk of C, column), summed
    in chunk order, then the write pass on the same grid. Same DRAM traffic as the
    thread-per-column kernel (dy and x read twice, grad_x written once, plus 2 float64
    per column and chunk and 3 per column), but each pass is a short loop (the fused kernel's runtime
    step ``inner`` costs 64-bit address math in both of its loops) and few columns no
    longer mean few threads."""
    outer, c_len, inner = x.shape
    pk, ncols, st = _pkind(p), outer * inner, _layout.stream()
    grid, threads, chunks = _layout.launch_partials(c_len, ncols)
    part = _layout.scratch("nz.gpart", (2, chunks, ncols), "float64")
    fac = _layout.scratch("nz.fac", (3, ncols), "float64")
    ks = _kernels(pk, x.dtype)
    ks["chan_grad_partial"][grid, threads, st](_flat(grad_out), _flat(x), *x.shape, pk, float(p), part)
    blocks, tpb = _layout.launch_1d(ncols)
    _chan_grad_finish[blocks, tpb, st](part, pk, float(p), float(eps), fac)
    ks["chan_grad_apply"][grid, threads, st](_flat(grad_out), _flat(x), *x.shape, fac, _flat(grad_x))


#: the kernels are listed in ``_normalize_rows`` / ``_normalize_channels``
PTX_SIGNATURES = []
