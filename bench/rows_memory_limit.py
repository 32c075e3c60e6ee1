"""Issue 11/14 figures of the CPU row kernels against the copy limit, in one process.

Runs the lead's issue-14 cases on float32 (8192, 4096) (rms_norm, quantized rms_norm with
and without ``out=q``, bfloat16 rms_norm, the fused add norms, unfused np.add + rms_norm,
torch) and the (4096, 1024) layer_norm / rms_norm ``out=`` calls against the streaming
copy and onnxruntime (timed in a loop of its own: its spinning threads slow whatever runs
after it), min of interleaved runs (``numbanorm._bench.time_interleaved``), and
prints the ratios with the load (``os.getloadavg``) before and after.

    PYTHONPATH=$PWD python bench/rows_memory_limit.py [repeat]
"""
import os
import sys

import ml_dtypes
import numpy as np

import numbanorm as nn
from numbanorm import _pool
from numbanorm._bench import _onnxrt, time_interleaved
from numbanorm._bench._copy import stream_copy


def _no_pool(f):
    """``f()`` with the output pool off: fresh outputs are new ``np.empty`` arrays (what the
    quantized and 16-bit paths returned before they used the pool)."""
    keep = _pool.MAX_BYTES
    _pool.MAX_BYTES = 0
    try:
        return f()
    finally:
        _pool.MAX_BYTES = keep


def big_cases():
    R, C = 8192, 4096
    rng = np.random.default_rng(0)
    x = rng.standard_normal((R, C), dtype=np.float32)
    r = rng.standard_normal((R, C), dtype=np.float32)
    w = rng.standard_normal(C, dtype=np.float32)
    y, s, dst = np.empty_like(x), np.empty_like(x), np.empty_like(x)
    xb, wb = x.astype(ml_dtypes.bfloat16), w.astype(ml_dtypes.bfloat16)
    yb = np.empty_like(xb)
    q = np.empty(x.shape, np.int8)
    fns = {
        "copyto": lambda: np.copyto(dst, x),
        "stream": lambda: stream_copy(dst, x),
        "rms": lambda: nn.rms_norm(x, (C,), w, out=y),
        "rms_int8": lambda: nn.rms_norm(x, (C,), w, quantize="int8"),
        "rms_int8_out": lambda: nn.rms_norm(x, (C,), w, quantize="int8", out=q),
        "rms_int8_fresh": lambda: _no_pool(lambda: nn.rms_norm(x, (C,), w, quantize="int8")),
        "rms_bf16": lambda: nn.rms_norm(xb, (C,), wb, out=yb),
        "add_rms": lambda: nn.add_rms_norm(x, r, (C,), w, out=y, residual_out=s),
        "add_ln": lambda: nn.add_layer_norm(x, r, (C,), w, out=y, residual_out=s),
        "unfused": lambda: (np.add(x, r, out=s), nn.rms_norm(s, (C,), w, out=y)),
    }
    try:
        import torch
        torch.set_num_threads(2)
        tx, tr, tw = map(torch.from_numpy, (x, r, w))
        fns["torch_add_rms"] = lambda: torch.nn.functional.rms_norm(tx + tr, (C,), tw)
    except ImportError:
        pass
    return fns


def small_cases():
    R, C = 4096, 1024
    rng = np.random.default_rng(1)
    x = rng.standard_normal((R, C), dtype=np.float32)
    w = rng.standard_normal(C, dtype=np.float32)
    b = rng.standard_normal(C, dtype=np.float32)
    y, dst = np.empty_like(x), np.empty_like(x)
    fns = {
        "stream": lambda: stream_copy(dst, x),
        "copyto": lambda: np.copyto(dst, x),
        "ln_out": lambda: nn.layer_norm(x, (C,), w, b, out=y),
        "ln_new": lambda: nn.layer_norm(x, (C,), w, b),
        "rms_out": lambda: nn.rms_norm(x, (C,), w, out=y),
        "rms_new": lambda: nn.rms_norm(x, (C,), w),
    }
    ort = {}
    ln = _onnxrt.node("LayerNormalization", [x, w, b], 17, axis=-1, epsilon=1e-5)
    if ln is not None:
        ort["ort_ln"] = ln
    rms = _onnxrt.node("RMSNormalization", [x, w], 23, axis=-1, epsilon=1e-6)
    if rms is not None:
        ort["ort_rms"] = rms
    return fns, ort


def main(repeat=9):
    print("load before", os.getloadavg())
    t = time_interleaved(big_cases(), repeat=repeat)
    print("load after big", os.getloadavg())
    for k, v in t.items():
        print(f"  {k:15s} {v * 1e3:8.2f} ms")
    lim = min(t["copyto"], t["stream"])
    r = {k: t[k] / t["rms"] for k in ("rms_int8", "rms_int8_out", "rms_int8_fresh", "rms_bf16")}
    print(f"  rms/stream {t['rms'] / lim:.3f}  bf16/f32 {r['rms_bf16']:.3f}")
    print(f"  int8/rms {r['rms_int8']:.3f}  int8(out=q)/rms {r['rms_int8_out']:.3f}  "
          f"int8(fresh np.empty, no pool)/rms {r['rms_int8_fresh']:.3f}")
    print(f"  add_rms/stream {t['add_rms'] / lim:.3f}  add_ln/stream {t['add_ln'] / lim:.3f}  "
          f"add_rms/unfused {t['add_rms'] / t['unfused']:.3f}"
          + (f"  torch/add_rms {t['torch_add_rms'] / t['add_rms']:.1f}" if "torch_add_rms" in t else ""))
    # onnxruntime's intra-op threads spin for a while after each run, which doubled the time
    # of whatever ran next in one interleaved loop (ln_out 3.8-4.3 ms instead of 1.9): its
    # callables are timed in a loop of their own.
    fns, ort = small_cases()
    t = time_interleaved(fns, repeat=3 * repeat)
    if ort:
        t.update(time_interleaved(ort, repeat=3 * repeat))
    print("load after small", os.getloadavg())
    lim = min(t["copyto"], t["stream"])
    for k, v in t.items():
        print(f"  {k:15s} {v * 1e3:8.3f} ms  {v / lim:.2f}x copy limit")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 9)
