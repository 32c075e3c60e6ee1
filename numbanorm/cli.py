"""The ``numbanorm`` command line.

Sub-commands
------------
bench   time every normalization against NumPy, PyTorch (if installed) and this machine's
        copy bandwidth (the faster of np.copyto and an all-threads streaming copy); a quick
        set by default (``--full``: every case), rows printed as they finish, a table
        (``--markdown`` for the README), ``--plot FILE.png``; ``--compile``: first-call
        (compile) times in fresh processes; ``--history``: the last two kept asv results
        compared (benchmarks more than 20 % slower named).
info    report the environment: versions, threading layer, CPU count, CUDA devices.
precompile  compile the common kernel specializations into the disk cache once.
scale   normalize a data file (.npy / .npz / .csv): see ``numbanorm scale --help``.
"""
import argparse
import json
import os
import platform
import sys
import time


def _progress(total, unit):
    """A tqdm bar on stderr (shown after 2 s, only on a terminal), or None without tqdm."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit=unit, file=sys.stderr, delay=2, disable=None, leave=False)


def _emit(bar, text):
    """Print a finished row now (above the progress bar when there is one)."""
    if bar is None or bar.disable:
        print(text, flush=True)
    else:
        bar.write(text, file=sys.stdout)
        sys.stdout.flush()


def _bench_compile(args):
    from ._bench import _compile

    names = [n for n in _compile.CALLS if not args.ops or any(n.startswith(o) for o in args.ops)]
    bar = _progress(2 * len(names), "call")
    print(f"# numbanorm bench --compile on {_machine()}", flush=True)
    print(_compile.header(args.markdown), flush=True)

    def done(row):
        _emit(bar, _compile.row_line(row, args.markdown))
        if bar is not None:
            bar.update()

    rows = _compile.run(args.ops, on_row=done)
    if bar is not None:
        bar.close()
    print(_compile.summary(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


def _bench(args):
    from . import _bench

    if args.compile:
        return _bench_compile(args)
    if args.history:
        from ._bench import _history

        return _history.main([])
    cases = list(_bench.all_cases(args.ops, full=args.full))
    if args.list:
        for op, (label, shape, dtype, _) in cases:
            print(f"{op:24s} {label:12s} {'x'.join(map(str, shape)):>16s} {dtype}")
        return 0
    if not cases:
        print(f"numbanorm bench: no case matches {args.ops!r}; see --list", file=sys.stderr)
        return 2
    impls = ["numbanorm", "numpy", "sklearn"] + ([] if args.no_torch else ["torch"]) + (
        [] if args.no_onnxruntime else ["onnxruntime", "numbanorm_new"])
    jobs = _bench.default_jobs() if args.jobs is None else args.jobs
    bar = None
    if jobs > 1 and len(cases) > 1:
        print(f"# compiling the kernels of {len(cases)} cases in {min(jobs, len(cases))} processes "
              "(fast when the cache is filled)", flush=True)
        bar = _progress(len(cases), "case")
        if bar is not None:
            bar.set_description("compiling", refresh=True)

    def warmed(op, label):
        if bar is not None:
            bar.update()

    t0 = time.perf_counter()
    warmed_n = _bench.warm_up(cases, jobs, full=args.full, on_done=warmed)
    if bar is not None:
        bar.close()
    t1 = time.perf_counter()
    if warmed_n:
        print(f"# compiled in {t1 - t0:.0f} s", flush=True)
    bar = _progress(len(cases), "case")
    print(f"# numbanorm bench on {_machine()}", flush=True)
    print(_bench.header(args.markdown), flush=True)

    def start(op, label, shape, dtype):
        if bar is not None:
            bar.set_description(f"{op} {label} {'x'.join(map(str, shape))}", refresh=True)

    def done(row):
        _emit(bar, _bench.line(row, args.markdown))
        if bar is not None:
            bar.update()

    rows = _bench.run(args.ops, quick=args.quick, repeat=args.repeat, impls=impls, full=args.full,
                      on_start=start, on_row=done)
    if bar is not None:
        bar.close()
    t2 = time.perf_counter()
    print(f"# {len(rows)} cases timed in {t2 - t1:.0f} s ({t2 - t0:.0f} s with compiling)", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1, default=str)
    if args.plot:
        _bench.plot(rows, args.plot)
        print(f"plot written to {args.plot}")
    return 0


def _machine():
    return f"{platform.machine()} {os.cpu_count()} CPUs, {platform.python_implementation()} {platform.python_version()}"


def environment():
    """A dict describing the environment numbanorm runs in."""
    import numba
    import numpy as np

    from . import __version__
    from ._config import threading_layer

    env = {
        "numbanorm": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "numba_threads": numba.config.NUMBA_NUM_THREADS,
        "threading_layer": threading_layer(),
    }
    for mod in ("numba_cuda", "cupy", "torch", "dask", "sklearn"):
        try:
            m = __import__(mod)
            env[mod] = getattr(m, "__version__", "installed")
        except Exception:
            env[mod] = None
    try:
        from numba import cuda

        env["cuda_simulator"] = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
        env["cuda_devices"] = [d.name.decode() if isinstance(d.name, bytes) else str(d.name) for d in cuda.gpus] if cuda.is_available() else []
    except Exception as e:  # numba-cuda missing or no driver
        env["cuda_devices"] = []
        env["cuda_error"] = f"{type(e).__name__}: {e}".splitlines()[0]
    return env


def _info(args):
    env = environment()
    if args.json:
        print(json.dumps(env, indent=1))
    else:
        for k, v in env.items():
            print(f"{k:16s} {v}")
    return 0


def build_parser():
    p = argparse.ArgumentParser(prog="numbanorm", description="Fast normalizations on NumPy and GPU arrays.")
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("bench", help="benchmark every normalization on built-in shapes")
    b.add_argument("ops", nargs="*", help="only these ops (prefix match), e.g. layer_norm rms_norm")
    b.add_argument("--full", action="store_true",
                   help="every case (the README table); default: one shape per op and direction")
    b.add_argument("--compile", action="store_true",
                   help="first-call (compile) time of every public function, fresh process each, "
                        "empty then filled cache")
    b.add_argument("--history", action="store_true",
                   help="compare the last two kept asv results (asv_benchmarks/results/) and name "
                        "every benchmark more than 20%% slower (informational)")
    b.add_argument("--quick", action="store_true", help="fewer repeats (3; default 5, --full 7)")
    b.add_argument("--repeat", type=int, default=None, help="interleaved repeats (min is reported)")
    b.add_argument("--no-torch", action="store_true", help="skip the PyTorch baseline")
    b.add_argument("--no-onnxruntime", action="store_true",
                   help="skip the onnxruntime baseline (used when installed: one-node models, fresh outputs)")
    b.add_argument("--markdown", action="store_true", help="print a Markdown table")
    b.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    b.add_argument("--plot", metavar="FILE.png", help="draw the ratios to the copy limit")
    b.add_argument("--list", action="store_true", help="list the cases and exit")
    b.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="compile the cases' kernels in N worker processes before timing (default: the "
                        "CPU count, at most 8; 1: compile in the timing process as each case starts)")
    b.set_defaults(func=_bench)

    i = sub.add_parser("info", help="report versions, threading layer and devices")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=_info)

    from . import _precompile

    _precompile.add_parser(sub)

    try:
        from . import _scale_cli
    except ImportError:
        _scale_cli = None
    if _scale_cli is not None:
        _scale_cli.add_parser(sub)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.func(args)
