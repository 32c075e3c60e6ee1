"""Where numbanorm's compiled CPU kernels are cached on disk, and how safely.

Numba's ``cache=True`` writes next to the source (``<package>/_cpu/__pycache__``) when
that directory is writable. For an installed package that is ``site-packages``, where
the files outlive the installation (``pip uninstall`` does not know them; a later
editable install then finds the left-over folder and imports it as an empty namespace
package), and a read-only installation cannot cache at all. numbanorm therefore puts
its kernels' cache in

* ``$NUMBA_CACHE_DIR`` when that is set (Numba's own variable), else
* the user cache directory: ``$XDG_CACHE_HOME/numbanorm`` or ``~/.cache/numbanorm`` on
  Linux, ``~/Library/Caches/numbanorm`` on macOS, ``%LOCALAPPDATA%\\numbanorm\\Cache`` on
  Windows,

in a sub-folder per source directory (``<dir name>_<sha1 of its path>``, Numba's
scheme, so two checkouts or installations never share entries). If that directory
cannot be written, Numba's own choice applies (the source tree's ``__pycache__``, then
its user-wide cache).

Two more things Numba does not do for us:

* Freshness. Numba invalidates a file's entries when *that file* changes, not when a
  helper it inlines from another module does. Our entries are stamped with the source
  of the file *and* of every module it imports relatively (``from ._stats import``,
  ``from .. import _config``), transitively, so editing ``_cpu/_stats.py`` recompiles
  the kernels that use it, in development and after upgrades alike.
* Concurrency. Numba writes each file atomically, but an index update is a
  read-modify-write, and two processes adding *different* signatures of one kernel at
  once pick the same data file name: the index can then map one signature to the
  other's machine code. Under our cache directory, index reads and updates are
  serialised across processes with a lock file (``fcntl.flock``; where that does not
  exist, e.g. on Windows, Numba's behaviour is unchanged).

:func:`install` (called by :mod:`numbanorm._config` before any kernel is decorated)
registers this; it depends on Numba internals (``numba.core.caching``) and, if they
change, falls back to setting ``numba.config.CACHE_DIR`` (location only).
"""
import contextlib
import functools
import hashlib
import os
import re
import sys

import numba
from numba.core import caching

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

#: the numbanorm package directory: only functions defined below it use our locator
PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))

#: this module holds no kernel code: editing it does not invalidate cached kernels
_THIS_FILE = os.path.abspath(__file__)

#: cache paths handed out by our locator (index files there are locked)
_OUR_PATHS = set()

#: cache paths found writable in this process (:meth:`Locator.ensure_cache_path`)
_WRITABLE = set()

_RELATIVE_IMPORT = re.compile(r"^[ \t]*from[ \t]+(\.+)([\w.]*)[ \t]+import[ \t]+(\([^)]*\)|[^\n#]*)", re.M)


def user_cache_dir():
    """The per-user cache directory for numbanorm (see the module docstring)."""
    if sys.platform == "darwin":
        return os.path.join(os.path.expanduser("~"), "Library", "Caches", "numbanorm")
    if os.name == "nt":
        base = os.environ.get("LOCALAPPDATA") or os.path.expanduser("~")
        return os.path.join(base, "numbanorm", "Cache")
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "numbanorm")


def cache_root():
    """The directory numbanorm's kernel caches go to: ``NUMBA_CACHE_DIR`` if set, else
    :func:`user_cache_dir`."""
    return numba.config.CACHE_DIR or user_cache_dir()


def cache_path(py_file):
    """The directory the kernels defined in ``py_file`` are cached in."""
    return os.path.join(cache_root(), caching._CacheLocator.get_suitable_cache_subpath(py_file))


def _imported_files(py_file):
    """Source files of the numbanorm modules ``py_file`` imports relatively."""
    try:
        return _parse_imports(py_file, _stat_key(py_file))
    except OSError:
        return ()


def _stat_key(path):
    st = os.stat(path)
    return st.st_mtime_ns, st.st_size


@functools.lru_cache(maxsize=None)
def _parse_imports(py_file, stat_key):
    try:
        with open(py_file, encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return ()
    found = []
    for dots, module, names in _RELATIVE_IMPORT.findall(text):
        base = os.path.dirname(py_file)
        for _ in range(len(dots) - 1):
            base = os.path.dirname(base)
        if module:
            candidates = [os.path.join(base, *module.split(".")) + ".py"]
        else:  # from . import a, b
            names = [n.split()[0] for n in names.strip("()").replace("\n", " ").split(",") if n.strip()]
            candidates = [os.path.join(base, n) + ".py" for n in names]
        found += [c for c in candidates if os.path.isfile(c) and c.startswith(PACKAGE_DIR) and c != _THIS_FILE]
    return tuple(found)


def _dependencies(py_file):
    """``py_file`` and, transitively, the numbanorm modules it imports, sorted."""
    seen, todo = set(), [py_file]
    while todo:
        path = todo.pop()
        if path not in seen:
            seen.add(path)
            todo += _imported_files(path)
    return tuple(sorted(seen))


@functools.lru_cache(maxsize=None)
def _stamp(files, stat_keys):
    h = hashlib.sha256()
    for path in files:
        h.update(path[len(PACKAGE_DIR):].encode())
        with open(path, "rb") as f:
            h.update(f.read())
    return h.hexdigest()


def source_stamp(py_file):
    """The freshness stamp of the cache entries of kernels defined in ``py_file``: a
    SHA-256 over it and the modules it imports relatively, transitively (memoised on
    their modification times and sizes, as Numba's own stamp)."""
    files = _dependencies(py_file)
    return _stamp(files, tuple(map(_stat_key, files)))


class Locator(caching._SourceFileBackedLocatorMixin, caching._CacheLocator):
    """Numba cache locator for numbanorm's own functions (see the module docstring)."""

    def __init__(self, py_func, py_file):
        self._py_file = py_file
        self._lineno = py_func.__code__.co_firstlineno
        self._cache_path = cache_path(py_file)

    def get_cache_path(self):
        return self._cache_path

    def ensure_cache_path(self):
        # Numba's check creates and deletes a temporary file in the directory for every
        # decorated function; once one succeeded, the directory is known to be writable
        if self._cache_path not in _WRITABLE:
            super().ensure_cache_path()
            _WRITABLE.add(self._cache_path)

    def get_source_stamp(self):
        return source_stamp(self._py_file)

    @classmethod
    def from_function(cls, py_func, py_file):
        if not os.path.abspath(py_file).startswith(PACKAGE_DIR + os.sep):
            return None
        self = super().from_function(py_func, py_file)  # None if the directory is not writable
        if self is not None:
            _OUR_PATHS.add(self._cache_path)
        return self


@contextlib.contextmanager
def _index_lock(cache_file):
    """Exclusive inter-process lock on one of our cache index files (no-op elsewhere)."""
    if fcntl is None or cache_file._cache_path not in _OUR_PATHS:
        yield
        return
    try:
        fd = os.open(cache_file._index_path + ".lock", os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:  # cannot create the lock file: Numba's unlocked behaviour
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # a file system without locks
            pass
        yield
    finally:
        os.close(fd)  # releases the lock


def _locked(method):
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with _index_lock(self):
            return method(self, *args, **kwargs)

    wrapper._numbanorm_locked = True
    return wrapper


def install():
    """Register :class:`Locator` first in Numba's locator list and lock our index files.
    Idempotent. Returns True, or False where Numba's internals differ (then only the
    location is set, via ``numba.config.CACHE_DIR``)."""
    impl = getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl", None)
    classes = getattr(impl, "_locator_classes", None)
    index_file = getattr(caching, "IndexDataCacheFile", None)
    if not isinstance(classes, list) or index_file is None:
        if not numba.config.CACHE_DIR:
            numba.config.CACHE_DIR = user_cache_dir()
        return False
    if Locator not in classes:
        classes.insert(0, Locator)
    for name in ("save", "load"):
        method = getattr(index_file, name)
        if not getattr(method, "_numbanorm_locked", False):
            setattr(index_file, name, _locked(method))
    return True
