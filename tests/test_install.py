"""Installing numbanorm: the README's two commands in order, and the platform markers."""
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

#: The README commands are run as written except for these replacements (README text,
#: what runs). By default the test is cheap enough for CI: no extras (the two installs
#: still build numbanorm and resolve numpy, numba and tbb into one fresh .venv, first
#: non-editable, then editable, plus pytest for the test step), the full benchmark becomes
#: one small case (it still compiles and runs kernels) and the full test suite one test
#: run from the editable install. NUMBANORM_TEST_README_EXTRAS=1 keeps the extras
#: (PyTorch, matplotlib, the test extras: 18 minutes on the project's loaded 2-core machine).
MAIN_JOB = ("numbanorm bench --plot bench.png", "numbanorm bench weight_standardize --quick --repeat 1 --no-torch")
TEST_RUN = ("python -m pytest -q", "python -m pytest -q -p no:cacheprovider tests/test_readme.py -k marked")
EXTRAS = (('".[torch,plot]"', '"."'), ('".[test,torch]"', '"." pytest'))


def readme_commands():
    """The README's main and test commands as this test runs them (see :data:`MAIN_JOB`)."""
    main, test = readme_command("main-command"), readme_command("test-command")
    replaced = [(MAIN_JOB, main), (TEST_RUN, test)]
    if os.environ.get("NUMBANORM_TEST_README_EXTRAS") != "1":
        replaced += [(EXTRAS[0], main), (EXTRAS[1], test)]
    for (old, new), cmd in replaced:
        assert old in cmd, (old, cmd)
    main = main.replace(*MAIN_JOB)
    test = test.replace(*TEST_RUN)
    if os.environ.get("NUMBANORM_TEST_README_EXTRAS") != "1":
        main, test = main.replace(*EXTRAS[0]), test.replace(*EXTRAS[1])
    return main, test


def readme_command(marker):
    text = (ROOT / "README.md").read_text()
    block = re.search(rf"<!-- {marker} -->\n```\n(.+?)\n```\n<!-- /{marker} -->", text, flags=re.S)
    assert block, marker
    return block.group(1).strip()


def _source_copy(dest):
    """The files a clone would have (tracked and untracked-but-not-ignored)."""
    try:
        files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True,
                               capture_output=True, text=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("needs a git checkout")
    for f in files:
        if (ROOT / f).is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dest / f)


def _pip_cache_dir():
    try:
        out = subprocess.run([sys.executable, "-m", "pip", "cache", "dir"], capture_output=True, text=True, timeout=60)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    return os.path.join(os.path.expanduser("~"), ".cache", "pip")


def _run(cmd, cwd, env, timeout=1500):
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", cmd], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"$ {cmd}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout


def test_tbb_is_required_only_where_it_has_wheels():
    tomllib = pytest.importorskip("tomllib")
    markers = pytest.importorskip("packaging.markers")
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (tbb,) = [d for d in deps if d.startswith("tbb")]
    marker = markers.Marker(tbb.split(";", 1)[1])
    platforms = {("linux", "x86_64"): True, ("win32", "AMD64"): True, ("darwin", "x86_64"): True,
                 ("darwin", "arm64"): False, ("linux", "aarch64"): False, ("win32", "ARM64"): False}
    for (plat, machine), wanted in platforms.items():
        assert marker.evaluate({"sys_platform": plat, "platform_machine": machine}) is wanted, (plat, machine)


@pytest.mark.slow
def test_readme_commands_in_order_then_import_from_elsewhere(tmp_path):
    """The main command (non-editable install that runs kernels), then the test command
    (editable install into the same .venv), as a user would; then numbanorm must work from
    another directory: no kernel cache left in site-packages shadowing the editable
    install as an empty namespace package."""
    main, test = readme_commands()
    repo = tmp_path / "numbanorm"
    repo.mkdir()
    _source_copy(repo)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "NUMBA_CACHE_DIR")}
    env.update(PIP_CACHE_DIR=os.environ.get("PIP_CACHE_DIR") or _pip_cache_dir(),  # reuse downloads
               XDG_CACHE_HOME=str(tmp_path / "user-cache"), PIP_DISABLE_PIP_VERSION_CHECK="1", MPLBACKEND="Agg")
    venv_bin = os.path.dirname(sys.executable)  # drop this test's venv from PATH
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)

    _run(main, repo, env)
    site = next((repo / ".venv" / "lib").glob("python*/site-packages"))
    installed = site / "numbanorm"
    assert (installed / "__init__.py").is_file()  # the non-editable install ...
    assert not [p for p in installed.rglob("*") if p.suffix in (".nbi", ".nbc")]  # ... got no kernel cache
    assert list((tmp_path / "user-cache" / "numbanorm").rglob("*.nbi"))  # the user cache did

    _run(test, repo, env)
    assert not installed.exists(), sorted(map(str, installed.rglob("*")))

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    py = repo / ".venv" / "bin" / "python"
    out = _run(f"'{py}' -c 'import numpy as np, numbanorm; print(numbanorm.__file__); "
               f"print(numbanorm.layer_norm(np.ones((2, 4)), 4).sum())'", elsewhere, env)
    assert out.split()[0] == str(repo / "numbanorm" / "__init__.py") and float(out.split()[1]) == 0.0
    assert "threading_layer" in _run(f"'{repo / '.venv' / 'bin' / 'numbanorm'}' info", elsewhere, env)
