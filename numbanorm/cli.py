"""The ``numbanorm`` command line.

Sub-commands
------------
bench   time every normalization against NumPy, PyTorch (if installed) and this machine's
        copy bandwidth; prints a table (``--markdown`` for the README), ``--plot FILE.png``.
info    report the environment: versions, threading layer, CPU count, CUDA devices.
precompile  compile the common kernel specializations into the disk cache once.
scale   normalize a data file (.npy / .npz / .csv): see ``numbanorm scale --help``.
"""
import argparse
import json
import os
import platform
import sys


def _bench(args):
    from . import _bench

    if args.list:
        for op, (label, shape, dtype, _) in _bench.all_cases(args.ops):
            print(f"{op:24s} {label:12s} {'x'.join(map(str, shape)):>16s} {dtype}")
        return 0
    impls = ["numbanorm", "numpy", "sklearn"] + ([] if args.no_torch else ["torch"])
    rows = _bench.run(args.ops, quick=args.quick, repeat=args.repeat, impls=impls)
    if not rows:
        print(f"numbanorm bench: no case matches {args.ops!r}; see --list", file=sys.stderr)
        return 2
    print(f"# numbanorm bench on {_machine()}")
    print(_bench.table(rows, markdown=args.markdown))
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
    b.add_argument("--quick", action="store_true", help="fewer repeats")
    b.add_argument("--repeat", type=int, default=None, help="interleaved repeats (min is reported)")
    b.add_argument("--no-torch", action="store_true", help="skip the PyTorch baseline")
    b.add_argument("--markdown", action="store_true", help="print a Markdown table")
    b.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    b.add_argument("--plot", metavar="FILE.png", help="draw the ratios to np.copyto")
    b.add_argument("--list", action="store_true", help="list the cases and exit")
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
