"""``numbanorm bench``: time every normalization against NumPy, PyTorch and copy bandwidth.

Each ``numbanorm/_bench/<op>.py`` defines ``CASES``: a list of
``(label, shape, dtype, setup)`` where ``setup(shape, dtype)`` returns
``(x, {"numbanorm": fn, "numpy": fn, "torch": fn})`` — zero-argument callables
(``"torch"`` only when PyTorch is installed, ``"sklearn"`` for the scalers, ``"onnxruntime"`` with
``"numbanorm_new"`` — numbanorm without ``out=`` — only when onnxruntime is installed, see
:mod:`._onnxrt`; ``"numbanorm_gpu"`` — device arrays,
wrapped with :func:`gpu_timed` — only when :func:`gpu_available`). The runner adds two copies
of ``x`` as the memory-bandwidth limit (read + write of the input): ``np.copyto`` (one
thread of memcpy) and :func:`numbanorm._bench._copy.stream_copy` (all threads, streaming
stores); the faster of the two is the "copy limit". It times every callable as the minimum
of several interleaved repeats (this machine is noisy), and reports times, GB/s
(2 × x.nbytes / time) and ratios to the copy limit and to PyTorch.

By default :func:`run` times the quick set (:func:`quick_cases`: per op and direction,
its first case at its largest shape); ``full=True`` times every case.
The asv benchmarks in ``asv_benchmarks/`` reuse these setups.
"""
import importlib
import pkgutil
import time

import numpy as np


def torch_or_none():
    """PyTorch when installed (baseline only), else None."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def gpu_available():
    """True when a real CUDA GPU is usable (the simulator is no benchmark target)."""
    import os

    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return False
    try:
        from numba import cuda

        return cuda.is_available()
    except Exception:
        return False


def gpu_timed(fn):
    """Wrap a GPU call so its time includes the kernels (synchronise after the call)."""
    from numba import cuda

    def run():
        fn()
        cuda.synchronize()

    return run


def to_gpu(*arrays):
    """Numba device copies of NumPy arrays (None stays None)."""
    from numba import cuda

    return tuple(None if a is None else cuda.to_device(a) for a in arrays)


def make_array(shape, dtype, seed=0, offset=0.0):
    """Deterministic standard-normal test data (plus ``offset``)."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape, dtype=np.float64) + offset).astype(dtype)


def op_modules():
    """Names of the ``_bench/<op>`` modules, sorted."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def all_cases(ops=None, full=True):
    """``(op, (label, shape, dtype, setup))`` of the ops matching ``ops`` (a prefix of
    its name; all when empty): every case, or the quick set when ``full`` is false."""
    for name in op_modules():
        if ops and not any(name.startswith(o) for o in ops):
            continue
        mod = importlib.import_module(f"{__name__}.{name}")
        for case in (mod.CASES if full else quick_cases(mod.CASES)):
            yield name, case


def direction(label):
    """"backward" for the gradient cases, else "forward"."""
    return "backward" if "backward" in label else "forward"


def quick_cases(cases):
    """The default set: per direction (forward, backward), the first label listed, at its
    largest shape (the first such case: float32 before a later float64 one)."""
    first = {}
    for case in cases:
        first.setdefault(direction(case[0]), case[0])
    picked = []
    for label in first.values():
        mine = [c for c in cases if c[0] == label]
        picked.append(max(mine, key=lambda c: int(np.prod(c[1]))))
    return picked


def time_interleaved(fns, repeat=7, number=1, warmup=1, slow=None, keep=()):
    """Minimum time (s) per call of each callable, repeats interleaved across callables.

    ``slow``: a callable whose warm-up call took longer than ``slow`` seconds (a baseline
    many times slower than the kernel, e.g. scikit-learn on 64 M values) is timed only in
    the first two repeats, unless its key is in ``keep``: its minimum barely moves with
    more runs and the ratios it gives are far from 1, while its extra repeats would be
    most of the main job's run time."""
    few = set()
    for k, fn in fns.items():
        t0 = time.perf_counter()
        for _ in range(warmup):
            fn()
        if slow is not None and warmup and k not in keep and time.perf_counter() - t0 > slow * warmup:
            few.add(k)
    best = {k: float("inf") for k in fns}
    for i in range(repeat):
        for k, fn in fns.items():
            if i >= 2 and k in few:
                continue
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            best[k] = min(best[k], (time.perf_counter() - t0) / number)
    return best


#: seconds: a baseline call slower than this is timed in two repeats only (:func:`time_interleaved`)
SLOW_BASELINE = 0.2

#: every baseline :func:`run` times by default ("numbanorm_new": numbanorm returning a fresh
#: output, beside onnxruntime, which does too)
IMPLS = ("numbanorm", "numpy", "torch", "sklearn", "onnxruntime", "numbanorm_new")


#: peers whose worker threads keep spinning after a call (PyTorch's OpenMP pool,
#: onnxruntime's spinning thread pool): timed after numbanorm and the single-threaded baselines
SPINNING = ("torch", "onnxruntime")

#: the copy-limit denominators
COPIES = ("copyto", "stream")


def timing_groups(fns):
    """Split a case's callables into the groups :func:`run` times one after another: every
    callable alone, back to back, in the order numbanorm, NumPy and scikit-learn (and
    ``numbanorm_new``), the copies (:data:`COPIES`), the spinning peers (:data:`SPINNING`).

    Interleaved, each callable paid for the one before it. A peer's threads still spinning
    after its call took one of the 2 cores: numbanorm's layer_norm (256, 1024) ran 1.2x
    slower right after torch's. After the copies, batch_norm (256, 1024) train ran 93-97 µs,
    alone 72-74 µs. And after a single-threaded NumPy call (the large cases time one call
    per repeat) numbanorm's pool helpers and the second core had gone idle: batch_norm
    8x256x28x28 train 761 µs in the bench vs 299 µs alone, weight_standardize backward
    262 vs 109 µs (quiet)."""
    order = [k for k in fns if k not in COPIES + SPINNING] + [k for k in COPIES + SPINNING if k in fns]
    return [{k: fns[k]} for k in order]


def _warm_case(op, label, shape, dtype, full):
    """Worker of :func:`warm_up`: one numbanorm call of the case, which compiles its kernels
    into the disk cache. Returns the seconds it took (None when the case is not found:
    cases patched in the parent process are not seen by a fresh one)."""
    t0 = time.perf_counter()
    for o, (lab, shp, dt, setup) in all_cases([op], full=full):
        if o == op and lab == label and tuple(shp) == tuple(shape) and str(np.dtype(dt)) == dtype:
            x, fns = setup(shp, dt)
            fns["numbanorm"]()
            return time.perf_counter() - t0
    return None


def default_jobs():
    """Worker processes for :func:`warm_up`: the CPU count, at most 8."""
    import os

    return max(1, min(os.cpu_count() or 1, 8))


def warm_up(cases, jobs, full=False, on_done=None):
    """Compile the kernels of ``cases`` (``(op, case)`` pairs) in ``jobs`` fresh worker
    processes before anything is timed: Numba compiles in one thread per process, so on a
    cold cache this divides the compile wall time by up to ``jobs``; the timing process then
    loads the machine code from the disk cache (:mod:`numbanorm._cache`). A no-op for
    ``jobs <= 1`` or fewer than two cases. ``on_done(op, label)`` is called as each case's
    compile finishes. Returns the number of cases warmed."""
    cases = list(cases)
    if jobs <= 1 or len(cases) < 2:
        return 0
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    ctx = multiprocessing.get_context("spawn")  # no fork: Numba's threading layers and forked children
    done = 0
    with ProcessPoolExecutor(max_workers=min(jobs, len(cases)), mp_context=ctx) as pool:
        futs = {pool.submit(_warm_case, op, c[0], tuple(c[1]), str(np.dtype(c[2])), full): (op, c[0])
                for op, c in cases}
        for f in as_completed(futs):
            done += f.result() is not None
            if on_done is not None:
                on_done(*futs[f])
    return done


def run(ops=None, quick=False, repeat=None, impls=IMPLS, full=False,
        on_start=None, on_row=None, jobs=1, on_warm=None):
    """Run the cases (the quick set unless ``full``); returns a list of row dicts (one per
    case). ``on_start(op, label, shape, dtype)`` is called before each case and
    ``on_row(row)`` as each row finishes. ``jobs > 1``: compile every case's kernels in
    that many worker processes first (:func:`warm_up`, ``on_warm`` its ``on_done``)."""
    from ._copy import stream_copy

    warm_up(all_cases(ops, full=full), jobs, full=full, on_done=on_warm)
    rows = []
    for op, (label, shape, dtype, setup) in all_cases(ops, full=full):
        if on_start is not None:
            on_start(op, label, shape, dtype)
        x, fns = setup(shape, dtype)
        fns = {k: v for k, v in fns.items() if k in impls}
        dst = np.empty_like(x)
        fns = {"copyto": lambda: np.copyto(dst, x), "stream": lambda: stream_copy(dst, x), **fns}
        nbytes = 2 * x.nbytes
        number = max(1, int(2e6 // max(x.size, 1))) if x.size < 2e6 else 1
        rep = repeat or (3 if quick else 7 if full else 5)
        times = {}
        for group in timing_groups(fns):
            times.update(time_interleaved(group, repeat=rep, number=number, slow=SLOW_BASELINE,
                                          keep=("numbanorm", "copyto", "stream")))
        times = {k: times[k] for k in fns}
        row = {"op": op, "case": label, "shape": tuple(shape), "dtype": str(np.dtype(dtype))}
        for k, t in times.items():
            row[k] = t
        row["gbps"] = nbytes / times["numbanorm"] / 1e9
        row["limit"] = min(times["copyto"], times["stream"])
        row["x_limit"] = times["numbanorm"] / row["limit"]
        row["x_copyto"] = times["numbanorm"] / times["copyto"]
        row["torch_speedup"] = times["torch"] / times["numbanorm"] if "torch" in times else None
        row["ort_speedup"] = times["onnxruntime"] / times["numbanorm_new"] if "onnxruntime" in times else None
        rows.append(row)
        if on_row is not None:
            on_row(row)
    return rows


def _fmt_t(t):
    if t is None:
        return "-"
    return f"{t * 1e3:.3f} ms" if t >= 1e-4 else f"{t * 1e6:.1f} µs"


HEAD = ["op", "case", "shape", "dtype", "numbanorm", "GB/s", "× copy limit", "copyto", "stream copy", "numpy",
        "torch", "torch / numbanorm", "sklearn", "onnxruntime", "ort / numbanorm (new out)"]

#: column widths of the plain-text table (rows are printed as they finish, so fixed)
WIDTHS = [20, 26, 16, 7, 10, 6, 12, 10, 11, 10, 10, 17, 10, 11, 25]


def cells(r):
    """The table cells of one row."""
    return [
        r["op"], r["case"], "×".join(map(str, r["shape"])), r["dtype"], _fmt_t(r["numbanorm"]),
        f"{r['gbps']:.1f}", f"{r['x_limit']:.2f}", _fmt_t(r["copyto"]), _fmt_t(r.get("stream")),
        _fmt_t(r.get("numpy")), _fmt_t(r.get("torch")),
        "-" if r["torch_speedup"] is None else f"{r['torch_speedup']:.1f}×", _fmt_t(r.get("sklearn")),
        _fmt_t(r.get("onnxruntime")), "-" if r.get("ort_speedup") is None else f"{r['ort_speedup']:.2f}×",
    ]


def header(markdown=False):
    """The table's header line(s)."""
    if markdown:
        return "| " + " | ".join(HEAD) + " |\n" + "|" + "---|" * len(HEAD)
    fmt = "  ".join("{:<%d}" % w for w in WIDTHS)
    return fmt.format(*HEAD) + "\n" + fmt.format(*("-" * w for w in WIDTHS))


def line(r, markdown=False):
    """One row of the table as text."""
    c = cells(r)
    if markdown:
        return "| " + " | ".join(c) + " |"
    return "  ".join(v.ljust(w) for v, w in zip(c, WIDTHS)).rstrip()


def table(rows, markdown=False):
    """The benchmark table as text (``markdown=True``: a GitHub table for the README)."""
    return "\n".join([header(markdown)] + [line(r, markdown) for r in rows])


def plot(rows, path):
    """Horizontal bars of the time relative to the copy limit (the faster of np.copyto and
    the streaming copy) per case (lower is better; 1 = as fast as copying the input),
    numbanorm beside PyTorch CPU."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['op']} {r['case']} {'×'.join(map(str, r['shape']))} {r['dtype']}" for r in rows]
    ys = np.arange(len(rows))[::-1]
    fig, ax = plt.subplots(figsize=(9, 0.22 * len(rows) + 1.5))
    height = 0.4
    ax.barh(ys + height / 2, [r["x_limit"] for r in rows], height, label="numbanorm")
    tor = [r["torch"] / r["limit"] if r.get("torch") else 0 for r in rows]
    if any(tor):
        ax.barh(ys - height / 2, tor, height, label="PyTorch CPU")
    ax.axvline(1.0, color="k", lw=0.8, ls="--", label="copy limit (faster of np.copyto, streaming copy)")
    ax.set_yticks(ys, labels, fontsize=6)
    ax.set_xlabel("time / copy-limit time (lower is better)")
    ax.set_xscale("log")
    ax.set_ylim(-1, len(rows))
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
