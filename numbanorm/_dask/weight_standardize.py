"""Dask :func:`numbanorm.weight_standardize` and its backward: each filter (the first axis)
in one block, each block runs the op's compute function (the kernels of the block's
device). Arguments arrive validated, the compute function first."""
import functools

from ._graph import block_device, blockwise, dtypes, finish_grad, finish_out, like_chunks, rechunk


def _ws_block(compute, wb, eps, ctype, rtype):
    dev = block_device(wb)
    return (compute(dev, dev.asarray(wb), eps, ctype, rtype),)


def weight_standardize(compute, weight, eps, ctype, rtype, *, out=None):
    """Dask :func:`numbanorm.weight_standardize` (arguments validated): each filter in one block."""
    dtypes("weight_standardize", weight)  # masked chunks are refused
    w = rechunk(weight, tuple(range(1, weight.ndim)))
    block = functools.partial(_ws_block, compute, eps=eps, ctype=ctype, rtype=rtype)
    y, = blockwise(block, w, [(w, tuple(range(w.ndim)))], [(rtype, w.chunks)])
    return finish_out(y, out)


def _ws_bw_block(compute, gb, wb, eps, ctype, rtype):
    dev = block_device(wb)
    return (compute(dev, dev.asarray(gb), dev.asarray(wb), eps, ctype, rtype),)


def weight_standardize_backward(compute, grad_out, weight, eps, ctype, rtype, *, out=None):
    """Dask :func:`numbanorm.weight_standardize_backward` (arguments validated): each filter in one block."""
    fn = "weight_standardize_backward"
    dtypes(fn, weight)
    w = rechunk(weight, tuple(range(1, weight.ndim)))
    g = like_chunks(grad_out, w.chunks)
    block = functools.partial(_ws_bw_block, compute, eps=eps, ctype=ctype, rtype=rtype)
    gw, = blockwise(block, w, [(g, tuple(range(w.ndim))), (w, tuple(range(w.ndim)))], [(rtype, w.chunks)])
    return finish_grad(fn, gw, out, weight)
