"""bfloat16 bit conversions for the CUDA kernels (a leaf: ``_layout``'s copies and the
16-bit row kernels both use it).

A bfloat16 value is the upper half of a float32: ``f32 = bits << 16``; stores round to
nearest, ties to even, NaN kept (the CPU rule, ``_cpu/_bits.py``). Device arrays of
bfloat16 reach kernels as their ``uint16`` bit views (Numba has no bfloat16 type).
"""
import numpy as np
from numba import cuda, float32, float64, int32, uint16, uint32

from ._launch import SIMULATOR

if SIMULATOR:  # libdevice's bit casts are not simulated: NumPy views instead

    def _i2f(b):
        return np.array(b, np.uint32).view(np.float32)[()]

    def _f2i(v):
        return int(np.array(v, np.float32).view(np.uint32)[()])
else:
    from numba.cuda import libdevice

    @cuda.jit(device=True, inline="always")
    def _i2f(b):
        return libdevice.int_as_float(int32(b))

    @cuda.jit(device=True, inline="always")
    def _f2i(v):
        return uint32(libdevice.float_as_int(v))


@cuda.jit(device=True, inline="always")
def bf16_bits(v):
    """bfloat16 bits of float32 ``v``: nearest, ties to even; NaN stays NaN."""
    b = uint32(_f2i(float32(v)))
    hi = b >> uint32(16)
    if v != v:
        return uint16(hi | uint32(0x40))
    return uint16((b + uint32(0x7FFF) + (hi & uint32(1))) >> uint32(16))


@cuda.jit(device=True, inline="always")
def bf16_value(b):
    return _i2f(uint32(b) << uint32(16))


@cuda.jit(device=True, inline="always")
def odd32(v):
    """float64 ``v`` as float32 rounded to odd (truncated, last bit set when inexact):
    one rounding of that to bfloat16 or float16 is the direct rounding of ``v``."""
    t = float32(v)
    if float64(t) != v and v == v:
        b = uint32(_f2i(t))
        if abs(float64(t)) > abs(v):  # rounded away from zero: step back
            b = uint32(b - uint32(1))
        t = float32(_i2f(uint32(b | uint32(1))))
    return t
