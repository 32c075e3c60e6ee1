"""Tree reductions of per-block partial statistics: (count, mean, M2) and (min, max).

Each block contributes its partials from the numbanorm kernels
(:func:`numbanorm._stats_host.moments_chunk` / :func:`~numbanorm._stats_host.extrema_chunk`)
and ``da.reduction`` merges them with :func:`~numbanorm._stats_host.merge_moments` /
:func:`~numbanorm._stats_host.merge_extrema` (Chan et al. pairwise updates in a fixed
order), so results equal the in-memory ones to rounding on any scheduler.
"""
import numpy as np

from .._stats_host import EXTREMA, MOMENTS, extrema_chunk, merge_extrema, merge_moments, moments_chunk
from ._graph import dask_array


def reduce_moments(x, axes, weights=None, split_every=None):
    """Lazy (count, mean, M2) per kept position (structured, keepdims) by a Dask tree reduction."""
    da = dask_array()
    return da.reduction(x, moments_chunk, merge_moments, combine=merge_moments, axis=tuple(axes),
                        keepdims=True, dtype=MOMENTS, split_every=split_every, concatenate=True,
                        meta=np.empty((0,) * x.ndim, MOMENTS), weights=weights, name="numbanorm-moments")


def reduce_extrema(x, axes, split_every=None):
    """Lazy NaN-ignoring (min, max) per kept position (structured, keepdims)."""
    da = dask_array()
    return da.reduction(x, extrema_chunk, merge_extrema, combine=merge_extrema, axis=tuple(axes),
                        keepdims=True, dtype=EXTREMA, split_every=split_every, concatenate=True,
                        meta=np.empty((0,) * x.ndim, EXTREMA), name="numbanorm-extrema")
