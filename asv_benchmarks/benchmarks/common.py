"""Shared helpers for the asv benchmarks.

Every ``bench_<op>.py`` benchmarks one normalization with the parameters
``(shape, dtype, impl)``; ``impl`` is one of :data:`IMPLS`:

* ``numbanorm``: the CPU kernels on NumPy input (``out=`` preallocated where the op has it);
* ``numbanorm_gpu``: the CUDA kernels on device arrays (skipped without a real GPU);
* ``copyto``: ``np.copyto`` of the input (one thread of memcpy);
* ``stream_copy``: the all-threads streaming copy of the input
  (:func:`numbanorm._bench._copy.stream_copy`); the faster of the two copies is this
  machine's memory-bandwidth limit (``numbanorm bench``'s "× copy limit");
* ``numpy``: a plain NumPy implementation;
* ``torch``: PyTorch's CPU kernels (skipped when PyTorch is absent);
* ``onnxruntime``: a one-node ONNX model of the operator in onnxruntime's CPU session
  (forward cases with an ONNX operator; skipped when onnxruntime is absent), and
  ``numbanorm_new``: numbanorm without ``out=`` beside it (onnxruntime returns fresh outputs).

The setups come from ``numbanorm._bench.<op>`` (the ``numbanorm bench`` cases), so the
command line and asv time the same calls. Shape lists are append-only: asv keys results
by parameter values, and removing one orphans its history.
"""
import os

import numpy as np

try:  # imported once by asv's forkserver (bench/asv_record.sh), not again in every benchmark process
    import torch  # noqa: F401
except ImportError:
    pass

#: CI's smoke run sets NUMBANORM_BENCH_SMOKE=1: every parameter list keeps its first entry only.
SMOKE = os.environ.get("NUMBANORM_BENCH_SMOKE") == "1"


def shapes(*values):
    """A benchmark's shape list (append-only); only the first one in smoke runs."""
    return list(values[:1]) if SMOKE else list(values)


IMPLS = ["numbanorm", "numbanorm_gpu", "copyto", "numpy", "torch", "stream_copy", "onnxruntime",
         "numbanorm_new"]  # append-only
if SMOKE:  # CI checks that every numbanorm benchmark runs; the baselines are timed by `numbanorm bench`
    IMPLS = ["numbanorm", "copyto"]

ROWS_SHAPES = shapes((32, 768), (4096, 1024), (8192, 4096))  # append-only
DTYPES = ["float32", "float64"][: 1 if SMOKE else 2]


def pick(setup, shape, dtype, impl):
    """Return the zero-argument callable for ``impl`` or raise NotImplementedError (asv skips).

    ``setup`` is a ``numbanorm._bench.<op>`` setup function returning (x, {impl: fn});
    it includes ``numbanorm_gpu`` (device arrays, synchronised) only when a GPU is present.
    """
    x, fns = setup(shape, dtype)
    if impl == "copyto":
        dst = np.empty_like(x)
        return lambda: np.copyto(dst, x)
    if impl == "stream_copy":
        from numbanorm._bench._copy import stream_copy

        dst = np.empty_like(x)
        stream_copy(dst, x)  # compile outside the timing
        return lambda: stream_copy(dst, x)
    if impl not in fns:
        raise NotImplementedError(f"{impl} not available")
    return fns[impl]
