"""``numbanorm bench --compile``: first-call (compile) time of every public function.

Each (function, size) runs in a fresh Python process, so nothing compiled in memory is
shared. Pass 1 (``cold``): an empty temporary ``NUMBA_CACHE_DIR``, so the first call
compiles every kernel it reaches. Pass 2 (``warm``): a new process on the cache pass 1
filled, timing ``import numbanorm`` plus the first call (loading the cached kernels).

Inputs are float32 in each op's common layout: ``small`` is ``(4, 8, 5, 5)`` (800 values,
the serial kernels), ``large`` is ``(4, 8, 32, 32)`` (32,768 values, the parallel
kernels at the default ``NUMBANORM_SERIAL_THRESHOLD``). The scaling functions get the
same values as ``(samples, 8 features)``.
"""
import json
import os
import subprocess
import sys
import tempfile
import time

SIZES = {"small": (4, 8, 5, 5), "large": (4, 8, 32, 32)}

#: public function -> the statement of its first call (``x``, ``g``: float32 arrays of the
#: size's shape; ``w``/``b``: 8 channel or last-dim parameters; ``x2``: (samples, 8))
CALLS = {
    "layer_norm": "nn.layer_norm(x, x.shape[-1], wl, bl)",
    "layer_norm_backward": "nn.layer_norm_backward(g, x, x.shape[-1], wl)",
    "rms_norm": "nn.rms_norm(x, x.shape[-1], wl)",
    "rms_norm_backward": "nn.rms_norm_backward(g, x, x.shape[-1], wl)",
    "add_rms_norm": "nn.add_rms_norm(x, g, x.shape[-1], wl)",
    "add_rms_norm_backward": "nn.add_rms_norm_backward(g, g, x, x.shape[-1], wl)",
    "add_layer_norm": "nn.add_layer_norm(x, g, x.shape[-1], wl, bl)",
    "add_layer_norm_backward": "nn.add_layer_norm_backward(g, g, x, x.shape[-1], wl)",
    "batch_norm": "nn.batch_norm(x, np.zeros(8, x.dtype), np.ones(8, x.dtype), w, b, training=True)",
    "batch_norm_backward": "nn.batch_norm_backward(g, x, w)",
    "instance_norm": "nn.instance_norm(x, weight=w, bias=b)",
    "instance_norm_backward": "nn.instance_norm_backward(g, x, w)",
    "group_norm": "nn.group_norm(x, 4, w, b)",
    "group_norm_backward": "nn.group_norm_backward(g, x, 4, w)",
    "local_response_norm": "nn.local_response_norm(x, 5)",
    "local_response_norm_backward": "nn.local_response_norm_backward(g, x, 5)",
    "normalize": "nn.normalize(x)",
    "normalize_backward": "nn.normalize_backward(g, x)",
    "weight_standardize": "nn.weight_standardize(x)",
    "weight_standardize_backward": "nn.weight_standardize_backward(g, x)",
    "min_max_scale": "nn.min_max_scale(x2)",
    "standardize": "nn.standardize(x2)",
    "StandardScaler": "nn.StandardScaler().fit_transform(x2)",
    "MinMaxScaler": "nn.MinMaxScaler().fit_transform(x2)",
}

_CHILD = """
import time, json, sys, resource
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
t0 = time.perf_counter()
import numpy as np
import numbanorm as nn
t1 = time.perf_counter()
shape = {shape!r}
rng = np.random.default_rng(0)
x = rng.standard_normal(shape).astype(np.float32)
g = rng.standard_normal(shape).astype(np.float32)
w = np.ones(8, np.float32); b = np.zeros(8, np.float32)
wl = np.ones(shape[-1], np.float32); bl = np.zeros(shape[-1], np.float32)
x2 = x.reshape(-1, 8)
t2 = time.perf_counter()
c2 = cpu()
{call}
t3 = time.perf_counter()
print(json.dumps({{"import": t1 - t0, "call": t3 - t2, "call_cpu": cpu() - c2}}))
"""


def call_env(size):
    """The names a :data:`CALLS` entry uses, for an in-process run (``bench/compile_profile.py``,
    ``bench/compile_passes.py``): the same arrays :data:`_CHILD` makes."""
    import numpy as np

    import numbanorm as nn

    shape = SIZES[size]
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    return dict(np=np, nn=nn, x=x, g=rng.standard_normal(shape).astype(np.float32),
                w=np.ones(8, np.float32), b=np.zeros(8, np.float32),
                wl=np.ones(shape[-1], np.float32), bl=np.zeros(shape[-1], np.float32),
                x2=x.reshape(-1, 8))


def child_code(name, size):
    """The Python source one measurement process runs."""
    return _CHILD.format(shape=SIZES[size], call=CALLS[name])


def _measure(name, size, cache_dir):
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    res = subprocess.run([sys.executable, "-c", child_code(name, size)], env=env, capture_output=True,
                         text=True)
    if res.returncode != 0:
        raise RuntimeError(f"numbanorm bench --compile: {name} ({size}) failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def run(names=None, sizes=("small", "large"), on_row=None):
    """Rows ``{"op", "size", "cold", "warm", "warm_import"}`` (seconds): ``cold`` is the first
    call on an empty cache, ``warm`` is ``import numbanorm`` + the first call on the filled
    cache. ``on_row(row)`` is called as each row finishes."""
    names = [n for n in CALLS if not names or any(n.startswith(o) for o in names)]
    rows = []
    for name in names:
        for size in sizes:
            with tempfile.TemporaryDirectory(prefix="numbanorm-compile-") as d:
                t0 = time.perf_counter()
                cold = _measure(name, size, d)
                warm = _measure(name, size, d)
            row = {"op": name, "size": size, "shape": SIZES[size], "cold": cold["call"], "cold_cpu": cold["call_cpu"],
                   "warm": warm["import"] + warm["call"], "warm_import": warm["import"],
                   "wall": time.perf_counter() - t0}
            rows.append(row)
            if on_row is not None:
                on_row(row)
    return rows


def row_line(row, markdown=False):
    """One table row as text."""
    cells = [row["op"], row["size"], "×".join(map(str, row["shape"])), f"{row['cold']:.2f} s",
             f"{row['warm'] * 1e3:.0f} ms"]
    if markdown:
        return "| " + " | ".join(cells) + " |"
    return f"{cells[0]:30s} {cells[1]:6s} {cells[2]:>10s} {cells[3]:>9s} {cells[4]:>9s}"


def header(markdown=False):
    cells = ["function", "size", "shape", "first call, empty cache", "import + first call, cached"]
    if markdown:
        return "| " + " | ".join(cells) + " |\n|---|---|---|---|---|"
    return f"{'function':30s} {'size':6s} {'shape':>10s} {'cold':>9s} {'cached':>9s}"


def summary(rows):
    """Totals line: sum of cold first calls, the slowest, and the slowest cached start."""
    if not rows:
        return ""
    tot = sum(r["cold"] for r in rows)
    worst = max(rows, key=lambda r: r["cold"])
    wwarm = max(rows, key=lambda r: r["warm"])
    return (f"total first calls {tot:.1f} s over {len(rows)} (function, size) pairs; slowest "
            f"{worst['op']} {worst['size']} {worst['cold']:.2f} s; slowest cached import + call "
            f"{wwarm['op']} {wwarm['size']} {wwarm['warm'] * 1e3:.0f} ms")
