"""Parallel runs of a serial, GIL-releasing chunk kernel on a pool of Python threads.

Why not ``prange``: a ``parallel=True`` kernel is four LLVM modules (the kernel, the parfor
gufunc and its two wrappers), and Numba links the whole optimised code of every function
the parfor body calls into each of them and optimises and emits it again. For the local
response norm, whose parfor body is one call of a ~6k-instruction chunk function, that
was about half of its first call's compile time (~5 of 10 CPU s forward, ~6.5 of 13
backward). A chunk kernel compiled once with ``nogil=True`` and called from threads needs
no second compilation at all: the serial path calls it directly.

:func:`run` calls ``call(ch)`` for every chunk ``ch < nch`` on the calling thread and up
to ``numba.get_num_threads() - 1`` pool threads, which take chunks from a shared counter
(dynamic scheduling: a core shared with other processes takes fewer chunks, as TBB's work
stealing did). Results must not depend on which thread runs which chunk.
"""
import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numba

_POOL = None
_POOL_LOCK = threading.Lock()


def _pool():
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max(1, numba.config.NUMBA_NUM_THREADS - 1),
                                       thread_name_prefix="numbanorm-cpu")
        return _POOL


def _forget_pool():
    """In a forked child: the parent's pool threads do not exist there, so its pool would
    queue work nobody runs; the child builds its own on first use."""
    global _POOL, _POOL_LOCK
    _POOL, _POOL_LOCK = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def run(call, nch):
    """``call(ch)`` for ``ch`` in ``range(nch)``, in parallel (see the module docstring).
    Returns when every chunk has finished; the first exception raised is re-raised."""
    helpers = min(numba.get_num_threads(), nch) - 1
    if helpers <= 0:
        for ch in range(nch):
            call(ch)
        return
    chunks = itertools.count()  # next() is atomic under the GIL

    def work():
        for ch in chunks:
            if ch >= nch:
                return
            call(ch)

    pool = _pool()
    futures = [pool.submit(work) for _ in range(helpers)]
    try:
        work()
    finally:
        # helpers not started yet have nothing left to do; the others finish their chunk
        for f in futures:
            if not f.cancel():
                f.result()
