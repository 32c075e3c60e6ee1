"""``numbanorm scale``: .npy (memory-mapped, chunked two passes), .npz, .csv; every method;
saved and loaded statistics; one-line errors with a non-zero exit and no (half-)written
output; progress bar; bounded memory on a file much larger than a chunk."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import numbanorm as nn
from numbanorm import _scale_cli, cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _scale(*args):
    """Run in-process through the real parser (``numbanorm scale ...``)."""
    return cli.main(["scale", *map(str, args)])


def _subprocess(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "numbanorm", "scale", *map(str, args)], capture_output=True,
                          text=True, env=_env(), cwd=cwd, timeout=300)


@pytest.fixture
def data(rng):
    x = rng.normal(size=(500, 6)) * [1, 2, 3, 4, 5, 6] + [0, 10, -3, 1e3, 2, 7]
    x[rng.random(x.shape) < 0.02] = np.nan
    return x


def _error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("numbanorm scale: error: ")
    return err[0]


def _no_temp_files(d):
    assert not [f for f in os.listdir(d) if f.endswith(".tmp")]


# --------------------------------------------------------------------------- .npy


@pytest.mark.parametrize("chunk", [7, 64, 100000])
def test_npy_zscore_chunked_matches_standardize(tmp_path, data, chunk):
    np.save(tmp_path / "a.npy", data)
    assert _scale(tmp_path / "a.npy", tmp_path / "b.npy", "--chunk-rows", chunk, "--save-stats",
                  tmp_path / "s.json") == 0
    y = np.load(tmp_path / "b.npy")
    np.testing.assert_allclose(y, nn.standardize(data), rtol=1e-12, atol=1e-13)
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["method"] == "zscore" and s["axis"] == [0] and s["stat_shape"] == [1, 6]
    np.testing.assert_allclose(s["mean"], np.nanmean(data, 0), rtol=1e-13)
    np.testing.assert_allclose(s["std"], np.nanstd(data, 0), rtol=1e-12)
    assert s["n"] == (~np.isnan(data)).sum(0).tolist()


def test_load_stats_applies_training_statistics(tmp_path, data, rng):
    sk = pytest.importorskip("sklearn.preprocessing")
    train, test = data[:400], data[400:] * 1.5 + 1
    np.save(tmp_path / "train.npy", train)
    np.save(tmp_path / "test.npy", test)
    assert _scale(tmp_path / "train.npy", tmp_path / "t.npy", "--save-stats", tmp_path / "s.json") == 0
    assert _scale(tmp_path / "test.npy", tmp_path / "u.npy", "--load-stats", tmp_path / "s.json",
                  "--chunk-rows", 9) == 0
    expected = sk.StandardScaler().fit(train).transform(test)
    np.testing.assert_allclose(np.load(tmp_path / "u.npy"), expected, rtol=1e-12, atol=1e-13)
    # minmax the same way, the saved range is used
    assert _scale(tmp_path / "train.npy", tmp_path / "t.npy", "--method", "minmax", "--range", -1, 1,
                  "--save-stats", tmp_path / "m.json") == 0
    assert _scale(tmp_path / "test.npy", tmp_path / "v.npy", "--load-stats", tmp_path / "m.json") == 0
    expected = sk.MinMaxScaler(feature_range=(-1, 1)).fit(train).transform(test)
    np.testing.assert_array_equal(np.load(tmp_path / "v.npy"), expected)


@pytest.mark.parametrize("clip", [False, True])
def test_npy_minmax(tmp_path, data, clip):
    np.save(tmp_path / "a.npy", data)
    extra = ["--clip"] if clip else []
    assert _scale(tmp_path / "a.npy", tmp_path / "b.npy", "--method", "minmax", "--range", 2, 5,
                  "--chunk-rows", 33, *extra) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "b.npy"), nn.min_max_scale(data, (2, 5), clip=clip))


def test_npy_l2_layer_and_axes(tmp_path, rng):
    x = rng.normal(size=(90, 4, 5))
    np.save(tmp_path / "a.npy", x)
    assert _scale(tmp_path / "a.npy", tmp_path / "l2.npy", "--method", "l2", "--chunk-rows", 8) == 0
    np.testing.assert_allclose(np.load(tmp_path / "l2.npy"), nn.normalize(x, axis=-1), rtol=1e-14)
    assert _scale(tmp_path / "a.npy", tmp_path / "l2b.npy", "--method", "l2", "--axis", 1, "--chunk-rows", 8) == 0
    np.testing.assert_allclose(np.load(tmp_path / "l2b.npy"), nn.normalize(x, axis=1), rtol=1e-14)
    assert _scale(tmp_path / "a.npy", tmp_path / "ln.npy", "--method", "layer", "--eps", 0, "--chunk-rows", 8) == 0
    np.testing.assert_allclose(np.load(tmp_path / "ln.npy"), nn.layer_norm(x, 5, eps=0.0), rtol=1e-13)
    for axis, arg in [((0, 2), "0,2"), ((1,), "1"), ((1, 2), "1,2"), ((0, 1, 2), "0,1,2")]:
        out = tmp_path / f"z{arg}.npy"
        assert _scale(tmp_path / "a.npy", out, "--axis", arg, "--chunk-rows", 8, "--ddof", 1) == 0
        np.testing.assert_allclose(np.load(out), nn.standardize(x, axis=axis, ddof=1), rtol=1e-12, atol=1e-13)


def test_npy_fortran_and_dtypes(tmp_path, data, rng):
    np.save(tmp_path / "f.npy", np.asfortranarray(data))
    assert _scale(tmp_path / "f.npy", tmp_path / "g.npy", "--chunk-rows", 2, "--save-stats", tmp_path / "s.json") == 0
    y = np.load(tmp_path / "g.npy")
    assert y.flags.f_contiguous
    np.testing.assert_allclose(y, nn.standardize(data), rtol=1e-12, atol=1e-13)
    assert json.loads((tmp_path / "s.json").read_text())["stat_shape"] == [1, 6]
    x32 = (rng.normal(size=(300, 3)) + 1e4).astype(np.float32)
    np.save(tmp_path / "h.npy", x32)
    assert _scale(tmp_path / "h.npy", tmp_path / "i.npy", "--chunk-rows", 50) == 0
    y = np.load(tmp_path / "i.npy")
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, nn.standardize(x32), atol=1e-5)
    xi = rng.integers(0, 100, size=(40, 3)).astype(np.int16)
    np.save(tmp_path / "j.npy", xi)
    assert _scale(tmp_path / "j.npy", tmp_path / "k.npy", "--method", "minmax") == 0
    y = np.load(tmp_path / "k.npy")
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y, nn.min_max_scale(xi))
    np.save(tmp_path / "e.npy", np.empty((0, 3)))
    assert _scale(tmp_path / "e.npy", tmp_path / "e2.npy") == 0
    assert np.load(tmp_path / "e2.npy").shape == (0, 3)


def test_output_may_replace_input(tmp_path, data):
    np.save(tmp_path / "a.npy", data)
    assert _scale(tmp_path / "a.npy", tmp_path / "a.npy", "--chunk-rows", 50) == 0
    np.testing.assert_allclose(np.load(tmp_path / "a.npy"), nn.standardize(data), rtol=1e-12, atol=1e-13)
    _no_temp_files(tmp_path)


# --------------------------------------------------------------------------- .npz / .csv


def test_npz_each_array(tmp_path, rng):
    p, q = rng.normal(size=(50, 3)), rng.normal(size=(20, 2, 2)) * 4
    np.savez(tmp_path / "a.npz", p=p, q=q)
    assert _scale(tmp_path / "a.npz", tmp_path / "b.npz", "--save-stats", tmp_path / "s.json") == 0
    with np.load(tmp_path / "b.npz") as z:
        assert sorted(z.files) == ["p", "q"]
        np.testing.assert_allclose(z["p"], nn.standardize(p), rtol=1e-12)
        np.testing.assert_allclose(z["q"], nn.standardize(q), rtol=1e-12)
    s = json.loads((tmp_path / "s.json").read_text())
    assert sorted(s["arrays"]) == ["p", "q"]
    np.savez(tmp_path / "c.npz", p=p + 1, q=q - 1)
    assert _scale(tmp_path / "c.npz", tmp_path / "d.npz", "--load-stats", tmp_path / "s.json") == 0
    with np.load(tmp_path / "d.npz") as z:
        np.testing.assert_allclose(z["p"], nn.standardize(p) + 1 / np.std(p, 0), rtol=1e-12)
    np.savez(tmp_path / "e.npz", other=p)
    assert _scale(tmp_path / "e.npz", tmp_path / "f.npz", "--load-stats", tmp_path / "s.json") == 1
    assert not (tmp_path / "f.npz").exists()


def _write_csv(path, header, rows):
    with open(path, "w") as f:
        if header:
            f.write(",".join(header) + "\n")
        for r in rows:
            f.write(",".join("" if v != v else repr(float(v)) for v in r) + "\n")


def _read_csv(path):
    lines = open(path).read().splitlines()
    return lines[0], np.array([[float(c) if c else np.nan for c in ln.split(",")] for ln in lines[1:]])


def test_csv_header_kept_and_nan(tmp_path, data):
    _write_csv(tmp_path / "a.csv", ["alpha", "beta", "gamma", "d", "e", "f"], data[:60])
    assert _scale(tmp_path / "a.csv", tmp_path / "b.csv", "--method", "minmax", "--save-stats",
                  tmp_path / "s.json") == 0
    header, y = _read_csv(tmp_path / "b.csv")
    assert header == "alpha,beta,gamma,d,e,f"
    np.testing.assert_array_equal(y, nn.min_max_scale(data[:60]))  # repr round-trips exactly
    assert json.loads((tmp_path / "s.json").read_text())["columns"] == ["alpha", "beta", "gamma", "d", "e", "f"]
    _write_csv(tmp_path / "c.csv", None, data[:10, :2])  # no header
    assert _scale(tmp_path / "c.csv", tmp_path / "d.csv", "--method", "l2") == 0
    lines = open(tmp_path / "d.csv").read().splitlines()
    assert len(lines) == 10
    np.testing.assert_allclose(np.array([[float(c) for c in ln.split(",")] for ln in lines]),
                               nn.normalize(data[:10, :2], axis=1), rtol=1e-15)


# --------------------------------------------------------------------------- errors


def test_errors_are_one_line_and_leave_nothing(tmp_path, capsys, data):
    np.save(tmp_path / "a.npy", data)
    _write_csv(tmp_path / "ok.csv", ["a", "b"], data[:5, :2])
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n3,x\n")
    (tmp_path / "rag.csv").write_text("a,b\n1,2\n3\n")
    (tmp_path / "junk.npy").write_bytes(b"not a numpy file at all")
    (tmp_path / "junk.npz").write_bytes(b"PK not a zip")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(tmp_path / "str.npy", np.array(["a", "b"]))
    (tmp_path / "trunc.npy").write_bytes((tmp_path / "a.npy").read_bytes()[:500])
    assert _scale(tmp_path / "ok.csv", tmp_path / "t.csv", "--save-stats", tmp_path / "two.json") == 0
    (tmp_path / "notstats.json").write_text("[1, 2]")
    cases = [
        (["missing.npy", "o.npy"], "no such file"),
        (["junk.npy", "o.npy"], "not a valid .npy"),
        (["junk.npz", "o.npz"], "not a valid .npz"),
        (["trunc.npy", "o.npy"], "truncated"),
        (["obj.npy", "o.npy"], "objects"),
        (["str.npy", "o.npy"], "non-numeric"),
        (["bad.csv", "o.csv"], "non-numeric value 'x'"),
        (["rag.csv", "o.csv"], "wrong columns"),
        (["a.npy", "o.csv"], "format"),
        (["a.txt", "o.txt"], "unsupported"),
        (["a.npy", "o.npy", "--load-stats", "two.json"], "different number of columns"),
        (["a.npy", "o.npy", "--load-stats", "notstats.json"], "not a numbanorm"),
        (["a.npy", "o.npy", "--load-stats", "nothere.json"], "nothere.json"),
        (["a.npy", "o.npy", "--method", "minmax", "--load-stats", "two.json"], "are for zscore"),
        (["a.npy", "o.npy", "--method", "l2", "--save-stats", "x.json"], "no fitted statistics"),
        (["a.npy", "o.npy", "--method", "minmax", "--range", "1", "0"], "--range"),
        (["a.npy", "o.npy", "--axis", "5"], "--axis"),
        (["a.npy", "o.npy", "--method", "layer", "--axis", "0"], "last axis"),
        (["a.npy", "o.npy", "--chunk-rows", "0"], "--chunk-rows"),
        (["a.npy", "o.npy", "--ddof", "-1"], "--ddof"),
    ]
    for args, expected in cases:
        full = [str(tmp_path / a) if a.endswith((".npy", ".npz", ".csv", ".json", ".txt")) else a for a in args]
        assert cli.main(["scale", *full]) == 1, args
        line = _error_line(capsys)
        assert expected in line, (args, line)
        assert not (tmp_path / "o.npy").exists() and not (tmp_path / "o.csv").exists()
        assert not (tmp_path / "x.json").exists()
        _no_temp_files(tmp_path)


def test_failure_mid_run_keeps_existing_output(tmp_path, data, monkeypatch, capsys):
    np.save(tmp_path / "a.npy", data)
    np.save(tmp_path / "out.npy", np.arange(3.0))
    calls = {"n": 0}
    real = _scale_cli._passes._apply

    def failing(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise ValueError("disk on fire")
        return real(*a, **k)

    monkeypatch.setattr(_scale_cli._passes, "_apply", failing)
    assert _scale(tmp_path / "a.npy", tmp_path / "out.npy", "--chunk-rows", 10, "--save-stats",
                  tmp_path / "s.json") == 1
    assert "disk on fire" in _error_line(capsys)
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), np.arange(3.0))  # untouched
    assert not (tmp_path / "s.json").exists()
    _no_temp_files(tmp_path)


# --------------------------------------------------------------------------- through the real command


def test_python_m_numbanorm_scale_subprocess(tmp_path, data):
    np.save(tmp_path / "a.npy", data)
    r = _subprocess("a.npy", "b.npy", "--chunk-rows", 40, "--progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip()  # the progress bar
    np.testing.assert_allclose(np.load(tmp_path / "b.npy"), nn.standardize(data), rtol=1e-12, atol=1e-13)
    r = _subprocess("a.npy", "c.npy", "--chunk-rows", 40, "--no-progress", cwd=tmp_path)
    assert r.returncode == 0 and r.stderr == ""
    r = _subprocess("nothing.npy", "d.npy", cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("numbanorm scale: error:")
    r = _subprocess("--help")
    assert r.returncode == 0 and "--load-stats" in r.stdout


def test_memory_stays_bounded_on_a_large_file(tmp_path):
    """A 160 MB file in 1 MB chunks: peak RSS grows far less than the file (memory-mapped windows)."""
    path = tmp_path / "big.npy"
    rows, cols = 312_500, 64  # 160 MB of float64
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=(rows, cols))
    rng = np.random.default_rng(0)
    for r in range(0, rows, 50_000):
        mm[r:r + 50_000] = rng.normal(size=(min(50_000, rows - r), cols)) + 3
    mm.flush()
    del mm
    np.save(tmp_path / "small.npy", np.ones((10, cols)))
    code = textwrap.dedent(
        """
        import resource, sys
        from numbanorm import cli
        rc = cli.main(["scale", sys.argv[1], sys.argv[2], "--chunk-rows", "2048", "--no-progress"])
        print(rc, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        """
    )

    def peak(src, dst):
        r = subprocess.run([sys.executable, "-c", code, str(src), str(dst)], capture_output=True, text=True,
                           env=_env(), timeout=300)
        assert r.returncode == 0, r.stderr
        rc, kb = r.stdout.split()
        assert rc == "0"
        return int(kb) * 1024

    base = peak(tmp_path / "small.npy", tmp_path / "small_out.npy")
    big = peak(path, tmp_path / "big_out.npy")
    assert big - base < 60 * 2**20, (base, big)  # the file is 160 MB (measured: no growth)
    y = np.load(tmp_path / "big_out.npy", mmap_mode="r")
    assert abs(float(np.asarray(y[:, 0]).mean())) < 1e-10


# --------------------------------------------------------------------------- silent data loss (issue 16.6)


@pytest.mark.parametrize("fmt", [".npy", ".csv"])
@pytest.mark.parametrize("method", ["zscore", "minmax", "l2"])
def test_infinity_is_refused_unless_allowed(tmp_path, capsys, data, fmt, method):
    x = np.nan_to_num(data)
    x[123, 4] = -np.inf
    if fmt == ".npy":
        np.save(tmp_path / "a.npy", x)
    else:
        _write_csv(tmp_path / "a.csv", list("abcdef"), x)
    inp, out = tmp_path / ("a" + fmt), tmp_path / ("o" + fmt)
    assert _scale(inp, out, "--method", method, "--chunk-rows", 50) == 1
    line = _error_line(capsys)
    assert "infinity" in line and "-inf at index (123, 4)" in line and "--allow-inf" in line
    assert not out.exists()
    _no_temp_files(tmp_path)
    assert _scale(inp, out, "--method", method, "--allow-inf") == 0
    y = np.load(out) if fmt == ".npy" else np.genfromtxt(out, delimiter=",", skip_header=1)
    expected = {"zscore": nn.standardize, "minmax": nn.min_max_scale,
                "l2": lambda a: nn.normalize(a, 2.0, -1)}[method](x)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12, equal_nan=True)


def test_infinity_in_a_fortran_file_is_named_in_its_own_orientation(tmp_path, capsys, data):
    x = np.asfortranarray(np.nan_to_num(data))
    x[7, 2] = np.inf
    np.save(tmp_path / "f.npy", x)
    assert _scale(tmp_path / "f.npy", tmp_path / "o.npy") == 1
    assert "inf at index (7, 2)" in _error_line(capsys)


def test_axis_none_means_all_axes_as_in_python(tmp_path, data):
    np.save(tmp_path / "a.npy", data)
    for text in ("none", "None"):
        assert _scale(tmp_path / "a.npy", tmp_path / "o.npy", "--axis", text, "--chunk-rows", 64) == 0
        np.testing.assert_allclose(np.load(tmp_path / "o.npy"), nn.standardize(data, axis=None),
                                   rtol=1e-12, atol=1e-12, equal_nan=True)
    assert _scale(tmp_path / "a.npy", tmp_path / "o.npy", "--method", "minmax", "--axis", "none") == 0
    np.testing.assert_allclose(np.load(tmp_path / "o.npy"), nn.min_max_scale(data, axis=None), equal_nan=True)
    # the default stays one statistic per column
    assert _scale(tmp_path / "a.npy", tmp_path / "o.npy") == 0
    np.testing.assert_allclose(np.load(tmp_path / "o.npy"), nn.standardize(data, axis=0),
                               rtol=1e-12, atol=1e-12, equal_nan=True)


def test_axis_none_with_a_vector_method_is_an_error(tmp_path, capsys, data):
    np.save(tmp_path / "a.npy", data)
    assert _scale(tmp_path / "a.npy", tmp_path / "o.npy", "--method", "l2", "--axis", "none") == 1
    assert "one axis" in _error_line(capsys)


def test_failed_run_never_touches_an_existing_stats_file(tmp_path, capsys, data):
    np.save(tmp_path / "a.npy", data)
    (tmp_path / "s.json").write_text("old stats")
    (tmp_path / "out.npy").mkdir()  # the final rename onto OUT fails
    assert _scale(tmp_path / "a.npy", tmp_path / "out.npy", "--save-stats", tmp_path / "s.json") == 1
    _error_line(capsys)
    assert (tmp_path / "s.json").read_text() == "old stats"
    _no_temp_files(tmp_path)
    # the inf refusal after pass 1 started leaves it too
    x = data.copy()
    x[-1, 0] = np.inf
    np.save(tmp_path / "b.npy", x)
    assert _scale(tmp_path / "b.npy", tmp_path / "o.npy", "--save-stats", tmp_path / "s.json",
                  "--chunk-rows", 10) == 1
    _error_line(capsys)
    assert (tmp_path / "s.json").read_text() == "old stats"
    # success replaces it
    assert _scale(tmp_path / "a.npy", tmp_path / "o.npy", "--save-stats", tmp_path / "s.json") == 0
    assert json.loads((tmp_path / "s.json").read_text())["method"] == "zscore"
    _no_temp_files(tmp_path)


@pytest.mark.parametrize("fmt", [".npy", ".npz", ".csv"])
def test_output_in_a_missing_folder_names_the_users_path(tmp_path, capsys, data, fmt):
    np.save(tmp_path / "a.npy", data)
    np.savez(tmp_path / "a.npz", x=data)
    _write_csv(tmp_path / "a.csv", list("abcdef"), np.nan_to_num(data))
    out = tmp_path / "nowhere" / ("o" + fmt)
    assert _scale(tmp_path / ("a" + fmt), out) == 1
    line = _error_line(capsys)
    assert str(out) in line and "no such directory" in line and ".tmp" not in line
    assert _scale(tmp_path / "a.npy", tmp_path / "o.npy", "--save-stats", tmp_path / "nowhere" / "s.json") == 1
    line = _error_line(capsys)
    assert "s.json" in line and ".tmp" not in line
    assert not (tmp_path / "o.npy").exists()
