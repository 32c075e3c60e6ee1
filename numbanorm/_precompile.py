"""``numbanorm precompile``: fill the on-disk kernel cache once (install step, Dockerfile,
cluster job) so later processes load machine code instead of compiling it.

Kernels compile per specialization (argument types and layouts); a small and a large call
run the same CPU chunk kernel, but a large one also compiles the pool's entry points and
some ops' per-chunk partial merges, so both sizes are called. Rather than list signatures (which would drift from the kernels), this module calls
every public function the way users do: for each dtype, on a small and a large input,
in the layouts and modes the dispatch layer distinguishes (rows, channels-first,
channels-last, training / evaluation, backward with and without saved statistics).
Whatever those calls compile lands in the cache (see :mod:`numbanorm._cache` for
where). GPU kernels are compiled per process and not cached on disk: not covered here.
"""
import math
import sys
import time

import numpy as np

DTYPES = ("float32", "float64")
SIZES = ("small", "large")


def _elements(size):
    """Element count of a 'small' (one chunk) or 'large' (thread-pool) input."""
    from . import _config

    return 256 if size == "small" else max(2 * _config.SERIAL_THRESHOLD, 1024)


def _rows(size, dtype, n=256):
    rng = np.random.default_rng(0)
    m = max(2, math.ceil(_elements(size) / n))
    return rng.standard_normal((m, n)).astype(dtype)


def _images(size, dtype, channels_last=False, c=8):
    rng = np.random.default_rng(0)
    side = max(2, math.ceil(math.sqrt(_elements(size) / (2 * c))))
    shape = (2, side, side, c) if channels_last else (2, c, side, side)
    return rng.standard_normal(shape).astype(dtype)


def _layer_norm(nn, dtype, size):
    x = _rows(size, dtype)
    n = x.shape[1]
    w, b, g = np.ones(n, dtype), np.zeros(n, dtype), np.ones_like(x)
    nn.layer_norm(x, n)
    nn.layer_norm(x.reshape(2, -1, n), (n,), w, b, out=np.empty_like(x.reshape(2, -1, n)))
    _, mean, rstd = nn.layer_norm(x, n, w, b, return_stats=True)
    nn.layer_norm_backward(g, x, n, w, mean=mean, rstd=rstd)
    nn.layer_norm_backward(g, x, n, out=np.empty_like(x))
    y = nn.layer_norm(x, n, w, b)
    nn.layer_norm_backward(g, None, n, w, y=y, bias=b, rstd=rstd)  # memory-saving form


def _rms_norm(nn, dtype, size):
    x = _rows(size, dtype)
    n = x.shape[1]
    w, g = np.ones(n, dtype), np.ones_like(x)
    nn.rms_norm(x, n)
    _, rstd = nn.rms_norm(x, n, w, return_stats=True)
    nn.rms_norm_backward(g, x, n, w, rstd=rstd)
    nn.rms_norm_backward(g, x, n, out=np.empty_like(x))
    nn.rms_norm_backward(g, None, n, w, y=nn.rms_norm(x, n, w), rstd=rstd)  # memory-saving form
    nn.rms_norm(x, n, w, quantize="int8")


def _add_norms(nn, dtype, size):
    x = _rows(size, dtype)
    r = x[::-1].copy()
    n = x.shape[1]
    w, b, g = np.ones(n, dtype), np.zeros(n, dtype), np.ones_like(x)
    y, s, rstd = nn.add_rms_norm(x, r, n, w, return_stats=True)
    nn.add_rms_norm(x, r, n, w, out=np.empty_like(x), residual_out=np.empty_like(x))
    nn.add_rms_norm_backward(g, g, s, n, w, rstd=rstd)
    nn.add_rms_norm_backward(g, g, s, n, w)
    nn.add_rms_norm_backward(g, g, None, n, w, y=y, rstd=rstd)
    y, s, mean, rstd = nn.add_layer_norm(x, r, n, w, b, return_stats=True)
    nn.add_layer_norm(x, r, n, w, b, out=np.empty_like(x), residual_out=np.empty_like(x))
    nn.add_layer_norm_backward(g, g, s, n, w, mean=mean, rstd=rstd)
    nn.add_layer_norm_backward(g, g, s, n, w)
    nn.add_layer_norm_backward(g, g, None, n, w, y=y, bias=b, rstd=rstd)


def _batch_norm(nn, dtype, size):
    for last in (False, True):
        x = _images(size, dtype, last)
        ax = -1 if last else 1
        c = x.shape[ax]
        rm, rv, w, b, g = np.zeros(c, dtype), np.ones(c, dtype), np.ones(c, dtype), np.zeros(c, dtype), np.ones_like(x)
        _, mean, rstd = nn.batch_norm(x, rm, rv, w, b, training=True, channel_axis=ax, return_stats=True)
        nn.batch_norm(x, None, None, training=True, channel_axis=ax)
        nn.batch_norm(x, rm, rv, w, b, channel_axis=ax)
        nn.batch_norm_backward(g, x, w, mean=mean, rstd=rstd, channel_axis=ax)
        nn.batch_norm_backward(g, x, channel_axis=ax)
        nn.batch_norm_backward(g, x, w, training=False, running_mean=rm, running_var=rv, channel_axis=ax)
    x2 = _rows(size, dtype, n=16)  # (N, C) features
    nn.batch_norm_backward(np.ones_like(x2), x2)
    nn.batch_norm(x2, None, None, training=True)


def _instance_norm(nn, dtype, size):
    for last in (False, True):
        x = _images(size, dtype, last)
        ax = -1 if last else 1
        c = x.shape[ax]
        rm, rv, w, g = np.zeros(c, dtype), np.ones(c, dtype), np.ones(c, dtype), np.ones_like(x)
        _, mean, rstd = nn.instance_norm(x, rm, rv, w, channel_axis=ax, return_stats=True)
        nn.instance_norm(x, rm, rv, use_input_stats=False, channel_axis=ax)
        nn.instance_norm_backward(g, x, w, mean=mean, rstd=rstd, channel_axis=ax)
        nn.instance_norm_backward(g, x, channel_axis=ax)


def _group_norm(nn, dtype, size):
    for last in (False, True):
        x = _images(size, dtype, last)
        ax = -1 if last else 1
        c = x.shape[ax]
        w, g = np.ones(c, dtype), np.ones_like(x)
        _, mean, rstd = nn.group_norm(x, 4, w, np.zeros(c, dtype), channel_axis=ax, return_stats=True)
        nn.group_norm_backward(g, x, 4, w, mean=mean, rstd=rstd, channel_axis=ax)
        nn.group_norm_backward(g, x, 4, channel_axis=ax)


def _local_response_norm(nn, dtype, size):
    for last in (False, True):
        x = _images(size, dtype, last)
        ax = -1 if last else 1
        for mode in ("across_channels", "within_channel"):
            for convention in ("torch", "paper"):
                kw = dict(mode=mode, convention=convention, channel_axis=ax)
                nn.local_response_norm(x, 3, **kw)
                nn.local_response_norm_backward(np.ones_like(x), x, 3, **kw)


def _normalize(nn, dtype, size):
    for x, axis in ((_rows(size, dtype), -1), (_images(size, dtype), 1)):
        for p in (2.0, 1.0, np.inf, 3.0):
            nn.normalize(x, p, axis)
            nn.normalize_backward(np.ones_like(x), x, p, axis)


def _weight_standardize(nn, dtype, size):
    out_channels = 4 if size == "small" else max(2, math.ceil(_elements(size) / 576))
    w = np.random.default_rng(0).standard_normal((out_channels, 64, 3, 3)).astype(dtype)
    nn.weight_standardize(w)
    nn.weight_standardize_backward(np.ones_like(w), w)


def _scaling(nn, dtype, size):
    x = _rows(size, dtype, n=16)
    x[0, 0] = np.nan  # NaNs are ignored by the statistics
    for clip in (False, True):
        nn.min_max_scale(x, clip=clip)
    nn.standardize(x)
    nn.standardize(x, ddof=1)
    img = _images(size, dtype)
    nn.min_max_scale(img, axis=(0, 2, 3))
    nn.standardize(img, axis=(0, 2, 3))
    for scaler in (nn.StandardScaler(), nn.MinMaxScaler()):
        y = scaler.fit(x).transform(x)
        scaler.inverse_transform(y)
        scaler.partial_fit(x)


#: op name -> function(numbanorm, dtype, size) making the calls users make
OPS = {
    "layer_norm": _layer_norm,
    "rms_norm": _rms_norm,
    "add_norms": _add_norms,  # add_rms_norm, add_layer_norm and their backwards
    "batch_norm": _batch_norm,
    "instance_norm": _instance_norm,
    "group_norm": _group_norm,
    "local_response_norm": _local_response_norm,
    "normalize": _normalize,
    "weight_standardize": _weight_standardize,
    "scaling": _scaling,  # min_max_scale, standardize, StandardScaler, MinMaxScaler
}


#: other names (prefix-matched too) of the ``scaling`` entry
ALIASES = {"add_norms": ("add_rms_norm", "add_layer_norm", "AddRMSNorm", "AddLayerNorm"),
           "scaling": ("min_max_scale", "standardize", "scalers", "StandardScaler", "MinMaxScaler")}


def select(ops=None):
    """The op names matching the prefixes ``ops`` (all when empty); ValueError if none."""
    if not ops:
        return list(OPS)
    chosen = [name for name in OPS
              if any(n.startswith(p) for p in ops for n in (name,) + ALIASES.get(name, ()))]
    if not chosen:
        raise ValueError(f"numbanorm precompile: no op matches {' '.join(ops)}; known: {', '.join(OPS)}")
    return chosen


def cases(ops=None, dtypes=DTYPES):
    """``(op, dtype, size)`` triples to run, in order."""
    return [(op, dt, size) for op in select(ops) for dt in dtypes for size in SIZES]


def cache_stats():
    """``(compiled, loaded)``: specializations of numbanorm's CPU kernels this process
    compiled and loaded from the disk cache so far."""
    from numba.core.dispatcher import Dispatcher

    seen, compiled, loaded = set(), 0, 0
    for name, module in list(sys.modules.items()):
        if not name.startswith("numbanorm._cpu") or module is None:
            continue
        for value in vars(module).values():
            for d in value if isinstance(value, tuple) else (value,):
                if isinstance(d, Dispatcher) and id(d) not in seen:
                    seen.add(id(d))
                    compiled += sum(d.stats.cache_misses.values())
                    loaded += sum(d.stats.cache_hits.values())
    return compiled, loaded


class _Text:
    """A plain text progress bar on stderr (used when tqdm is not installed)."""

    def __init__(self, total, stream):
        self.total, self.done, self.stream = total, 0, stream

    def set_description(self, text):
        self.text = text
        self._draw()

    def update(self, n=1):
        self.done += n
        self._draw()

    def _draw(self):
        if self.stream is None:
            return
        width = 30
        fill = width * self.done // max(self.total, 1)
        line = f"\r[{'#' * fill}{'.' * (width - fill)}] {self.done}/{self.total} {getattr(self, 'text', '')}"
        self.stream.write(line[:100].ljust(100))
        self.stream.flush()

    def close(self):
        if self.stream is not None:
            self.stream.write("\n")
            self.stream.flush()


def _progress(total, stream, enabled):
    if not enabled:
        return _Text(total, None)
    try:
        from tqdm import tqdm
    except ImportError:
        return _Text(total, stream)
    return tqdm(total=total, file=stream, unit="case")


def run(ops=None, dtypes=DTYPES, progress=True, stream=None):
    """Make every call of :data:`OPS` (filtered by ``ops`` prefixes) for ``dtypes``.
    Returns ``(cases run, specializations compiled, loaded from cache, seconds)``."""
    import numbanorm

    todo = cases(ops, dtypes)
    bar = _progress(len(todo), sys.stderr if stream is None else stream, progress)
    start = time.perf_counter()
    try:
        for op, dtype, size in todo:
            bar.set_description(f"{op} {dtype} {size}")
            OPS[op](numbanorm, np.dtype(dtype), size)
            bar.update(1)
    finally:
        bar.close()
    return (len(todo),) + cache_stats() + (time.perf_counter() - start,)


def _main(args):
    from . import _cache, _config  # noqa: F401  (_config installs the cache locator)

    try:
        todo = cases(args.ops, args.dtypes)
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2
    where = _cache.cache_root()
    if args.list:
        for op, dtype, size in todo:
            print(f"{op:22s} {dtype:8s} {size}")
        print(f"cache directory: {where}")
        return 0
    n, compiled, loaded, seconds = run(args.ops, args.dtypes, progress=not args.quiet)
    print(f"numbanorm precompile: {n} cases in {seconds:.1f} s; compiled {compiled}, "
          f"loaded {loaded} kernel specializations from the cache in {where}")
    return 0


def add_parser(sub):
    """Register ``numbanorm precompile`` on the CLI's sub-parsers."""
    p = sub.add_parser("precompile", help="compile the common kernel specializations into the disk cache",
                       description="Compile and cache the CPU kernels for the common specializations "
                                   "(float32/float64, small and large inputs, the layouts the ops use). "
                                   "Cache: $NUMBA_CACHE_DIR, else the user cache directory "
                                   "(~/.cache/numbanorm on Linux).")
    p.add_argument("--ops", nargs="+", metavar="OP", help=f"only these ops (prefix match): {', '.join(OPS)}")
    p.add_argument("--dtypes", nargs="+", choices=DTYPES, default=list(DTYPES), help="default: both")
    p.add_argument("--list", action="store_true", help="list the cases and the cache directory, then exit")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_main)
    return p
