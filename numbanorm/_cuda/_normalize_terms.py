"""Lp normalization: the element terms and per-kind device loops shared by the CUDA row
kernels (:mod:`._normalize_rows`) and channel kernels (:mod:`._normalize_channels`).

No kernels here: device functions only. ``pk`` (the p kind): 0 → p = 2, 1 → p = 1,
2 → p = inf, 3 → other p (p < 0 included), 4 → p = -inf (the maximum of -|x|, reduced
with the max reductions), 5 → p = 0 (count of nonzeros). The loops of :func:`terms` walk
one thread's elements ``k, k + step, ... < end`` of a flat array with unsigned indices
(rows: step 32 within a row; channels: step ``inner`` down a column); accumulation is
float64, element-wise outputs are in the data dtype.
"""
import functools
import math

from llvmlite import ir
from numba import cuda, float32, float64, types
from numba.cuda.extending import intrinsic

from ._launch import SIMULATOR

P2, P1, PINF, PGEN, PNINF, P0 = 0, 1, 2, 3, 4, 5
INF = math.inf


@cuda.jit(device=True, inline="always")
def _init(pk):
    # identity of a norm accumulator: -inf for p = -inf (a maximum of -|x|), else 0
    return -INF if pk == PNINF else float64(0.0)


@cuda.jit(device=True, inline="always")
def _acc(v, a, pk, p):
    if pk == P2:
        return a + v * v
    if pk == P1:
        return a + abs(v)
    if pk == PINF:
        av = abs(v)
        if av > a or av != av:
            return av
        return a
    if pk == PNINF:  # the maximum of -|x| (NaN-propagating): min |x| = -max(-|x|)
        nv = -abs(v)
        if nv > a or nv != nv:
            return nv
        return a
    if pk == P0:  # the count of nonzeros (NaN counts, as NaN != 0)
        return a + (1.0 if v != 0.0 else 0.0)
    av = abs(v)
    if av == 0.0:
        return a if p > 0.0 else a + INF  # |0|**p = inf for p < 0: the norm is 0
    return a + av ** p


@cuda.jit(device=True, inline="always")
def _finish(a, pk, p):
    if pk == P2:
        return math.sqrt(a)
    if pk == P1 or pk == PINF or pk == P0:
        return a
    if pk == PNINF:
        return -a
    return a ** (1.0 / p)


@cuda.jit(device=True, inline="always")
def _clamp(nrm, eps):
    return eps if nrm < eps else nrm


@cuda.jit(device=True, inline="always")
def _dnorm(v, nrm, rn, pk, p, cnt):
    """d nrm / d v; ``rn`` = 1 / nrm (0 where nrm = 0)."""
    if pk == P2:
        return v * rn  # 0 for v = 0 or nrm = 0 (rn = 0; v is finite when nrm = 0)
    if v == 0.0 or nrm == 0.0:
        return 0.0
    sg = 1.0 if v > 0.0 else -1.0
    if pk == P1:
        return sg
    if pk == PINF or pk == PNINF:
        if abs(v) == nrm:
            return sg / cnt
        return 0.0
    if pk == P0:
        return 0.0
    return sg * abs(v) ** (p - 1.0) * nrm ** (1.0 - p)


@cuda.jit(device=True, inline="always")
def _factors(s, nrm, eps, pk):
    """Per-row float64 factors of the gradient ``dy · inv_d − coef · d nrm / d x``:
    ``(inv_d, coef, cr, rn)``; ``rn`` = 1 / nrm (0 where nrm = 0), ``cr`` = ``coef · rn``
    (p = 1: ``coef · 0``)."""
    inv_d = 1.0 / _clamp(nrm, eps)
    coef = s * inv_d * inv_d if nrm >= eps and pk != P0 else 0.0
    rn = 1.0 / nrm if nrm != 0.0 else 0.0
    cr = coef * (0.0 if pk == P1 else rn)
    return inv_d, coef, cr, rn


@cuda.jit(device=True, inline="always")
def _is_tie(v, nrm):
    av = abs(v)
    return av == nrm or av != av


if SIMULATOR:  # the simulator runs Python: a NumPy view from the column's start
    def column_ptr(arr, base):
        """``arr[base:]`` (simulator twin of the compiled intrinsic)."""
        return arr[base:]

    def opaque(v):
        """``v`` (simulator twin of the compiled intrinsic)."""
        return v
else:
    @intrinsic
    def opaque(typingctx, v):
        """``v`` (a 32-bit unsigned integer) through a volatile inline PTX ``mov``: a value
        the compiler cannot treat as loop-invariant. A loop over columns that takes the
        in-column bound from it is not unswitched on conditions of that bound (e.g.
        whether ``C >= 2`` or C is odd), which would lay out extra copies of the element
        loops (the SASS count would add them; the work per element is the same)."""
        if v != types.uint32:
            return None

        def codegen(context, builder, sig, args):
            i32 = ir.IntType(32)
            return builder.asm(ir.FunctionType(i32, [i32]), "mov.u32 $0, $1;", "=r,r", [args[0]], True)

        return types.uint32(v), codegen

    @intrinsic
    def column_ptr(typingctx, arr, base):
        """A pointer to ``arr[base]`` (``arr`` a contiguous device array, ``base`` an
        unsigned element offset) that the compiler cannot fold back into ``arr``'s data
        pointer: indexed with a ``uint32`` offset ``k`` it addresses ``ptr + k·itemsize`` with one
        ``IMAD.WIDE.U32`` per access (a flat ``arr[base + k]`` costs 64-bit index math per
        array and element). The pointer is passed through ``cvta.to.global`` (inline PTX:
        opaque to LLVM, the identity on global memory) and addresses global memory, so
        the loads stay ``LDG``. Valid for ``k`` < 2**32 elements past ``base``; no bounds
        check (callers keep ``base + k`` inside ``arr``)."""
        if not isinstance(arr, types.Array) or not isinstance(base, types.Integer):
            return None

        def codegen(context, builder, sig, args):
            data = context.make_array(sig.args[0])(context, builder, args[0]).data
            p = builder.gep(data, [args[1]])
            i64 = ir.IntType(64)
            fty = ir.FunctionType(i64, [i64])
            v = builder.asm(fty, "cvta.to.global.u64 $0, $1;", "=l,l", [builder.ptrtoint(p, i64)], False)
            g = builder.inttoptr(v, ir.PointerType(p.type.pointee, addrspace=1))
            return builder.addrspacecast(g, p.type)

        return types.CPointer(arr.dtype)(arr, base), codegen


def _named(fn, name):
    fn.__name__ = fn.__qualname__ = name
    return cuda.jit(fn)


#: p kinds with kernels of their own (p a compile-time constant); others share the
#: ``None`` kernels, which take the kind at run time
FIXED = (P2, P1, PINF)

#: the fixed kinds whose norm is a sum (the others: a maximum)
SUMS = (P2, P1)


@functools.lru_cache(maxsize=None)
def terms(fixed, fp64=False):
    """The per-kind device loops the row and channel kernels share, for one p kind
    (``fixed`` in :data:`FIXED`) or for all the others (``None``: the kind is the ``pk``
    argument): ``(K, tag, maxred, kind, scale, gterm, grad_run, dot_run, count_ties)``.

    Data arrays are passed flat with their dims; elements are addressed with unsigned
    indices from row / column base offsets; reductions are float64, element-wise outputs
    in the data dtype.

    ``fp64=False`` (float32 data): ``x / d`` is computed as ``float32(float64(x) · (1/d))``
    with ``1/d`` in float64 once per row: the float64 product is within 2⁻⁵² of the exact
    quotient, closer than any float32 rounding boundary (≥ 2⁻⁴⁹ away for 24-bit
    operands), so it rounds to the same bits as the float32 division, at 3 instructions
    instead of ~12."""
    K = -1 if fixed is None else fixed
    tag = "" if fixed is None else {P2: "_p2", P1: "_p1", PINF: "_pinf"}[fixed]
    maxred = fixed not in SUMS  # p = ±inf take max reductions (and count ties backward)

    def kind(pk):
        return pk if K < 0 else K

    kind = cuda.jit(device=True, inline="always")(kind)

    def scale(x, out, k, end, step, d):
        """out[j] = x[j] / d for j = k, k + step, ... < end (unsigned), two per iteration."""
        r = float64(1.0) / float64(d)
        while k + step < end:
            k2 = k + step
            if fp64:
                v1 = x[k] / d
                v2 = x[k2] / d
            else:
                v1 = float32(float64(x[k]) * r)
                v2 = float32(float64(x[k2]) * r)
            out[k] = v1
            out[k2] = v2
            k = k2 + step
        if k < end:
            if fp64:
                out[k] = x[k] / d
            else:
                out[k] = float32(float64(x[k]) * r)

    scale = cuda.jit(device=True, inline="always")(scale)

    def gterm(v, coef, cr, nrm, rn, pk, p, cnt):
        """``coef · d nrm / d v``; ``cr`` from :func:`_factors`. Compile-time p = 2: ``v · cr``
        (one multiplication per element); p = 1: ``±coef`` (``cr`` = ``coef · 0`` at v = 0);
        p = inf: ``±coef / ties`` at the ties (no division per element). The runtime kinds
        keep the generic form (the shortcuts cost them registers)."""
        if K == P2:
            return v * cr
        if K == P1:
            if v == 0.0:
                return cr
            return coef if v > 0.0 else -coef
        if K == PINF:  # ``cr`` = coef / ties (grad_run): ±cr at the ties |v| = nrm, else 0
            if v == 0.0 or abs(v) != nrm:
                return 0.0
            return cr if v > 0.0 else -cr
        return coef * _dnorm(v, nrm, rn, pk, p, cnt)

    gterm = cuda.jit(device=True, inline="always")(gterm)

    def grad_run(grad_out, x, grad_x, k, end, step, s, nrm, eps, pk, p, cnt):
        """grad_x[j] for j = k, k + step, ... < end (unsigned), two per iteration; the
        float64 factors of :func:`_factors` are formed here, once per row."""
        inv_d, coef, cr, rn = _factors(s, nrm, eps, pk)
        if K == PINF:  # the tie share of the gradient, one division per row
            cr = coef / cnt if cnt > 0.0 else 0.0
        while k + step < end:
            k2 = k + step
            v1 = grad_out[k] * inv_d - gterm(float64(x[k]), coef, cr, nrm, rn, pk, p, cnt)
            v2 = grad_out[k2] * inv_d - gterm(float64(x[k2]), coef, cr, nrm, rn, pk, p, cnt)
            grad_x[k] = v1
            grad_x[k2] = v2
            k = k2 + step
        if k < end:
            grad_x[k] = grad_out[k] * inv_d - gterm(float64(x[k]), coef, cr, nrm, rn, pk, p, cnt)

    grad_run = cuda.jit(device=True, inline="always")(grad_run)

    def dot_run(grad_out, x, k, end, step, a, s, pk, p):
        """(norm accumulator, Σ dy·x) over j = k, k + step, ... < end, two per iteration."""
        while k + step < end:
            k2 = k + step
            v1 = float64(x[k])
            v2 = float64(x[k2])
            g1 = float64(grad_out[k])
            g2 = float64(grad_out[k2])
            a = _acc(v2, _acc(v1, a, pk, p), pk, p)
            s += g1 * v1 + g2 * v2
            k = k2 + step
        if k < end:
            v = float64(x[k])
            a = _acc(v, a, pk, p)
            s += float64(grad_out[k]) * v
        return a, s

    dot_run = cuda.jit(device=True, inline="always")(dot_run)

    def count_ties(x, k, end, step, nrm):
        cnt = float64(0.0)
        while k < end:
            if _is_tie(float64(x[k]), nrm):
                cnt += 1.0
            k += step
        return cnt

    count_ties = cuda.jit(device=True, inline="always")(count_ties)

    return K, tag, maxred, kind, scale, gterm, grad_run, dot_run, count_ties
