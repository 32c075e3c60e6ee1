"""``numbanorm bench --history``: compare the last two kept asv results, name the regressions.

The repository keeps asv's results in ``asv_benchmarks/results/<machine>/`` (one JSON file
per commit and environment). This compares, per machine, the two newest commits (by commit
date) benchmark by benchmark and parameter by parameter, as ``asv compare`` does, and names
every one that got more than ``factor`` (default 1.2: 20 %) slower. Only the parameter
combinations measured in both runs count (backfilled commits hold a subset).

Informational: on a shared, noisy machine a single ``--quick`` sample can move by more than
20 %; rerun the named benchmarks (``bench/asv_record.sh --bench NAME``) before believing one.
Run from a checkout: ``python -m numbanorm._bench._history [--results DIR] [--factor F]``.
"""
import argparse
import glob
import itertools
import json
import math
import os
import sys

#: files in a machine directory that are not results
_NOT_RESULTS = {"machine.json", "benchmarks.json"}


def default_results_dir():
    """``asv_benchmarks/results`` of the checkout this package lives in (or of the cwd)."""
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for base in (here, os.getcwd()):
        path = os.path.join(base, "asv_benchmarks", "results")
        if os.path.isdir(path):
            return path
    return os.path.join(os.getcwd(), "asv_benchmarks", "results")


def load_run(path):
    """One asv result file as ``{"commit", "date", "values": {(name, params): seconds}}``;
    failed and skipped combinations (null/NaN) are left out."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    columns = data.get("result_columns", ["result", "params"])
    values = {}
    for name, row in data.get("results", {}).items():
        entry = dict(zip(columns, row))
        result, params = entry.get("result"), entry.get("params") or []
        if not isinstance(result, list):
            result = [result]
        combos = list(itertools.product(*params)) if params else [()]
        for combo, value in zip(combos, result):
            if isinstance(value, (int, float)) and math.isfinite(value) and value > 0:
                values[(name, combo)] = float(value)
    return {"commit": data.get("commit_hash", "?"), "date": data.get("date") or 0, "values": values}


def machine_runs(results_dir):
    """``{machine: [run, ...]}`` sorted oldest to newest by commit date."""
    runs = {}
    for machine_dir in sorted(glob.glob(os.path.join(results_dir, "*", ""))):
        machine = os.path.basename(os.path.dirname(machine_dir))
        files = [p for p in glob.glob(os.path.join(machine_dir, "*.json")) if os.path.basename(p) not in _NOT_RESULTS]
        loaded = [load_run(p) for p in files]
        if loaded:
            runs[machine] = sorted(loaded, key=lambda r: r["date"])
    return runs


def compare(old, new, factor=1.2):
    """``(slower, faster, common)``: lists of ``(name, params, old_s, new_s)`` whose time
    rose (fell) by more than ``factor``, and the number of combinations in both runs."""
    slower, faster = [], []
    common = sorted(set(old["values"]) & set(new["values"]))
    for key in common:
        a, b = old["values"][key], new["values"][key]
        if b > a * factor:
            slower.append((*key, a, b))
        elif a > b * factor:
            faster.append((*key, a, b))
    slower.sort(key=lambda r: r[3] / r[2], reverse=True)
    faster.sort(key=lambda r: r[2] / r[3], reverse=True)
    return slower, faster, len(common)


def _label(name, params):
    return f"{name}({', '.join(params)})" if params else name


def _seconds(t):
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if t >= scale:
            return f"{t / scale:.3g} {unit}"
    return f"{t / 1e-9:.3g} ns"


def report(results_dir, factor=1.2, machine=None, out=None):
    """Print the comparison for each machine (or only ``machine``); returns the number of
    benchmarks named slower."""
    out = out or sys.stdout
    runs = machine_runs(results_dir)
    if machine is not None:
        runs = {machine: runs.get(machine, [])}
    total = 0
    for name, kept in runs.items():
        if len(kept) < 2:
            print(f"{name}: {len(kept)} kept result(s) in {results_dir}; nothing to compare", file=out)
            continue
        old, new = kept[-2], kept[-1]
        slower, faster, common = compare(old, new, factor)
        total += len(slower)
        print(f"{name}: {old['commit'][:8]} -> {new['commit'][:8]}, {common} benchmark parameter sets in both, "
              f"{len(slower)} more than {factor:g}x slower, {len(faster)} more than {factor:g}x faster", file=out)
        for bench, params, a, b in slower:
            print(f"  SLOWER {b / a:5.2f}x  {_seconds(a):>9} -> {_seconds(b):>9}  {_label(bench, params)}", file=out)
        for bench, params, a, b in faster[:10]:
            print(f"  faster {a / b:5.2f}x  {_seconds(a):>9} -> {_seconds(b):>9}  {_label(bench, params)}", file=out)
        if len(faster) > 10:
            print(f"  ... and {len(faster) - 10} more faster", file=out)
    return total


def main(argv=None):
    p = argparse.ArgumentParser(prog="numbanorm bench --history", description=__doc__.split("\n\n")[0])
    p.add_argument("--results", default=None, help="asv results directory (default: the checkout's asv_benchmarks/results)")
    p.add_argument("--factor", type=float, default=1.2, help="name benchmarks slower by more than this (default 1.2)")
    p.add_argument("--machine", default=None, help="only this asv machine name")
    p.add_argument("--strict", action="store_true", help="exit with status 1 when a benchmark is named slower")
    args = p.parse_args(argv)
    named = report(args.results or default_results_dir(), args.factor, args.machine)
    return 1 if (args.strict and named) else 0


if __name__ == "__main__":
    sys.exit(main())
