"""Dask :func:`numbanorm.normalize` and its backward: ``axis`` in one chunk, every other axis
keeps its chunks, each block runs the op's compute function (the kernels of the block's
device). Arguments arrive validated (``ax`` a non-negative axis), the compute function first."""
import functools

from ._graph import block_device, blockwise, dtypes, finish_grad, finish_out, like_chunks, rechunk


def _normalize_block(compute, xb, p, ax, eps, ctype, rtype):
    dev = block_device(xb)
    return (compute(dev, dev.asarray(xb), p, ax, eps, ctype, rtype),)


def normalize(compute, x, p, ax, eps, ctype, rtype, *, out=None):
    """Dask :func:`numbanorm.normalize` (arguments validated): ``axis`` in one chunk, blockwise."""
    dtypes("normalize", x)  # masked chunks are refused
    x = rechunk(x, (ax,))
    block = functools.partial(_normalize_block, compute, p=p, ax=ax, eps=eps, ctype=ctype, rtype=rtype)
    y, = blockwise(block, x, [(x, tuple(range(x.ndim)))], [(rtype, x.chunks)])
    return finish_out(y, out)


def _normalize_bw_block(compute, gb, xb, p, ax, eps, ctype, rtype):
    dev = block_device(xb)
    return (compute(dev, dev.asarray(gb), dev.asarray(xb), p, ax, eps, ctype, rtype),)


def normalize_backward(compute, grad_out, x, p, ax, eps, ctype, rtype, *, out=None):
    """Dask :func:`numbanorm.normalize_backward` (arguments validated): ``axis`` in one chunk."""
    fn = "normalize_backward"
    dtypes(fn, x)
    x = rechunk(x, (ax,))
    g = like_chunks(grad_out, x.chunks)
    block = functools.partial(_normalize_bw_block, compute, p=p, ax=ax, eps=eps, ctype=ctype, rtype=rtype)
    gx, = blockwise(block, x, [(g, tuple(range(x.ndim))), (x, tuple(range(x.ndim)))], [(rtype, x.chunks)])
    return finish_grad(fn, gx, out, x)
