"""The published asv dashboard: built from the kept results, every benchmark graphed, and
the page rendered in a real headless browser (Debian's ``chromium``).

``asv publish`` builds the HTML from ``asv_benchmarks/results/`` (or the test uses
``$NUMBANORM_ASV_HTML`` when that names an already published directory); the test then
checks that every benchmark of every normalization in ``index.json`` has a graph file with
data points, serves the directory over HTTP and loads one benchmark's page in headless
Chromium, checking the rendered DOM holds the plot and writing a screenshot to
``$NUMBANORM_ARTIFACTS`` (default ``.ci/artifacts/``).

Skips without asv or Chromium, unless ``NUMBANORM_REQUIRE_CHROMIUM=1`` (CI installs both).
"""
import functools
import glob
import http.server
import itertools
import json
import math
import os
import shutil
import subprocess
import sys
import threading

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ASV_DIR = os.path.join(ROOT, "asv_benchmarks")
RESULTS = os.path.join(ASV_DIR, "results")
#: this project's 2-core machine, one asv machine per CPU kind (bench/asv_machine.sh)
MACHINES = ("numbanorm-ci-2core", "numbanorm-ci-2core-amd")
#: the page the browser renders (and the README's screenshot shows): layer_norm forward,
#: float32, numbanorm against copyto, log scale
PAGE = ("bench_layer_norm.LayerNormForward.time_layer_norm_forward"
        "?p-impl=%27numbanorm%27&p-impl=%27copyto%27&p-dtype=%27float32%27&y-axis-scale=log")

REQUIRED = os.environ.get("NUMBANORM_REQUIRE_CHROMIUM") == "1"


def _need(what, ok):
    if not ok:
        if REQUIRED:
            pytest.fail(f"{what} is required (NUMBANORM_REQUIRE_CHROMIUM=1) but missing")
        pytest.skip(f"{what} not available")


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def html_dir(tmp_path_factory):
    given = os.environ.get("NUMBANORM_ASV_HTML")
    if given:
        return os.path.abspath(given)
    try:
        import asv  # noqa: F401
    except ImportError:
        _need("asv", False)
    out = str(tmp_path_factory.mktemp("asv_html"))
    proc = subprocess.run([sys.executable, "-m", "asv", "publish", "--html-dir", out],
                          cwd=ASV_DIR, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "asv_offline.py"), out],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def index(html_dir):
    with open(os.path.join(html_dir, "index.json"), encoding="utf-8") as f:
        return json.load(f)


def _points(graph, columns=None):
    """Number of commits in an asv graph file with a finite value (in ``columns`` of the
    flattened parameter product, when given)."""
    count = 0
    for _revision, value in graph:
        values = value if isinstance(value, list) else [value]
        if columns is not None:
            values = [values[i] for i in columns if i < len(values)]
        count += any(isinstance(v, (int, float)) and math.isfinite(v) for v in values)
    return count


def _numbanorm_columns(benchmark):
    """Indices of the ``impl='numbanorm'`` combinations in asv's flattened parameter list."""
    names, params = benchmark.get("param_names", []), benchmark.get("params", [])
    if "impl" not in names:
        return None
    combos = itertools.product(*params)
    return [i for i, c in enumerate(combos) if c[names.index("impl")] == "'numbanorm'"]


def _kept_files():
    return sorted(p for p in glob.glob(os.path.join(RESULTS, "*", "*.json"))
                  if os.path.basename(p) not in ("machine.json", "benchmarks.json"))


def test_every_kept_result_file_loads_and_is_published(index):
    """asv publish only warns about a result file it cannot read: load each one with asv's
    own reader (raises on a broken file) and find its commit on the dashboard."""
    from asv.results import Results

    files = _kept_files()
    assert files, "no kept asv results"
    published = set(index["revision_to_hash"].values())
    for path in files:
        result = Results.load(path, machine_name=os.path.basename(os.path.dirname(path)))
        assert result.commit_hash in published, f"{path}: commit not on the dashboard"


def test_every_kept_benchmark_is_published(index):
    """Every benchmark in the kept results is on the dashboard (asv drops none as broken)."""
    with open(os.path.join(RESULTS, "benchmarks.json"), encoding="utf-8") as f:
        kept = {k for k in json.load(f) if k != "version"}
    assert kept and kept <= set(index["benchmarks"])
    for machine in MACHINES:
        if os.path.isdir(os.path.join(RESULTS, machine)):
            assert machine in index["params"]["machine"]


def test_kept_machines_are_described():
    """Every kept machine folder has a machine.json with the full description asv graphs
    split by, and every result file in it carries exactly that description (a result with
    another os/cpu/ram string would draw a separate line)."""
    folders = [d for d in glob.glob(os.path.join(RESULTS, "*", ""))  # with kept results (a smoke run's is empty)
               if len(glob.glob(os.path.join(d, "*.json"))) > 1 and os.path.isfile(os.path.join(d, "machine.json"))]
    assert {os.path.basename(os.path.dirname(d)) for d in folders} >= {MACHINES[0]}
    for folder in folders:
        with open(os.path.join(folder, "machine.json"), encoding="utf-8") as f:
            described = {k: v for k, v in json.load(f).items() if k != "version"}
        assert all(described.get(k) for k in ("arch", "cpu", "machine", "num_cpu", "os", "ram")), folder
        for path in glob.glob(os.path.join(folder, "*.json")):
            if os.path.basename(path) == "machine.json":
                continue
            with open(path, encoding="utf-8") as f:
                params = json.load(f)["params"]
            assert {k: params.get(k) for k in described} == described, path


def test_every_benchmark_has_a_graph_with_points(html_dir, index):
    """Each benchmark's graph on main, for one of this project's machines at least, has
    numbanorm's own points at >= 2 commits (a history, not a single dot)."""
    empty, short = [], []
    for name, benchmark in sorted(index["benchmarks"].items()):
        files = [p for p in glob.glob(os.path.join(html_dir, "graphs", "**", f"{name}.json"), recursive=True)
                 if any(f"machine-{m}{os.sep}" in p or p.endswith(f"machine-{m}") for m in MACHINES)
                 and "branch-main" in p]
        best = 0
        for path in files:
            with open(path, encoding="utf-8") as f:
                best = max(best, _points(json.load(f), _numbanorm_columns(benchmark)))
        if best == 0:
            empty.append(name)
        elif best < 2:
            short.append(name)
    assert not empty, f"benchmarks without a graph or numbanorm data points: {empty}"
    assert not short, f"benchmarks with numbanorm points at one commit only: {short}"


def _first_parent_main():
    try:
        out = subprocess.run(["git", "rev-list", "--first-parent", "main"], cwd=ROOT,
                             capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("no git checkout with a main branch")
    return set(out.split())


def test_kept_results_are_on_mains_graph():
    """asv graphs main's first-parent history: every kept result's commit must be on it
    (a result for a feature-branch commit would never show), and the backfill list's
    commits (>= 12) are all recorded, on one machine at least."""
    main = _first_parent_main()
    kept = {}
    for path in glob.glob(os.path.join(RESULTS, "*", "*.json")):
        if os.path.basename(path) != "machine.json":
            with open(path, encoding="utf-8") as f:
                kept[json.load(f)["commit_hash"]] = os.path.basename(path)
    off = sorted(name for commit, name in kept.items() if commit not in main)
    assert not off, f"results for commits not on main's first-parent history: {off}"
    with open(os.path.join(ASV_DIR, "backfill_commits.txt"), encoding="utf-8") as f:
        listed = [line.split()[0] for line in f if line.strip() and not line.lstrip().startswith("#")]
    assert len(listed) >= 12
    missing = [c for c in listed if not any(k.startswith(c) for k in kept)]
    assert not missing, f"backfill commits without results: {missing}"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server(html_dir):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=html_dir))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def _browse(url, *extra, budget_ms=30000, tmp_path=None):
    exe = chromium()
    _need("chromium", exe is not None)
    args = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--hide-scrollbars", f"--virtual-time-budget={budget_ms}", "--window-size=1400,900",
            f"--user-data-dir={tmp_path}", *extra, url]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_browser_renders_the_graph(server, tmp_path):
    """Headless Chromium renders the benchmark page: the plot canvas, the impl legend, no
    'no data' notice; its screenshot goes to the artifacts directory."""
    url = f"{server}#{PAGE}"
    dom = _browse(url, "--dump-dom", tmp_path=tmp_path / "profile-dom")
    assert "continental origin of swallow" not in dom, "the page's JavaScript did not load"
    assert "flot-base" in dom, "no plot canvas in the rendered page"
    for impl in ("numbanorm", "copyto"):
        assert f"impl-{impl};" in dom, f"no {impl} series in the plot's legend"

    artifacts = os.environ.get("NUMBANORM_ARTIFACTS") or os.path.join(ROOT, ".ci", "artifacts")
    os.makedirs(artifacts, exist_ok=True)
    shot = os.path.join(artifacts, "asv-dashboard.png")
    if os.path.exists(shot):
        os.remove(shot)
    _browse(url, f"--screenshot={shot}", tmp_path=tmp_path / "profile-shot")
    assert os.path.getsize(shot) > 20_000, "screenshot missing or blank"
