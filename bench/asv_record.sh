#!/usr/bin/env bash
# Append the checked-out commit's asv results to the kept history
# (asv_benchmarks/results/<machine>/<commit>-existing-py3.X.json, committed to the repository).
#
#   bench/asv_record.sh                  # every benchmark, every parameter (median of 3 samples)
#   bench/asv_record.sh --bench layer    # only benchmarks matching the asv --bench regex
#   NUMBANORM_RECORD_ASV=1 bench/asv_record.sh [--full] [asv run arguments]
#                                        # asv run itself (--quick unless --full)
#
# The installed (or PYTHONPATH) numbanorm of `python` is measured and recorded under the
# current commit's hash (PYTHON picks the interpreter, default `python`); run it on a clean
# tree (the hash must describe the code). By default the benchmarks are timed in ONE process
# with asv's own runner (bench/asv_results.py run: asv_runner's setup/timing code, asv's
# Results format), as the backfill does: `asv run --python=same` starts a process per
# parameter set, and on this 2-core machine that took 48 min for the first 7 of 32
# benchmarks (~13 s a set, ~600 sets) where one process records all of them in ~20-40 min.
# Recording with --bench adds those benchmarks to (or replaces them in) the commit's kept file.
# NUMBANORM_ASV_MACHINE names the machine (default by CPU kind, see bench/asv_machine.sh:
# numbanorm-ci-2core on Intel, numbanorm-ci-2core-amd on AMD; a GPU machine should use its
# own name, e.g. numbanorm-h200).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python}
. "$root/bench/asv_machine.sh"
[ -z "$(git -C "$root" status --porcelain --untracked-files=no -- numbanorm)" ] ||
    echo "asv_record: warning: numbanorm/ has uncommitted changes; results are recorded as $(git -C "$root" rev-parse --short HEAD)" >&2
sha=$(git -C "$root" rev-parse HEAD)
cd "$root/asv_benchmarks"
if [ -z "${NUMBANORM_RECORD_ASV:-}" ]; then
    bench=
    if [ "${1:-}" = "--bench" ]; then bench=$2; shift 2; fi
    # results/benchmarks.json: the current suite's names, parameters and versions
    ASV_PYTHONPATH=${PYTHONPATH:-$root} "$python" -m asv run --python=same --machine "$machine" \
        --bench just-discover >/dev/null
    exec "$python" "$root/bench/asv_results.py" run --commit "$sha" --machine "$machine" \
        ${bench:+--bench "$bench"} "$@"
fi
quick=--quick
if [ "${1:-}" = "--full" ]; then quick=; shift; fi
# asv drops PYTHONPATH in its benchmark processes; ASV_PYTHONPATH is what it passes on
if [ -n "${PYTHONPATH:-}" ]; then export ASV_PYTHONPATH=$PYTHONPATH; fi
# forkserver: one process imports the suite (numba, torch) and forks one per parameter set
"$python" -m asv run --python=same $quick --launch-method forkserver --show-stderr \
    --set-commit-hash "$sha" --machine "$machine" "$@"
# asv names an existing environment's Python by its path; record its version (one line per graph)
"$python" "$root/bench/asv_results.py" normalize --machine "$machine" "results/$machine/${sha:0:8}"-existing-py_*.json
