"""Dask :func:`numbanorm.local_response_norm` and its backward: the windowed axes in one
chunk (the channel axis across channels; the spatial axes within a channel), each block
runs the op's compute function (the kernels of the block's device). Arguments arrive
validated (``params`` as the op checked them), the compute function first."""
import functools

from ._graph import block_device, blockwise, dtypes, finish_grad, finish_out, like_chunks, rechunk


def _lrn_axes(x, params):
    """The axes the LRN window runs over (they go in one chunk)."""
    mode, ax = params[4], params[6]
    if mode == "within_channel":
        return tuple(a for a in range(1, x.ndim) if a != ax)
    return (ax,)


def _lrn_block(compute, xb, params, ctype, rtype):
    dev = block_device(xb)
    return (compute(dev, dev.asarray(xb), params, ctype, rtype),)


def local_response_norm(compute, x, params, ctype, rtype, *, out=None):
    """Dask :func:`numbanorm.local_response_norm` (arguments validated): the windowed axes in
    one chunk, blockwise."""
    dtypes("local_response_norm", x)  # masked chunks are refused
    x = rechunk(x, _lrn_axes(x, params))
    block = functools.partial(_lrn_block, compute, params=params, ctype=ctype, rtype=rtype)
    y, = blockwise(block, x, [(x, tuple(range(x.ndim)))], [(rtype, x.chunks)])
    return finish_out(y, out)


def _lrn_bw_block(compute, gb, xb, params, ctype, rtype):
    dev = block_device(xb)
    return (compute(dev, dev.asarray(gb), dev.asarray(xb), params, ctype, rtype),)


def local_response_norm_backward(compute, grad_out, x, params, ctype, rtype, *, out=None):
    """Dask :func:`numbanorm.local_response_norm_backward` (arguments validated): the windowed
    axes in one chunk."""
    fn = "local_response_norm_backward"
    dtypes(fn, x)
    x = rechunk(x, _lrn_axes(x, params))
    g = like_chunks(grad_out, x.chunks)
    block = functools.partial(_lrn_bw_block, compute, params=params, ctype=ctype, rtype=rtype)
    gx, = blockwise(block, x, [(g, tuple(range(x.ndim))), (x, tuple(range(x.ndim)))], [(rtype, x.chunks)])
    return finish_grad(fn, gx, out, x)
