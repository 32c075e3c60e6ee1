#!/usr/bin/env bash
# Append the checked-out commit's asv results to the kept history
# (asv_benchmarks/results/<machine>/<commit>-existing-....json, committed to the repository).
#
#   bench/asv_record.sh                 # every benchmark, every parameter, --quick (one sample)
#   bench/asv_record.sh --full          # asv's default sampling (much longer)
#   bench/asv_record.sh --bench layer   # extra arguments go to `asv run`
#
# The installed (or PYTHONPATH) numbanorm of `python` is measured and recorded under the
# current commit's hash (PYTHON picks the interpreter, default `python`); run it on a clean tree (the hash must describe the code).
# NUMBANORM_ASV_MACHINE names the machine (default: numbanorm-ci-2core, this project's
# 2-core CI machine; a GPU machine should use its own name, e.g. numbanorm-h200).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
machine=${NUMBANORM_ASV_MACHINE:-numbanorm-ci-2core}
quick=--quick
if [ "${1:-}" = "--full" ]; then quick=; shift; fi
[ -z "$(git -C "$root" status --porcelain --untracked-files=no -- numbanorm)" ] ||
    echo "asv_record: warning: numbanorm/ has uncommitted changes; results are recorded as $(git -C "$root" rev-parse --short HEAD)" >&2
python=${PYTHON:-python}
cd "$root/asv_benchmarks"
"$python" -m asv machine --machine "$machine" --yes >/dev/null
# asv drops PYTHONPATH in its benchmark processes; ASV_PYTHONPATH is what it passes on
if [ -n "${PYTHONPATH:-}" ]; then export ASV_PYTHONPATH=$PYTHONPATH; fi
# forkserver: one process imports the suite (numba, torch) and forks one per parameter set
sha=$(git -C "$root" rev-parse HEAD)
"$python" -m asv run --python=same $quick --launch-method forkserver --show-stderr \
    --set-commit-hash "$sha" --machine "$machine" "$@"
# asv names an existing environment's Python by its path; record its version (one line per graph)
"$python" "$root/bench/asv_results.py" normalize "results/$machine/${sha:0:8}"-existing-py_*.json
