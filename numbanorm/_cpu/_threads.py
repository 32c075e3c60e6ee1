"""Parallel runs of a serial, GIL-releasing chunk kernel on a pool of Python threads.

Why not ``prange``: a ``parallel=True`` kernel is four LLVM modules (the kernel, the parfor
gufunc and its two wrappers), and Numba links the whole optimised code of every function
the parfor body calls into each of them and optimises and emits it again. For the local
response norm, whose parfor body is one call of a ~6k-instruction chunk function, that
was about half of its first call's compile time (~5 of 10 CPU s forward, ~6.5 of 13
backward). A chunk kernel compiled once with ``nogil=True`` and called from threads needs
no second compilation at all: the serial path calls it directly.

:func:`run` calls ``call(counter)`` on the calling thread and on up to
``numba.get_num_threads() - 1`` pool threads at once. ``call`` runs a kernel that takes its
chunks from the shared ``counter`` with :func:`next_chunk` (or :func:`first_chunk` and
:func:`later_chunk`, which leave it alone in a one-chunk call) until they are used up (dynamic
scheduling: a core shared with other processes takes fewer chunks, as TBB's work stealing
did), so each thread enters compiled code once: a Python-level call per chunk cost ~10 µs
of held GIL each (a 20-argument dispatch), which showed at the parallel threshold.
Results must not depend on which thread runs which chunk.

:func:`launch` is the common form: a kernel ``kernel(*args, nch, counter)`` whose ``nch``
chunks are consecutive ranges of its work items, run in one call (``nch = 1``, no thread
pool) below :data:`numbanorm._config.SERIAL_THRESHOLD` elements, so a small and a large
call run the same compiled code.
"""
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
from numba import types
from numba.extending import intrinsic

from .. import _config

#: chunks per thread of a :func:`launch` (several let a thread on a core shared with other
#: processes take fewer; results do not depend on the chunking)
CHUNKS_PER_THREAD = 4

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
    queue work nobody runs (the calling thread would then take every chunk itself, and
    cancel the queued calls: correct, but serial); the child builds its own on first use."""
    global _POOL, _POOL_LOCK
    _POOL, _POOL_LOCK = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


@intrinsic
def next_chunk(typingctx, counter):
    """``counter[0]`` before atomically adding 1 to it (``counter``: a 1-d int64 array)."""
    if not (isinstance(counter, types.Array) and counter.dtype == types.int64 and counter.ndim == 1):
        return None

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        one = context.get_constant(types.int64, 1)
        return builder.atomic_rmw("add", ary.data, one, "monotonic")

    return types.int64(counter), codegen


def _chunk_taker(done_value):
    """An intrinsic ``(counter, nch) -> int64``: :func:`next_chunk` when ``nch > 1``, else
    ``done_value(nch)`` without touching ``counter`` (an intrinsic, not an ``inline="always"``
    function: those re-run Numba's front end at every call site, ~0.1 s of a first call each)."""

    def typer(typingctx, counter, nch):
        if not (isinstance(counter, types.Array) and counter.dtype == types.int64 and counter.ndim == 1
                and isinstance(nch, types.Integer)):
            return None

        def codegen(context, builder, signature, args):
            ary = context.make_array(signature.args[0])(context, builder, args[0])
            n = context.cast(builder, args[1], signature.args[1], types.int64)
            one = context.get_constant(types.int64, 1)
            serial = done_value(context, n)
            with builder.if_else(builder.icmp_signed(">", n, one)) as (multi, single):
                with multi:
                    bb_multi = builder.basic_block
                    got = builder.atomic_rmw("add", ary.data, one, "monotonic")
                with single:
                    bb_single = builder.basic_block
            phi = builder.phi(got.type)
            phi.add_incoming(got, bb_multi)
            phi.add_incoming(serial, bb_single)
            return phi

        return types.int64(counter, nch), codegen

    return intrinsic(typer)


#: ``first_chunk(counter, nch)``: the first chunk a thread runs of an ``nch``-chunk kernel:
#: :func:`next_chunk`, or 0 for a one-chunk call, which leaves ``counter`` alone (so it may
#: be any shared array, e.g. :data:`SERIAL_COUNTER`)
first_chunk = _chunk_taker(lambda context, n: context.get_constant(types.int64, 0))

#: ``later_chunk(counter, nch)``: the chunk after the one a thread finished: :func:`next_chunk`
#: (``nch`` for a one-chunk call: done)
later_chunk = _chunk_taker(lambda context, n: n)


#: the ``counter`` of one-chunk calls (never written: see :func:`first_chunk`)
SERIAL_COUNTER = np.zeros(1, np.int64)


def run(call, nch):
    """``call(counter)`` on up to ``min(numba.get_num_threads(), nch)`` threads at once, the
    calling one included, with one fresh zero ``counter`` (see the module docstring).
    Returns when every call has finished; the first exception raised is re-raised."""
    counter = np.zeros(1, np.int64)
    helpers = 0 if nch <= 1 else min(numba.get_num_threads(), nch) - 1
    if helpers <= 0:
        call(counter)
        return
    pool = _pool()
    futures = [pool.submit(call, counter) for _ in range(helpers)]
    try:
        call(counter)
    finally:
        # helpers not started yet have nothing left to do; the others finish their chunk
        for f in futures:
            if not f.cancel():
                f.result()


def launch(kernel, size, nitems, *args):
    """``kernel(*args, nch, counter)`` over ``nitems`` work items of a ``size``-element
    input: one call with ``nch = 1`` below :data:`numbanorm._config.SERIAL_THRESHOLD`
    elements (or for one item), else :func:`run` with ``nch = min(nitems,``
    :data:`CHUNKS_PER_THREAD` ``× numba.get_num_threads())`` chunks."""
    if size < _config.SERIAL_THRESHOLD or nitems <= 1:
        kernel(*args, 1, SERIAL_COUNTER)
        return
    nch = min(nitems, CHUNKS_PER_THREAD * numba.get_num_threads())
    run(lambda counter: kernel(*args, nch, counter), nch)
