"""Dask twins of :func:`numbanorm._ops._fused.forward` / ``backward``: the fused row norms
(``add_layer_norm``, ``add_rms_norm`` and their backwards) and ``layer_norm`` / ``rms_norm``
called with ``weight_offset``, ``casting`` or (backward) ``y=``. The per-sample pattern of
:mod:`numbanorm._dask`: the normalized trailing dims in one chunk, every other axis keeps
x's chunks, each block runs the in-memory function (so results equal the in-memory ones bit
for bit), parameter gradients are per-block partials added by a Dask tree sum. Arguments
are validated eagerly on a small probe.
"""
import functools

import numpy as np

from . import _graph as D


def _fwd_block(eager, *blocks, fn, centered, add, nshape, eps, kw):
    it = iter(blocks)
    xb = next(it)
    rb = next(it) if add else None
    wb, bb = next(it), next(it)
    return eager(fn, centered, xb, rb, nshape, wb, bb, eps, return_stats=True, add=add, **kw)


def forward(eager, fn, centered, x, residual, normalized_shape, weight, bias, eps, *, weight_offset=0.0, casting=None,
            residual_dtype=None, out=None, residual_out=None, return_stats=False, add=True):
    """Dask twin of :func:`numbanorm._ops._fused.forward` (same arguments and results)."""
    nshape, trail = D.trailing(fn, x, normalized_shape)
    kw = dict(weight_offset=weight_offset, casting=casting)
    if add:
        kw["residual_dtype"] = residual_dtype
    probe = D.probe_shape(x.shape, trail)
    pr = np.zeros(probe, getattr(residual, "dtype", x.dtype)) if add else None
    py = eager(fn, centered, np.zeros(probe, x.dtype), pr, normalized_shape, D.probe_param(weight),
               D.probe_param(bias), eps, return_stats=True, add=add, **kw)
    rtype = py[0].dtype
    D.check_out(fn, out, x.shape, rtype)
    if add:
        D.check_out(fn, residual_out, x.shape, py[1].dtype)
    x = D.rechunk(x, trail)
    whole = tuple(range(x.ndim))
    args = [(x, whole)]
    if add:
        args.append((D.like_chunks(residual, x.chunks), whole))
    for p in (weight, bias if centered else None):
        args.append((None, None) if p is None else (D.aligned(p, trail, x.chunks), trail))
    specs = [(rtype, x.chunks)] + ([(py[1].dtype, x.chunks)] if add else [])
    specs += [(a.dtype, D.stat_chunks(x, trail)) for a in py[1 + add:]]
    block = functools.partial(_fwd_block, eager, fn=fn, centered=centered, add=add, nshape=nshape, eps=eps, kw=kw)
    res = D.blockwise(block, x, args, specs)
    res[0] = D.finish_out(res[0], out)
    if add:
        res[1] = D.finish_out(res[1], residual_out)
    res = res if return_stats else res[: 1 + add]
    return tuple(res) if len(res) > 1 else res[0]


def _bw_block(eager, *blocks, fn, centered, names, nshape, eps, offset, nd, add):
    kw = dict(zip(names, blocks))
    got = eager(fn, centered, kw.pop("grad_y"), kw.pop("grad_s", None), kw.pop("v", None), nshape,
                kw.pop("weight", None), eps=eps, weight_offset=offset, add=add, **kw)
    keep = (1,) * (nd - len(nshape)) + tuple(nshape)
    gw = np.zeros(keep) if got[1] is None else got[1].reshape(keep)
    return (got[0], gw) + ((got[2].reshape(keep),) if centered else ())


def backward(eager, fn, centered, grad_y, grad_s, v, normalized_shape, weight, *, eps, mean=None, rstd=None, y=None,
             bias=None, weight_offset=0.0, out=None, add=True):
    """Dask twin of :func:`numbanorm._ops._fused.backward`."""
    data = y if v is None else v
    if data is None:
        raise ValueError(f"{fn}(): give exactly one of the forward's input and 'y' (its output), got neither")
    nshape, trail = D.trailing(fn, data, normalized_shape)
    probe = D.probe_shape(data.shape, trail)
    pz = np.zeros(probe, data.dtype)
    stat = np.ones(probe[: data.ndim - len(trail)], data.dtype)
    eager(fn, centered, pz, None if grad_s is None else pz, None if v is None else pz, normalized_shape,
          D.probe_param(weight), eps=eps, mean=None if mean is None else stat,
          rstd=None if rstd is None else stat, y=None if y is None else pz, bias=D.probe_param(bias),
          weight_offset=weight_offset, add=add)
    data = D.rechunk(data, trail)
    whole = tuple(range(data.ndim))
    rows = tuple(None if a in trail else a for a in range(data.ndim))
    names, args = [], []
    for name, a, axes in (("grad_y", grad_y, None), ("grad_s", grad_s, None), ("v", v, None), ("y", y, None),
                          ("weight", weight, trail), ("bias", bias, trail), ("mean", mean, rows),
                          ("rstd", rstd, rows)):
        if a is None:
            continue
        names.append(name)
        if axes is None:
            args.append((D.like_chunks(a, data.chunks), whole))
        elif axes is trail:
            args.append((D.aligned(a, trail, data.chunks), trail))
        else:
            args.append((D.saved_rows(fn, name, a, data, trail), rows))
    lead = tuple(a for a in range(data.ndim) if a not in trail)
    pchunks = D.ones_chunks(data.chunks, lead)
    _, rtype = D.dtypes(fn, data)
    specs = [(rtype, data.chunks)] + [(np.float64, pchunks)] * (2 if centered else 1)
    block = functools.partial(_bw_block, eager, fn=fn, centered=centered, names=tuple(names), nshape=nshape, eps=eps,
                              offset=weight_offset, nd=data.ndim, add=add)
    res = D.blockwise(block, data, args, specs)
    gx = D.finish_grad(fn, res[0], out, data)
    gw = None if weight is None else D.sum_partials(res[1], lead, nshape, rtype)
    if centered:
        return gx, gw, D.sum_partials(res[2], lead, nshape, rtype)
    return gx, gw
