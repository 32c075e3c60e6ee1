"""Dask :func:`numbanorm.standardize`: per-position moments by a tree reduction of
per-block partials, then one blockwise pass of the numbanorm transform kernel.

:func:`apply_block` (the transform of one block with merged statistics) is shared with
:mod:`.min_max_scale`. Both call the kernels through the block's device and the helpers of
:mod:`numbanorm._stats_host` only.
"""
import functools

import numpy as np

from .._stats_host import block_view, device_params, minmax_params, zscore_params
from ._graph import blockwise, dtypes, finish_out
from ._stats import reduce_moments


def apply_block(fn, xb, st, axes, kind, ddof, lo, hi, clip):
    """Normalize one block with the merged statistics ``st`` (numbanorm transform kernel)."""
    dev, xa, view, ctype, rtype = block_view(fn, xb, axes)
    x3 = view.input(dev, xa, ctype)
    buf, finish = view.output(dev, None, None, ctype, rtype, None)
    if x3.size:
        if kind == "zscore":
            mean, scale = zscore_params(st["n"].ravel(), st["mean"].ravel(), st["m2"].ravel(), ddof)
            params = (mean, np.ones_like(mean), scale, np.zeros_like(mean))
        else:
            mn, mx = st["mn"].ravel(), st["mx"].ravel()
            params, _, _ = minmax_params(mn, mx, lo, hi)
        dev.kernels("standardize").transform(x3, *device_params(dev, *params), lo, hi, clip, buf)
    return (finish(),)


def standardize(compute, x, axes, ddof, ctype, rtype, *, out=None):
    """Dask :func:`numbanorm.standardize` (arguments validated): tree-merged moments, then a
    blockwise transform. ``compute`` (the whole-array compute function) is not what the
    blocks run: their statistics are merged across blocks, so each block runs
    :func:`apply_block` (the transform kernel with the merged statistics)."""
    fn = "standardize"
    dtypes(fn, x)  # masked chunks are refused
    if x.size == 0:
        return finish_out(x.astype(rtype), out)
    st = reduce_moments(x, axes)
    y, = blockwise(functools.partial(apply_block, fn, axes=axes, kind="zscore", ddof=ddof, lo=0.0, hi=0.0,
                                     clip=False),
                   x, [(x, tuple(range(x.ndim))), (st, tuple(None if a in axes else a for a in range(x.ndim)))],
                   [(rtype, x.chunks)])
    return finish_out(y, out)
