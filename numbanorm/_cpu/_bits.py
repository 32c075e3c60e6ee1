"""16-bit and 8-bit float formats in CPU kernels, as bit patterns (Numba has no CPU float16).

The kernels see a bfloat16 array as ``uint16`` and a float16 array as ``int16`` (zero-copy
views made by :mod:`numbanorm._ops._lowp`); the integer type tells :func:`load` and
:func:`put` which format the bits are, so one kernel source compiles for both (and for
plain float32/float64 arrays, read and written as they are):

* bfloat16 → float32: ``u32(bits) << 16``, exact. float32 → bfloat16: round to nearest,
  ties to even (``(b + 0x7fff + ((b >> 16) & 1)) >> 16``), NaN kept NaN (quiet bit set),
  infinities and overflow to inf as IEEE rounding does.
* float16 ↔ float32: LLVM's ``fpext half`` / ``fptrunc`` (F16C ``vcvtph2ps``/``vcvtps2ph``
  where the CPU has them): exact / round to nearest even, NaN, inf and subnormals IEEE.
* float8 e4m3fn (``ml_dtypes.float8_e4m3fn``, bias 7, no inf, max 448, NaN 0x7f):
  :func:`e4m3_bits` of a value already clipped to [-448, 448], round to nearest even,
  subnormals (steps of 2**-9) included.
"""
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

from .._config import JIT_OPTIONS


@intrinsic
def f32_bits(typingctx, v):
    """The IEEE bits of a float32 as uint32."""
    if v != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return types.uint32(v), codegen


@intrinsic
def bits_f32(typingctx, b):
    """The float32 whose IEEE bits are the low 32 bits of the integer ``b``."""
    if not isinstance(b, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        v = args[0]
        if b.bitwidth > 32:
            v = builder.trunc(v, ir.IntType(32))
        elif b.bitwidth < 32:
            v = builder.zext(v, ir.IntType(32))
        return builder.bitcast(v, ir.FloatType())

    return types.float32(b), codegen


@intrinsic
def f16_to_f32(typingctx, b):
    """The float32 value of the float16 bits ``b`` (int16), exact."""
    if b != types.int16:
        return None

    def codegen(context, builder, signature, args):
        return builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.FloatType())

    return types.float32(b), codegen


@intrinsic
def f32_to_f16(typingctx, v):
    """The float16 bits (int16) of float32 ``v``, rounded to nearest even."""
    if v != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(builder.fptrunc(args[0], ir.HalfType()), ir.IntType(16))

    return types.int16(v), codegen


@intrinsic
def bf16_to_f32(typingctx, b):
    """The float32 value of the bfloat16 bits ``b`` (uint16): ``u32(b) << 16``, exact."""
    if b != types.uint16:
        return None

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        wide = builder.shl(builder.zext(args[0], i32), ir.Constant(i32, 16))
        return builder.bitcast(wide, ir.FloatType())

    return types.float32(b), codegen


@intrinsic
def f32_to_bf16(typingctx, v):
    """The bfloat16 bits (uint16) of float32 ``v``: nearest, ties to even; NaN stays NaN.

    32-bit integer IR (Numba would widen uint32 arithmetic to 64 bits and the loops
    would vectorise half as wide)."""
    if v != types.float32:
        return None

    def codegen(context, builder, signature, args):
        i32, i16 = ir.IntType(32), ir.IntType(16)
        b = builder.bitcast(args[0], i32)
        hi = builder.lshr(b, ir.Constant(i32, 16))
        r = builder.add(builder.add(b, ir.Constant(i32, 0x7FFF)), builder.and_(hi, ir.Constant(i32, 1)))
        rounded = builder.lshr(r, ir.Constant(i32, 16))
        quiet = builder.or_(hi, ir.Constant(i32, 0x40))
        isnan = builder.fcmp_unordered("uno", args[0], args[0])
        return builder.trunc(builder.select(isnan, quiet, rounded), i16)  # one narrowing

    return types.uint16(v), codegen


@intrinsic
def f32_to_i8(typingctx, v):
    """int8 of ``v`` (float32/float64) clipped to [-127, 127], rounded half to even; NaN → 0."""
    if not isinstance(v, types.Float):
        return None

    def codegen(context, builder, signature, args):
        ft = args[0].type
        x = args[0]
        lo, hi = ir.Constant(ft, -127.0), ir.Constant(ft, 127.0)
        x = builder.select(builder.fcmp_ordered("<", x, lo), lo, x)
        x = builder.select(builder.fcmp_ordered(">", x, hi), hi, x)
        x = builder.select(builder.fcmp_unordered("uno", x, x), ir.Constant(ft, 0.0), x)
        rint = builder.module.declare_intrinsic("llvm.rint", [ft])
        return builder.fptosi(builder.call(rint, [x]), ir.IntType(8))

    return types.int8(v), codegen


@intrinsic
def abs_max_bits(typingctx, acc, v):
    """``max(acc, bits(|v|))`` for float32 (uint32 ``acc``) / float64 (uint64 ``acc``) ``v``.

    Non-negative floats order like their bit patterns, NaN above inf, so an integer
    maximum of the magnitudes' bits is a NaN-propagating max|v| that vectorises (a float
    max reduction does not without ``nnan``)."""
    if not isinstance(v, types.Float) or not isinstance(acc, types.Integer) or acc.bitwidth != v.bitwidth:
        return None

    def codegen(context, builder, signature, args):
        it = ir.IntType(v.bitwidth)
        b = builder.and_(builder.bitcast(args[1], it), ir.Constant(it, (1 << (v.bitwidth - 1)) - 1))
        return builder.select(builder.icmp_unsigned(">", b, args[0]), b, args[0])

    return acc(acc, v), codegen


def _strict(op):
    @intrinsic
    def strict(typingctx, a, b):
        if not isinstance(a, types.Float) or not isinstance(b, types.Float):
            return None
        t = a if a.bitwidth >= b.bitwidth else b

        def codegen(context, builder, signature, args):
            x, y = (context.cast(builder, v, ty, t) for v, ty in zip(args, signature.args))
            # 'nsz' only: Numba's fast-math pass adds the kernel's flags to a float operation
            # only when it has none, so this one never gets 'reassoc' or 'contract'
            r = getattr(builder, op)(x, y, flags=("nsz",))
            fz = ir.instructions.Instruction(builder.block, r.type, "freeze", [r])
            builder._insert(fz)  # not an fmul/fadd: no reassociation or contraction across it
            return fz

        return t(a, b), codegen
    return strict


#: ``a * b`` / ``a + b`` with only the ``nsz`` flag, followed by a ``freeze`` (a no-op on the
#: defined value): neither LLVM's IR passes nor its instruction selection may reassociate
#: or contract them, so an expression of them rounds the same in every loop it is compiled
#: into (the cached and staged loops of ``_rows_lowp.write_row``, the packed pairs of
#: ``_rows_grad``), and unlike ``llvm.arithmetic.fence`` it vectorises. The ``freeze``
#: alone was not enough: instruction selection drops it, and on an AVX-512 Xeon the
#: packed-pair loop of the float16 fused add + RMSNorm computed its even elements as
#: ``x·(r·w)`` (with the kernel's ``reassoc`` flag on both products), 1 ulp off
#: ``(x·r)·w`` near a rounding tie.
mul = _strict("fmul")
add = _strict("fadd")


@intrinsic
def select(typingctx, cond, a, b):
    """``a if cond else b`` for two values of one type, as an LLVM ``select`` (no branch:
    it stays a straight line where the helper is inlined into a vectorised loop)."""
    if cond != types.boolean or a != b:
        return None

    def codegen(context, builder, signature, args):
        return builder.select(args[0], args[1], args[2])

    return a(cond, a, b), codegen


@intrinsic
def float_from_bits(typingctx, b):
    """The float32 / float64 with the bits of uint32 / uint64 ``b``."""
    if not isinstance(b, types.Integer) or b.bitwidth not in (32, 64):
        return None
    ft = types.float32 if b.bitwidth == 32 else types.float64

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType() if b.bitwidth == 32 else ir.DoubleType())

    return ft(b), codegen


def code(a, v):
    """``v`` as an element of ``a``: the 16-bit pattern (rounded) for bit arrays, else ``v``
    cast to ``a``'s dtype."""


def qcode(q, v):
    """The code of the already scaled value ``v`` in ``q``'s format: int8 (clipped to
    ±127, half to even) or float8 e4m3fn bits (uint8; clipped to ±448, nearest even)."""


def load(a, j):
    """``a[j]`` as a number: float32 for 16-bit bit arrays, the array's dtype otherwise."""


def put(a, j, v):
    """Store ``v`` into ``a[j]`` (rounded to ``a``'s format); return the stored value."""


@overload(load, inline="always", jit_options=JIT_OPTIONS)
def _load(a, j):
    if a.dtype == types.uint16:
        return lambda a, j: bf16_to_f32(a[j])
    if a.dtype == types.int16:
        return lambda a, j: f16_to_f32(a[j])
    return lambda a, j: a[j]


@overload(code, inline="always", jit_options=JIT_OPTIONS)
def _code(a, v):
    if a.dtype == types.uint16:
        return lambda a, v: f32_to_bf16(np.float32(v))
    if a.dtype == types.int16:
        return lambda a, v: f32_to_f16(np.float32(v))
    dt = a.dtype
    return lambda a, v: dt(v)


@overload(put, jit_options=JIT_OPTIONS)
def _put(a, j, v):
    if a.dtype == types.uint16:
        def put_bf16(a, j, v):
            b = f32_to_bf16(np.float32(v))
            a[j] = b
            return bf16_to_f32(b)
        return put_bf16
    if a.dtype == types.int16:
        def put_f16(a, j, v):
            b = f32_to_f16(np.float32(v))
            a[j] = b
            return f16_to_f32(b)
        return put_f16
    dt = a.dtype

    def put_float(a, j, v):
        w = dt(v)
        a[j] = w
        return w
    return put_float


@njit(inline="always", **JIT_OPTIONS)
def e4m3_bits(v):
    """float8 e4m3fn bits (uint8) of float32 ``v`` with |v| <= 448 (NaN → 0x7f|sign)."""
    b = f32_bits(v)
    sign = np.uint32((b >> np.uint32(24)) & np.uint32(0x80))
    a = abs(v)
    ab = b & np.uint32(0x7FFFFFFF)
    # normal range (a >= 2**-6): keep 3 mantissa bits, ties to even, rebias 127 -> 7
    r = (ab + np.uint32(0x7FFFF) + ((ab >> np.uint32(20)) & np.uint32(1))) >> np.uint32(20)
    normal = r - np.uint32(120 << 3)
    sub = np.uint32(np.rint(a * np.float32(512.0)))  # subnormal steps of 2**-9 (8 = 2**-6)
    code = select(a >= np.float32(0.015625), np.uint32(normal), sub)
    code = select(v != v, np.uint32(0x7F), code)
    return np.uint8(code | sign)


@overload(qcode, inline="always", jit_options=JIT_OPTIONS)
def _qcode(q, v):
    if q.dtype == types.int8:
        return lambda q, v: f32_to_i8(v)
    return lambda q, v: e4m3_bits(np.float32(min(max(v, -448.0), 448.0)))


def narrow32(v):
    """``v`` as float32: itself, or a float64 rounded to odd (truncated, last bit set when
    inexact), after which one round to nearest even to a 16-bit format is the direct
    rounding of ``v`` (24 ≥ 2·11 + 2 bits), as NumPy's and ml_dtypes' ``astype`` round."""


@overload(narrow32, inline="always", jit_options=JIT_OPTIONS)
def _narrow32_impl(v):
    if v == types.float32:
        return lambda v: v

    def odd(v):
        t = np.float32(v)
        if np.float64(t) != v and v == v:
            b = f32_bits(t)
            if abs(np.float64(t)) > abs(v):  # rounded away from zero: step back
                b = b - np.uint32(1)
            t = bits_f32(b | np.uint32(1))
        return t
    return odd
