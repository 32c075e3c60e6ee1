"""Local response normalization CPU kernels (across channels and within channel).

Both modes are one computation: a box-window sum ``S`` of squares along some axes of a
canonical C-contiguous view ``x`` of shape ``(outer, L, inner)``, then
``y = x / (k + a * S) ** beta``.

* across channels, channels-first ``(N, C, *spatial)``: ``outer = N``, ``L = C``,
  ``inner = prod(spatial)``, window axes ``sp = (C,)``;
* across channels, channels-last: ``outer = N * prod(spatial)``, ``L = C``, ``inner = 1``;
* within channel, channels-first: ``outer = N * C``, ``L = prod(spatial)``, ``inner = 1``,
  ``sp = spatial`` (each map is a contiguous block);
* within channel, channels-last: ``outer = N``, ``L = prod(spatial)``, ``inner = C``.

The window along each axis of ``sp`` covers ``l - lo ... l + hi`` with zeros outside the
valid range (torch convention: ``lo = size // 2``, ``hi = (size - 1) // 2``; paper
convention: ``lo = hi = size // 2``, the clipped window). ``a`` is alpha already divided
by the number of window positions for the torch convention. ``lo``/``hi`` are clipped per
axis to ``length - 1`` (positions further away are padding anyway).

Thread mapping: the work is split into tasks, each a block of ``rows x L x cb`` values
(``rows`` consecutive ``outer`` rows when ``inner == 1``, else one ``o`` and ``cb``
consecutive ``inner`` positions, the "lanes"). A fixed number of chunks of consecutive
tasks run on Python threads (:mod:`._threads`: the chunk kernels release the GIL); each
chunk owns zero-initialised scratch (allocated before the launch). A task

1. loads the squares of its block into the stage-0 buffer, which is padded with zeros
   (``lo`` before / ``hi`` after) on every window axis but the last, which is unpadded
   with a zero margin at both ends of the buffer (the only read of ``x`` from memory;
   the write pass re-reads it from cache) — the padding is never written, so it stays 0;
2. sums the window along the last axis with one flat pass over the whole block (``w``
   shifted slices), then recomputes the few positions per run whose window crossed into
   the neighbouring run (``_edge_fix``), then sums along axes nd-2 .. 0 (one flat pass
   each, into the next, less padded buffer);
3. writes ``y`` from the final sums (one flat loop when ``inner == 1``).

Loops index flat arrays with unsigned offsets (``np.uintp``: no negative-index
wrap-around code, and no slice objects whose reference counts would be updated
atomically per call), so LLVM vectorises them; ``s ** -beta`` has sqrt/divide forms for
beta in {0.25, 0.5, 0.75, 1}. Every input of a block is read before any output of it is
written, so ``out`` may be ``x``. Blocks of lanes (channels-first, across channels) are
64 short strided runs that the hardware prefetcher misses, so each task software-
prefetches the next task's rows (``llvm.prefetch``).

Scratch is in the compute dtype: the window sums add at most ``w`` non-negative squares
(no cancellation, relative error <= w * 2**-24 in float32), which is as accurate as the
float32 result itself and keeps float32 data in 16-wide vectors.

Backward::

    dx_j = dy_j p_j - 2 a beta x_j * sum_{i : j in window(i)} dy_i x_i p_i / s_i

with ``s = k + a S`` and ``p = s ** -beta``: a second window sum over the transposed
window (``lo`` and ``hi`` swapped), done with the same padded passes.
Kernels are compiled with ``error_model="numpy"`` (no zero-division branches, so the
loops vectorise). Below ``SERIAL_THRESHOLD`` elements the whole call is one chunk, run by
calling the chunk function directly (no serial twin).

Compile time: the helpers called from several sites (``_tapsum``, ``_edge_sum``,
``_sq_block``, the response passes, the backward kernel's prefetches) are ordinary called
njit functions, typed and lowered once instead of once per call site; the tree above them
(``_load``, ``_window``, ``_edge_fix``, ``_seg``, ``_task``, the forward prefetch) is
``inline="always"``, because Numba links a called helper's LLVM module into every caller,
which re-optimises and re-emits it: three levels of calls emitted the window sums three
times (forward first call 3.4 -> 2.4 CPU s, backward 4.1 -> 3.4); the backward kernel's
two window passes share one inlined copy (a two-phase loop). The
chunk kernels run in parallel on threads rather than in a ``prange``: a ``parallel=True``
kernel re-optimises and re-emits the linked chunk code in four LLVM modules, which was
about half of the first call's compile time (see :mod:`._threads`). Calls pass ``np.int64``
zeros and ones rather than literals, which would compile a second copy of a helper per
literal signature. The pow kind ``pk`` is ``None`` for the default beta = 0.75
(:func:`kind_arg`): Numba prunes ``pk is None`` branches while typing, so that call compiles
only its own response loops (~1k fewer instructions in each chunk kernel) and the other betas
share one build that switches at run time. Measured with ``numbanorm bench --compile`` (README).

This module holds the pointwise response passes, the chunk kernels, the plan and the
entry points (``forward``, ``backward``); the window-sum building blocks (stage buffers,
tasks, prefetch) are in :mod:`._local_response_norm_window`.
"""
import numba
import numpy as np
from numba import njit

from .. import _config
from . import _threads, _work
from ._local_response_norm_window import (U, _helper_opts, _load, _ntasks, _ntasks_nb, _prefetch_task,
                                         _prefetch_task_inline, _seg, _task, _window)

#: pow kinds: beta = 0.75, 0.5, 1, 0.25, 0, anything else
PW75, PW50, PW100, PW25, PW0, PWGEN = 0, 1, 2, 3, 4, 5

#: target number of values per task block (the padded scratch blocks stay in L2)
BLOCK = 8192

#: largest task block (values) when choosing lanes for a channels-last within-channel window;
#: a single map larger than this is still one block (scratch is O(map size) per chunk)
MAX_BLOCK = 1 << 20

#: soft cap on the scratch of all chunks together (bytes; at least one chunk per thread)
SCRATCH_BYTES = 256 << 20

#: chunks of tasks per thread: several chunks let TBB's work stealing rebalance when a
#: core is shared with other processes (results do not depend on the chunking); each
#: chunk owns zeroed scratch, so not too many
CHUNKS_PER_THREAD = 4

_opts = _config.JIT_OPTIONS

#: software-prefetch the next task's block (its rows are many short strided runs when the
#: window runs across channels of a channels-first array: the hardware prefetcher misses them)
PREFETCH = True


def pow_kind(beta):
    return {0.75: PW75, 0.5: PW50, 1.0: PW100, 0.25: PW25, 0.0: PW0}.get(float(beta), PWGEN)


def kind_arg(beta):
    """The kernels' ``pk`` argument: ``None`` for beta = 0.75 (the default), else
    :func:`pow_kind`. Numba prunes ``pk is None`` branches while typing, so the default
    compiles only its own loops (a first call ~0.5 CPU s shorter per direction) and the other
    betas share one build with a run-time switch (a Literal ``pk`` would give one build per
    kind, and ``numba.literally`` costs milliseconds per call)."""
    pk = pow_kind(beta)
    return None if pk == PW75 else pk


@njit(inline="always", **_opts)
def _bpow(b, pk, beta):
    """b ** beta (sqrt/multiply forms vectorise; the generic case calls pow)."""
    if pk == PW75:
        t = np.sqrt(b)
        return t * np.sqrt(t)
    if pk == PW50:
        return np.sqrt(b)
    if pk == PW100:
        return b
    if pk == PW25:
        return np.sqrt(np.sqrt(b))
    return b ** beta


@njit(**_helper_opts)
def _write_y(xf, xo, xs, s, so, ss, of, nl, n, k, alpha, beta, pk):
    """of[xo + l xs + i] = x / (k + alpha * s[so + l ss + i]) ** beta for l < nl, i < n
    (one loop nest per pow kind, so each inner loop vectorises; ``pk`` None: beta = 0.75,
    whose loop alone then compiles, see :func:`kind_arg`)."""
    if pk is None:
        for l in range(nl):
            xb = xo + l * xs
            sb = so + l * ss
            for i in range(n):
                t = np.sqrt(k + alpha * s[U(sb + i)])
                of[U(xb + i)] = xf[U(xb + i)] / (t * np.sqrt(t))
        return
    if pk == PW50:
        for l in range(nl):
            xb = xo + l * xs
            sb = so + l * ss
            for i in range(n):
                of[U(xb + i)] = xf[U(xb + i)] / np.sqrt(k + alpha * s[U(sb + i)])
    elif pk == PW100:
        for l in range(nl):
            xb = xo + l * xs
            sb = so + l * ss
            for i in range(n):
                of[U(xb + i)] = xf[U(xb + i)] / (k + alpha * s[U(sb + i)])
    elif pk == PW0:
        for l in range(nl):
            xb = xo + l * xs
            for i in range(n):
                of[U(xb + i)] = xf[U(xb + i)]
    else:
        for l in range(nl):
            xb = xo + l * xs
            sb = so + l * ss
            for i in range(n):
                of[U(xb + i)] = xf[U(xb + i)] / _bpow(k + alpha * s[U(sb + i)], pk, beta)


@njit(**_helper_opts)
def _grad_t(gf, xf, xo, xs, s, so, ss, t, to, ts, nl, n, k, alpha, beta, one, pk):
    """s <- p = base ** -beta; t <- dy x p / base (base = k + alpha s), over an
    (nl, n) block with strides xs (x, dy), ss (s) and ts (t); ``pk`` as in :func:`_write_y`."""
    if pk is None:
        for l in range(nl):
            xb = xo + l * xs
            sb = so + l * ss
            tb = to + l * ts
            for i in range(n):
                base = k + alpha * s[U(sb + i)]
                r = np.sqrt(base)
                pi = one / (r * np.sqrt(r))
                t[U(tb + i)] = gf[U(xb + i)] * xf[U(xb + i)] * pi / base
                s[U(sb + i)] = pi
        return
    for l in range(nl):
        xb = xo + l * xs
        sb = so + l * ss
        tb = to + l * ts
        if pk == PW50:
            for i in range(n):
                base = k + alpha * s[U(sb + i)]
                pi = one / np.sqrt(base)
                t[U(tb + i)] = gf[U(xb + i)] * xf[U(xb + i)] * pi / base
                s[U(sb + i)] = pi
        elif pk == PW100:
            for i in range(n):
                pi = one / (k + alpha * s[U(sb + i)])
                t[U(tb + i)] = gf[U(xb + i)] * xf[U(xb + i)] * pi * pi
                s[U(sb + i)] = pi
        elif pk == PW0:
            for i in range(n):
                t[U(tb + i)] = one - one
                s[U(sb + i)] = one
        else:
            for i in range(n):
                base = k + alpha * s[U(sb + i)]
                pi = one / _bpow(base, pk, beta)
                t[U(tb + i)] = gf[U(xb + i)] * xf[U(xb + i)] * pi / base
                s[U(sb + i)] = pi


@njit(**_helper_opts)
def _grad_x(gf, xf, xo, xs, p, po, ps, u, uo, df, nl, n, c2):
    """dx = dy p + c2 x u over an (nl, n) block (u shares p's layout, at ``uo``)."""
    for l in range(nl):
        xb = xo + l * xs
        pb = po + l * ps
        ub = uo + l * ps
        for i in range(n):
            df[U(xb + i)] = gf[U(xb + i)] * p[U(pb + i)] + c2 * xf[U(xb + i)] * u[U(ub + i)]


@njit(nogil=True, **_opts)
def _forward_chunks(x, sp, wa, lo, hi, k, alpha, beta, pk, rows, cb, mg, offs, pf, out, scratch, counter):
    """Chunks of :func:`forward`'s tasks, taken from ``counter`` (:func:`._threads.next_chunk`)
    until all ``len(scratch)`` are done; chunk ``ch`` uses the scratch row ``scratch[ch]``
    (segments: stage buffers 0 .. nd, the last one holding the window sums)."""
    outer, length, inner = x.shape
    xf = x.reshape(-1)
    of = out.reshape(-1)
    nd = sp.shape[0]
    ntasks = _ntasks_nb(outer, inner, rows, cb)
    so = offs[nd] + (mg if nd == 1 else 0)
    Z, I1 = np.int64(0), np.int64(1)  # not literals: one compiled helper for both call forms
    nch = scratch.shape[0]
    ch = _threads.next_chunk(counter)
    while ch < nch:
        buf = scratch[ch]
        for t in range(ch * ntasks // nch, (ch + 1) * ntasks // nch):
            o0, nr, c0, nc = _task(t, outer, inner, rows, cb)
            _load(xf, o0, nr, c0, nc, length, inner, sp, wa, lo, cb, mg, buf, offs[0])
            if pf:
                _prefetch_task_inline(xf, t + 1, ntasks, outer, length, inner, rows, cb)
            _window(buf, offs, Z, sp, wa, lo[nd - 1], hi[nd - 1], nr, cb, mg)
            if cb == 1:
                _write_y(xf, o0 * length, Z, buf, so, Z, of, I1, nr * length, k, alpha, beta, pk)
            else:
                _write_y(xf, o0 * length * inner + c0, inner, buf, so, cb, of, length, nc, k, alpha, beta, pk)
        ch = _threads.next_chunk(counter)


@njit(nogil=True, **_opts)
def _backward_chunks(grad_out, x, sp, wa, lo, hi, k, alpha, beta, one, pk, rows, cb, mg, offs, pf, grad_x,
                     scratch, counter):
    """Chunks of :func:`backward`'s tasks, taken from ``counter`` as in :func:`_forward_chunks`.

    Scratch segments: forward stages 0 .. nd (window sums, then p = s ** -beta in
    place), transposed stages nd+1 .. 2nd+1 (t = dy x p / s, then its window sums)."""
    outer, length, inner = x.shape
    xf = x.reshape(-1)
    gf = grad_out.reshape(-1)
    df = grad_x.reshape(-1)
    nd = sp.shape[0]
    ntasks = _ntasks_nb(outer, inner, rows, cb)
    c2 = -(alpha + alpha) * beta
    sofs = mg if nd == 1 else 0
    so = offs[nd] + sofs
    uo = offs[2 * nd + 1] + sofs
    t0 = offs[nd + 1]
    seglen = sp[nd - 1] if nd == 1 else sp[nd - 2] * sp[nd - 1]
    nps = length // seglen
    Z, I1 = np.int64(0), np.int64(1)  # not literals: one compiled helper for both call forms
    nch = scratch.shape[0]
    ch = _threads.next_chunk(counter)
    while ch < nch:
        buf = scratch[ch]
        first = ch * ntasks // nch
        for t in range(first, (ch + 1) * ntasks // nch):
            o0, nr, c0, nc = _task(t, outer, inner, rows, cb)
            _load(xf, o0, nr, c0, nc, length, inner, sp, wa, lo, cb, mg, buf, offs[0])
            if pf:
                if t == first:
                    _prefetch_task(gf, t, ntasks, outer, length, inner, rows, cb)
                _prefetch_task(gf, t + 1, ntasks, outer, length, inner, rows, cb)
                _prefetch_task(xf, t + 1, ntasks, outer, length, inner, rows, cb)
            # the forward window sums, then (phase 1) those of t over the transposed window:
            # one inlined copy of _window for both
            for ph in range(2):
                _window(buf, offs, Z if ph == 0 else nd + 1, sp, wa, lo[nd - 1] if ph == 0 else hi[nd - 1],
                        hi[nd - 1] if ph == 0 else lo[nd - 1], nr, cb, mg)
                if ph == 1:
                    break
                # p = s ** -beta (in place), t = dy x p / s into the transposed stage 0
                if cb == 1 and nd == 1:
                    _grad_t(gf, xf, o0 * length, Z, buf, so, Z, buf, t0 + mg, Z, I1, nr * length,
                            k, alpha, beta, one, pk)
                else:
                    for r in range(nr):
                        for p in range(nps):
                            b = t0 + _seg(sp, wa, hi, r, p, cb, mg)
                            pos = r * length + p * seglen
                            if cb == 1:
                                _grad_t(gf, xf, o0 * length + pos, Z, buf, so + pos, Z, buf, b, Z, I1, seglen,
                                        k, alpha, beta, one, pk)
                            else:
                                _grad_t(gf, xf, (o0 * length + pos) * inner + c0, inner, buf, so + pos * cb, cb,
                                        buf, b, cb, seglen, nc, k, alpha, beta, one, pk)
            if cb == 1:
                _grad_x(gf, xf, o0 * length, Z, buf, so, Z, buf, uo, df, I1, nr * length, c2)
            else:
                _grad_x(gf, xf, o0 * length * inner + c0, inner, buf, so, cb, buf, uo, df, length, nc, c2)
        ch = _threads.next_chunk(counter)


def _plan(x, sp, lo, hi, backward):
    """Task block shape, clipped per-axis windows and zeroed per-chunk scratch."""
    outer, length, inner = x.shape
    serial = x.size < _config.SERIAL_THRESHOLD
    sp = np.asarray(sp, dtype=np.int64)
    lo_a = np.minimum(lo, sp - 1)
    hi_a = np.minimum(hi, sp - 1)
    wa = lo_a + hi_a + 1
    if inner == 1:
        rows = max(1, min(outer, BLOCK // max(1, length)))
        cb = 1
    else:
        rows = 1
        # at least 16 lanes (one vector) unless the block would exceed MAX_BLOCK values
        cb = min(inner, max(16, BLOCK // max(1, length)), max(1, MAX_BLOCK // max(1, length)))
        if cb > 16:
            cb -= cb % 16
    nd = len(sp)
    padded = [int(sp[b] + wa[b] - 1) for b in range(nd)]
    mg = int(max(lo_a[-1], hi_a[-1])) * cb
    stage0 = 2 * mg + rows * cb * int(np.prod(padded[:-1])) * int(sp[-1])
    seg = [stage0, stage0]
    for a in range(nd - 2, -1, -1):
        seg.append(rows * cb * int(np.prod(padded[:a])) * int(np.prod(sp[a:])))
    if backward:
        seg = seg + seg
    offs = np.concatenate([[0], np.cumsum(seg)]).astype(np.int64)
    ntasks = _ntasks(outer, inner, rows, cb)
    nch = 1
    if not serial:  # (the first numba.get_num_threads() starts the threading layer: ~50 ms)
        threads = numba.get_num_threads()
        nch = max(1, min(ntasks, CHUNKS_PER_THREAD * threads))
        # big blocks (large spatial maps within a channel): fewer chunks, at least one per thread
        by_memory = SCRATCH_BYTES // max(1, int(offs[-1]) * x.itemsize)
        nch = max(min(nch, threads), min(nch, by_memory))
    # one zeroed scratch row per chunk (numba.get_thread_id() would allow one per thread,
    # but Numba 0.68 segfaults when a cached function calling it is reloaded)
    scratch = _work.zeros("lrn.scratch", (nch, int(offs[-1])), x.dtype)  # reused: see _work
    return dict(sp=sp, wa=wa, lo=lo_a, hi=hi_a, rows=rows, cb=cb, mg=mg, offs=offs, nch=nch,
                scratch=scratch, serial=serial)


def forward(x, sp, lo, hi, alpha, k, beta, out):
    """``out = x / (k + alpha * S) ** beta`` with S the window sums of x² along ``sp``.

    ``x``/``out``: C-contiguous (outer, L, inner) arrays of the compute dtype; ``sp``: the
    window axes' lengths (a tuple; their product is L); ``lo``/``hi``: the window's reach
    below/above each position.
    """
    pl = _plan(x, sp, lo, hi, False)
    t = x.dtype.type
    args = (x, pl["sp"], pl["wa"], pl["lo"], pl["hi"], t(k), t(alpha), t(beta), kind_arg(beta),
            pl["rows"], pl["cb"], pl["mg"], pl["offs"], PREFETCH, out)
    _threads.run(lambda counter: _forward_chunks(*args, pl["scratch"], counter), pl["nch"])


def backward(grad_out, x, sp, lo, hi, alpha, k, beta, grad_x):
    """Gradient of :func:`forward` with respect to ``x`` into ``grad_x``."""
    pl = _plan(x, sp, lo, hi, True)
    t = x.dtype.type
    args = (grad_out, x, pl["sp"], pl["wa"], pl["lo"], pl["hi"], t(k), t(alpha), t(beta), t(1),
            kind_arg(beta), pl["rows"], pl["cb"], pl["mg"], pl["offs"], PREFETCH, grad_x)
    _threads.run(lambda counter: _backward_chunks(*args, pl["scratch"], counter), pl["nch"])
