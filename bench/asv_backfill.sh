#!/usr/bin/env bash
# Backfill the kept asv history: the *current* benchmarks run on older commits' code.
#
#   bench/asv_backfill.sh [COMMIT_FILE] [extra `asv run` arguments]
#
# COMMIT_FILE (default asv_benchmarks/backfill_commits.txt: one hash per line, `#` comments,
# the same file `asv run HASHFILE:...` reads once the comments are stripped). For each commit:
#   1. `git archive` its numbanorm/ into a temporary tree (no worktree, nothing built),
#   2. overlay the current benchmark harness: numbanorm/_bench/ (the setups the asv
#      benchmarks import) and, where the commit has none, numbanorm/_cpu/_stream.py
#      (the streaming copy of the stream_copy baseline); kernels, ops, dispatch and
#      validation stay the commit's own,
#   3. time the current asv benchmarks on it in ONE process (bench/asv_results.py run:
#      asv's own runner code, asv_runner, and asv's Results file format, commit date and
#      hash of that commit), with the tree first on sys.path and NUMBA_CACHE_DIR inside it
#      (every commit compiles cold; nothing stale is reused). `asv run --environment
#      existing:PYTHON --set-commit-hash` does the same with a process per parameter set,
#      ~13 s each here, ~85 min per commit (NUMBANORM_BACKFILL_ASV=1 uses it anyway),
#   4. delete the tree.
# A benchmark whose function or arguments the commit does not have fails there: no point.
# Set PYTHON to the interpreter (default `python`; it needs asv, numba, numpy, torch).
# By default only the numbanorm and copyto parameters (float32; the scalers' float64) run,
# to keep a commit to minutes on 2 cores; NUMBANORM_BACKFILL_BENCH='.' runs every parameter.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
file=${1:-$root/asv_benchmarks/backfill_commits.txt}
[ $# -gt 0 ] && shift
python=$(command -v "${PYTHON:-python}")
. "$root/bench/asv_machine.sh"   # $machine: one asv machine name per CPU kind
bench=${NUMBANORM_BACKFILL_BENCH:-"(\)|'float32'|Scaler.*'float64'), '(numbanorm|copyto)'\)$"}
log=${NUMBANORM_BACKFILL_LOG:-/dev/stdout}

cd "$root/asv_benchmarks"
# results/benchmarks.json: the current suite's names, parameters and versions
ASV_PYTHONPATH=$root "$python" -m asv run --python=same --machine "$machine" --bench just-discover >/dev/null
# NUMBANORM_BACKFILL_REVERSE=1 walks the list from its end: a second loop started that way
# beside the first splits the list between them (a commit being run by one is skipped)
order=cat; [ -n "${NUMBANORM_BACKFILL_REVERSE:-}" ] && order=tac
grep -v '^\s*#' "$file" | awk 'NF {print $1}' | $order | while read -r commit; do
    sha=$(git -C "$root" rev-parse --verify "$commit^{commit}")
    if ls "results/$machine/${sha:0:8}"-existing-py*.json >/dev/null 2>&1 && [ -z "${NUMBANORM_BACKFILL_AGAIN:-}" ]; then
        echo "== ${sha:0:8}: already recorded (NUMBANORM_BACKFILL_AGAIN=1 reruns)" >>"$log"; continue
    fi
    if ls -d "${TMPDIR:-/tmp}/numbanorm-asv-${sha:0:8}"-* >/dev/null 2>&1; then
        echo "== ${sha:0:8}: being run by another backfill loop" >>"$log"; continue
    fi
    tree=$(mktemp -d "${TMPDIR:-/tmp}/numbanorm-asv-${sha:0:8}-XXXX")
    git -C "$root" archive "$sha" numbanorm | tar -x -C "$tree"
    rm -rf "$tree/numbanorm/_bench"
    cp -r "$root/numbanorm/_bench" "$tree/numbanorm/_bench"
    [ -f "$tree/numbanorm/_cpu/_stream.py" ] || cp "$root/numbanorm/_cpu/_stream.py" "$tree/numbanorm/_cpu/"
    find "$tree" -name __pycache__ -prune -exec rm -rf {} +
    t0=$SECONDS
    echo "== ${sha:0:8} $(git -C "$root" log -1 --format='%ad %s' --date=format:'%m-%d %H:%M' "$sha" | cut -c1-90)" >>"$log"
    if [ -n "${NUMBANORM_BACKFILL_ASV:-}" ]; then
        ASV_PYTHONPATH=$tree NUMBA_CACHE_DIR=$tree/.numba-cache \
            "$python" -m asv run --environment "existing:$python" --quick --launch-method forkserver \
            --machine "$machine" --set-commit-hash "$sha" --bench "$bench" "$@" >>"$log" 2>&1 ||
            echo "asv run failed for $sha" >>"$log"
        "$python" "$root/bench/asv_results.py" normalize --machine "$machine" "results/$machine/${sha:0:8}"-existing-py_*.json >>"$log"
    else
        PYTHONPATH=$tree NUMBA_CACHE_DIR=$tree/.numba-cache \
            "$python" "$root/bench/asv_results.py" run --commit "$sha" --machine "$machine" \
            --bench "$bench" "$@" >>"$log" 2>&1 || echo "backfill run failed for $sha" >>"$log"
    fi
    echo "== ${sha:0:8} took $((SECONDS - t0)) s" >>"$log"
    rm -rf "$tree"
done
