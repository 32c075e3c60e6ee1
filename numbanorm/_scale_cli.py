"""``numbanorm scale``: normalize a data file (.npy, .npz, .csv) from the shell.

::

    numbanorm scale IN OUT [--method zscore|minmax|l2|layer] [--axis A] [--range LO HI]
                           [--clip] [--ddof D] [--eps E] [--save-stats S.json]
                           [--load-stats S.json] [--chunk-rows N] [--allow-inf]
                           [--progress | --no-progress]

Methods
-------
``zscore``  :func:`numbanorm.standardize` — statistics over ``--axis`` (default 0: one mean
            and standard deviation per column; ``none``: all axes, one mean and standard
            deviation for the whole array, as ``axis=None`` in Python), ``--ddof``.
``minmax``  :func:`numbanorm.min_max_scale` to ``--range LO HI`` (default 0 1), ``--clip``.
``l2``      :func:`numbanorm.normalize` (p=2) of each vector along ``--axis`` (default -1:
            each row), ``--eps``.
``layer``   :func:`numbanorm.layer_norm` of each row (``--axis`` must be the last axis),
            ``--eps``.

Missing values: empty CSV fields and NaN are ignored by the statistics and stay NaN.
Infinite values are refused (exit status 1, naming the first one), as scikit-learn's
scalers refuse them: an ``inf`` would enter its column's statistics and turn the whole
column into NaN (zscore) or NaN/0 (minmax), and every element of its vector into NaN or 0
(l2, layer). ``--allow-inf`` scales such data anyway, with those results.

``--save-stats`` writes the fitted statistics of ``zscore``/``minmax`` as JSON;
``--load-stats`` applies statistics saved from training data to new data (their method,
axis and shape must fit the file: another number of columns is an error).

Formats
-------
``.npy``  memory-mapped and processed in chunks of rows (``--chunk-rows``; default about
          32 MB per chunk): pass 1 merges per-chunk partial statistics (Chan et al.), pass
          2 transforms each chunk into a memory-mapped output (``np.lib.format.open_memmap``).
          Only a window of each file is mapped at a time, so the memory used stays near two
          chunks whatever the file size. A progress bar goes to stderr (tqdm when installed)
          when stderr is a terminal or with ``--progress``.
``.npz``  every array of the archive is scaled (statistics per array, keyed by name).
``.csv``  comma-separated numbers; a first line that is not numeric is a header, kept in
          the output. Empty fields are missing values (NaN). Rows must all have the same
          number of fields.

The output (and the ``--save-stats`` file) is written to a temporary file next to it and
renamed over it only when everything succeeded: a failed run never leaves a half-written
``OUT`` and never touches an existing statistics file. Errors (missing or
unreadable files, wrong columns, non-numeric data, bad options) print one line on stderr
and exit with status 1.
"""
import csv
import json
import math
import os
import sys
import tempfile

import numpy as np

METHODS = ("zscore", "minmax", "l2", "layer")
FORMATS = (".npy", ".npz", ".csv")
#: bytes of input per chunk when --chunk-rows is not given
CHUNK_BYTES = 32 * 1024 * 1024
STATS_VERSION = 1


class ScaleError(Exception):
    """A user-facing error: printed as one line, exit status 1."""


#: ``--axis none``: every axis (Python's ``axis=None``); an absent ``--axis`` is None
ALL_AXES = "all"


# --------------------------------------------------------------------------- argument parsing


def _axis_arg(text):
    text = text.strip()
    if text.lower() in ("none", "all"):
        return ALL_AXES
    try:
        parts = [int(p) for p in text.replace(" ", "").strip("()").split(",") if p != ""]
    except ValueError:
        raise ValueError(f"invalid axis {text!r}: expected an integer or a comma-separated list like 0,2")
    if not parts:
        raise ValueError(f"invalid axis {text!r}")
    return parts[0] if len(parts) == 1 and "," not in text else tuple(parts)


def add_parser(subparsers):
    """Register the ``scale`` sub-command on an argparse sub-parsers object."""
    p = subparsers.add_parser(
        "scale",
        help="normalize a data file (.npy, .npz, .csv): zscore, minmax, l2 or layer",
        description=__doc__.split("Methods")[0].strip(),
        formatter_class=__import__("argparse").RawDescriptionHelpFormatter,
    )
    p.add_argument("input", metavar="IN", help="input file: .npy, .npz or .csv")
    p.add_argument("output", metavar="OUT", help="output file of the same format")
    p.add_argument("--method", choices=METHODS, default=None,
                   help="zscore (default), minmax, l2 or layer; with --load-stats: the saved method")
    p.add_argument("--axis", type=_axis_arg, default=None,
                   help="zscore/minmax: axis or axes reduced over (default 0: per column; "
                        "'none': all axes, as axis=None in Python); "
                        "l2/layer: the axis each vector runs along (default -1: per row)")
    p.add_argument("--range", nargs=2, type=float, metavar=("LO", "HI"), default=None,
                   help="minmax target range (default 0 1)")
    p.add_argument("--clip", action="store_true", help="minmax: clip the result to the range")
    p.add_argument("--ddof", type=float, default=0.0, help="zscore: delta degrees of freedom (default 0)")
    p.add_argument("--eps", type=float, default=None, help="l2 (default 1e-12) / layer (default 1e-5) epsilon")
    p.add_argument("--save-stats", metavar="FILE.json", help="write the fitted statistics (zscore/minmax)")
    p.add_argument("--load-stats", metavar="FILE.json", help="apply statistics saved by --save-stats")
    p.add_argument("--chunk-rows", type=int, default=None, metavar="N",
                   help="rows per chunk for .npy files (default: about 32 MB of input)")
    p.add_argument("--allow-inf", action="store_true",
                   help="scale data holding inf anyway (default: refuse it; its column/vector would "
                        "become NaN or 0)")
    p.add_argument("--progress", action="store_true",
                   help="always show the progress bar on stderr (default: only when stderr is a terminal)")
    p.add_argument("--no-progress", action="store_true", help="never show the progress bar")
    p.set_defaults(func=run)
    return p


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


# --------------------------------------------------------------------------- sources and sinks


class _NpySource:
    """A .npy file mapped one window of rows at a time (the C-order view of the array)."""

    def __init__(self, path):
        fmt = np.lib.format
        try:
            with open(path, "rb") as f:
                version = fmt.read_magic(f)
                if version == (1, 0):
                    shape, fortran, dtype = fmt.read_array_header_1_0(f)
                elif version == (2, 0):
                    shape, fortran, dtype = fmt.read_array_header_2_0(f)
                else:
                    shape, fortran, dtype = fmt._read_array_header(f, version)
                self.offset = f.tell()
        except OSError:
            raise
        except Exception as e:
            raise ScaleError(f"{path}: not a valid .npy file ({_one_line(e)})") from None
        if dtype.hasobject:
            raise ScaleError(f"{path}: holds Python objects (pickled data), not numbers")
        if not shape:
            raise ScaleError(f"{path}: a 0-d array (a single number): nothing to scale")
        self.path = path
        self.dtype = np.dtype(dtype)
        self.fortran = bool(fortran) and len(shape) > 1
        self.orig_shape = tuple(shape)
        self.shape = tuple(reversed(shape)) if self.fortran else tuple(shape)  # C view
        need = self.offset + self.dtype.itemsize * math.prod(self.shape)
        if os.path.getsize(path) < need:
            raise ScaleError(f"{path}: truncated .npy file ({os.path.getsize(path)} bytes, header says {need})")

    def rows(self, r0, r1):
        if math.prod(self.shape) == 0:
            return np.zeros(self.shape, self.dtype)[r0:r1]
        row = self.dtype.itemsize * math.prod(self.shape[1:])
        return np.memmap(self.path, dtype=self.dtype, mode="r", offset=self.offset + r0 * row,
                         shape=(r1 - r0,) + self.shape[1:])

    def whole(self):
        return np.asarray(self.rows(0, self.shape[0]))


class _ArraySource:
    """An in-memory array (npz member, CSV table)."""

    def __init__(self, a, what):
        if a.ndim == 0:
            raise ScaleError(f"{what}: a 0-d array (a single number): nothing to scale")
        if a.dtype.hasobject:
            raise ScaleError(f"{what}: holds Python objects, not numbers")
        self.a = a
        self.dtype = a.dtype
        self.fortran = False
        self.shape = self.orig_shape = a.shape

    def rows(self, r0, r1):
        return self.a[r0:r1]

    def whole(self):
        return self.a


class _NpySink:
    """The output .npy: created with ``open_memmap`` in a temporary file, written by windows."""

    def __init__(self, tmp, src, dtype):
        mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=src.orig_shape,
                                       fortran_order=src.fortran)
        self.offset = mm.offset
        self.dtype = np.dtype(dtype)
        self.shape = src.shape
        self.tmp = tmp
        del mm

    def rows(self, r0, r1):
        if math.prod(self.shape) == 0:
            return np.empty((r1 - r0,) + self.shape[1:], self.dtype)
        row = self.dtype.itemsize * math.prod(self.shape[1:])
        return np.memmap(self.tmp, dtype=self.dtype, mode="r+", offset=self.offset + r0 * row,
                         shape=(r1 - r0,) + self.shape[1:])


class _ArraySink:
    def __init__(self, shape, dtype):
        self.a = np.empty(shape, dtype)
        self.shape = shape

    def rows(self, r0, r1):
        return self.a[r0:r1]


# --------------------------------------------------------------------------- the scaling core


def _result_dtype(dtype, what):
    from . import _validate

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
    from ._ops.standardize import reduce_axes

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
    from ._ops.min_max_scale import minmax_params
    from ._ops.standardize import zscore_params

    shape = st.shape
    if method == "zscore":
        mean, scale = zscore_params(st["n"].ravel(), st["mean"].ravel(), st["m2"].ravel(), ddof)
        params = (mean, np.ones_like(mean), scale, np.zeros_like(mean))
    else:
        params, _, _ = minmax_params(st["mn"].ravel(), st["mx"].ravel(), lo, hi)
    return tuple(np.asarray(p, np.float64).reshape(shape) for p in params)


def _apply(xb, axes, params, lo, hi, clip, out):
    """Transform one chunk with per-position parameters (numbanorm transform kernel) into ``out``."""
    from . import _dispatch
    from ._ops.standardize import View

    dev = _dispatch.CPU
    from . import _validate

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
    from . import _dask

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
    chunk_fn = _dask._moments_chunk if kind == "zscore" else _dask._extrema_chunk
    merge_fn = _dask._merge_moments if kind == "zscore" else _dask._merge_extrema
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


def _flush(a):
    if isinstance(a, np.memmap):
        a.flush()


def _stats_dict(kind, st, axes, fortran, ddof, lo, hi):
    d = {"numbanorm_scale_stats": STATS_VERSION, "method": kind, "axis": list(axes),
         "stat_shape": list(_stats_to_user(st["n" if kind == "zscore" else "mn"], fortran).shape)}
    if kind == "zscore":
        from ._ops.standardize import zscore_params

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
    from ._ops.min_max_scale import minmax_params

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


# --------------------------------------------------------------------------- formats


def _check_writable_dir(path, what):
    """ScaleError naming the user's ``path`` when its folder is missing or not a folder."""
    d = os.path.dirname(os.path.abspath(path)) or "."
    if not os.path.isdir(d):
        raise ScaleError(f"{what} {path}: no such directory {os.path.dirname(path) or d}")
    if os.path.isdir(path):
        raise ScaleError(f"{what} {path}: is a directory")


def _tmp_path(out):
    """A new temporary file next to ``out`` (renamed over it on success); errors name ``out``."""
    d = os.path.dirname(os.path.abspath(out)) or "."
    try:
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(out) + ".", suffix=".tmp", dir=d)
    except OSError as e:
        raise ScaleError(f"{out}: cannot write here ({e.strerror or _one_line(e)})") from None
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give OUT the usual permissions
    return tmp


def _do_npy(job, inp, out):
    src = _NpySource(inp)
    tmp = _tmp_path(out)
    try:
        sink, stats = _scale_source(job, src, lambda dt: _NpySink(tmp, src, dt), inp)
        del sink
        return tmp, stats
    except BaseException:
        _unlink(tmp)
        raise


def _do_npz(job, inp, out):
    import zipfile

    try:
        with np.load(inp, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, ValueError, EOFError, KeyError) as e:
        raise ScaleError(f"{inp}: not a valid .npz archive ({_one_line(e)})") from None
    if not arrays:
        raise ScaleError(f"{inp}: the archive holds no arrays")
    loaded_all = job.loaded
    results, stats = {}, {}
    for key, a in arrays.items():
        if loaded_all is not None:
            per = loaded_all.get("arrays", {})
            if key not in per:
                raise ScaleError(f"{inp}: array {key!r} has no saved statistics (saved: {', '.join(per) or 'none'})")
            job.loaded = per[key]
        sink, st = _scale_source(job, _ArraySource(a, f"{inp}[{key}]"), lambda dt: _ArraySink(a.shape, dt),
                                  f"{inp}[{key}]")
        results[key] = sink.a
        if st is not None:
            stats[key] = st
    job.loaded = loaded_all
    tmp = _tmp_path(out)
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **results)
    except BaseException:
        _unlink(tmp)
        raise
    return tmp, ({"numbanorm_scale_stats": STATS_VERSION, "method": job.method, "arrays": stats} if stats else None)


def _parse_csv(path):
    """(header or None, float64 table) with one-line errors for ragged or non-numeric rows."""
    try:
        f = open(path, newline="")
    except OSError:
        raise
    with f:
        try:
            rows = list(csv.reader(f))
        except (csv.Error, UnicodeDecodeError) as e:
            raise ScaleError(f"{path}: not a readable CSV file ({_one_line(e)})") from None
    rows = [r for r in rows if r and any(c.strip() for c in r)]
    if not rows:
        raise ScaleError(f"{path}: no data")

    def num(c):
        c = c.strip()
        return math.nan if c == "" else float(c)

    header = None
    try:
        [num(c) for c in rows[0]]
    except ValueError:
        header, rows = rows[0], rows[1:]
        if not rows:
            raise ScaleError(f"{path}: a header but no data rows")
    width = len(header) if header is not None else len(rows[0])
    table = np.empty((len(rows), width))
    start = 2 if header is not None else 1
    for i, r in enumerate(rows):
        if len(r) != width:
            raise ScaleError(f"{path}: line {i + start}: {len(r)} columns, expected {width} (wrong columns)")
        try:
            table[i] = [num(c) for c in r]
        except ValueError:
            bad = next(c for c in r if not _is_number(c))
            raise ScaleError(f"{path}: line {i + start}: non-numeric value {bad.strip()!r}") from None
    return header, table


def _is_number(c):
    try:
        c = c.strip()
        if c:
            float(c)
        return True
    except ValueError:
        return False


def _do_csv(job, inp, out):
    header, table = _parse_csv(inp)
    if job.loaded is not None and header is not None and job.loaded.get("columns") not in (None, header):
        raise ScaleError(
            f"{inp}: columns {header} differ from the columns the statistics were fitted on "
            f"{job.loaded['columns']} (wrong columns)"
        )
    sink, stats = _scale_source(job, _ArraySource(table, inp), lambda dt: _ArraySink(table.shape, dt), inp)
    if stats is not None and header is not None:
        stats["columns"] = header
    tmp = _tmp_path(out)
    try:
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            if header is not None:
                w.writerow(header)
            for row in sink.a:
                w.writerow(["" if v != v else repr(float(v)) for v in row])
    except BaseException:
        _unlink(tmp)
        raise
    return tmp, stats


# --------------------------------------------------------------------------- entry point


def _unlink(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def _one_line(e):
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def _load_stats(path):
    try:
        with open(path) as f:
            d = json.load(f)
    except OSError as e:
        raise ScaleError(f"--load-stats {path}: {e.strerror or _one_line(e)}") from None
    except ValueError as e:
        raise ScaleError(f"--load-stats {path}: not a JSON file ({_one_line(e)})") from None
    if not isinstance(d, dict) or d.get("numbanorm_scale_stats") != STATS_VERSION:
        raise ScaleError(f"--load-stats {path}: not a numbanorm scale statistics file")
    return d


def _write_json_tmp(path, d):
    """``d`` as JSON in a temporary file next to ``path``; returns the temporary's path
    (renamed over ``path`` by the caller once everything else succeeded)."""
    tmp = _tmp_path(path)
    try:
        with open(tmp, "w") as f:
            json.dump(d, f, indent=1)
    except BaseException:
        _unlink(tmp)
        raise
    return tmp


def _execute(args):
    inp, out = args.input, args.output
    ext_in = os.path.splitext(inp)[1].lower()
    ext_out = os.path.splitext(out)[1].lower()
    if ext_in not in FORMATS:
        raise ScaleError(f"{inp}: unsupported file type {ext_in or '(none)'!r}; expected .npy, .npz or .csv")
    if ext_out != ext_in:
        raise ScaleError(f"{out}: the output must have the input's format ({ext_in}), got {ext_out or '(none)'!r}")
    if not os.path.isfile(inp):
        raise ScaleError(f"{inp}: no such file")
    loaded = _load_stats(args.load_stats) if args.load_stats else None
    method = args.method
    if loaded is not None:
        saved = loaded.get("method")
        if method is None:
            method = saved
        elif method != saved:
            raise ScaleError(f"--method {method} but the statistics in {args.load_stats} are for {saved}")
        if method not in ("zscore", "minmax"):
            raise ScaleError(f"--load-stats {args.load_stats}: unknown method {method!r}")
    method = method or "zscore"
    if (args.save_stats or args.load_stats) and method not in ("zscore", "minmax"):
        raise ScaleError(f"--method {method} has no fitted statistics (--save-stats/--load-stats need zscore or minmax)")
    if args.save_stats and args.load_stats:
        raise ScaleError("--save-stats and --load-stats cannot be combined")
    _check_writable_dir(out, "output")
    if args.save_stats:
        _check_writable_dir(args.save_stats, "--save-stats")
    job = _Job(args, method, loaded)
    handler = {".npy": _do_npy, ".npz": _do_npz, ".csv": _do_csv}[ext_in]
    tmp, stats = handler(job, inp, out)
    stats_tmp = None
    try:
        if args.save_stats:
            if stats is None:
                raise ScaleError("no statistics to save")
            stats_tmp = _write_json_tmp(args.save_stats, stats)
        os.replace(tmp, out)
    except BaseException:
        _unlink(tmp)
        if stats_tmp is not None:
            _unlink(stats_tmp)
        raise
    if stats_tmp is not None:
        os.replace(stats_tmp, args.save_stats)


def run(args):
    """Run ``numbanorm scale`` with parsed arguments; returns the exit status."""
    try:
        _execute(args)
    except ScaleError as e:
        print(f"numbanorm scale: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        name = e.filename if e.filename else ""
        print(f"numbanorm scale: error: {name + ': ' if name else ''}{e.strerror or _one_line(e)}", file=sys.stderr)
        return 1
    except MemoryError:
        print("numbanorm scale: error: out of memory; use a smaller --chunk-rows", file=sys.stderr)
        return 1
    except (ValueError, TypeError) as e:
        print(f"numbanorm scale: error: {_one_line(e)}", file=sys.stderr)
        return 1
    return 0
