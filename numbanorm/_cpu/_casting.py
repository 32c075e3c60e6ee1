"""``casting="llama"`` / ``"none"`` for half-precision data: the data-dtype steps (CPU).

The row forward has written ``buf`` = x̂ (the compute dtype, float32 or float64, of each
row, weight 1 and bias 0); :func:`round_output` rewrites it with the value the data dtype
``half`` (float16 or bfloat16) gives, rounding every step (``h``: round to ``half``)::

    llama:  y = h(h(x̂) · h(w))              [then y = h(y + h(b))]
    none:   y = h(h(h(h(x) − h(μ)) · h(rstd)) · h(w))  [then y = h(y + h(b))]

(``none`` without the subtraction for RMSNorm; ``w`` is the effective weight ``o + w``).
Each product or sum of two half values is computed in float32 and rounded once: exact
for products, and for sums the correctly rounded half result (float32 has more than
2p + 2 bits for p = 11 and 8), i.e. NumPy's float16 and ml_dtypes' bfloat16 arithmetic.
Compute-dtype values are rounded to half directly (float64: through float32 rounded to
odd, :func:`._bits.narrow32`, so the single rounding of ``astype(half)`` is kept).

Layout: ``buf``, ``src`` C-contiguous ``(M, N)`` of the compute dtype; ``w``, ``b``
``(N,)``; ``mean``, ``rstd`` ``(M,)``. ``tag``: an empty ``uint16`` (bfloat16) or
``int16`` (float16) array naming the format (:mod:`._bits`). Thread mapping: a serial
``nogil`` kernel over chunks of consecutive rows (:func:`._threads.launch`: one chunk below
``SERIAL_THRESHOLD`` elements, else the thread pool).
"""
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

from .. import _config
from ._bits import add, bf16_to_f32, f32_to_bf16, mul, narrow32
from ._threads import first_chunk, launch, later_chunk


@intrinsic
def _f16_round(typingctx, v):
    """float32 ``v`` rounded to float16 and back (``fptrunc``, ``fpext``), then ``freeze``,
    which no float transform looks through: with the plain round trips (``_bits.f32_to_f16``
    / ``f16_to_f32``) LLVM rewrote the chain of ``none`` without a bias and some results
    came out one ulp off (one rounding where two are due)."""
    if v != types.float32:
        return None

    def codegen(context, builder, signature, args):
        r = builder.fpext(builder.fptrunc(args[0], ir.HalfType()), ir.FloatType())
        fz = ir.instructions.Instruction(builder.block, r.type, "freeze", [r])
        builder._insert(fz)
        return fz

    return types.float32(v), codegen


def _h(tag, v):
    """``v`` rounded to ``tag``'s half format (nearest even, NaN kept), as float32."""


@overload(_h, inline="always", jit_options=_config.JIT_OPTIONS)
def _h_impl(tag, v):
    if tag.dtype == types.uint16:
        return lambda tag, v: bf16_to_f32(f32_to_bf16(narrow32(v)))
    return lambda tag, v: _f16_round(narrow32(v))


@njit(nogil=True, **_config.JIT_OPTIONS)
def _round(llama, tag, buf, src, w, b, has_b, mean, has_mean, rstd, nch, counter):
    """Chunks of consecutive rows from ``counter`` (:func:`._threads.launch`)."""
    m, n = buf.shape
    c = first_chunk(counter, nch)
    while c < nch:
        for i in range(c * m // nch, (c + 1) * m // nch):
            hm = _h(tag, mean[i]) if has_mean else np.float32(0.0)
            hr = _h(tag, rstd[i])
            for j in range(n):
                if llama:
                    y = _h(tag, mul(_h(tag, buf[i, j]), _h(tag, w[j])))
                else:
                    v = _h(tag, src[i, j])
                    if has_mean:
                        v = _h(tag, add(v, -hm))
                    y = _h(tag, mul(_h(tag, mul(v, hr)), _h(tag, w[j])))
                if has_b:
                    y = _h(tag, add(y, _h(tag, b[j])))
                buf[i, j] = y
        c = later_chunk(counter, nch)


def round_output(kind, buf, src, w, b, mean, rstd, half):
    """Rewrite ``buf`` (the x̂ rows) with the ``casting=kind`` ("llama" or "none") result
    in the data dtype ``half``, kept in ``buf``'s dtype (exact); see the module doc.
    ``b``/``mean`` may be None (no bias / RMSNorm)."""
    tag = np.empty(0, np.int16 if np.dtype(half) == np.float16 else np.uint16)
    launch(_round, buf.size, buf.shape[0], kind == "llama", tag, buf, src, w, w if b is None else b, b is not None,
                   rstd if mean is None else mean, mean is not None, rstd)
