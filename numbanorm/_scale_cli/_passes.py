"""The scaling core of ``numbanorm scale``: which axes an option means, the statistics pass
over a source's chunks (per-chunk partial moments or extrema merged in order), the transform
pass writing each chunk into its sink, the refusal of infinite values, the statistics as
saved/loaded JSON dictionaries, and the progress bar on stderr.
"""
import math
import sys

import numpy as np

from ._common import ALL_AXES, CHUNK_BYTES, STATS_VERSION, ScaleError, _one_line
from ._files import _flush


# --------------------------------------------------------------------------- progress


class _Progress:
    """tqdm when installed, else a one-line text bar on stderr; silent when disabled."""

    def __init__(self, total, desc, enabled):
        self.total, self.desc, self.enabled = max(int(total), 1), desc, enabled and total > 1
        self.n = 0
        self._bar = None
        if self.enabled:
            try:
                from tqdm import tqdm

                self._bar = tqdm(total=self.total, desc=desc, unit="chunk", file=sys.stderr, leave=False)
            except ImportError:
                self._draw()

    def _draw(self):
        width = 30
        done = int(width * self.n / self.total)
        sys.stderr.write(f"\r{self.desc} [{'#' * done}{'.' * (width - done)}] {100 * self.n // self.total:3d}%")
        sys.stderr.flush()

    def update(self, k=1):
        self.n += k
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(k)
        else:
            self._draw()

    def close(self):
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.close()
        else:
            sys.stderr.write("\r" + " " * (len(self.desc) + 40) + "\r")
            sys.stderr.flush()


# --------------------------------------------------------------------------- the scaling core


def _result_dtype(dtype, what):
    from .. import _validate

    try:
        return _validate.float_dtypes("scale", "x", dtype)[1]
    except TypeError:
        raise ScaleError(f"{what}: non-numeric data (dtype {np.dtype(dtype)}); expected numbers") from None


def _c_axes(axes, ndim, fortran):
    """User axes (original orientation) → axes of the C view."""
    return tuple(sorted(ndim - 1 - a for a in axes)) if fortran else tuple(axes)


def _stats_to_user(a, fortran):
    return np.transpose(a) if fortran else a


class _Job:
    """Options shared by every array of a run."""

    def __init__(self, args, method, loaded):
        self.args = args
        self.method = method
        self.loaded = loaded
        tty = hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
        self.progress = (getattr(args, "progress", False) or tty) and not args.no_progress


def _plan_axes(job, shape, what):
    """Validated reduced / normalized axes of the original array."""
    from .._ops.standardize import reduce_axes

    ndim = len(shape)
    axis = job.args.axis
    if job.method in ("zscore", "minmax"):
        if axis is None and job.loaded is not None:
            axis = job.loaded.get("axis")
            axis = tuple(axis) if isinstance(axis, list) else axis
        if axis is None:
            axis = 0 if ndim else None
        elif axis == ALL_AXES:
            axis = None
        try:
            return reduce_axes("scale", axis, ndim)
        except (ValueError, TypeError) as e:
            raise ScaleError(f"{what}: --axis {axis}: {_one_line(e)}") from None
    if ndim == 0:
        raise ScaleError(f"{what}: a 0-d array has no vectors to normalize")
    if axis is None:
        axis = -1
    if axis == ALL_AXES:
        raise ScaleError(f"--method {job.method} normalizes along one axis, got --axis none")
    if isinstance(axis, tuple):
        if len(axis) != 1:
            raise ScaleError(f"--method {job.method} normalizes along one axis, got --axis {','.join(map(str, axis))}")
        axis = axis[0]
    if not -ndim <= axis < ndim:
        raise ScaleError(f"{what}: --axis {axis} is out of range for an array of {ndim} dimension(s)")
    axis %= ndim
    if job.method == "layer" and axis != ndim - 1:
        raise ScaleError("--method layer normalizes each row: --axis must be the last axis (-1)")
    return (axis,)


def _chunk_rows(job, src):
    if job.args.chunk_rows is not None:
        if job.args.chunk_rows < 1:
            raise ScaleError(f"--chunk-rows must be >= 1, got {job.args.chunk_rows}")
        return job.args.chunk_rows
    row = src.dtype.itemsize * max(1, math.prod(src.shape[1:]))
    return max(1, CHUNK_BYTES // row)


def _params_from_stats(method, st, ddof, lo, hi):
    """(sub, mul, div, add) arrays of the stat shape from merged structured statistics."""
    from .._ops.min_max_scale import minmax_params
    from .._ops.standardize import zscore_params

    shape = st.shape
    if method == "zscore":
        mean, scale = zscore_params(st["n"].ravel(), st["mean"].ravel(), st["m2"].ravel(), ddof)
        params = (mean, np.ones_like(mean), scale, np.zeros_like(mean))
    else:
        params, _, _ = minmax_params(st["mn"].ravel(), st["mx"].ravel(), lo, hi)
    return tuple(np.asarray(p, np.float64).reshape(shape) for p in params)


def _apply(xb, axes, params, lo, hi, clip, out):
    """Transform one chunk with per-position parameters (numbanorm transform kernel) into ``out``."""
    from .. import _dispatch
    from .._ops.standardize import View

    dev = _dispatch.CPU
    from .. import _validate

    ctype, rtype = _validate.float_dtypes("scale", "x", xb.dtype)
    view = View(xb.shape, axes)
    x3 = view.input(dev, xb, ctype)
    buf, finish = view.output(dev, out, out, ctype, rtype, xb)
    if x3.size:
        flat = [np.ascontiguousarray(p, np.float64).ravel() for p in params]
        dev.kernels("standardize").transform(x3, *flat, lo, hi, clip, buf)
    finish()


def _scale_source(job, src, sink_factory, what):
    """Scale one array; returns its statistics dict (zscore/minmax) or None."""
    from .. import _stats_host

    args = job.args
    method = job.method
    rtype = _result_dtype(src.dtype, what)
    orig_axes = _plan_axes(job, src.orig_shape, what)
    ndim = len(src.shape)
    axes = _c_axes(orig_axes, ndim, src.fortran)
    lo, hi = (0.0, 1.0)
    if method == "minmax":
        if args.range is not None:
            lo, hi = args.range
        elif job.loaded is not None and "feature_range" in job.loaded:
            lo, hi = job.loaded["feature_range"]
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ScaleError(f"--range must be two finite numbers LO < HI, got {lo} {hi}")
    ddof = args.ddof if job.loaded is None else job.loaded.get("ddof", args.ddof)
    if not (math.isfinite(ddof) and ddof >= 0):
        raise ScaleError(f"--ddof must be a finite number >= 0, got {ddof}")
    n0 = src.shape[0]
    step = _chunk_rows(job, src)
    bounds = [(r, min(n0, r + step)) for r in range(0, n0, step)] or [(0, 0)]
    sink = sink_factory(rtype)

    if method in ("l2", "layer"):
        import numbanorm

        eps = args.eps if args.eps is not None else (1e-12 if method == "l2" else 1e-5)
        if not (math.isfinite(eps) and eps >= 0):
            raise ScaleError(f"--eps must be a finite number >= 0, got {eps}")
        (ax,) = axes
        if ax == 0:  # the vectors run along the chunked axis: one piece
            bounds = [(0, n0)]
        bar = _Progress(len(bounds), f"{method}", job.progress)
        try:
            for r0, r1 in bounds:
                xb = src.rows(r0, r1)
                _refuse_inf(job, src, xb, r0, what)
                out = sink.rows(r0, r1)
                if method == "l2":
                    numbanorm.normalize(xb, 2.0, ax, eps, out=out)
                else:
                    numbanorm.layer_norm(xb, xb.shape[-1], eps=eps, out=out)
                _flush(out)
                bar.update()
        finally:
            bar.close()
        return sink, None

    kind = "zscore" if method == "zscore" else "minmax"
    chunk_fn = _stats_host.moments_chunk if kind == "zscore" else _stats_host.extrema_chunk
    merge_fn = _stats_host.merge_moments if kind == "zscore" else _stats_host.merge_extrema
    stat_shape = tuple(1 if a in axes else s for a, s in enumerate(src.shape))
    global_stats = 0 in axes
    passes = 2 if (global_stats and job.loaded is None) else 1
    bar = _Progress(passes * len(bounds), kind, job.progress)
    try:
        if job.loaded is not None:
            st = None
            params = _loaded_params(job.loaded, kind, stat_shape, src.fortran, ddof, lo, hi, what)
        elif global_stats:
            st = None
            for r0, r1 in bounds:
                xb = src.rows(r0, r1)
                _refuse_inf(job, src, xb, r0, what)
                part = chunk_fn(xb, axis=axes)
                st = part if st is None else merge_fn(np.concatenate([st, part], axis=0), axis=axes)
                bar.update()
            params = _params_from_stats(kind, st, ddof, lo, hi)
        else:
            st_parts = []
            params = None
        for r0, r1 in bounds:
            xb = src.rows(r0, r1)
            if passes == 1:  # pass 1 checked it otherwise
                _refuse_inf(job, src, xb, r0, what)
            out = sink.rows(r0, r1)
            if params is None:  # statistics per chunk (the reduced axes lie inside every chunk)
                part = chunk_fn(xb, axis=axes)
                st_parts.append(part)
                p = _params_from_stats(kind, part, ddof, lo, hi)
            else:
                p = params if global_stats else tuple(q[r0:r1] for q in params)
            _apply(xb, axes, p, lo, hi, kind == "minmax" and args.clip, out)
            _flush(out)
            bar.update()
        if params is None:
            st = np.concatenate(st_parts, axis=0) if st_parts else None
    finally:
        bar.close()
    if job.loaded is not None or st is None:
        return sink, None
    return sink, _stats_dict(kind, st, orig_axes, src.fortran, ddof, lo, hi)


def _refuse_inf(job, src, xb, r0, what):
    """ScaleError naming the first infinite value of chunk ``xb`` (rows from ``r0``) unless
    ``--allow-inf``: it would silently turn its column or vector into NaN / 0."""
    if job.args.allow_inf or xb.dtype.kind != "f":
        return
    bad = np.isinf(xb)
    if not bad.any():
        return
    flat = int(np.argmax(bad.ravel()))
    value = "-inf" if xb.ravel()[flat] < 0 else "inf"
    idx = np.unravel_index(flat, xb.shape)
    idx = (int(idx[0]) + r0,) + tuple(int(i) for i in idx[1:])
    if src.fortran:  # the C view of a Fortran-order file is its transpose
        idx = tuple(reversed(idx))
    part = "column" if job.method in ("zscore", "minmax") else "vector"
    raise ScaleError(
        f"{what}: input contains infinity ({value} at index {idx}); it would turn its whole {part} "
        f"into NaN or 0. Replace it (NaN is ignored as a missing value) or pass --allow-inf to "
        f"scale anyway"
    )


# --------------------------------------------------------------------------- saved statistics


def _stats_dict(kind, st, axes, fortran, ddof, lo, hi):
    d = {"numbanorm_scale_stats": STATS_VERSION, "method": kind, "axis": list(axes),
         "stat_shape": list(_stats_to_user(st["n" if kind == "zscore" else "mn"], fortran).shape)}
    if kind == "zscore":
        from .._ops.standardize import zscore_params

        mean, scale = zscore_params(st["n"].ravel(), st["mean"].ravel(), st["m2"].ravel(), ddof)
        d["ddof"] = ddof
        for name, a in (("n", st["n"]), ("mean", mean.reshape(st.shape)), ("std", scale.reshape(st.shape))):
            d[name] = _stats_to_user(np.asarray(a, np.float64), fortran).ravel().tolist()
    else:
        d["feature_range"] = [lo, hi]
        d["data_min"] = _stats_to_user(st["mn"], fortran).ravel().tolist()
        d["data_max"] = _stats_to_user(st["mx"], fortran).ravel().tolist()
    return d


def _loaded_params(d, kind, stat_shape, fortran, ddof, lo, hi, what):
    from .._ops.min_max_scale import minmax_params

    user_shape = tuple(reversed(stat_shape)) if fortran else stat_shape
    saved = tuple(d.get("stat_shape", ()))
    if saved != user_shape:
        raise ScaleError(
            f"{what}: the saved statistics were fitted on data with statistics of shape {saved} "
            f"(e.g. a different number of columns); this file needs {user_shape}"
        )

    def arr(name):
        try:
            a = np.asarray(d[name], dtype=np.float64).reshape(user_shape)
        except (KeyError, ValueError, TypeError):
            raise ScaleError(f"stats file: field {name!r} is missing or has the wrong size") from None
        return np.transpose(a) if fortran else a

    if kind == "zscore":
        mean, std = arr("mean"), arr("std")
        return (mean, np.ones_like(mean), std, np.zeros_like(mean))
    params, _, _ = minmax_params(arr("data_min").ravel(), arr("data_max").ravel(), lo, hi)
    return tuple(np.asarray(p).reshape(stat_shape) for p in params)
