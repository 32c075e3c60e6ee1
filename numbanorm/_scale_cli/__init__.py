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

Layout: this package holds the argument parser and the entry point; :mod:`._formats` one
handler per file format, :mod:`._passes` the statistics and transform passes over a file's
chunks, :mod:`._files` the sources, sinks and atomic writes, :mod:`._common` the shared
constants and :class:`ScaleError`.
"""
import os
import sys

from ._common import ALL_AXES, FORMATS, METHODS, ScaleError, _one_line, _unlink
from ._files import _check_writable_dir, _load_stats, _write_json_tmp
from ._formats import _do_csv, _do_npy, _do_npz
from ._passes import _Job


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


# --------------------------------------------------------------------------- entry point


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
