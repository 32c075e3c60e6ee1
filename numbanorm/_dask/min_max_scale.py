"""Dask :func:`numbanorm.min_max_scale`: per-position NaN-ignoring extrema by a tree
reduction of per-block partials, then one blockwise pass of the transform kernel."""
import functools

from .. import _validate
from .._stats_host import feature_range_arg, reduce_axes
from ._graph import blockwise, check_out, dtypes, finish_out
from ._stats import reduce_extrema
from .standardize import apply_block


def min_max_scale(eager, x, feature_range=(0.0, 1.0), axis=0, *, clip=False, out=None):
    """Dask :func:`numbanorm.min_max_scale`: tree-merged extrema, then a blockwise transform."""
    fn = "min_max_scale"
    ctype, rtype = dtypes(fn, x)
    lo, hi = feature_range_arg(fn, feature_range)
    axes = reduce_axes(fn, axis, x.ndim)
    clip = _validate.flag(fn, clip, "clip")
    check_out(fn, out, x.shape, rtype)
    if x.size == 0:
        return finish_out(x.astype(rtype), out)
    st = reduce_extrema(x, axes)
    y, = blockwise(functools.partial(apply_block, fn, axes=axes, kind="minmax", ddof=0.0, lo=lo, hi=hi,
                                     clip=clip),
                   x, [(x, tuple(range(x.ndim))), (st, tuple(None if a in axes else a for a in range(x.ndim)))],
                   [(rtype, x.chunks)])
    return finish_out(y, out)
