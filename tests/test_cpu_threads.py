"""The Python-thread launcher of chunk kernels (numbanorm/_cpu/_threads.py, used by the
local response norm): every chunk runs exactly once, parallel and serial results are
bitwise equal, concurrent callers and forked children work."""
import multiprocessing
import threading
import time

import numba
import numpy as np
import pytest

import numbanorm
from numbanorm import _config
from numbanorm._cpu import _spin, _threads
from reference import in_threads


@numba.njit(nogil=True)
def _take(counter, hits):
    ch = _threads.next_chunk(counter)
    while ch < hits.size:
        hits[ch] += 1
        ch = _threads.next_chunk(counter)


@pytest.mark.parametrize("spin", [True, False], ids=["polling", "blocking"])
@pytest.mark.parametrize("nch", [1, 2, 3, 64, 1000])
def test_every_chunk_runs_exactly_once(nch, spin, monkeypatch):
    if not spin:  # helpers block in their queue's get between jobs, callers in the job's lock
        monkeypatch.setattr(_threads, "SPIN_ROUNDS", 0)
    for i in range(40):
        hits = np.zeros(nch, np.int64)
        _threads.run(lambda counter: _take(counter, hits), nch)
        assert (hits == 1).all()
        if i % 10 == 9:
            time.sleep(0.002)  # longer than a helper polls: the next run finds it blocked


def test_poll_waits_with_the_gil_released_until_the_word_changes():
    _spin.build()
    word = np.zeros(1, np.int64)
    assert _spin.poll(word.ctypes.data, 1, 10**9) == 0  # differs already: returns at once
    assert _spin.poll(word.ctypes.data, 0, 100) == 0  # unchanged: gives up after its rounds

    def change():  # Python: needs the GIL, so it runs only while poll has released it
        time.sleep(0.01)
        word[0] = 7

    t = threading.Thread(target=change)
    t.start()
    assert _spin.poll(word.ctypes.data, 0, 10**12) == 7
    t.join()


def test_post_bumps_the_helpers_and_waits_only_for_a_polling_one():
    _spin.build()
    posts = np.zeros((3, 2), np.int64)
    counter = np.zeros(1, np.int64)
    assert _spin.post(posts.ctypes.data, 2, counter.ctypes.data, 10**12) == 0  # none polls: no wait
    assert posts[:, 0].tolist() == [1, 1, 0]
    posts[1, 1] = 1  # helper 1 polls: wait for the counter, here for 100 rounds only
    t0 = time.perf_counter()
    _spin.post(posts.ctypes.data, 2, counter.ctypes.data, 100)
    assert posts[:, 0].tolist() == [2, 2, 0] and time.perf_counter() - t0 < 1
    counter[0] = 3
    assert _spin.post(posts.ctypes.data, 2, counter.ctypes.data, 10**12) == 3  # taken: returns


def test_park_marks_the_job_done_and_polls_its_post_count():
    _spin.build()
    box = np.array([5, 0], np.int64)
    done = np.zeros(1, np.int64)
    seen = []

    def post():
        time.sleep(0.01)
        seen.append(int(box[1]))  # polling while parked
        box[0] = 6

    t = threading.Thread(target=post)
    t.start()
    assert _spin.park(box.ctypes.data, 5, 10**12, done.ctypes.data) == 6
    t.join()
    assert done[0] == 1 and seen == [1] and box[1] == 0


@numba.njit(nogil=True)
def _count(hits, nch, counter):
    ch = _threads.first_chunk(counter, nch)
    while ch < nch:
        hits[ch] += 1
        ch = _threads.later_chunk(counter, nch)


def test_launch_pass_takes_one_thread_per_grain(monkeypatch):
    monkeypatch.setattr(_config, "SERIAL_THRESHOLD", 1)
    grain = _threads.PASS_GRAIN
    hits = np.zeros(64, np.int64)
    _threads.launch_pass(_count, 2 * grain - 1, 64, hits)  # under two grains: one call, one chunk
    assert hits[0] == 1 and not hits[1:].any()
    for size in (2 * grain, 3 * grain, 64 * grain):
        hits[:] = 0
        threads = min(numba.get_num_threads(), size // grain)
        _threads.launch_pass(_count, size, 64, hits)
        nch = 1 if threads < 2 else min(64, _threads.CHUNKS_PER_THREAD * threads)
        assert (hits[:nch] == 1).all() and not hits[nch:].any()


def test_an_exception_in_a_thread_is_raised():
    def boom(counter):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        _threads.run(boom, 8)
    hits = np.zeros(8, np.int64)  # the pool still works afterwards
    _threads.run(lambda counter: _take(counter, hits), 8)
    assert (hits == 1).all()


def _lrn(x, g):
    return (numbanorm.local_response_norm(x, 5), numbanorm.local_response_norm_backward(g, x, 5),
            numbanorm.local_response_norm(x, 3, mode="within_channel"))


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((8, 16, 24, 24)).astype(np.float32)  # above the serial threshold
    return x, rng.standard_normal(x.shape).astype(np.float32)


def test_parallel_equals_serial_bitwise(monkeypatch):
    x, g = _inputs()
    par = _lrn(x, g)
    monkeypatch.setattr(_config, "SERIAL_THRESHOLD", x.size + 1)
    ser = _lrn(x, g)
    for a, b in zip(par, ser):
        assert np.array_equal(a, b)


def test_concurrent_python_threads():
    x, g = _inputs(1)
    expected = _lrn(x, g)
    results = in_threads(lambda i: _lrn(x, g), 4)
    for r in results:
        assert all(np.array_equal(a, b) for a, b in zip(r, expected))


def _child(q):
    x, g = _inputs(2)
    q.put([float(np.abs(a).sum()) for a in _lrn(x, g)])


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork")
def test_fork_after_the_pool_ran_in_the_parent():
    x, g = _inputs(2)
    expected = [float(np.abs(a).sum()) for a in _lrn(x, g)]  # the parent's pool threads exist now
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(q,))
    p.start()
    got = q.get(timeout=120)
    p.join(timeout=60)
    assert p.exitcode == 0
    assert got == expected


def _generic_last_steps(x, groups, w, b):
    """The generic channels-last forward as separate steps (two launches and a dispatch)."""
    from numbanorm._cpu import _channels
    from numbanorm._cpu._channels_forward import _finish

    nb, no, nc, _ = x.shape
    stats = [np.empty((nb, groups)) for _ in range(3)]  # mean, var, rstd
    p1, p2 = _channels._moments(x)
    coef = np.empty((3, nb, nc), x.dtype)
    _finish(x, p1, p2, groups, 1e-5, *stats, w, b, coef)
    out = np.empty_like(x)
    _channels._apply(x, coef, out)
    return out, stats


@pytest.mark.parametrize("shape,groups", [((1, 256, 1024, 1), 1024), ((3, 20000, 12, 1), 4), ((1, 70000, 3, 1), 3)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_two_phase_channels_last_forward(shape, groups, dtype, monkeypatch):
    """``_channels_last._last_forward`` (one launch: partials, the last chunk's thread
    finishes, each thread normalizes its own chunks) equals the generic steps bitwise, on
    the pool, with one thread taking every chunk of a many-chunk call (a helper that never
    starts: nobody waits for it) and as a one-chunk call; the pool run 20 times (a lost
    wake-up would hang here)."""
    from numbanorm._cpu import _channels, _channels_last

    rng = np.random.default_rng(3)
    x = (rng.standard_normal(shape) * 3 + 50).astype(dtype)
    nb, no, nc, _ = shape
    w, b = rng.standard_normal(nc).astype(dtype), rng.standard_normal(nc).astype(dtype)
    want, want_stats = _generic_last_steps(x, groups, w, b)

    def direct(nch, counter):
        ko, _, p1, p2 = _channels._partials(x)
        scratch = np.empty((2, nb * ko, nc), x.dtype)
        out = np.empty_like(x)
        stats = [np.empty((nb, groups)) for _ in range(3)]
        _channels_last._last_forward(x, ko, p1, p2, scratch[0], scratch[1], groups, 1e-5, w, b, out, *stats,
                                     np.empty((3, nb, nc), x.dtype), np.zeros(2, np.int64), nch, counter)
        return out, stats

    ko = _channels.chunking(nb, no, 1)[0]
    for nch, counter in ((nb * ko, np.zeros(1, np.int64)), (1, _threads.SERIAL_COUNTER)):
        got, stats = direct(nch, counter)
        np.testing.assert_array_equal(got, want)
        for a, e in zip(stats, want_stats):
            np.testing.assert_array_equal(a, e)
    for _ in range(20):
        stats = [np.empty((nb, groups)) for _ in range(3)]
        out = np.empty_like(x)
        _channels.forward(x, groups, 1e-5, w, b, out, stats[0], stats[2], stats[1])
        np.testing.assert_array_equal(out, want)
        np.testing.assert_array_equal(stats[0], want_stats[0])
