"""The command line: `numbanorm info`, `numbanorm bench` (tiny), `python -m numbanorm`."""
import json
import subprocess
import sys

from numbanorm import cli


def test_info_json(capsys):
    assert cli.main(["info", "--json"]) == 0
    env = json.loads(capsys.readouterr().out)
    assert env["threading_layer"] in ("tbb", "workqueue", "omp")
    assert env["numba"]


def test_bench_list_covers_every_bench_module(capsys):
    from numbanorm import _bench

    assert cli.main(["bench", "--list"]) == 0
    listed = capsys.readouterr().out
    for op in _bench.op_modules():
        assert op in listed


def test_bench_runs_and_plots(tmp_path, monkeypatch, capsys):
    from numbanorm._bench import layer_norm

    monkeypatch.setattr(layer_norm, "CASES", [("forward", (32, 768), "float32", layer_norm.forward)])
    png, js = tmp_path / "b.png", tmp_path / "b.json"
    assert cli.main(["bench", "layer_norm", "--repeat", "1", "--plot", str(png), "--json", str(js)]) == 0
    out = capsys.readouterr().out
    assert "layer_norm" in out and "copyto" in out and "1 cases timed in" in out
    assert png.stat().st_size > 1000
    rows = json.loads(js.read_text())
    assert rows[0]["numbanorm"] > 0 and rows[0]["x_copyto"] > 0


def test_bench_unknown_op_fails(capsys):
    assert cli.main(["bench", "no_such_op"]) == 2


def test_python_dash_m():
    r = subprocess.run([sys.executable, "-m", "numbanorm", "bench", "--list"], capture_output=True, text=True)
    assert r.returncode == 0 and "rms_norm" in r.stdout
