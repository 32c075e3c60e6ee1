"""Helpers for the kept asv history (asv_benchmarks/results/); used by bench/asv_*.sh.

``python bench/asv_results.py run --commit SHA [--bench REGEX] [--repeat N]``
    Time the asv benchmarks (the ones in results/benchmarks.json matching REGEX) in THIS
    process with asv's own benchmark runner (``asv_runner``: the same setup, timing and
    teardown code ``asv run`` executes, with ``number=1``, ``repeat=N``, no warm-up beyond
    each setup's own first call) and save them with asv's ``Results`` class as the result
    file of commit SHA. ``asv run`` starts a fresh process per parameter set, importing
    numba and torch and loading the kernels again each time (measured here: 12 sets in
    153 s at load ~10, i.e. ~85 min for the backfill's ~400 sets per commit); one process
    per commit spends its time on the commit's cold kernel compile and the timings. Whatever ``numbanorm`` the interpreter imports (the backfill sets
    PYTHONPATH to the commit's tree) is what is measured.

``python bench/asv_results.py normalize [--machine NAME] FILE...``
    Record the interpreter as its version (``3.11``) instead of its path in result files
    written by ``asv run --python=same`` (asv's existing environments name the Python by
    path, which would split every graph by checkout), under the file name the backfill uses.
    With ``--machine``, the file also gets that machine's description (os, arch, cpu,
    num_cpu, ram as registered in asv's machine file by ``bench/asv_machine.sh``) and moves
    to ``results/NAME/`` (a ``machine.json`` is written there when missing): asv graphs
    split by these fields, so a result must carry its machine's kept ones.
"""
import argparse
import datetime
import json
import math
import os
import subprocess
import sys
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ASV_DIR = os.path.join(ROOT, "asv_benchmarks")
PYTHON = f"{sys.version_info[0]}.{sys.version_info[1]}"
ENV_NAME = f"existing-py{PYTHON}"


def _config():
    from asv.config import Config

    return Config.load(os.path.join(ASV_DIR, "asv.conf.json"))


def _machine_params(conf, machine):
    """The machine's registered description (bench/asv_machine.sh), else its machine.json."""
    try:
        info = _registered(machine)
    except Exception:  # not registered (asv's UserError) or incomplete: the kept file
        with open(os.path.join(conf.results_dir, machine, "machine.json"), encoding="utf-8") as f:
            info = json.load(f)
        info.pop("version", None)
    return {**info, "python": PYTHON}


def _time_one(bench_dir, name, idx, repeat):
    """asv's BenchmarkResult fields for one parameter set: (result, samples, number, err)."""
    from asv_runner.benchmarks.mark import SkipNotImplemented
    from asv_runner.discovery import get_benchmark_from_name

    extra = {"number": 1, "repeat": repeat, "warmup_time": 0, "rounds": 1}
    bench_id = name if idx is None else f"{name}-{idx}"
    try:
        benchmark = get_benchmark_from_name(bench_dir, bench_id, extra_params=extra)
        benchmark.set_cache(None)
        if benchmark.do_setup():
            return math.nan, None, None, ""
        try:
            data = benchmark.do_run()
        except SkipNotImplemented:
            return math.nan, None, None, ""
        finally:
            benchmark.do_teardown()
    except Exception:
        return None, None, None, f"{bench_id}:\n{traceback.format_exc(limit=-3)}"
    return True, data["samples"], data["number"], ""


def _missing_api(err):
    """True for the errors of a call the commit's numbanorm does not have."""
    last = err.strip().splitlines()[-1]
    return ("AttributeError: module 'numbanorm' has no attribute" in last
            or ("TypeError:" in last and "unexpected keyword argument" in last))


def run(commit, machine, regex, repeat, log=sys.stderr):
    from asv.benchmarks import Benchmarks
    from asv.repo import get_repo
    from asv.results import Results
    from asv.runner import BenchmarkResult

    conf = _config()
    benchmarks = Benchmarks.load(conf, regex=[regex] if regex else None)
    repo = get_repo(conf)
    commit = repo.get_hash_from_name(commit)
    results = Results(_machine_params(conf, machine), {}, commit, repo.get_date(commit), PYTHON, ENV_NAME, {})
    kept = os.path.join(conf.results_dir, machine, f"{commit[:8]}-{ENV_NAME}.json")
    if os.path.exists(kept):  # a subset (--bench) adds to / replaces in the commit's kept file
        old = Results.load(kept, machine_name=machine)
        for key in old.get_all_result_keys():
            if key not in benchmarks:
                for attr in ("_results", "_samples", "_stats", "_benchmark_params", "_profiles", "_started_at",
                             "_duration", "_benchmark_version", "_stderr", "_errcode"):
                    table = getattr(old, attr)
                    if key in table:
                        getattr(results, attr)[key] = table[key]
    bench_dir = os.path.join(ASV_DIR, conf.benchmark_dir)
    sys.path.insert(0, os.path.dirname(bench_dir))  # asv_benchmarks/, where `benchmarks` lives
    counts = {"ok": 0, "skipped": 0, "failed": 0}
    for name, benchmark in sorted(benchmarks.items()):
        selected = set(benchmarks.benchmark_selection[name])
        n = max(1, math.prod(len(p) for p in benchmark["params"])) if benchmark["params"] else 1
        started, t0 = datetime.datetime.now(datetime.timezone.utc), time.time()
        result, samples, number, errors = [], [], [], []
        missing_api = False
        for idx in range(n):
            if idx not in selected or missing_api:
                result.append(None if missing_api else math.nan), samples.append(None), number.append(None)
                counts["failed"] += missing_api and idx in selected
                continue
            r, s, k, err = _time_one(bench_dir, name, idx if benchmark["params"] else None, repeat)
            result.append(r), samples.append(s), number.append(k)
            key = "ok" if r is True else "skipped" if r is not None else "failed"
            counts[key] += 1
            if err:
                errors.append(err)
                # the commit lacks the function or an argument the benchmark calls: the other
                # parameter sets fail the same way (each would still build its arrays first)
                missing_api = _missing_api(err)
        res = BenchmarkResult(result=result, samples=samples, number=number, errcode=1 if errors else 0,
                              stderr="\n".join(errors), profile=None)
        results.add_result(benchmark, res, started_at=started, duration=time.time() - t0, selected_idx=selected)
        ok = sum(1 for r in result if r is True)
        print(f"{name}: {ok}/{len(selected)} timed, {len(errors)} failed ({time.time() - t0:.0f} s)", file=log, flush=True)
        if errors:
            print("  " + errors[0].strip().splitlines()[-1][:200], file=log, flush=True)
    results.save(conf.results_dir)
    print(f"saved {commit[:8]}: {counts}", file=log, flush=True)
    return counts


MACHINE_FIELDS = ("arch", "cpu", "machine", "num_cpu", "os", "ram")


def _registered(machine):
    """The machine's description from asv's machine file (``asv machine`` wrote it)."""
    from asv.machine import MachineCollection

    info = MachineCollection.load(machine)
    missing = [k for k in MACHINE_FIELDS if not info.get(k)]
    if missing:
        raise ValueError(f"asv machine {machine!r} has no {', '.join(missing)}: register it with "
                         "bench/asv_machine.sh (asv machine --machine NAME --os ... --yes)")
    return {k: str(info[k]) for k in MACHINE_FIELDS}


def normalize(paths, machine=None):
    """Rewrite asv's path-named existing-environment result files to ``python = X.Y`` (and,
    with ``machine``, to that machine's kept description, in its results folder)."""
    described = _registered(machine) if machine else None
    for path in paths:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        python = subprocess.check_output(
            [data["python"], "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], text=True
        ).strip() if os.path.isabs(data["python"]) else data["python"]
        data["python"] = data["params"]["python"] = python
        data["env_name"] = f"existing-py{python}"
        folder = os.path.dirname(path)
        if described:
            data["params"] = {**described, "python": python}
            folder = os.path.join(os.path.dirname(folder), machine)
            os.makedirs(folder, exist_ok=True)
            mfile = os.path.join(folder, "machine.json")
            if not os.path.exists(mfile):
                with open(mfile, "w", encoding="utf-8") as f:
                    json.dump({**described, "version": 1}, f, indent=4, sort_keys=True)
        target = os.path.join(folder, f"{data['commit_hash'][:8]}-{data['env_name']}.json")
        with open(target, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=None, sort_keys=True, allow_nan=True)
        if os.path.abspath(target) != os.path.abspath(path):
            os.remove(path)
        print(f"{os.path.relpath(path)} -> {os.path.relpath(target)} (python {python})")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--commit", required=True)
    r.add_argument("--machine", default=os.environ.get("NUMBANORM_ASV_MACHINE", "numbanorm-ci-2core"))
    r.add_argument("--bench", default=None, help="asv --bench regex (matches name(params))")
    r.add_argument("--repeat", type=int, default=3, help="samples per parameter set (asv keeps the median)")
    nz = sub.add_parser("normalize")
    nz.add_argument("--machine", default=None, help="give the files this registered machine's description")
    nz.add_argument("files", nargs="+")
    args = p.parse_args(argv)
    if args.cmd == "run":
        os.chdir(ASV_DIR)  # asv.conf.json's paths are relative to it
        run(args.commit, args.machine, args.bench, args.repeat)
    else:
        try:
            normalize(args.files, args.machine)
        except ValueError as e:
            p.error(str(e))
    return 0


if __name__ == "__main__":
    sys.exit(main())
