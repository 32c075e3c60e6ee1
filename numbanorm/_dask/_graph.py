"""Graph plumbing shared by the Dask builders: block devices, rechunking, parameter
alignment, multi-output ``blockwise`` and ``out=`` handling. (Arguments arrive validated by
the public functions; what is checked here is Dask's own: masked chunks, :func:`dtypes`.)

Each block task finds its device with :func:`block_device` and hands the op's compute
function ``dev``'s arrays (:func:`on_device`).

Every builder keeps the chunks of the axes a normalized group does not span and puts the
axes it spans in one chunk (:func:`rechunk`); parameters are aligned to the axes they
belong to (:func:`aligned`); :func:`blockwise` runs a per-block function returning a tuple
and splits it into lazy outputs; :func:`finish_outs` honours ``out=`` (a Dask ``out`` points
at the graph, a NumPy ``out`` is filled by ``da.store`` or, when it shares memory with
the graph's inputs or the scheduler runs elsewhere, by computing first).
"""
import functools
import operator

import numpy as np

from .. import _dispatch, _validate


def dask_array():
    """``dask.array``, imported on first use (numbanorm never imports Dask for other users)."""
    import dask.array as da

    return da


def is_dask(a):
    """Whether ``a`` is a ``dask.array.Array``."""
    return _dispatch._is_dask(a)


# --------------------------------------------------------------------------- blocks


def block_device(block):
    """The in-memory device of one block: CPU for NumPy blocks, CUDA for CuPy blocks
    (what :func:`numbanorm._dispatch.device_of` picks for the block as ``x``)."""
    return _dispatch.device_of("numbanorm", x=block)


def on_device(dev, block, dtype=None, shape=None):
    """A block as ``dev``'s array (None stays None): in ``dtype`` (C-contiguous) when given,
    reshaped to ``shape`` when given. The compute functions take their arguments so."""
    if block is None:
        return None
    a = dev.asarray(block)
    if dtype is not None:
        a = dev.contiguous(a, dtype)
    return a if shape is None else a.reshape(shape)


# --------------------------------------------------------------------------- chunks


def rechunk(x, whole):
    """``x`` with the axes in ``whole`` in a single chunk (other axes untouched)."""
    if any(len(x.chunks[ax]) > 1 for ax in whole):
        return x.rechunk({ax: -1 for ax in whole})
    return x


def like_chunks(a, chunks):
    """A full-shaped array (grad_out, ...) as a Dask array with exactly ``chunks``."""
    da = dask_array()
    if is_dask(a):
        return a.rechunk(chunks)
    return da.from_array(np.asarray(a), chunks=chunks)


def aligned(a, axes, xchunks):
    """A parameter as a Dask array whose dims follow x's chunks along ``axes`` (None: one chunk)."""
    da = dask_array()
    chunks = tuple(xchunks[ax] if ax is not None else (a.shape[i],) for i, ax in enumerate(axes))
    if is_dask(a):
        return a.rechunk(chunks)
    return da.from_array(np.asarray(a), chunks=chunks)


def blockwise(func, x, args, specs):
    """Run ``func(*blocks)`` (returning a tuple) over the blocks of ``x``.

    ``args``: (array or None, axes) pairs; ``axes`` tells for each dim of the array which
    axis of x it follows (None: a dim of its own, one chunk). ``specs``: (dtype, chunks) of
    each output, every output having x's ndim. Returns the list of lazy outputs.
    """
    da = dask_array()
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


def ones_chunks(chunks, axes):
    """x's chunks with every axis in ``axes`` made of size-1 blocks (per-block partials)."""
    return tuple(((1,) * len(c)) if ax in axes else c for ax, c in enumerate(chunks))


def finish_out(result, out):
    """Honour ``out=``: Dask out → points at the result; NumPy out → filled (computed) on
    any scheduler (``dask.distributed`` included)."""
    return finish_outs([result], out)[0]


def finish_outs(results, out):
    """:func:`finish_out` for ``results[0]`` of a call with further lazy outputs (statistics,
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
    da = dask_array()
    if is_dask(out):
        if tuple(out.shape) != tuple(result.shape):
            raise ValueError(f"argument 'out' must have shape {tuple(result.shape)}, got {tuple(out.shape)}")
        from dask.array.core import handle_out

        return [handle_out(out, result.astype(out.dtype) if out.dtype != result.dtype else result)] + list(results[1:])
    lazy = [r for r in results if is_dask(r)]
    disjoint = not isinstance(out, np.ndarray) or not any(np.may_share_memory(out, a) for a in _graph_arrays(lazy))
    if disjoint and _in_process_scheduler(result):
        da.store(result, out, lock=False)  # block by block, straight into out
        return [out] + list(results[1:])
    import dask

    values = dask.compute(*results)
    np.copyto(out, values[0], casting="same_kind")
    rest = [da.from_array(v, chunks=r.chunks) if is_dask(r) else v for v, r in zip(values[1:], results[1:])]
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


def check_out(fn, out, shape, rtype):
    """``out=`` of a Dask call: an array of ``shape``, castable from ``rtype``, writeable."""
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
    check_out(fn, out, like.shape, first.dtype)
    if not isinstance(result, tuple):
        return finish_out(first, out)
    return tuple(finish_outs(list(result), out))


def dtypes(fn, x):
    """(compute dtype, result dtype) of Dask ``x``; masked chunks are refused (README)."""
    if _validate.is_masked(getattr(x, "_meta", None)):  # chunks are masked arrays: refused (README)
        raise _validate.masked_error(fn, "x", x)
    return _validate.float_dtypes(fn, "x", x.dtype)


def sum_partials(p, axes, shape, dtype):
    """Tree-sum the per-block partials ``p`` over ``axes`` and reshape to ``shape``."""
    s = p.sum(axis=tuple(axes), dtype=np.float64) if axes else p.astype(np.float64)
    return s.reshape(shape).astype(dtype)


# --------------------------------------------------------------------------- row statistics


def stat_chunks(x, trail):
    """Chunks of per-row statistics: x's chunks with the trailing axes of size 1."""
    return tuple((1,) if ax in trail else c for ax, c in enumerate(x.chunks))
