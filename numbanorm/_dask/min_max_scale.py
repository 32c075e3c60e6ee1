"""Dask :func:`numbanorm.min_max_scale`: per-position NaN-ignoring extrema by a tree
reduction of per-block partials, then one blockwise pass of the transform kernel."""
import functools

from ._graph import blockwise, dtypes, finish_out
from ._stats import reduce_extrema
from .standardize import apply_block


def min_max_scale(compute, x, lo, hi, axes, clip, ctype, rtype, *, out=None):
    """Dask :func:`numbanorm.min_max_scale` (arguments validated): tree-merged extrema, then a
    blockwise transform (each block runs :func:`.standardize.apply_block` with the merged
    extrema; ``compute``, the whole-array compute function, is not used)."""
    fn = "min_max_scale"
    dtypes(fn, x)  # masked chunks are refused
    if x.size == 0:
        return finish_out(x.astype(rtype), out)
    st = reduce_extrema(x, axes)
    y, = blockwise(functools.partial(apply_block, fn, axes=axes, kind="minmax", ddof=0.0, lo=lo, hi=hi,
                                     clip=clip),
                   x, [(x, tuple(range(x.ndim))), (st, tuple(None if a in axes else a for a in range(x.ndim)))],
                   [(rtype, x.chunks)])
    return finish_out(y, out)
