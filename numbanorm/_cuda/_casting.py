"""``casting="llama"`` / ``"none"`` for half-precision data on the GPU (twin of
``numbanorm/_cpu/_casting.py``: same formulas, every step rounded to the data dtype)::

    llama:  y = h(h(x̂) · h(w))              [then y = h(y + h(b))]
    none:   y = h(h(h(h(x) − h(μ)) · h(rstd)) · h(w))  [then y = h(y + h(b))]

Layout: ``buf`` (the x̂ rows the row forward wrote, rewritten in place) and ``src``
C-contiguous ``(M, N)`` device arrays of the compute dtype (float32, or float64 with a
float64 residual stream); ``w``, ``b`` ``(N,)``; ``mean``, ``rstd`` ``(M,)``. Thread
mapping: one thread per element, grid-stride over the flattened ``M·N`` buffer (row
``k // N``'s statistics read per element, from cache). ``h`` rounds to float16
(``cvt.rn.f16.f32``) or bfloat16 (``_bf16.bf16_bits``: nearest even, NaN kept); float64
values go through float32 rounded to odd first, so one rounding is kept, as on the CPU.
Each op of two half values is computed in float32 and rounded once: the correctly
rounded half op, bitwise equal to the CPU kernel on equal inputs.
"""
import functools

from numba import cuda, float32
from numba.core.types import float16

from . import _layout
from ._bf16 import bf16_bits, bf16_value, odd32

BF16, F16 = "bf16", "f16"


@functools.lru_cache(maxsize=None)
def round_kernel(fh, wide):
    """The kernel for the half format ``fh`` (BF16 / F16) and a float64 (``wide``) or
    float32 compute dtype. Arguments ``(llama, buf, src, w, b, has_b, mean, has_mean, rstd)``."""
    if wide:
        @cuda.jit(device=True, inline="always")
        def to32(v):
            return odd32(v)
    else:
        @cuda.jit(device=True, inline="always")
        def to32(v):
            return float32(v)

    if fh == BF16:
        @cuda.jit(device=True, inline="always")
        def h(v):
            return bf16_value(bf16_bits(to32(v)))
    else:
        @cuda.jit(device=True, inline="always")
        def h(v):
            return float32(float16(to32(v)))

    @cuda.jit
    def _round_output(llama, buf, src, w, b, has_b, mean, has_mean, rstd):
        m, n = buf.shape
        for k in range(cuda.grid(1), m * n, cuda.gridsize(1)):
            i = k // n
            j = k - i * n
            if llama:
                y = h(h(buf[i, j]) * h(w[j]))
            else:
                v = h(src[i, j])
                if has_mean:
                    v = h(v - h(mean[i]))
                y = h(h(v * h(rstd[i])) * h(w[j]))
            if has_b:
                y = h(y + h(b[j]))
            buf[i, j] = y

    return _round_output


def round_output(kind, buf, src, w, b, mean, rstd, half):
    """Rewrite the device array ``buf`` (the x̂ rows) with the ``casting=kind`` ("llama" or
    "none") result in the data dtype ``half``; see the module doc and the CPU twin."""
    m, n = buf.shape
    if m * n == 0:
        return
    fh = F16 if str(half) == "float16" else BF16
    k = round_kernel(fh, str(buf.dtype) == "float64")
    blocks, tpb = _layout.launch_1d(m * n)
    k[blocks, tpb, _layout.stream()](kind == "llama", buf, src, w, w if b is None else b, b is not None,
                                     rstd if mean is None else mean, mean is not None, rstd)


def _signatures():
    sigs = []
    for wide, t in ((False, "float32"), (True, "float64")):
        mt, v = f"{t}[:, ::1]", f"{t}[::1]"
        for fh in (BF16, F16):
            sigs.append((round_kernel(fh, wide), f"void(boolean, {mt}, {mt}, {v}, {v}, boolean, {v}, boolean, {v})"))
    return sigs


PTX_SIGNATURES = _signatures()
