"""``num_batches_tracked`` counters kept on the device (no host round trip per step).

A training step with a device counter (a torch/CuPy/Numba 1-element integer array)
increments it with a one-thread kernel on the call's stream, and the cumulative moving
average (``momentum=None``) takes its factor ``1 / (count + 1)`` from the counter inside a
kernel (:func:`cumulative_factor` → a 1-element float64 device array that the running-
statistics kernels read), so the count never travels to the host.
"""
from numba import cuda

from . import _layout


@cuda.jit
def _increment(counter):
    if cuda.grid(1) == 0:
        counter[0] += 1


@cuda.jit
def _factor(counter, out):
    if cuda.grid(1) == 0:
        out[0] = 1.0 / (float(counter[0]) + 1.0)


def flat(counter):
    """The counter as a 1-element 1-D device view."""
    return counter.reshape(1)


def increment(counter):
    """``counter += 1`` on the device."""
    _increment[1, 32, _layout.stream()](flat(counter))


def cumulative_factor(counter):
    """``1 / (counter + 1)`` as a 1-element float64 device array (a per-stream scratch)."""
    out = _layout.scratch("counter.factor", (1,), "float64")
    _factor[1, 32, _layout.stream()](flat(counter), out)
    return out


PTX_SIGNATURES = [
    (_increment, "void(int64[::1])"),
    (_increment, "void(int32[::1])"),
    (_factor, "void(int64[::1], float64[::1])"),
    (_factor, "void(int32[::1], float64[::1])"),
]
