"""The thread pool polling vs blocking (``_threads.SPIN_ROUNDS = 0``) on medium calls:
``PYTHONPATH=$PWD python bench/pool_ab.py``.

Both modes interleaved in one process, min per-call time of 7 rounds each (the machine is
noisy; a ratio in one process is what carries over). See ``numbanorm/_cpu/_threads.py``.
Not a test."""
import time

import numpy as np

import numbanorm as nn
from numbanorm._cpu import _threads
rng = np.random.default_rng(0)
def arr(*s): return rng.standard_normal(s, dtype=np.float32)
cases = []
x = arr(256, 1024); w = np.ones(1024, np.float32); b = np.zeros(1024, np.float32)
rm = np.zeros(1024, np.float32); rv = np.ones(1024, np.float32); g = arr(256, 1024)
cases += [("bn train 256x1024", lambda: nn.batch_norm(x, rm, rv, w, b, training=True)),
          ("bn eval 256x1024", lambda: nn.batch_norm(x, rm, rv, w, b, training=False)),
          ("bn backward 256x1024", lambda: nn.batch_norm_backward(g, x, w, training=True)),
          ("ln fwd 256x1024", lambda: nn.layer_norm(x, (1024,), w, b))]
x4 = arr(8, 256, 28, 28); w4 = np.ones(256, np.float32); b4 = np.zeros(256, np.float32)
rm4 = np.zeros(256, np.float32); rv4 = np.ones(256, np.float32); o4 = np.empty_like(x4); g4 = arr(8, 256, 28, 28)
cases += [("bn train 8x256x28x28", lambda: nn.batch_norm(x4, rm4, rv4, w4, b4, training=True, out=o4)),
          ("bn eval 8x256x28x28", lambda: nn.batch_norm(x4, rm4, rv4, w4, b4, training=False, out=o4)),
          ("gn fwd 8x256x28x28", lambda: nn.group_norm(x4, 32, w4, b4, out=o4)),
          ("gn bwd 8x256x28x28", lambda: nn.group_norm_backward(g4, x4, 32, w4, out=o4))]
xl = arr(4096, 1024); ol = np.empty_like(xl); gl = arr(4096, 1024)
cases += [("rms fwd 4096x1024", lambda: nn.rms_norm(xl, (1024,), w, out=ol)),
          ("ln fwd 4096x1024", lambda: nn.layer_norm(xl, (1024,), w, b, out=ol)),
          ("ln bwd 4096x1024", lambda: nn.layer_norm_backward(gl, xl, (1024,), w, out=ol))]
xw = arr(256, 256, 3, 3); gw = arr(256, 256, 3, 3)
cases += [("ws fwd 256x256x3x3", lambda: nn.weight_standardize(xw)),
          ("ws bwd 256x256x3x3", lambda: nn.weight_standardize_backward(gw, xw))]
def per_call(f, n):
    t0 = time.perf_counter()
    for _ in range(n): f()
    return (time.perf_counter() - t0) / n
POLLING = _threads.SPIN_ROUNDS
print("case  polling  blocking  blocking/polling")
for name, f in cases:
    for _ in range(3): f()
    t1 = per_call(f, 1)
    n = max(3, min(200, int(0.02 / max(t1, 1e-6))))
    best = {POLLING: 1e9, 0: 1e9}
    for r in range(7):
        for mode in ((POLLING, 0) if r % 2 == 0 else (0, POLLING)):
            _threads.SPIN_ROUNDS = mode
            f(); f()  # untimed: the helpers settle into the mode (why not _bench.time_interleaved:
            # timed straight after the other mode's loop, the ratios read 1.0-1.3 instead of 1.4-1.9)
            best[mode] = min(best[mode], per_call(f, n))
    _threads.SPIN_ROUNDS = POLLING
    print("%-22s %8.1f us %8.1f us  %.2f" % (name, best[POLLING]*1e6, best[0]*1e6, best[0]/best[POLLING]), flush=True)
