"""Threading layer, compile options and environment variables.

Imported by every CPU kernel module. The kernels themselves run in parallel on
:mod:`numbanorm._cpu._threads`' pool of Python threads, not on a Numba threading layer; the
layer selected here serves ``prange`` code elsewhere (the benchmark's streaming copy).

Threading layer: Numba's default ``workqueue`` layer aborts the process when two Python
threads run a parallel kernel at once, and GNU OpenMP kills forked children (Dask's
process workers, ``multiprocessing`` with ``fork``). TBB is safe for both, so we select
it. The ``tbb`` wheel installs ``libtbb.so.12`` into ``<prefix>/lib``, which the dynamic
loader does not search, so we preload it (RTLD_GLOBAL) before Numba looks for it.
If TBB cannot be loaded we fall back to ``workqueue`` (fork-safe) and serialise parallel
kernel launches with a lock (see :data:`KERNEL_LOCK`), so concurrent threads stay safe.

Environment variables
---------------------
NUMBANORM_THREADING_LAYER
    Force a Numba threading layer (``tbb``, ``omp``, ``workqueue``). An explicit
    ``NUMBA_THREADING_LAYER`` is respected too.
NUMBANORM_SERIAL_THRESHOLD
    Element count below which the serial kernel twin is used (default 32768).
NUMBANORM_SPIN_ROUNDS
    ``pause`` rounds an idle pool helper polls for its next job before it blocks (default
    20000, ~0.2-0.5 ms; 0: block at once), see :mod:`numbanorm._cpu._threads`.
NUMBA_CACHE_DIR
    Where compiled kernels are cached (default: the user cache directory, see
    :mod:`numbanorm._cache`; never the installed package).
"""
import contextlib
import ctypes
import os
import sys
import threading

import numba

from . import _cache

# before any kernel is decorated: Numba picks a function's cache location then
_cache.install()

#: fastmath flags for every CPU kernel: lets LLVM vectorise reductions while keeping
#: NaN/inf semantics (no 'nnan'/'ninf'). No 'arcp': with it LLVM may compute a vectorised
#: ``x / y`` as ``x * rcp(y)`` refined by a Newton step (it does for AMD Zen targets, not
#: for Skylake-AVX512), which is not correctly rounded; the scalar loop LLVM falls back to
#: when ``out`` aliases ``x`` divides exactly, so an in-place call differed from a
#: separate ``out`` in the last bit, and results depended on the CPU kind.
FASTMATH = {"reassoc", "contract", "nsz"}

#: options for every CPU kernel: NumPy's error model (1/0 -> inf, never ZeroDivisionError,
#: and no division checks in the vectorised loops), on-disk cache.
JIT_OPTIONS = dict(fastmath=FASTMATH, cache=True, error_model="numpy")

#: below this many elements a call uses the serial kernel twin (a parallel launch costs µs).
SERIAL_THRESHOLD = int(os.environ.get("NUMBANORM_SERIAL_THRESHOLD", 32768))

#: number of fixed partial-sum chunks used by deterministic parallel reductions.
#: Independent of the thread count, so results are bitwise reproducible.
REDUCE_CHUNKS = 64


def _preload_tbb():
    """Make libtbb.so.12 loadable for Numba's tbbpool extension. Returns True on success."""
    names = ("libtbb.so.12", "libtbb.12.dylib", "tbb12.dll")
    candidates = []
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix, sys.exec_prefix)):
        for sub in ("lib", "Library/bin", "Lib"):
            for name in names:
                candidates.append(os.path.join(prefix, sub, name))
    try:  # wherever pip put the tbb distribution (user installs, --target, ...)
        from importlib import metadata

        for f in metadata.files("tbb") or ():
            if os.path.basename(str(f)) in names:
                candidates.append(str(f.locate()))
    except Exception:  # tbb not installed as a distribution
        pass
    for path in candidates + list(names):  # bare names: the system loader's own search
        try:
            ctypes.CDLL(path, mode=getattr(ctypes, "RTLD_GLOBAL", 0))
            return True
        except OSError:
            continue
    return False


def _choose_layer():
    wanted = os.environ.get("NUMBANORM_THREADING_LAYER") or os.environ.get("NUMBA_THREADING_LAYER")
    if wanted:
        if wanted == "tbb":
            _preload_tbb()
        return wanted
    if _preload_tbb():
        try:
            from numba.np.ufunc import tbbpool  # noqa: F401  (checks the library really loads)

            return "tbb"
        except ImportError:
            pass
    return "workqueue"


_LAYER = _choose_layer()
numba.config.THREADING_LAYER = _LAYER

#: serialises parallel launches when the layer is not thread-safe (workqueue fallback).
KERNEL_LOCK = threading.Lock() if _LAYER == "workqueue" else contextlib.nullcontext()


def _reinit_after_fork():
    """In a forked child: a fresh :data:`KERNEL_LOCK`. The parent's may have been held by
    a thread inside a kernel, a thread the child does not have, so it would never be
    released and the child's first parallel kernel would wait forever."""
    global KERNEL_LOCK
    if _LAYER == "workqueue":
        KERNEL_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_after_fork)


def threading_layer():
    """Name of the Numba threading layer numbanorm runs its CPU kernels on.

    Returns the layer actually in use once a parallel kernel has run, else the one
    selected (``"tbb"`` when TBB is loadable, otherwise ``"workqueue"`` with launches
    serialised by a lock).

    Examples
    --------
    >>> import numbanorm
    >>> numbanorm.threading_layer() in ("tbb", "omp", "workqueue")
    True
    """
    try:
        return numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet
        return _LAYER
