"""``numbanorm bench --history``: the last two kept asv results compared, regressions named."""
import json
import math
import os

from numbanorm._bench import _history

COLUMNS = ["result", "params", "version", "started_at", "duration"]
PARAMS = [["(32, 768)", "(4096, 1024)"], ["'numbanorm'", "'copyto'"]]


def _write(machine_dir, commit, date, values):
    data = {"commit_hash": commit, "date": date, "env_name": "existing-py3.11", "python": "3.11",
            "params": {"machine": "m"}, "requirements": {}, "env_vars": {}, "version": 2,
            "result_columns": COLUMNS,
            "results": {"bench_x.X.time_x": [values, PARAMS, "v", 0, 1.0],
                        "bench_y.Y.time_y": [1e-3 if commit != "c2" else 1.5e-3, [], "v", 0, 1.0]}}
    with open(os.path.join(machine_dir, f"{commit}-existing-py3.11.json"), "w") as f:
        json.dump(data, f)


def test_names_only_the_slower_ones(tmp_path, capsys):
    machine = tmp_path / "m"
    machine.mkdir()
    (machine / "machine.json").write_text('{"machine": "m", "version": 1}')
    _write(machine, "c0", 1, [5.0, 5.0, 5.0, 5.0])            # oldest: not compared
    _write(machine, "c2", 3, [1.3e-5, 1.1e-3, math.nan, None])  # newest
    _write(machine, "c1", 2, [1.0e-5, 1.0e-3, 2e-5, 2e-3])
    named = _history.report(str(tmp_path), factor=1.2)
    out = capsys.readouterr().out
    assert named == 2, out
    assert "c1 -> c2" in out
    assert "SLOWER  1.30x" in out and "bench_x.X.time_x((32, 768), 'numbanorm')" in out
    assert "SLOWER  1.50x" in out and "bench_y.Y.time_y" in out
    assert "(4096, 1024), 'numbanorm'" not in out  # 10 %: within the factor
    assert "2 benchmark parameter sets in both" not in out and "3 benchmark parameter sets in both" in out


def test_strict_exit_and_one_result(tmp_path, capsys):
    machine = tmp_path / "m"
    machine.mkdir()
    _write(machine, "c1", 2, [1.0e-5, 1.0e-3, 2e-5, 2e-3])
    assert _history.main(["--results", str(tmp_path), "--strict"]) == 0
    assert "nothing to compare" in capsys.readouterr().out
    _write(machine, "c2", 3, [1.3e-5, 1.1e-3, 2e-5, 2e-3])
    assert _history.main(["--results", str(tmp_path), "--strict"]) == 1
    assert _history.main(["--results", str(tmp_path)]) == 0
