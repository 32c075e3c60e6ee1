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

The pool: persistent daemon helper threads, each waiting on its own C-level
``queue.SimpleQueue``; a run puts one :class:`_Job` (a lock) on the queues of the helpers it
wants, runs ``call`` itself, then takes each job's lock, which cancels a job no helper has
started (on a loaded machine the caller often takes every chunk before a helper is scheduled)
or waits for a started one. No Futures, Conditions or executor bookkeeping: an 8-chunk launch
of a trivial kernel on 2 threads cost ~5 µs against ~9.5 µs on a ``ThreadPoolExecutor``
(TBB's ``prange``: ~2.2 µs; a plain call: ~0.8 µs), on the 2-core EPYC.

Polling (:mod:`._spin`): on a virtual machine whose idle vCPUs halt (the 2-core Xeon here),
a thread blocked in the kernel wakes ~20 µs or more after it is signalled, and every GIL
hand-off to a thread blocked on the GIL is such a wake-up: a launch cost 40-100 µs there
(batch_norm (256, 1024) eval 98 µs on the pool against 50 µs serial). So, as OpenMP and TBB
pools spin between parallel regions, a helper polls its post count for :data:`SPIN_ROUNDS`
rounds after each job (GIL released) before it blocks in ``get``; the caller bumps the
counts with the GIL released and, if a helper is polling, keeps the GIL free until that
helper has taken a chunk (inside its kernel); a helper marks its job done from its poll,
with the GIL released, and the caller polls for that before it blocks on the job's lock.
So no thread takes the GIL while another holds it at the launch or the join (the two
kernels' dispatches still run one after the other): eval 98 -> 37 µs, median of 2000 calls.
What is left (stop 31, the Xeon): a trivial 2-thread launch costs 28-32 µs against 0.4 µs
for a plain call: ~5 µs to post, ~10 µs until the helper's Python path reaches its kernel,
the caller's own ~6 µs, ~10 µs waiting for the helper's done flag (after its kernel the
helper needs the GIL, which the caller holds). Only a compiled worker loop that never
returns to Python between launches would remove it.
:data:`PASS_GRAIN` keeps passes too small to pay for a launch on fewer threads.

:func:`launch` is the common form: a kernel ``kernel(*args, nch, counter)`` whose ``nch``
chunks are consecutive ranges of its work items, run in one call (``nch = 1``, no thread
pool) below :data:`numbanorm._config.SERIAL_THRESHOLD` elements (or below ``2 × grain`` elements,
where a caller gives a ``grain``), so a small and a large call run the same compiled code.
"""
import _thread
import os
import queue
import threading

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.np.ufunc import parallel as _parallel
from numba.extending import intrinsic

from .. import _config
from . import _spin
from ._spin import _X86

#: chunks per thread of a :func:`launch` (several let a thread on a core shared with other
#: processes take fewer; results do not depend on the chunking)
CHUNKS_PER_THREAD = 4

#: elements per thread a memory-bound pass needs before a helper pays for its wake-up
#: (``launch(..., grain=PASS_GRAIN)``): a pool launch costs ~3-5 µs more than a plain call
#: (TBB's was ~1.6-2 µs), a helper saves at most half the pass, and an in-cache pass over
#: 32768 float32 values takes ~2.5 µs, so two threads break even at ~2 × 65536 values
#: (on a loaded machine, whose helpers rarely wake in time, later still)
PASS_GRAIN = 65536

#: the helper threads' job queues (:func:`_helpers`); emptied in a forked child
_QUEUES = []
_POOL_LOCK = threading.Lock()

#: per helper thread (row ``i`` for ``_QUEUES[i]``): its post count and its polling flag
#: (:mod:`._spin`)
_POSTS = np.zeros((max(1, numba.config.NUMBA_NUM_THREADS), 2), np.int64)
_POSTS_AT = _POSTS.ctypes.data


class _Job:
    """One helper's share of a :func:`run`: ``lock`` is free until the helper takes the job
    (``acquire(False)``) and is released by it when its call has returned; after its own
    call the caller takes it with a blocking ``acquire()``, which either cancels a job no
    helper has taken yet (the helper's ``acquire(False)`` then fails) or waits for the one
    running."""

    __slots__ = ("call", "counter", "nch", "lock", "error", "done", "done_at")

    def __init__(self, call, counter, nch):
        self.call = call
        self.counter = counter
        self.nch = nch
        self.lock = _thread.allocate_lock()
        self.error = None
        self.done = np.zeros(1, np.int64)
        self.done_at = self.done.ctypes.data  # (the helper's path after its call stays short)


#: how long an idle helper polls for its next job before it blocks, in ``pause`` rounds of
#: :func:`._spin.park` (~10-40 ns each on x86: ~0.2-0.8 ms): on a virtual machine a thread blocked
#: in the kernel wakes tens of µs after it is signalled, which a run of medium-size calls
#: would otherwise pay at every launch and every GIL hand-off (an OpenMP or TBB pool spins
#: likewise between parallel regions). 0: never poll.
SPIN_ROUNDS = int(os.environ.get("NUMBANORM_SPIN_ROUNDS", 20000))

#: how long the caller waits (``pause`` rounds) for a polling helper to take its first chunk
#: before the caller takes the GIL back for its own call (see :func:`_run`)
START_ROUNDS = 4000


def _helper_loop(jobs, i):
    """Helper ``i``: runs the jobs put on its queue (C-level ``SimpleQueue.get``, no Future
    or Condition objects), skipping those the caller cancelled and those whose chunks are
    all taken already (no dispatch of a kernel that would find none). Between jobs it polls
    its post count ``_POSTS[i, 0]`` (bumped after each put) with the GIL released
    (:func:`._spin.park`, which also marks its last job done) for :data:`SPIN_ROUNDS` rounds,
    and blocks in ``get`` only then."""
    box = _POSTS[i]
    box_at = box.ctypes.data
    park = _spin.park
    while True:
        job = jobs.get()
        seen = int(box[0])  # (a post after this one ends the next poll at once)
        done, done_at = job.done, job.done_at
        if job.lock.acquire(False):
            try:
                if job.counter[0] < job.nch:
                    job.call(job.counter)
            except BaseException as e:  # re-raised by the caller
                job.error = e
            job.lock.release()
        # drop the job before waiting again: its call holds the kernel's arguments, and
        # a held output array is never recycled by the output pool (numbanorm._pool)
        job = None
        if SPIN_ROUNDS > 0 and jobs.empty():  # few bytecodes after the call: see _run
            park(box_at, seen, SPIN_ROUNDS, done_at)
        else:
            done[0] = 1


def _helpers(n):
    """The queues of at least ``n`` helper threads (started on first use)."""
    queues = _QUEUES
    if len(queues) >= n:
        return queues
    with _POOL_LOCK:
        _spin.build()
        while len(queues) < n:
            q = queue.SimpleQueue()
            threading.Thread(target=_helper_loop, args=(q, len(queues)), daemon=True,
                             name=f"numbanorm-cpu-{len(queues)}").start()
            queues.append(q)
    return queues


def _forget_pool():
    """In a forked child: the parent's helper threads do not exist there, so their queues
    would hold work nobody runs (the calling thread would then cancel it and take every
    chunk itself: correct, but serial); the child starts its own on first use."""
    global _QUEUES, _POOL_LOCK
    _QUEUES, _POOL_LOCK = [], threading.Lock()
    _POSTS[:] = 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def num_threads():
    """``numba.get_num_threads()`` (the calling thread's ``numba.set_num_threads`` setting)
    without its ~2 µs of locks and checks once the threading layer is started: the layer's
    own getter, which returns that same setting."""
    get = _GET_NUM_THREADS
    n = get() if get is not None else 0
    return n if n > 0 else _first_num_threads()


_GET_NUM_THREADS = None


def _first_num_threads():
    global _GET_NUM_THREADS
    n = numba.get_num_threads()  # starts the threading layer (once)
    _GET_NUM_THREADS = getattr(_parallel, "_get_num_threads", None)
    return n


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


def _sync_array(ty):
    return isinstance(ty, types.Array) and ty.dtype == types.int64 and ty.ndim == 1


@intrinsic
def arrive(typingctx, sync):
    """``sync[0]`` before atomically adding 1 to it, ordered (acquire-release) after every
    store the thread made before and before every load after: a two-phase kernel's count of
    finished first-phase chunks (``sync``: a zeroed 1-d int64 array of length 2). The thread
    that reads ``nch - 1`` finished the last one and sees every other chunk's results."""
    if not _sync_array(sync):
        return None

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        one = context.get_constant(types.int64, 1)
        return builder.atomic_rmw("add", ary.data, one, "acq_rel")

    return types.int64(sync), codegen


@intrinsic
def release_flag(typingctx, sync):
    """``sync[1] = 1`` as a release store: every store before it is seen by a thread whose
    :func:`wait_flag` returns."""
    if not _sync_array(sync):
        return None

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        one = context.get_constant(types.int64, 1)
        ptr = builder.gep(ary.data, [one])
        builder.store_atomic(one, ptr, "release", 8)
        return context.get_dummy_value()

    return types.none(sync), codegen


@intrinsic
def wait_flag(typingctx, sync):
    """Spin (x86 ``pause`` per round) until ``sync[1]`` is non-zero (acquire loads): the
    second phase of a two-phase kernel waits for the thread finishing the first. Only a
    thread that ran first-phase chunks waits, and only for chunks other running threads have
    taken, so it never waits on a helper that has not started."""
    if not _sync_array(sync):
        return None

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        ptr = builder.gep(ary.data, [context.get_constant(types.int64, 1)])
        zero = context.get_constant(types.int64, 0)
        fn = builder.function
        loop = fn.append_basic_block("wait_flag.loop")
        again = fn.append_basic_block("wait_flag.again")
        done = fn.append_basic_block("wait_flag.done")
        builder.branch(loop)
        builder.position_at_end(loop)
        v = builder.load_atomic(ptr, "acquire", 8)
        builder.cbranch(builder.icmp_signed("!=", v, zero), done, again)
        builder.position_at_end(again)
        if _X86:
            pause = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), []),
                                                   "llvm.x86.sse2.pause")
            builder.call(pause, [])
        builder.branch(loop)
        builder.position_at_end(done)
        return context.get_dummy_value()

    return types.none(sync), codegen


#: the ``counter`` of one-chunk calls (never written: see :func:`first_chunk`)
SERIAL_COUNTER = np.zeros(1, np.int64)


def run(call, nch):
    """``call(counter)`` on up to ``min(numba.get_num_threads(), nch)`` threads at once, the
    calling one included, with one fresh zero ``counter`` (see the module docstring); a
    helper that wakes after every chunk is taken skips its call.
    Returns when every call has finished; the first exception raised is re-raised (the
    calling thread's before a helper's)."""
    _run(call, nch, num_threads())


def _run(call, nch, threads):
    """:func:`run` on at most ``threads`` threads."""
    counter = np.zeros(1, np.int64)
    helpers = 0 if nch <= 1 else min(threads, nch) - 1
    if helpers <= 0:
        call(counter)
        return
    jobs = [_Job(call, counter, nch) for _ in range(helpers)]
    for q, job in zip(_helpers(helpers), jobs):
        q.put(job)
    if SPIN_ROUNDS > 0:
        # bump the helpers' post counts with the GIL released and, if one is polling, wait
        # until it has taken a chunk (inside its kernel, the GIL released again): a woken
        # helper that finds the GIL held blocks in the kernel and wakes only tens of µs
        # after it is released
        _spin.post(_POSTS_AT, helpers, counter.ctypes.data, START_ROUNDS)
    try:
        call(counter)
    finally:
        for job in jobs:  # cancels a job not taken yet, or waits for its call to return
            if not job.lock.acquire(False):
                if SPIN_ROUNDS > 0:  # set by the helper from _spin.park: the GIL is free then
                    _spin.poll(job.done_at, 0, SPIN_ROUNDS)
                job.lock.acquire()
            # a cancelled job stays on its helper's queue until that helper wakes: it must
            # not keep the arguments (and so the outputs) alive
            job.call = job.counter = None
    for job in jobs:
        if job.error is not None:
            raise job.error


def launch(kernel, size, nitems, *args, grain=0):
    """``kernel(*args, nch, counter)`` over ``nitems`` work items of a ``size``-element
    input: one call with ``nch = 1`` below :data:`numbanorm._config.SERIAL_THRESHOLD`
    elements (or for one item), else :func:`run` on ``threads = min(numba.get_num_threads(),
    size // grain)`` threads (all of them for ``grain=0``; one call for ``threads < 2``) with
    ``nch = min(nitems,`` :data:`CHUNKS_PER_THREAD` ``× threads)`` chunks."""
    if size < _config.SERIAL_THRESHOLD or nitems <= 1:
        kernel(*args, 1, SERIAL_COUNTER)
        return
    _launch(kernel, size, nitems, args, grain)


def launch_pass(kernel, size, nitems, *args):
    """:func:`launch` with ``grain=``:data:`PASS_GRAIN` (no keyword to merge: a small call's
    one-chunk path costs what :func:`launch`'s does)."""
    if size < _config.SERIAL_THRESHOLD or nitems <= 1:
        kernel(*args, 1, SERIAL_COUNTER)
        return
    _launch(kernel, size, nitems, args, PASS_GRAIN)


def _launch(kernel, size, nitems, args, grain):
    threads = num_threads()
    if grain:
        threads = min(threads, size // grain)
        if threads < 2:
            kernel(*args, 1, SERIAL_COUNTER)
            return
    nch = min(nitems, CHUNKS_PER_THREAD * threads)
    _run(lambda counter: kernel(*args, nch, counter), nch, threads)
