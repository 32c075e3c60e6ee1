"""Dask support: every public function on ``dask.array.Array`` inputs, returning lazy arrays.

The public functions hand a Dask ``x`` over to the function of the same name here (the
dispatch layer's Dask device). Two patterns cover every normalization:

* **Per-sample normalizations** (layer_norm, rms_norm, group_norm, instance_norm,
  local_response_norm, normalize, weight_standardize and their backwards; batch_norm in
  eval mode): the axes a normalized group spans must lie in one chunk, so only those axes
  are rechunked to a single chunk (layer_norm: the normalized trailing dims; group_norm:
  channels and spatial dims; instance_norm: the spatial dims; normalize: ``axis``;
  local_response_norm: the windowed axes; weight_standardize: all but the first axis).
  Every other axis keeps its chunks, and each block is normalized by the in-memory
  function itself (``da.blockwise``), so results are those of the in-memory call, bit for
  bit. Parameters (NumPy or Dask) are aligned to the axes they belong to. Parameter
  gradients (sums over samples) are per-block partial sums added by a Dask tree sum.
* **Batch statistics** (batch_norm in training, standardize, min_max_scale, the scalers'
  ``fit``): each block contributes per-channel partial statistics — (count, mean, M2) or
  (min, max), from the numbanorm kernels — and ``da.reduction`` merges them with a tree
  of Chan et al. pairwise updates in a fixed order; the normalization pass then maps over
  the blocks with those statistics. Results equal the in-memory ones to rounding (1e-12
  relative in float64) on any scheduler, ``dask.distributed`` clusters included.

Decisions where the lazy model and in-place updates meet:

* ``batch_norm(training=True)`` / ``instance_norm(use_input_stats=True)`` **with running
  statistics**: the batch statistics are computed eagerly (one pass over ``x`` with the
  current scheduler) and the running statistics (NumPy arrays) are updated in place right
  away, exactly as the in-memory call does; ``y`` stays lazy and reuses those statistics.
  Without running statistics everything is lazy.
* ``out=``: a Dask ``out`` is made to point at the result's graph (NumPy's ``out=`` idiom
  as Dask implements it for ufuncs); a NumPy ``out`` is filled by computing the result
  (``da.store``), and is returned.
* Arguments are validated eagerly (by running the in-memory function on a tiny probe of the
  same dtype whose normalized axes have their true sizes), so a bad call raises at once and
  changes nothing.
* In the batch-statistics backwards the final elementwise combination
  ``w·r·(dy − mean(dy) − x̂·mean(dy·x̂))`` runs in NumPy inside each block (the per-channel
  sums it needs come from the kernels); everything else runs in numbanorm kernels.
"""
import functools
import operator

import numpy as np

from . import _dispatch, _validate

MOMENTS = np.dtype([("n", "f8"), ("mean", "f8"), ("m2", "f8")])
EXTREMA = np.dtype([("mn", "f8"), ("mx", "f8")])


def _da():
    import dask.array as da

    return da


def _nn():
    import numbanorm

    return numbanorm


def _is_dask(a):
    return _dispatch._is_dask(a)


# --------------------------------------------------------------------------- plumbing


def _probe_shape(shape, whole):
    """x's shape with every axis outside ``whole`` cut to at most 2 (validation probes)."""
    return tuple(n if ax in whole else min(n, 2) for ax, n in enumerate(shape))


def _probe(a):
    """A NumPy stand-in of the same shape and dtype for a parameter (Dask arrays: zeros)."""
    if a is None or not _is_dask(a):
        return a
    return np.zeros(a.shape, a.dtype)


def _rechunk(x, whole):
    """``x`` with the axes in ``whole`` in a single chunk (other axes untouched)."""
    if any(len(x.chunks[ax]) > 1 for ax in whole):
        return x.rechunk({ax: -1 for ax in whole})
    return x


def _like(a, chunks):
    """A full-shaped array (grad_out, ...) as a Dask array with exactly ``chunks``."""
    da = _da()
    if _is_dask(a):
        return a.rechunk(chunks)
    return da.from_array(np.asarray(a), chunks=chunks)


def _aligned(a, axes, xchunks):
    """A parameter as a Dask array whose dims follow x's chunks along ``axes`` (None: one chunk)."""
    da = _da()
    chunks = tuple(xchunks[ax] if ax is not None else (a.shape[i],) for i, ax in enumerate(axes))
    if _is_dask(a):
        return a.rechunk(chunks)
    return da.from_array(np.asarray(a), chunks=chunks)


def _blockwise(func, x, args, specs):
    """Run ``func(*blocks)`` (returning a tuple) over the blocks of ``x``.

    ``args``: (array or None, axes) pairs; ``axes`` tells for each dim of the array which
    axis of x it follows (None: a dim of its own, one chunk). ``specs``: (dtype, chunks) of
    each output, every output having x's ndim. Returns the list of lazy outputs.
    """
    da = _da()
    nd = x.ndim
    pairs = []
    extra = nd
    for a, axes in args:
        if a is None:
            pairs += [None, None]
            continue
        ind = []
        for ax in axes:
            if ax is None:
                ind.append(extra)
                extra += 1
            else:
                ind.append(ax)
        pairs += [a, tuple(ind)]
    tup = da.blockwise(func, tuple(range(nd)), *pairs, dtype=object, meta=np.empty((0,) * nd, object),
                       concatenate=True, align_arrays=False)
    outs = []
    for i, (dt, chunks) in enumerate(specs):
        dt = np.dtype(dt)
        outs.append(tup.map_blocks(operator.itemgetter(i), dtype=dt, chunks=chunks,
                                   meta=np.empty((0,) * len(chunks), dt)))
    return outs


def _ones_chunks(chunks, axes):
    """x's chunks with every axis in ``axes`` made of size-1 blocks (per-block partials)."""
    return tuple(((1,) * len(c)) if ax in axes else c for ax, c in enumerate(chunks))


def _finish(result, out):
    """Honour ``out=``: Dask out → points at the result; NumPy out → filled (computed) on
    any scheduler (``dask.distributed`` included)."""
    return _finish_all([result], out)[0]


def _finish_all(results, out):
    """:func:`_finish` for ``results[0]`` of a call with further lazy outputs (statistics,
    parameter gradients); returns the list with ``results[0]`` replaced by ``out``.

    A NumPy ``out`` is normally filled chunk by chunk (``da.store``) where the scheduler
    runs in this process. When it shares memory with a host array the graphs read (a Dask
    array built on views of that memory), storing a chunk could change data that other
    chunks, or the still-lazy other results, read later; and worker processes (process
    pools, ``dask.distributed``) would fill pickled copies of ``out``. Then everything is
    computed first (one pass), ``out`` is filled from the result and the other results
    come back as Dask arrays of their computed values.
    """
    result = results[0]
    if out is None:
        return list(results)
    da = _da()
    if _is_dask(out):
        if tuple(out.shape) != tuple(result.shape):
            raise ValueError(f"argument 'out' must have shape {tuple(result.shape)}, got {tuple(out.shape)}")
        from dask.array.core import handle_out

        return [handle_out(out, result.astype(out.dtype) if out.dtype != result.dtype else result)] + list(results[1:])
    lazy = [r for r in results if _is_dask(r)]
    disjoint = not isinstance(out, np.ndarray) or not any(np.may_share_memory(out, a) for a in _graph_arrays(lazy))
    if disjoint and _in_process_scheduler(result):
        da.store(result, out, lock=False)  # block by block, straight into out
        return [out] + list(results[1:])
    import dask

    values = dask.compute(*results)
    np.copyto(out, values[0], casting="same_kind")
    rest = [da.from_array(v, chunks=r.chunks) if _is_dask(r) else v for v, r in zip(values[1:], results[1:])]
    return [out] + rest


def _graph_arrays(arrays, depth=4):
    """The NumPy arrays the graphs of Dask ``arrays`` hold: graph values and, a few levels
    deep, task arguments (``args``/``kwargs`` of tasks, ``functools.partial`` arguments,
    ``DataNode`` values, tuples, lists, dicts)."""
    todo = [(v, 0) for a in arrays for v in dict(a.__dask_graph__()).values()]
    while todo:
        v, d = todo.pop()
        if isinstance(v, np.ndarray):
            yield v
            continue
        if d >= depth or isinstance(v, (str, bytes, int, float, complex, np.generic)) or v is None:
            continue
        if isinstance(v, (tuple, list)):
            todo.extend((e, d + 1) for e in v)
        elif isinstance(v, dict):
            todo.extend((e, d + 1) for e in v.values())
        else:
            for name in ("value", "args", "kwargs", "keywords"):
                e = getattr(v, name, None)
                if e is not None:
                    todo.append((e, d + 1))
            f = getattr(v, "func", None)
            if isinstance(f, functools.partial):
                todo.append((f, d + 1))


def _in_process_scheduler(collection):
    """True when ``collection`` computes in this process (threads or synchronous), where
    ``da.store`` can write into a host array; False for process pools and distributed."""
    import dask
    import dask.local
    import dask.threaded

    get = dask.base.get_scheduler(collections=[collection])
    return get in (None, dask.threaded.get, dask.local.get_sync)


def _check_out(fn, out, shape, rtype):
    if out is None:
        return
    if not (hasattr(out, "shape") and hasattr(out, "dtype")):
        raise TypeError(f"{fn}(): argument 'out' must be an array, got {_validate.describe(out)}")
    if tuple(out.shape) != tuple(shape):
        raise ValueError(f"{fn}(): argument 'out' must be an array of shape {tuple(shape)}, got shape {tuple(out.shape)}")
    if not np.can_cast(rtype, out.dtype, casting="same_kind"):
        raise TypeError(f"{fn}(): argument 'out' must be an array whose dtype {rtype} results can be cast to, "
                        f"got dtype {out.dtype}")
    if isinstance(out, np.ndarray) and not out.flags.writeable:
        raise ValueError(f"{fn}(): argument 'out' must be a writeable array, got a read-only array")


def finish_grad(fn, result, out, like):
    """A backward's lazy result with ``out=`` honoured for its first gradient (shaped like
    ``like``): checked, then filled (NumPy out) or pointed at the graph (Dask out)."""
    if out is None:
        return result
    first = result[0] if isinstance(result, tuple) else result
    _check_out(fn, out, like.shape, first.dtype)
    if not isinstance(result, tuple):
        return _finish(first, out)
    return tuple(_finish_all(list(result), out))


def _dtypes(fn, x):
    if _validate.is_masked(getattr(x, "_meta", None)):  # chunks are masked arrays: refused (README)
        raise _validate.masked_error(fn, "x", x)
    return _validate.float_dtypes(fn, "x", x.dtype)


def _sum_partials(p, axes, shape, dtype):
    """Tree-sum the per-block partials ``p`` over ``axes`` and reshape to ``shape``."""
    s = p.sum(axis=tuple(axes), dtype=np.float64) if axes else p.astype(np.float64)
    return s.reshape(shape).astype(dtype)


# --------------------------------------------------------------------------- partial statistics


def _chan(n_a, m_a, q_a, n_b, m_b, q_b):
    """Vectorised Chan et al. merge of (count, mean, M2) arrays; empty sides are skipped."""
    n = n_a + n_b
    with np.errstate(invalid="ignore", divide="ignore"):
        f = np.where(n > 0, n_b / np.where(n > 0, n, 1.0), 0.0)
        d = m_b - m_a
        mean = m_a + d * f
        q = q_a + q_b + d * d * (n_a * f)
    mean = np.where(n_a == 0, m_b, np.where(n_b == 0, m_a, mean))
    q = np.where(n_a == 0, q_b, np.where(n_b == 0, q_a, q))
    return n, mean, q


def _block_view(fn, xb, axes):
    from ._ops.standardize import View

    dev = _dispatch.device_of(fn, x=xb)
    xa = dev.asarray(xb)
    ctype, rtype = _validate.float_dtypes(fn, "x", xa.dtype)
    view = View(xa.shape, axes)
    return dev, xa, view, ctype, rtype


def _moments_chunk(xb, weights_chunk=None, axis=None, keepdims=True):
    """Partial (count, mean, M2) over ``axis`` of one block (numbanorm kernels), keepdims."""
    from ._ops.standardize import moments

    axes = tuple(sorted(axis))
    dev, xa, view, ctype, _ = _block_view("standardize", xb, axes)
    out = np.zeros(view.stat_shape, MOMENTS)
    if xa.size == 0:
        return out
    w = None
    if weights_chunk is not None:
        if axes != (0,) or xa.ndim != 2:  # pragma: no cover - only the scalers pass weights
            raise ValueError("sample weights are supported for 2-D data reduced over axis 0")
        w = np.ascontiguousarray(np.asarray(weights_chunk)[:, 0], dtype=np.float64)
    n, mean, m2 = moments(dev, view.input(dev, xa, ctype), w)
    out["n"] = n.reshape(view.stat_shape)
    out["mean"] = np.where(n > 0, mean, 0.0).reshape(view.stat_shape)
    out["m2"] = np.where(n > 0, m2, 0.0).reshape(view.stat_shape)
    return out


def _merge_moments(parts, axis=None, keepdims=True):
    """Merge partials along ``axis`` in C order of the partials (deterministic)."""
    axes = tuple(sorted(axis))
    p = np.moveaxis(parts, axes, tuple(range(len(axes))))
    kept = p.shape[len(axes):]
    p = p.reshape((-1,) + kept)
    n, m, q = p[0]["n"].copy(), p[0]["mean"].copy(), p[0]["m2"].copy()
    for r in range(1, p.shape[0]):
        n, m, q = _chan(n, m, q, p[r]["n"], p[r]["mean"], p[r]["m2"])
    shape = tuple(1 if a in axes else s for a, s in enumerate(parts.shape))
    out = np.empty(shape, MOMENTS)
    out["n"] = n.reshape(shape)
    out["mean"] = m.reshape(shape)
    out["m2"] = q.reshape(shape)
    return out


def _extrema_chunk(xb, axis=None, keepdims=True):
    from ._ops.min_max_scale import extrema

    axes = tuple(sorted(axis))
    dev, xa, view, ctype, _ = _block_view("min_max_scale", xb, axes)
    out = np.empty(view.stat_shape, EXTREMA)
    out["mn"] = np.nan
    out["mx"] = np.nan
    if xa.size:
        mn, mx = extrema(dev, view.input(dev, xa, ctype))
        out["mn"] = mn.reshape(view.stat_shape)
        out["mx"] = mx.reshape(view.stat_shape)
    return out


def _merge_extrema(parts, axis=None, keepdims=True):
    axes = tuple(sorted(axis))
    shape = tuple(1 if a in axes else s for a, s in enumerate(parts.shape))
    out = np.empty(shape, EXTREMA)
    with np.errstate(invalid="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices stay NaN
            out["mn"] = np.nanmin(parts["mn"], axis=axes, keepdims=True)
            out["mx"] = np.nanmax(parts["mx"], axis=axes, keepdims=True)
    return out


def reduce_moments(x, axes, weights=None, split_every=None):
    """Lazy (count, mean, M2) per kept position (structured, keepdims) by a Dask tree reduction."""
    da = _da()
    return da.reduction(x, _moments_chunk, _merge_moments, combine=_merge_moments, axis=tuple(axes),
                        keepdims=True, dtype=MOMENTS, split_every=split_every, concatenate=True,
                        meta=np.empty((0,) * x.ndim, MOMENTS), weights=weights, name="numbanorm-moments")


def reduce_extrema(x, axes, split_every=None):
    """Lazy NaN-ignoring (min, max) per kept position (structured, keepdims)."""
    da = _da()
    return da.reduction(x, _extrema_chunk, _merge_extrema, combine=_merge_extrema, axis=tuple(axes),
                        keepdims=True, dtype=EXTREMA, split_every=split_every, concatenate=True,
                        meta=np.empty((0,) * x.ndim, EXTREMA), name="numbanorm-extrema")


def _apply_block(fn, xb, st, axes, kind, ddof, lo, hi, clip):
    """Normalize one block with the merged statistics ``st`` (numbanorm transform kernel)."""
    from ._ops.min_max_scale import minmax_params
    from ._ops.standardize import device_params, zscore_params

    dev, xa, view, ctype, rtype = _block_view(fn, xb, axes)
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


# --------------------------------------------------------------------------- data scaling


def standardize(x, axis=0, ddof=0, *, out=None):
    """Dask :func:`numbanorm.standardize`: tree-merged moments, then a blockwise transform."""
    from ._ops.standardize import ddof_arg, reduce_axes

    fn = "standardize"
    ctype, rtype = _dtypes(fn, x)
    axes = reduce_axes(fn, axis, x.ndim)
    ddof = ddof_arg(fn, ddof)
    _check_out(fn, out, x.shape, rtype)
    if x.size == 0:
        return _finish(x.astype(rtype), out)
    st = reduce_moments(x, axes)
    y, = _blockwise(functools.partial(_apply_block, fn, axes=axes, kind="zscore", ddof=ddof, lo=0.0, hi=0.0,
                                      clip=False),
                    x, [(x, tuple(range(x.ndim))), (st, tuple(None if a in axes else a for a in range(x.ndim)))],
                    [(rtype, x.chunks)])
    return _finish(y, out)


def min_max_scale(x, feature_range=(0.0, 1.0), axis=0, *, clip=False, out=None):
    """Dask :func:`numbanorm.min_max_scale`: tree-merged extrema, then a blockwise transform."""
    from ._ops.min_max_scale import feature_range_arg
    from ._ops.standardize import reduce_axes

    fn = "min_max_scale"
    ctype, rtype = _dtypes(fn, x)
    lo, hi = feature_range_arg(fn, feature_range)
    axes = reduce_axes(fn, axis, x.ndim)
    clip = _validate.flag(fn, clip, "clip")
    _check_out(fn, out, x.shape, rtype)
    if x.size == 0:
        return _finish(x.astype(rtype), out)
    st = reduce_extrema(x, axes)
    y, = _blockwise(functools.partial(_apply_block, fn, axes=axes, kind="minmax", ddof=0.0, lo=lo, hi=hi,
                                      clip=clip),
                    x, [(x, tuple(range(x.ndim))), (st, tuple(None if a in axes else a for a in range(x.ndim)))],
                    [(rtype, x.chunks)])
    return _finish(y, out)


# scalers (numbanorm.scalers) ------------------------------------------------------------


def column_moments(X, sample_weight=None):
    """Per-feature (count, mean, M2) of a 2-D Dask array, computed now (float64 NumPy)."""
    da = _da()
    w = None
    if sample_weight is not None:
        w = sample_weight if _is_dask(sample_weight) else da.from_array(np.asarray(sample_weight, np.float64))
        if tuple(w.shape) != (X.shape[0],):
            raise ValueError(f"sample_weight.shape == {tuple(w.shape)}, expected {(X.shape[0],)}!")
        w = w.rechunk((X.chunks[0],))[:, None]
    st = reduce_moments(X, (0,), weights=w).compute()
    n = st["n"].reshape(-1)
    mean = np.where(n > 0, st["mean"].reshape(-1), np.nan)
    m2 = np.where(n > 0, st["m2"].reshape(-1), np.nan)
    return n, mean, m2


def column_extrema(X):
    """Per-feature NaN-ignoring (min, max) of a 2-D Dask array, computed now (NaN: no value)."""
    st = reduce_extrema(X, (0,)).compute()
    return st["mn"].reshape(-1), st["mx"].reshape(-1)


def _column_block(xb, sub, mul, div, add, lo, hi, clip, rtype):
    dev = _dispatch.device_of("transform", x=xb)
    xa = dev.asarray(xb)
    ctype, _ = _validate.float_dtypes("transform", "X", xa.dtype)
    x3 = dev.contiguous(xa, ctype).reshape(xa.shape[0], xa.shape[1], 1)
    kern = dev.kernels("standardize")
    if kern.count_inf(x3):
        raise ValueError(f"Input X contains infinity or a value too large for {np.dtype(ctype)!r}.")
    from ._ops.standardize import device_params

    out3 = dev.empty(x3.shape, ctype)
    kern.transform(x3, *device_params(dev, sub.ravel(), mul.ravel(), div.ravel(), add.ravel()), lo, hi, clip, out3)
    y = out3.reshape(xa.shape)
    if np.dtype(rtype) != np.dtype(ctype):
        y = dev.astype(y, rtype)
    return (dev.wrap(y),)


def column_transform(X, sub, mul, div, add, lo, hi, clip, rtype):
    """Lazy y = ((X − sub) · mul) / div + add per feature (the scalers' transform), blockwise.

    A block holding ±inf raises scikit-learn's ValueError when it is computed.
    """
    params = [(_aligned(np.ascontiguousarray(p, np.float64), (1,), X.chunks), (1,)) for p in (sub, mul, div, add)]
    y, = _blockwise(functools.partial(_param_block, _column_block, lo=float(lo), hi=float(hi), clip=bool(clip),
                                      rtype=np.dtype(rtype)),
                    X, [(X, (0, 1))] + params, [(rtype, X.chunks)])
    return y


def _param_block(func, xb, sub, mul, div, add, lo, hi, clip, rtype):
    return func(xb, sub, mul, div, add, lo, hi, clip, rtype)


# --------------------------------------------------------------------------- rows: layer_norm / rms_norm


def _trailing(fn, x, normalized_shape):
    nshape = _validate.normalized_shape(fn, x.shape, normalized_shape)
    k = len(nshape)
    return nshape, tuple(range(x.ndim - k, x.ndim))


def _stat_chunks(x, trail):
    return tuple((1,) if ax in trail else c for ax, c in enumerate(x.chunks))


def _ln_block(xb, wb, bb, normalized_shape, eps, return_stats):
    r = _nn().layer_norm(xb, normalized_shape, wb, bb, eps, return_stats=return_stats)
    return r if return_stats else (r,)


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5, *, out=None, return_stats=False):
    """Dask :func:`numbanorm.layer_norm`: the normalized trailing dims in one chunk, blockwise."""
    fn = "layer_norm"
    nshape, trail = _trailing(fn, x, normalized_shape)
    ctype, rtype = _dtypes(fn, x)
    _nn().layer_norm(np.zeros(_probe_shape(x.shape, trail), x.dtype), normalized_shape, _probe(weight),
                     _probe(bias), eps, return_stats=return_stats)
    _check_out(fn, out, x.shape, rtype)
    x = _rechunk(x, trail)
    args = [(x, tuple(range(x.ndim)))]
    for p in (weight, bias):
        args.append((None, None) if p is None else (_aligned(p, trail, x.chunks), trail))
    specs = [(rtype, x.chunks)]
    if return_stats:
        specs += [(ctype, _stat_chunks(x, trail))] * 2
    res = _blockwise(functools.partial(_ln_block, normalized_shape=nshape, eps=eps, return_stats=return_stats),
                     x, args, specs)
    res = _finish_all(res, out)
    return (res[0], res[1], res[2]) if return_stats else res[0]


def _rms_block(xb, wb, normalized_shape, eps, return_stats):
    r = _nn().rms_norm(xb, normalized_shape, wb, eps, return_stats=return_stats)
    return r if return_stats else (r,)


def rms_norm(x, normalized_shape, weight=None, eps=None, *, out=None, return_stats=False):
    """Dask :func:`numbanorm.rms_norm`: the normalized trailing dims in one chunk, blockwise."""
    fn = "rms_norm"
    nshape, trail = _trailing(fn, x, normalized_shape)
    ctype, rtype = _dtypes(fn, x)
    _nn().rms_norm(np.zeros(_probe_shape(x.shape, trail), x.dtype), normalized_shape, _probe(weight), eps,
                   return_stats=return_stats)
    _check_out(fn, out, x.shape, rtype)
    x = _rechunk(x, trail)
    args = [(x, tuple(range(x.ndim))), (None, None) if weight is None else (_aligned(weight, trail, x.chunks), trail)]
    specs = [(rtype, x.chunks)]
    if return_stats:
        specs.append((ctype, _stat_chunks(x, trail)))
    res = _blockwise(functools.partial(_rms_block, normalized_shape=nshape, eps=eps, return_stats=return_stats),
                     x, args, specs)
    res = _finish_all(res, out)
    return (res[0], res[1]) if return_stats else res[0]


def _saved_rows(fn, arg, value, x, trail):
    """Saved row statistics (lead shape, with or without trailing 1s) aligned to x's blocks."""
    lead = tuple(x.shape[: x.ndim - len(trail)])
    shape = tuple(value.shape)
    if shape not in (lead, lead + (1,) * len(trail)):
        raise ValueError(
            f"{fn}(): argument '{arg}' must have shape {lead + (1,) * len(trail)} (as returned with "
            f"return_stats=True) or {lead}, got shape {shape}"
        )
    if shape == lead:
        value = value.reshape(lead + (1,) * len(trail))
    return _aligned(value, tuple(None if ax in trail else ax for ax in range(x.ndim)), x.chunks)


def _ln_bw_block(gb, xb, wb, mb, rb, normalized_shape, eps, nd, k):
    gx, gw, gbias = _nn().layer_norm_backward(gb, xb, normalized_shape, wb, eps=eps, mean=mb, rstd=rb)
    lead = nd - k
    keep = (1,) * lead + tuple(normalized_shape)
    return gx, (np.zeros(keep) if gw is None else gw.reshape(keep)), gbias.reshape(keep)


def layer_norm_backward(grad_out, x, normalized_shape, weight=None, *, eps=1e-5, mean=None, rstd=None):
    """Dask :func:`numbanorm.layer_norm_backward`: grad_x blockwise, parameter grads tree-summed."""
    fn = "layer_norm_backward"
    nshape, trail = _trailing(fn, x, normalized_shape)
    ctype, rtype = _dtypes(fn, x)
    _check_grad(fn, grad_out, x)
    if (mean is None) != (rstd is None):
        raise ValueError(f"{fn}(): arguments 'mean' and 'rstd' must be given together, got only one")
    probe = _probe_shape(x.shape, trail)
    _nn().layer_norm_backward(np.zeros(probe, grad_out.dtype if hasattr(grad_out, "dtype") else x.dtype),
                              np.zeros(probe, x.dtype), normalized_shape, _probe(weight), eps=eps)
    x = _rechunk(x, trail)
    g = _like(grad_out, x.chunks)
    lead_axes = tuple(a for a in range(x.ndim) if a not in trail)
    args = [(g, tuple(range(x.ndim))), (x, tuple(range(x.ndim))),
            (None, None) if weight is None else (_aligned(weight, trail, x.chunks), trail)]
    if mean is not None:
        args += [(_saved_rows(fn, "mean", mean, x, trail), tuple(None if a in trail else a for a in range(x.ndim))),
                 (_saved_rows(fn, "rstd", rstd, x, trail), tuple(None if a in trail else a for a in range(x.ndim)))]
    else:
        args += [(None, None), (None, None)]
    pchunks = _ones_chunks(x.chunks, lead_axes)
    gx, gw, gb = _blockwise(functools.partial(_ln_bw_block, normalized_shape=nshape, eps=eps, nd=x.ndim,
                                              k=len(trail)),
                            x, args, [(rtype, x.chunks), (np.float64, pchunks), (np.float64, pchunks)])
    gw = None if weight is None else _sum_partials(gw, lead_axes, nshape, rtype)
    return gx, gw, _sum_partials(gb, lead_axes, nshape, rtype)


def _rms_bw_block(gb, xb, wb, rb, normalized_shape, eps, nd, k):
    gx, gw = _nn().rms_norm_backward(gb, xb, normalized_shape, wb, eps=eps, rstd=rb)
    keep = (1,) * (nd - k) + tuple(normalized_shape)
    return gx, (np.zeros(keep) if gw is None else gw.reshape(keep))


def rms_norm_backward(grad_out, x, normalized_shape, weight=None, *, eps=None, rstd=None):
    """Dask :func:`numbanorm.rms_norm_backward`: grad_x blockwise, grad_weight tree-summed."""
    fn = "rms_norm_backward"
    nshape, trail = _trailing(fn, x, normalized_shape)
    ctype, rtype = _dtypes(fn, x)
    _check_grad(fn, grad_out, x)
    probe = _probe_shape(x.shape, trail)
    _nn().rms_norm_backward(np.zeros(probe, x.dtype), np.zeros(probe, x.dtype), normalized_shape, _probe(weight),
                            eps=eps)
    x = _rechunk(x, trail)
    g = _like(grad_out, x.chunks)
    lead_axes = tuple(a for a in range(x.ndim) if a not in trail)
    args = [(g, tuple(range(x.ndim))), (x, tuple(range(x.ndim))),
            (None, None) if weight is None else (_aligned(weight, trail, x.chunks), trail)]
    if rstd is not None:
        args.append((_saved_rows(fn, "rstd", rstd, x, trail), tuple(None if a in trail else a for a in range(x.ndim))))
    else:
        args.append((None, None))
    pchunks = _ones_chunks(x.chunks, lead_axes)
    gx, gw = _blockwise(functools.partial(_rms_bw_block, normalized_shape=nshape, eps=eps, nd=x.ndim, k=len(trail)),
                        x, args, [(rtype, x.chunks), (np.float64, pchunks)])
    return gx, (None if weight is None else _sum_partials(gw, lead_axes, nshape, rtype))


def _check_grad(fn, grad_out, x):
    if not (hasattr(grad_out, "shape") and hasattr(grad_out, "dtype")):
        grad_out = np.asarray(grad_out)
    _validate.float_dtypes(fn, "grad_out", grad_out.dtype)
    if tuple(grad_out.shape) != tuple(x.shape):
        raise ValueError(
            f"{fn}(): argument 'grad_out' must have the shape of x {tuple(x.shape)}, got shape {tuple(grad_out.shape)}"
        )


# --------------------------------------------------------------------------- normalize / weight_standardize


def _norm_axis(fn, axis, ndim):
    from ._ops.normalize import _axis

    return _axis(fn, axis, ndim)


def _normalize_block(xb, p, axis, eps):
    return (_nn().normalize(xb, p, axis, eps),)


def normalize(x, p=2.0, axis=1, eps=1e-12, *, out=None):
    """Dask :func:`numbanorm.normalize`: ``axis`` in one chunk, blockwise."""
    fn = "normalize"
    ax = _norm_axis(fn, axis, x.ndim)
    ctype, rtype = _dtypes(fn, x)
    _nn().normalize(np.zeros(_probe_shape(x.shape, (ax,)), x.dtype), p, axis, eps)
    _check_out(fn, out, x.shape, rtype)
    x = _rechunk(x, (ax,))
    y, = _blockwise(functools.partial(_normalize_block, p=p, axis=axis, eps=eps), x, [(x, tuple(range(x.ndim)))],
                    [(rtype, x.chunks)])
    return _finish(y, out)


def _normalize_bw_block(gb, xb, p, axis, eps):
    return (_nn().normalize_backward(gb, xb, p, axis, eps),)


def normalize_backward(grad_out, x, p=2.0, axis=1, eps=1e-12):
    """Dask :func:`numbanorm.normalize_backward`: ``axis`` in one chunk, blockwise."""
    fn = "normalize_backward"
    ax = _norm_axis(fn, axis, x.ndim)
    ctype, rtype = _dtypes(fn, x)
    _check_grad(fn, grad_out, x)
    probe = _probe_shape(x.shape, (ax,))
    _nn().normalize_backward(np.zeros(probe, x.dtype), np.zeros(probe, x.dtype), p, axis, eps)
    x = _rechunk(x, (ax,))
    g = _like(grad_out, x.chunks)
    gx, = _blockwise(functools.partial(_normalize_bw_block, p=p, axis=axis, eps=eps), x,
                     [(g, tuple(range(x.ndim))), (x, tuple(range(x.ndim)))], [(rtype, x.chunks)])
    return gx


def _ws_block(wb, eps):
    return (_nn().weight_standardize(wb, eps),)


def weight_standardize(weight, eps=1e-5, *, out=None):
    """Dask :func:`numbanorm.weight_standardize`: each filter (first axis) in one block."""
    fn = "weight_standardize"
    ctype, rtype = _dtypes(fn, weight)
    whole = tuple(range(1, weight.ndim))
    _nn().weight_standardize(np.zeros(_probe_shape(weight.shape, whole), weight.dtype), eps)
    _check_out(fn, out, weight.shape, rtype)
    w = _rechunk(weight, whole)
    y, = _blockwise(functools.partial(_ws_block, eps=eps), w, [(w, tuple(range(w.ndim)))], [(rtype, w.chunks)])
    return _finish(y, out)


def _ws_bw_block(gb, wb, eps):
    return (_nn().weight_standardize_backward(gb, wb, eps),)


def weight_standardize_backward(grad_out, weight, eps=1e-5):
    """Dask :func:`numbanorm.weight_standardize_backward`: each filter in one block."""
    fn = "weight_standardize_backward"
    ctype, rtype = _dtypes(fn, weight)
    _check_grad(fn, grad_out, weight)
    whole = tuple(range(1, weight.ndim))
    probe = _probe_shape(weight.shape, whole)
    _nn().weight_standardize_backward(np.zeros(probe, weight.dtype), np.zeros(probe, weight.dtype), eps)
    w = _rechunk(weight, whole)
    g = _like(grad_out, w.chunks)
    gw, = _blockwise(functools.partial(_ws_bw_block, eps=eps), w, [(g, tuple(range(w.ndim))), (w, tuple(range(w.ndim)))],
                     [(rtype, w.chunks)])
    return gw


# --------------------------------------------------------------------------- local_response_norm


def _lrn_axes(fn, x, mode, channel_axis):
    """The axes the LRN window runs over (they go in one chunk)."""
    ax = _validate.channel_axis(fn, channel_axis, x.ndim)
    if mode == "within_channel":
        return tuple(a for a in range(1, x.ndim) if a != ax)
    return (ax,)


def _lrn_block(xb, size, alpha, beta, k, mode, convention, channel_axis):
    return (_nn().local_response_norm(xb, size, alpha, beta, k, mode=mode, convention=convention,
                                      channel_axis=channel_axis),)


def local_response_norm(x, size, alpha=1e-4, beta=0.75, k=1.0, *, mode="across_channels", convention="torch",
                        channel_axis=1, out=None):
    """Dask :func:`numbanorm.local_response_norm`: the windowed axes in one chunk, blockwise."""
    fn = "local_response_norm"
    ctype, rtype = _dtypes(fn, x)
    whole = _lrn_axes(fn, x, mode, channel_axis)
    kw = dict(mode=mode, convention=convention, channel_axis=channel_axis)
    _nn().local_response_norm(np.zeros(_probe_shape(x.shape, whole), x.dtype), size, alpha, beta, k, **kw)
    _check_out(fn, out, x.shape, rtype)
    x = _rechunk(x, whole)
    y, = _blockwise(functools.partial(_lrn_block, size=size, alpha=alpha, beta=beta, k=k, **kw), x,
                    [(x, tuple(range(x.ndim)))], [(rtype, x.chunks)])
    return _finish(y, out)


def _lrn_bw_block(gb, xb, size, alpha, beta, k, mode, convention, channel_axis):
    return (_nn().local_response_norm_backward(gb, xb, size, alpha, beta, k, mode=mode, convention=convention,
                                               channel_axis=channel_axis),)


def local_response_norm_backward(grad_out, x, size, alpha=1e-4, beta=0.75, k=1.0, *, mode="across_channels",
                                 convention="torch", channel_axis=1):
    """Dask :func:`numbanorm.local_response_norm_backward`: the windowed axes in one chunk."""
    fn = "local_response_norm_backward"
    ctype, rtype = _dtypes(fn, x)
    _check_grad(fn, grad_out, x)
    whole = _lrn_axes(fn, x, mode, channel_axis)
    kw = dict(mode=mode, convention=convention, channel_axis=channel_axis)
    probe = _probe_shape(x.shape, whole)
    _nn().local_response_norm_backward(np.zeros(probe, x.dtype), np.zeros(probe, x.dtype), size, alpha, beta, k, **kw)
    x = _rechunk(x, whole)
    g = _like(grad_out, x.chunks)
    gx, = _blockwise(functools.partial(_lrn_bw_block, size=size, alpha=alpha, beta=beta, k=k, **kw), x,
                     [(g, tuple(range(x.ndim))), (x, tuple(range(x.ndim)))], [(rtype, x.chunks)])
    return gx


# --------------------------------------------------------------------------- group_norm / instance_norm
# Per-sample statistics (N, G) / (N, C) travel through the blocks at x's ndim, their second
# dim at the channel axis: (Nb, 1, ..., Gb at channel_axis, ..., 1).


def _place(a, nd, ax):
    """An (Nb, K) per-block statistic as an nd-dim block with K at axis ``ax``."""
    shape = [1] * nd
    shape[0] = a.shape[0]
    shape[ax] = a.shape[1]
    return np.asarray(a).reshape(shape)


def _sample_stat_chunks(x, ax, second_chunks):
    return tuple(x.chunks[0] if a == 0 else second_chunks if a == ax else (1,) * len(x.chunks[a])
                 for a in range(x.ndim))


def _unplace(a, n, k):
    return a.reshape(n, k)


def _group_block(xb, wb, bb, num_groups, eps, channel_axis, return_stats, nd, ax):
    r = _nn().group_norm(xb, num_groups, wb, bb, eps, channel_axis=channel_axis, return_stats=return_stats)
    if not return_stats:
        return (r,)
    y, m, s = r
    return y, _place(m, nd, ax), _place(s, nd, ax)


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5, *, channel_axis=1, out=None, return_stats=False):
    """Dask :func:`numbanorm.group_norm`: channels and spatial dims in one chunk, blockwise over N."""
    fn = "group_norm"
    ctype, rtype = _dtypes(fn, x)
    ax = _validate.channel_axis(fn, channel_axis, x.ndim)
    whole = tuple(range(1, x.ndim))
    _nn().group_norm(np.zeros(_probe_shape(x.shape, whole), x.dtype), num_groups, _probe(weight), _probe(bias),
                     eps, channel_axis=channel_axis, return_stats=return_stats)
    _check_out(fn, out, x.shape, rtype)
    x = _rechunk(x, whole)
    args = [(x, tuple(range(x.ndim)))]
    for p in (weight, bias):
        args.append((None, None) if p is None else (_aligned(p, (ax,), x.chunks), (ax,)))
    g = int(num_groups)
    specs = [(rtype, x.chunks)]
    if return_stats:
        specs += [(ctype, _sample_stat_chunks(x, ax, (g,)))] * 2
    res = _blockwise(functools.partial(_group_block, num_groups=num_groups, eps=eps, channel_axis=channel_axis,
                                       return_stats=return_stats, nd=x.ndim, ax=ax), x, args, specs)
    y, *res[1:] = _finish_all(res, out)
    if not return_stats:
        return y
    return y, _unplace(res[1], x.shape[0], g), _unplace(res[2], x.shape[0], g)


def _saved_samples(fn, arg, value, n, k, x, ax, aligned_to_channels):
    """Saved (N, K) statistics placed at (0, ax) and aligned to x's blocks."""
    if tuple(value.shape) != (n, k):
        raise ValueError(f"{fn}(): argument '{arg}' must have shape {(n, k)} (as returned with "
                         f"return_stats=True), got shape {tuple(value.shape)}")
    return _aligned(value, (0, ax if aligned_to_channels else None), x.chunks)


def _grouped_bw_block(gb, xb, wb, mb, rb, op, num_groups, eps, channel_axis, nd, ax):
    nn = _nn()
    if op == "group_norm":
        gx, gw, gbias = nn.group_norm_backward(gb, xb, num_groups, wb, eps=eps, mean=mb, rstd=rb,
                                               channel_axis=channel_axis)
    else:
        gx, gw, gbias = nn.instance_norm_backward(gb, xb, wb, eps=eps, mean=mb, rstd=rb, channel_axis=channel_axis)
    keep = tuple(xb.shape[ax] if a == ax else 1 for a in range(nd))
    return gx, (np.zeros(keep) if gw is None else gw.reshape(keep)), gbias.reshape(keep)


def _grouped_backward(fn, op, grad_out, x, num_groups, weight, eps, mean, rstd, channel_axis):
    ctype, rtype = _dtypes(fn, x)
    _check_grad(fn, grad_out, x)
    ax = _validate.channel_axis(fn, channel_axis, x.ndim)
    c = x.shape[ax]
    if (mean is None) != (rstd is None):
        raise ValueError(f"{fn}(): arguments 'mean' and 'rstd' must be given together, got only one")
    # group_norm: channels and spatial dims whole; instance_norm: spatial dims whole, channels chunked
    whole = tuple(a for a in range(1, x.ndim) if op == "group_norm" or a != ax)
    probe = _probe_shape(x.shape, whole + (ax,))
    nn = _nn()
    if op == "group_norm":
        nn.group_norm_backward(np.zeros(probe, x.dtype), np.zeros(probe, x.dtype), num_groups, _probe(weight),
                               eps=eps, channel_axis=channel_axis)
        k = int(num_groups)
    else:
        nn.instance_norm_backward(np.zeros(probe, x.dtype), np.zeros(probe, x.dtype), _probe(weight), eps=eps,
                                  channel_axis=channel_axis)
        k = c
    x = _rechunk(x, whole)
    g = _like(grad_out, x.chunks)
    args = [(g, tuple(range(x.ndim))), (x, tuple(range(x.ndim))),
            (None, None) if weight is None else (_aligned(weight, (ax,), x.chunks), (ax,))]
    if mean is not None:
        per_c = op != "group_norm"
        sax = (0, ax if per_c else None)
        args += [(_saved_samples(fn, "mean", mean, x.shape[0], k, x, ax, per_c), sax),
                 (_saved_samples(fn, "rstd", rstd, x.shape[0], k, x, ax, per_c), sax)]
    else:
        args += [(None, None), (None, None)]
    red = tuple(a for a in range(x.ndim) if a != ax)
    pchunks = _ones_chunks(x.chunks, red)
    gx, gw, gb = _blockwise(functools.partial(_grouped_bw_block, op=op, num_groups=num_groups, eps=eps,
                                              channel_axis=channel_axis, nd=x.ndim, ax=ax),
                            x, args, [(rtype, x.chunks), (np.float64, pchunks), (np.float64, pchunks)])
    gw = None if weight is None else _sum_partials(gw, red, (c,), rtype)
    return gx, gw, _sum_partials(gb, red, (c,), rtype)


def group_norm_backward(grad_out, x, num_groups, weight=None, *, eps=1e-5, mean=None, rstd=None, channel_axis=1):
    """Dask :func:`numbanorm.group_norm_backward`: grad_x blockwise over N, parameter grads tree-summed."""
    return _grouped_backward("group_norm_backward", "group_norm", grad_out, x, num_groups, weight, eps, mean, rstd,
                             channel_axis)


def instance_norm_backward(grad_out, x, weight=None, *, eps=1e-5, mean=None, rstd=None, channel_axis=1):
    """Dask :func:`numbanorm.instance_norm_backward`: grad_x blockwise, parameter grads tree-summed."""
    return _grouped_backward("instance_norm_backward", "instance_norm", grad_out, x, None, weight, eps, mean, rstd,
                             channel_axis)


def _instance_block(xb, wb, bb, rm, rv, use_input_stats, eps, channel_axis, return_stats, nd, ax):
    r = _nn().instance_norm(xb, rm, rv, wb, bb, use_input_stats=use_input_stats, eps=eps,
                            channel_axis=channel_axis, return_stats=return_stats)
    if not return_stats:
        return (r,)
    y, m, s = r
    return y, _place(m, nd, ax), _place(s, nd, ax)


def _running_update(op, mean, var, count, momentum, num_batches_tracked, unbiased, running_mean, running_var):
    """Update the caller's (NumPy) running statistics with the in-memory op's own helpers."""
    from ._ops.batch_norm import batches_tracked, increment, momentum_arg, update_running

    fn = op
    mom = momentum_arg(fn, momentum)
    nbt, nbt_arr = batches_tracked(fn, num_batches_tracked)
    if count:
        factor = mom if mom is not None else 1.0 / (nbt + 1)
        cpu = _dispatch.CPU
        rm = np.asarray(running_mean)
        rv = np.asarray(running_var)
        update_running(cpu, cpu.kernels(op), np.ascontiguousarray(mean, np.float64),
                       np.ascontiguousarray(var, np.float64), count, factor, unbiased, (rm, rv),
                       (running_mean, running_var))
    increment(nbt_arr)


def _host_running(fn, running_mean, running_var, update):
    if update and running_mean is not None:
        for name, a in (("running_mean", running_mean), ("running_var", running_var)):
            if not isinstance(a, np.ndarray):
                raise TypeError(
                    f"{fn}(): argument '{name}' must be a NumPy array with Dask data in training (it is "
                    f"updated in place), got {_validate.describe(a)}"
                )


def instance_norm(x, running_mean=None, running_var=None, weight=None, bias=None, use_input_stats=True,
                  momentum=0.1, eps=1e-5, *, channel_axis=1, out=None, return_stats=False, num_batches_tracked=None,
                  unbiased_running_var=True):
    """Dask :func:`numbanorm.instance_norm`: spatial dims in one chunk, blockwise over N and C.

    With running statistics and ``use_input_stats=True`` the per-instance statistics are
    computed now and the running statistics updated in place; ``y`` stays lazy.
    """
    fn = "instance_norm"
    ctype, rtype = _dtypes(fn, x)
    ax = _validate.channel_axis(fn, channel_axis, x.ndim)
    whole = tuple(a for a in range(1, x.ndim) if a != ax)
    probe = np.zeros(_probe_shape(x.shape, whole + (ax,)), x.dtype)
    prm = None if running_mean is None else np.array(_probe(running_mean), copy=True)
    prv = None if running_var is None else np.array(_probe(running_var), copy=True)
    _nn().instance_norm(probe, prm, prv, _probe(weight), _probe(bias), use_input_stats, momentum, eps,
                        channel_axis=channel_axis, return_stats=return_stats,
                        num_batches_tracked=None if hasattr(num_batches_tracked, "shape") else num_batches_tracked,
                        unbiased_running_var=unbiased_running_var)
    use_input_stats = bool(use_input_stats)
    _host_running(fn, running_mean, running_var, use_input_stats)
    _check_out(fn, out, x.shape, rtype)
    x = _rechunk(x, whole)
    c = x.shape[ax]
    if use_input_stats and running_mean is not None:
        if x.size:
            st = reduce_moments(x, whole).compute()  # per (n, c), now: for the in-place update
            s = int(np.prod([x.shape[a] for a in whole]))
            nn_ = st["n"].reshape(x.shape[0], c)
            var = st["m2"].reshape(x.shape[0], c) / np.where(nn_ > 0, nn_, 1.0)
            mean = st["mean"].reshape(x.shape[0], c)
        else:
            mean = var = None
            s = 0
        _running_update("instance_norm", mean, var, s, momentum, num_batches_tracked, bool(unbiased_running_var),
                        running_mean, running_var)
    rm_b, rv_b = (None, None) if use_input_stats else (running_mean, running_var)
    args = [(x, tuple(range(x.ndim)))]
    for p in (weight, bias, rm_b, rv_b):
        args.append((None, None) if p is None else (_aligned(p, (ax,), x.chunks), (ax,)))
    specs = [(rtype, x.chunks)]
    if return_stats:
        specs += [(ctype, _sample_stat_chunks(x, ax, x.chunks[ax]))] * 2
    res = _blockwise(functools.partial(_instance_block, use_input_stats=use_input_stats, eps=eps,
                                       channel_axis=channel_axis, return_stats=return_stats, nd=x.ndim, ax=ax),
                     x, args, specs)
    y, *res[1:] = _finish_all(res, out)
    if not return_stats:
        return y
    return y, _unplace(res[1], x.shape[0], c), _unplace(res[2], x.shape[0], c)


# --------------------------------------------------------------------------- batch_norm


def _bn_apply_block(xb, mb, vb, wb, bb, eps, channel_axis):
    """Normalize a block with fixed per-channel mean/variance (the in-memory eval path)."""
    return (_nn().batch_norm(xb, mb, vb, wb, bb, training=False, eps=eps, channel_axis=channel_axis),)


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5, *,
               channel_axis=1, out=None, return_stats=False, num_batches_tracked=None, unbiased_running_var=True):
    """Dask :func:`numbanorm.batch_norm`.

    Training: per-channel moments by a tree reduction of per-block partials (Chan merge),
    then a blockwise normalization. With running statistics the batch statistics are
    computed now and the running statistics (NumPy arrays) updated in place, exactly as
    the in-memory call; otherwise everything is lazy. Eval: blockwise with the running
    statistics (NumPy or Dask).
    """
    fn = "batch_norm"
    da = _da()
    ctype, rtype = _dtypes(fn, x)
    ax = _validate.channel_axis(fn, channel_axis, x.ndim)
    c = x.shape[ax]
    probe = np.zeros(_probe_shape(x.shape, (ax,)), x.dtype)
    prm = None if running_mean is None else np.array(_probe(running_mean), copy=True)
    prv = None if running_var is None else np.array(_probe(running_var), copy=True)
    _nn().batch_norm(probe, prm, prv, _probe(weight), _probe(bias), training, momentum, eps,
                     channel_axis=channel_axis, return_stats=return_stats,
                     num_batches_tracked=None if hasattr(num_batches_tracked, "shape") else num_batches_tracked,
                     unbiased_running_var=unbiased_running_var)
    training = bool(training)
    n = int(np.prod([s for a, s in enumerate(x.shape) if a != ax]))
    if training and n == 1:
        raise ValueError(
            f"{fn}(): argument 'x' must have more than 1 value per channel when training, got shape {tuple(x.shape)}"
        )
    _host_running(fn, running_mean, running_var, training)
    _check_out(fn, out, x.shape, rtype)
    red = tuple(a for a in range(x.ndim) if a != ax)
    if training:
        if n and c:
            st = reduce_moments(x, red).reshape(c)
            mean = st["mean"]
            var = st["m2"] / st["n"]
            if running_mean is not None:
                mean, var = da.compute(mean, var)
                _running_update("batch_norm", mean.reshape(1, c), var.reshape(1, c), n, momentum,
                                num_batches_tracked, bool(unbiased_running_var), running_mean, running_var)
        else:
            mean = var = np.full(c, np.nan)
            if running_mean is not None:
                _running_update("batch_norm", None, None, 0, momentum, num_batches_tracked,
                                bool(unbiased_running_var), running_mean, running_var)
    else:
        mean, var = running_mean, running_var
    args = [(x, tuple(range(x.ndim)))]
    for p in (mean, var, weight, bias):
        args.append((None, None) if p is None else (_aligned(p, (ax,), x.chunks), (ax,)))
    y, = _blockwise(functools.partial(_bn_apply_block, eps=eps, channel_axis=channel_axis), x, args,
                    [(rtype, x.chunks)])
    if not return_stats:
        return _finish(y, out)
    mean_a = mean if _is_dask(mean) else da.from_array(np.asarray(mean, np.float64))
    var_a = var if _is_dask(var) else da.from_array(np.asarray(var, np.float64))
    rstd = 1.0 / da.sqrt(var_a.astype(np.float64) + eps)
    y, mean_a, rstd = _finish_all([y, mean_a.astype(ctype), rstd.astype(ctype)], out)
    return y, mean_a, rstd


def _bn_sums_block(gb, xb, mb, rb, channel_axis, nd, ax, c):
    """Per-block Σdy and Σdy·x̂ per channel (eval-mode backward with the global statistics)."""
    cb = xb.shape[ax]
    _, gw, gbias = _nn().batch_norm_backward(gb, xb, np.ones(cb, np.float64 if xb.dtype == np.float64 else np.float32),
                                            training=False, mean=mb, rstd=rb, channel_axis=channel_axis)
    keep = tuple(cb if a == ax else 1 for a in range(nd))
    return np.asarray(gbias, np.float64).reshape(keep), np.asarray(gw, np.float64).reshape(keep)


def _bn_grad_block(gb, xb, mb, rb, wb, sdy, sdyx, n, ax, rtype):
    """dx = w·r·(dy − Σdy/n − x̂·Σdy·x̂/n) per channel (NumPy glue on the block)."""
    shape = tuple(-1 if a == ax else 1 for a in range(xb.ndim))
    m = np.asarray(mb, np.float64).reshape(shape)
    r = np.asarray(rb, np.float64).reshape(shape)
    w = 1.0 if wb is None else np.asarray(wb, np.float64).reshape(shape)
    a = np.asarray(sdy, np.float64).reshape(shape) / n
    b = np.asarray(sdyx, np.float64).reshape(shape) / n
    dy = np.asarray(gb, np.float64)
    xhat = (np.asarray(xb, np.float64) - m) * r
    return ((w * r * (dy - a - xhat * b)).astype(rtype),)


def batch_norm_backward(grad_out, x, weight=None, *, training=True, running_mean=None, running_var=None, eps=1e-5,
                        mean=None, rstd=None, channel_axis=1):
    """Dask :func:`numbanorm.batch_norm_backward`: per-channel sums by tree reduction, grad_x blockwise."""
    fn = "batch_norm_backward"
    da = _da()
    ctype, rtype = _dtypes(fn, x)
    _check_grad(fn, grad_out, x)
    ax = _validate.channel_axis(fn, channel_axis, x.ndim)
    c = x.shape[ax]
    probe = _probe_shape(x.shape, (ax,))
    _nn().batch_norm_backward(np.zeros(probe, x.dtype), np.zeros(probe, x.dtype), _probe(weight),
                              training=training, running_mean=_probe(running_mean), running_var=_probe(running_var),
                              eps=eps, mean=_probe(mean), rstd=_probe(rstd), channel_axis=channel_axis)
    training = bool(training)
    red = tuple(a for a in range(x.ndim) if a != ax)
    n = int(np.prod([s for a, s in enumerate(x.shape) if a != ax]))
    g = _like(grad_out, x.chunks)
    if mean is None:
        if training:
            st = reduce_moments(x, red).reshape(c)
            mean = st["mean"]
            rstd = 1.0 / da.sqrt(st["m2"] / st["n"] + eps)
        else:
            mean = running_mean
            rv = running_var if _is_dask(running_var) else np.asarray(running_var, np.float64)
            rstd = 1.0 / (da.sqrt(rv + eps) if _is_dask(rv) else np.sqrt(rv + eps))
    m_a = _aligned(mean, (ax,), x.chunks)
    r_a = _aligned(rstd, (ax,), x.chunks)
    pchunks = _ones_chunks(x.chunks, red)
    sdy, sdyx = _blockwise(functools.partial(_bn_sums_block, channel_axis=channel_axis, nd=x.ndim, ax=ax, c=c), x,
                           [(g, tuple(range(x.ndim))), (x, tuple(range(x.ndim))), (m_a, (ax,)), (r_a, (ax,))],
                           [(np.float64, pchunks), (np.float64, pchunks)])
    sdy = sdy.sum(axis=red, dtype=np.float64).reshape(c)
    sdyx = sdyx.sum(axis=red, dtype=np.float64).reshape(c)
    if training:
        args = [(g, tuple(range(x.ndim))), (x, tuple(range(x.ndim))), (m_a, (ax,)), (r_a, (ax,)),
                (None, None) if weight is None else (_aligned(weight, (ax,), x.chunks), (ax,)),
                (sdy.rechunk((x.chunks[ax],)), (ax,)), (sdyx.rechunk((x.chunks[ax],)), (ax,))]
        gx, = _blockwise(functools.partial(_bn_grad_block, n=n, ax=ax, rtype=np.dtype(rtype)), x, args,
                         [(rtype, x.chunks)])
    else:
        args = [(g, tuple(range(x.ndim))), (x, tuple(range(x.ndim))),
                (None, None) if weight is None else (_aligned(weight, (ax,), x.chunks), (ax,)),
                (m_a, (ax,)), (r_a, (ax,))]
        gx, = _blockwise(functools.partial(_bn_eval_grad_block, channel_axis=channel_axis), x, args,
                         [(rtype, x.chunks)])
    gw = None if weight is None else sdyx.astype(rtype)
    return gx, gw, sdy.astype(rtype)


def _bn_eval_grad_block(gb, xb, wb, mb, rb, channel_axis):
    gx, _, _ = _nn().batch_norm_backward(gb, xb, wb, training=False, mean=mb, rstd=rb, channel_axis=channel_axis)
    return (gx,)
