"""`numbanorm bench` machinery: the quick default set, the streaming-copy denominator,
rows reported as they finish, and `--compile` (first-call times in fresh processes)."""
import json
import time

import numpy as np
import pytest

import numbanorm
from numbanorm import _bench, cli
from numbanorm._bench import _compile, _copy


def test_quick_set_is_one_largest_case_per_op_and_direction():
    full = list(_bench.all_cases())
    quick = list(_bench.all_cases(full=False))
    assert len(quick) < len(full) / 2
    seen = set()
    for op, (label, shape, dtype, _) in quick:
        key = (op, _bench.direction(label))
        assert key not in seen
        seen.add(key)
        same = [c for o, c in full if o == op and c[0] == label]
        assert np.prod(shape) == max(np.prod(c[1]) for c in same)
    # every op and direction of the full table is represented
    assert seen == {(op, _bench.direction(c[0])) for op, c in full}


def test_quick_cases_picks_first_label_and_largest_shape():
    f = None
    cases = [("fwd", (2, 3), "float32", f), ("fwd", (40, 3), "float32", f), ("other", (99, 9), "float32", f),
             ("backward", (5,), "float32", f), ("backward", (5,), "float64", f)]
    assert [c[:3] for c in _bench.quick_cases(cases)] == [("fwd", (40, 3), "float32"), ("backward", (5,), "float32")]


@pytest.mark.parametrize("dtype", ["float32", "float64", "int16", "uint8"])
@pytest.mark.parametrize("n", [0, 1, 7, 1023, 1025, 5000, 300_001])
def test_stream_copy_is_exact(n, dtype):
    rng = np.random.default_rng(n)
    src = (rng.standard_normal(n) * 100).astype(dtype)
    if dtype == "float32" and n > 3:
        src[:3] = [np.inf, -np.inf, np.nan]
    dst = np.full_like(src, 7)
    _copy.stream_copy(dst, src)
    assert dst.tobytes() == src.tobytes()


def test_stream_copy_strided_falls_back():
    src = np.arange(20.0).reshape(4, 5)[:, ::2]
    dst = np.zeros_like(src)
    _copy.stream_copy(dst, src)
    np.testing.assert_array_equal(dst, src)


def test_rows_report_both_copies_and_the_faster_as_limit(monkeypatch):
    from numbanorm._bench import layer_norm

    monkeypatch.setattr(layer_norm, "CASES", [("forward", (32, 768), "float32", layer_norm.forward),
                                              ("backward", (32, 768), "float32", layer_norm.backward)])
    started, done = [], []
    rows = _bench.run(["layer_norm"], repeat=1, impls=["numbanorm"], on_start=lambda *a: started.append(a[1]),
                      on_row=lambda r: done.append((r["case"], len(started))))
    assert done == [("forward", 1), ("backward", 2)]  # each row reported before the next case starts
    for r in rows:
        assert r["limit"] == min(r["copyto"], r["stream"])
        assert r["x_limit"] == pytest.approx(r["numbanorm"] / r["limit"])
        assert r["x_limit"] >= r["x_copyto"] * (1 - 1e-12)


def test_bench_prints_rows_as_markdown(monkeypatch, capsys):
    from numbanorm._bench import rms_norm

    monkeypatch.setattr(rms_norm, "CASES", [("forward", (32, 768), "float32", rms_norm.forward)])
    assert cli.main(["bench", "rms_norm", "--repeat", "1", "--no-torch", "--markdown"]) == 0
    out = capsys.readouterr().out.splitlines()
    head = [ln for ln in out if ln.startswith("| op |")]
    assert head and "× copy limit" in head[0] and "stream copy" in head[0]
    assert any(ln.startswith("| rms_norm | forward | 32×768 |") for ln in out)


def test_list_default_is_quick_and_full_lists_all(capsys):
    assert cli.main(["bench", "--list"]) == 0
    quick = capsys.readouterr().out.splitlines()
    assert cli.main(["bench", "--list", "--full"]) == 0
    full = capsys.readouterr().out.splitlines()
    assert len(quick) == len(list(_bench.all_cases(full=False))) < len(full) == len(list(_bench.all_cases()))


def test_compile_bench_covers_every_public_function():
    layers = {"AddLayerNorm", "AddRMSNorm", "LayerNorm", "RMSNorm", "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "InstanceNorm1d",
              "InstanceNorm2d", "InstanceNorm3d", "GroupNorm", "LocalResponseNorm", "threading_layer"}
    assert set(_compile.CALLS) == set(numbanorm.__all__) - layers


def test_compile_bench_runs_fresh_processes(tmp_path, capsys):
    js = tmp_path / "c.json"
    assert cli.main(["bench", "--compile", "min_max_scale", "--json", str(js)]) == 0
    rows = json.loads(js.read_text())
    assert [(r["op"], r["size"]) for r in rows] == [("min_max_scale", "small"), ("min_max_scale", "large")]
    for r in rows:
        assert r["cold"] > 0 and r["warm"] > r["warm_import"] > 0
    out = capsys.readouterr().out
    assert "min_max_scale" in out and "total first calls" in out


def test_warm_up_runs_each_case_once_in_worker_processes():
    """``numbanorm bench`` compiles the cases' kernels in worker processes before timing
    (issue 11 item 3: the cold main job); a case the fresh process cannot find (patched
    in this one) is skipped, not an error."""
    cases = list(_bench.all_cases(["weight_standardize"], full=False))
    assert len(cases) == 2
    warmed = []
    assert _bench.warm_up(cases, 2, on_done=lambda op, label: warmed.append((op, label))) == 2
    assert sorted(warmed) == sorted((op, c[0]) for op, c in cases)
    op, (label, shape, dtype, setup) = cases[0]
    assert _bench.warm_up(cases, 1) == 0 and _bench.warm_up(cases[:1], 4) == 0  # nothing to share
    assert _bench._warm_case(op, "no such case", shape, str(np.dtype(dtype)), False) is None
    assert _bench._warm_case(op, label, shape, str(np.dtype(dtype)), False) > 0


def test_time_interleaved_times_slow_baselines_twice_only():
    calls = {"kernel": 0, "baseline": 0}

    def kernel():
        calls["kernel"] += 1

    def baseline():
        calls["baseline"] += 1
        time.sleep(0.02)

    t = _bench.time_interleaved({"kernel": kernel, "baseline": baseline}, repeat=5, slow=0.01, keep=("kernel",))
    assert calls == {"kernel": 6, "baseline": 3}  # one warm-up each, then 5 / 2 timed runs
    assert t["baseline"] >= 0.02  # the sleep bounds it from below; no upper timing bound (noisy machine)
    calls.update(kernel=0, baseline=0)
    _bench.time_interleaved({"kernel": kernel, "baseline": baseline}, repeat=5)
    assert calls == {"kernel": 6, "baseline": 6}


def test_every_callable_is_timed_in_its_own_group():
    # torch's and onnxruntime's threads keep spinning after a call, the copies slowed the call
    # after them, and after a single-threaded NumPy call numbanorm's helpers were idle, so
    # run() times each callable alone, the spinning peers last
    fns = {k: (lambda: None) for k in ("copyto", "stream", "numbanorm", "numpy", "torch", "sklearn",
                                          "onnxruntime", "numbanorm_new")}
    groups = _bench.timing_groups(fns)
    assert [list(g) for g in groups] == [
        ["numbanorm"], ["numpy"], ["sklearn"], ["numbanorm_new"], ["copyto"], ["stream"], ["torch"], ["onnxruntime"]]
    assert [list(g) for g in _bench.timing_groups({"numbanorm": fns["numbanorm"]})] == [["numbanorm"]]
