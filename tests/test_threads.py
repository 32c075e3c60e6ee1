"""Thread and fork safety of the CPU kernels (the TBB threading layer), and determinism."""
import multiprocessing

import numpy as np
import pytest

import numbanorm
from numbanorm import layer_norm, layer_norm_backward, rms_norm
from reference import in_threads


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
    results = in_threads(_work, 8)
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
    """Kernels' partial/scratch rows come from per-thread reusable buffers (_cpu._work),
    except small ones (fresh arrays, cheaper than the lookup) and huge ones (not kept)."""
    import threading

    from numbanorm._cpu import _work

    k = _work.SMALL_BYTES // 8  # float64 elements of the smallest kept buffer
    a = _work.empty("test.buf", (4, k), np.float64)
    b = _work.zeros("test.buf", (2, k), np.float32)  # smaller: the same memory again
    assert np.shares_memory(a, b) and not b.any() and b.shape == (2, k) and b.dtype == np.float32
    c = _work.empty("test.buf", (64, k), np.float64)  # larger: grown
    assert c.shape == (64, k) and c.flags.c_contiguous
    other = []
    t = threading.Thread(target=lambda: other.append(_work.empty("test.buf", (4, k), np.float64)))
    t.start()
    t.join()
    assert not np.shares_memory(other[0], _work.empty("test.buf", (4, k), np.float64))
    big = _work.empty("test.big", (_work.KEEP_BYTES // 8 + 1,), np.float64)  # not kept
    assert not np.shares_memory(big, _work.empty("test.big", (k,), np.float64))
    small = _work.zeros("test.small", (4, 8), np.float64)  # below SMALL_BYTES: a fresh array each time
    assert not small.any() and not np.shares_memory(small, _work.empty("test.small", (4, 8), np.float64))


# --- the workqueue fallback (no TBB: macOS arm64, Linux aarch64), in child processes ---

_WORKQUEUE_SCRIPT = r'''
import os, sys, threading, time
import numpy as np
import numbanorm
from numbanorm import _config, layer_norm, layer_norm_backward

x = np.random.default_rng(7).standard_normal((256, 512)).astype(np.float32)  # parallel twins


def work():
    return layer_norm(x, 512), layer_norm_backward(np.ones_like(x), x, 512)[0]


def same(a, b):
    return all(np.array_equal(p, q) for p, q in zip(a, b))


ref = work()
assert numbanorm.threading_layer() == "workqueue", numbanorm.threading_layer()
MODE = sys.argv[1]
if MODE == "results":
    np.save(sys.argv[2], np.stack(ref))
    errors, results = [], []

    def run():
        try:
            results.extend(same(work(), ref) for _ in range(3))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and results == [True] * 12, (errors, results)
elif MODE == "fork":
    def child():
        os._exit(0 if same(work(), ref) else 3)

    # 1. deterministic: another thread holds the kernel lock (is "inside a kernel") at fork
    inside, release = threading.Event(), threading.Event()

    def hold():
        with _config.KERNEL_LOCK:
            inside.set()
            release.wait()

    holder = threading.Thread(target=hold)
    holder.start()
    inside.wait()
    codes = []
    pid = os.fork()
    if pid == 0:
        child()
    codes.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
    release.set()
    holder.join()
    # 2. as it happens: a thread runs kernels in a loop while the main thread forks
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            work()

    looper = threading.Thread(target=loop)
    looper.start()
    time.sleep(0.1)
    for _ in range(3):
        pid = os.fork()
        if pid == 0:
            child()
        codes.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
    stop.set()
    looper.join()
    assert codes == [0] * 4, codes
print("ok")
'''


def _run_workqueue(*args, timeout=240):
    import os
    import subprocess
    import sys

    env = dict(os.environ, NUMBANORM_THREADING_LAYER="workqueue")
    env.pop("NUMBA_THREADING_LAYER", None)
    try:
        proc = subprocess.run([sys.executable, "-c", _WORKQUEUE_SCRIPT, *args], env=env,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"workqueue child {args} hung (no result within {timeout} s)")
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stdout + proc.stderr


def test_workqueue_fallback_is_selected_correct_and_thread_safe(tmp_path):
    """The fallback layer gives the same results as this process's layer, and four Python
    threads running parallel kernels at once neither abort nor disagree (the kernel lock)."""
    _run_workqueue("results", str(tmp_path / "wq.npy"))
    x = np.random.default_rng(7).standard_normal((256, 512)).astype(np.float32)
    expected = np.stack([layer_norm(x, 512), layer_norm_backward(np.ones_like(x), x, 512)[0]])
    # not bitwise: a freshly compiled kernel and its copy loaded from Numba's disk cache
    # differ in the last bit on some elements (either process may have compiled it)
    np.testing.assert_allclose(np.load(tmp_path / "wq.npy"), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork")
def test_workqueue_fork_while_another_thread_is_in_a_kernel():
    """The child of a fork taken while another thread holds the kernel lock gets a fresh
    lock (os.register_at_fork) instead of waiting forever for a thread it does not have."""
    _run_workqueue("fork")
