"""Dask twins of :func:`numbanorm._ops._fused.forward` / ``backward``: the fused row norms
(``add_layer_norm``, ``add_rms_norm`` and their backwards) and ``layer_norm`` / ``rms_norm``
called with ``weight_offset``, ``casting`` or (backward) ``y=``. The per-sample pattern of
:mod:`numbanorm._dask`: the normalized trailing dims in one chunk, every other axis keeps
x's chunks, each block runs the op's compute function (the kernels of the block's device,
so results equal the in-memory ones bit for bit), parameter gradients are per-block
partials added by a Dask tree sum. Arguments arrive validated (parameters flat ``(N,)`` of
the compute dtype, saved statistics flat ``(M,)``), the compute function first.
"""
import functools

import numpy as np

from . import _graph as D
from .layer_norm import flat_param, flat_rows, trail_axes


def _fwd_block(compute, *blocks, fn, centered, add, nshape, eps, offset, casting, ctype, rtype, stype):
    it = iter(blocks)
    xb = next(it)
    dev = D.block_device(xb)
    rb = dev.asarray(next(it)) if add else None
    wb, bb = D.on_device(dev, next(it), ctype), D.on_device(dev, next(it), ctype)
    return compute(dev, fn, centered, add, dev.asarray(xb), rb, nshape, wb, bb, eps, offset, casting, ctype, rtype,
                   stype, True)


def forward(compute, fn, centered, add, x, residual, nshape, weight, bias, eps, offset, casting, ctype, rtype, stype,
            return_stats, *, out=None, residual_out=None):
    """Dask twin of :func:`numbanorm._ops._fused.forward` (validated arguments, same results)."""
    D.dtypes(fn, x)  # masked chunks are refused
    trail = trail_axes(x, nshape)
    x = D.rechunk(x, trail)
    whole = tuple(range(x.ndim))
    args = [(x, whole)]
    if add:
        args.append((D.like_chunks(residual, x.chunks), whole))
    args += [flat_param(weight, x), flat_param(bias, x)]
    specs = [(rtype, x.chunks)] + ([(stype, x.chunks)] if add else [])
    specs += [(ctype, D.stat_chunks(x, trail))] * (2 if centered else 1)
    block = functools.partial(_fwd_block, compute, fn=fn, centered=centered, add=add, nshape=nshape, eps=eps,
                              offset=offset, casting=casting, ctype=ctype, rtype=rtype, stype=stype)
    res = D.blockwise(block, x, args, specs)
    res[0] = D.finish_out(res[0], out)
    if add:
        res[1] = D.finish_out(res[1], residual_out)
    res = res if return_stats else res[: 1 + add]
    return tuple(res) if len(res) > 1 else res[0]


def _bw_block(compute, *blocks, names, centered, from_output, nshape, eps, offset, ctype, rtype, nd):
    kw = dict(zip(names, blocks))
    dev = D.block_device(kw["v"])
    ga, va = dev.asarray(kw["grad_y"]), dev.asarray(kw["v"])
    gsa = D.on_device(dev, kw.get("grad_s"))
    w, b = D.on_device(dev, kw.get("weight"), ctype), D.on_device(dev, kw.get("bias"), ctype)
    mean = D.on_device(dev, kw.get("mean"), ctype, (-1,))
    rstd = D.on_device(dev, kw.get("rstd"), ctype, (-1,))
    got = compute(dev, centered, from_output, ga, gsa, va, nshape, w, b, eps, offset, mean, rstd, ctype, rtype)
    keep = (1,) * (nd - len(nshape)) + tuple(nshape)
    gw = np.zeros(keep) if got[1] is None else got[1].reshape(keep)
    return (got[0], gw) + ((got[2].reshape(keep),) if centered else ())


def backward(compute, fn, centered, from_output, grad_y, grad_s, v, nshape, weight, bias, eps, offset, mean, rstd, ctype,
             rtype, *, out=None):
    """Dask twin of :func:`numbanorm._ops._fused.backward` (validated arguments; ``v`` the
    forward's input, or its output ``y`` with ``from_output``)."""
    D.dtypes(fn, v)
    trail = trail_axes(v, nshape)
    data = D.rechunk(v, trail)
    whole = tuple(range(data.ndim))
    names, args = [], []
    for name, a in (("grad_y", grad_y), ("grad_s", grad_s), ("v", data)):
        if a is not None:
            names.append(name)
            args.append((D.like_chunks(a, data.chunks), whole))
    for name, a in (("weight", weight), ("bias", bias)):
        if a is not None:
            names.append(name)
            args.append(flat_param(a, data))
    for name, a in (("mean", mean), ("rstd", rstd)):
        if a is not None:
            names.append(name)
            args.append(flat_rows(a, data, trail))
    lead = tuple(a for a in range(data.ndim) if a not in trail)
    pchunks = D.ones_chunks(data.chunks, lead)
    specs = [(rtype, data.chunks)] + [(np.float64, pchunks)] * (2 if centered else 1)
    block = functools.partial(_bw_block, compute, names=tuple(names), centered=centered, from_output=from_output,
                              nshape=nshape, eps=eps, offset=offset, ctype=ctype, rtype=rtype, nd=data.ndim)
    res = D.blockwise(block, data, args, specs)
    gx = D.finish_grad(fn, res[0], out, data)
    gw = None if weight is None else D.sum_partials(res[1], lead, nshape, rtype)
    if centered:
        return gx, gw, D.sum_partials(res[2], lead, nshape, rtype)
    return gx, gw
