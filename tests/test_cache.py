"""The on-disk kernel cache: where it is (never in the package), when it is stale, that
concurrent processes filling it do not corrupt it, and ``numbanorm precompile``."""
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from numbanorm import _cache, cli

PACKAGE = pathlib.Path(_cache.PACKAGE_DIR)


def _package_copy(tmp_path):
    """A copy of the numbanorm sources (no caches) importable from ``tmp_path / 'pkg'``."""
    dest = tmp_path / "pkg" / "numbanorm"
    shutil.copytree(PACKAGE, dest, ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc", "*.lock"))
    return dest


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME", "PYTHONPATH")}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def _entries(root):
    return sorted(p.name for p in pathlib.Path(root).rglob("*") if p.suffix in (".nbi", ".nbc"))


def test_user_cache_dir_follows_xdg_and_numba_cache_dir_wins(monkeypatch, tmp_path):
    import numba

    if sys.platform.startswith("linux"):
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
        assert _cache.user_cache_dir() == str(tmp_path / "numbanorm")
    monkeypatch.setattr(numba.config, "CACHE_DIR", "")
    assert _cache.cache_root() == _cache.user_cache_dir()
    monkeypatch.setattr(numba.config, "CACHE_DIR", str(tmp_path / "nb"))
    assert _cache.cache_root() == str(tmp_path / "nb")


def test_two_checkouts_never_share_entries():
    a = _cache.cache_path("/one/checkout/numbanorm/_cpu/layer_norm.py")
    b = _cache.cache_path("/another/checkout/numbanorm/_cpu/layer_norm.py")
    assert a != b and os.path.basename(a).startswith("_cpu_") and os.path.basename(b).startswith("_cpu_")


def test_locator_serves_our_kernels_only():
    from numba.core import caching

    from numbanorm._cpu import weight_standardize as k  # imports _config, which installs the locator

    impl = getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl")
    assert impl._locator_classes[0] is _cache.Locator

    assert k._forward._cache.cache_path.startswith(_cache.cache_root())
    assert _cache.Locator.from_function(test_locator_serves_our_kernels_only, __file__) is None


def test_stamp_covers_relatively_imported_helpers(monkeypatch, tmp_path):
    """Numba stamps entries with the kernel's own file; an edit of a helper it inlines from
    another module must invalidate them too."""
    pkg = tmp_path / "numbanorm"
    (pkg / "_cpu").mkdir(parents=True)
    (pkg / "_config.py").write_text("X = 1\n")
    (pkg / "_cpu" / "_helper.py").write_text("from .._config import X\n")
    (pkg / "_cpu" / "_unused.py").write_text("Y = 1\n")
    (pkg / "_cpu" / "op.py").write_text("from .. import _config\nfrom ._helper import (X,\n    X)\n")
    monkeypatch.setattr(_cache, "PACKAGE_DIR", str(pkg))
    op = str(pkg / "_cpu" / "op.py")
    first = _cache.source_stamp(op)
    (pkg / "_cpu" / "_unused.py").write_text("Y = 22\n")
    assert _cache.source_stamp(op) == first
    (pkg / "_config.py").write_text("X = 22\n")  # imported twice over: directly and via _helper
    second = _cache.source_stamp(op)
    assert second != first
    (pkg / "_cpu" / "_helper.py").write_text("from .._config import X  # edited\n")
    assert _cache.source_stamp(op) not in (first, second)


def test_default_cache_is_the_user_cache_dir(tmp_path):
    pkg = _package_copy(tmp_path)
    env = _env(PYTHONPATH=pkg.parent, XDG_CACHE_HOME=tmp_path / "xdg")
    proc = subprocess.run([sys.executable, "-m", "numbanorm", "precompile", "--list", "--ops", "weight"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    if sys.platform.startswith("linux"):
        assert f"cache directory: {tmp_path / 'xdg' / 'numbanorm'}" in proc.stdout


_WRITER = r'''
import os, sys
import numbanorm._config  # installs numbanorm's locator and index locking
from numbanorm import _cache
from numba.core.caching import IndexDataCacheFile

path, me, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
_cache._OUR_PATHS.add(path)  # as the locator does for our kernels' directories
f = IndexDataCacheFile(path, "kernel-1.py311", "stamp")
for i in range(n):
    f.save(("sig", me, i), ("machine code of", me, i))
'''


def test_concurrent_processes_adding_signatures_keep_the_index_consistent(tmp_path):
    """Numba's index update is a read-modify-write: without the lock two processes adding
    different signatures at once pick the same data file and the index can map one
    signature to the other's code. Four processes add 40 signatures each to one index."""
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path), str(me), "40"]) for me in range(4)]
    assert [p.wait(timeout=300) for p in procs] == [0] * 4
    from numba.core.caching import IndexDataCacheFile

    f = IndexDataCacheFile(str(tmp_path), "kernel-1.py311", "stamp")
    for me in range(4):
        for i in range(40):
            assert f.load(("sig", me, i)) == ("machine code of", me, i), (me, i)


def test_precompile_list_and_unknown_op(capsys):
    assert cli.main(["precompile", "--list", "--ops", "layer", "--dtypes", "float32"]) == 0
    out = capsys.readouterr().out
    assert "layer_norm" in out and "rms_norm" not in out and "large" in out and "cache directory:" in out
    assert cli.main(["precompile", "--ops", "no_such_op"]) == 2
    from numbanorm import _precompile

    assert _precompile.select(["standardize", "rms"]) == ["rms_norm", "scaling"]


_CHECK = r'''
import numpy as np
import numbanorm
from numbanorm import _precompile

w = np.random.default_rng(1).standard_normal((64, 64, 3, 3)).astype(np.float32)  # parallel twin
for a in (w, w[:2]):  # and the serial one
    got = numbanorm.weight_standardize(a)
    f = a.reshape(len(a), -1).astype(np.float64)
    want = (f - f.mean(1, keepdims=True)) / np.sqrt(f.var(1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(got.reshape(len(a), -1), want, rtol=1e-4, atol=1e-5)
    numbanorm.weight_standardize_backward(np.ones_like(a), a)
print("compiled", *_precompile.cache_stats())
'''


@pytest.mark.slow
def test_concurrent_precompiles_fill_numba_cache_dir_then_others_only_load_until_a_helper_changes(tmp_path):
    """Two concurrent ``numbanorm precompile`` processes fill one fresh NUMBA_CACHE_DIR,
    none of it next to the sources (so a read-only or later-replaced installation is
    fine); a third process loads every kernel and computes correct results; editing an
    inlined helper module (``_cpu/_stats.py``) makes a fourth one recompile."""
    pkg = _package_copy(tmp_path)
    cache = tmp_path / "numba-cache"
    env = _env(PYTHONPATH=pkg.parent, NUMBA_CACHE_DIR=cache)
    cmd = [sys.executable, "-m", "numbanorm", "precompile", "--quiet", "--ops", "weight_standardize",
           "--dtypes", "float32"]
    procs = [subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert _entries(cache) and not _entries(pkg)
    assert all(p.parent.parent == cache for p in cache.rglob("*.nbi"))

    proc = subprocess.run([sys.executable, "-c", _CHECK], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    compiled, loaded = map(int, proc.stdout.split()[-2:])
    assert compiled == 0 and loaded > 0, proc.stdout

    with open(pkg / "_cpu" / "_stats.py", "a") as f:  # weight_standardize inlines a _stats helper
        f.write("\n# edited\n")
    proc = subprocess.run([sys.executable, "-c", _CHECK], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert int(proc.stdout.split()[-2]) > 0, proc.stdout


def test_precompile_calls_every_public_function():
    """``numbanorm precompile`` covers the whole API: every public function and layer-free
    class is called by one of its op entries (the fused ops were missing once)."""
    import inspect
    import re

    import numbanorm
    from numbanorm import _precompile

    called = set(re.findall(r"\bnn\.(\w+)\(", inspect.getsource(_precompile)))
    wanted = {name for name in numbanorm.__all__
              if name != "threading_layer" and (name.islower() or name.endswith("Scaler"))}
    assert wanted - called == set()
