"""Thread and fork safety of the CPU kernels (the TBB threading layer), and determinism."""
import multiprocessing
import threading

import numpy as np
import pytest

import numbanorm
from numbanorm import layer_norm, layer_norm_backward, rms_norm


def _work(seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((256, 512)).astype(np.float32)  # above the serial threshold: parallel kernels
    y = layer_norm(x, 512)
    gx, _, gb = layer_norm_backward(np.ones_like(x), x, 512)
    return float(np.abs(y).sum() + np.abs(gx).sum() + rms_norm(x, 512).sum())


def test_threading_layer_is_thread_and_fork_safe():
    _work(0)
    assert numbanorm.threading_layer() in ("tbb", "workqueue")


def test_eight_python_threads_call_parallel_kernels():
    expected = [_work(s) for s in range(8)]
    results = [None] * 8
    errors = []

    def run(i):
        try:
            for _ in range(3):
                results[i] = _work(i)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    assert results == expected


def _child(q, seed):
    q.put(_work(seed))


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork")
def test_fork_after_kernels_ran_in_parent():
    expected = _work(3)  # the parallel runtime is now started in the parent
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_child, args=(q, 3)) for _ in range(2)]
    for p in procs:
        p.start()
    got = [q.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert got == [expected, expected]


def test_work_buffers_are_reused_per_thread_and_private_to_it():
    """Kernels' partial/scratch rows come from per-thread reusable buffers (_cpu._work)."""
    import threading

    from numbanorm._cpu import _work

    a = _work.empty("test.buf", (4, 8), np.float64)
    b = _work.zeros("test.buf", (2, 3), np.float32)  # smaller: the same memory again
    assert np.shares_memory(a, b) and not b.any() and b.shape == (2, 3) and b.dtype == np.float32
    c = _work.empty("test.buf", (64, 64), np.float64)  # larger: grown
    assert c.shape == (64, 64) and c.flags.c_contiguous
    other = []
    t = threading.Thread(target=lambda: other.append(_work.empty("test.buf", (4, 8), np.float64)))
    t.start()
    t.join()
    assert not np.shares_memory(other[0], _work.empty("test.buf", (4, 8), np.float64))
    big = _work.empty("test.big", (_work.KEEP_BYTES // 8 + 1,), np.float64)  # not kept
    assert not np.shares_memory(big, _work.empty("test.big", (8,), np.float64))
