"""Non-temporal copy of a row of bits (16-bit and 8-bit outputs of ``_rows_lowp``/``_quant``).

``stream_copy(out, ob, src, sb, n)``: ``out.flat[ob:ob+n] = src.flat[sb:sb+n]`` for flat
C-contiguous integer arrays of one dtype, stored with ``!nontemporal`` 32-byte vector
stores (scalar head until ``out`` is 32-byte aligned, scalar tail), as the float rows of
:mod:`._stream` are: large outputs skip the read-for-ownership of every line. The kernels
compute a row into a per-chunk scratch row (in L1) and stream it out with this.
"""
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ._stream import STREAM_BYTES  # noqa: F401  (the threshold the callers use)


@intrinsic
def stream_copy(typingctx, out, ob, src, sb, n):
    """See the module doc."""
    if not (isinstance(out, types.Array) and isinstance(src, types.Array) and out.dtype == src.dtype
            and isinstance(out.dtype, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        oarr = context.make_array(signature.args[0])(context, builder, args[0])
        sarr = context.make_array(signature.args[2])(context, builder, args[2])
        i64 = ir.IntType(64)
        op = builder.gep(oarr.data, [args[1]])
        sp = builder.gep(sarr.data, [args[3]])
        cnt = args[4]
        size = out.dtype.bitwidth // 8
        width = 32 // size
        vec = ir.VectorType(context.get_data_type(out.dtype), width)
        mis = builder.and_(builder.ptrtoint(op, i64), ir.Constant(i64, 31))
        head = builder.udiv(builder.and_(builder.sub(ir.Constant(i64, 32), mis), ir.Constant(i64, 31)),
                            ir.Constant(i64, size))
        head = builder.select(builder.icmp_unsigned("<", head, cnt), head, cnt)
        with cgutils.for_range(builder, head) as loop:
            builder.store(builder.load(builder.gep(sp, [loop.index])), builder.gep(op, [loop.index]))
        nvec = builder.udiv(builder.sub(cnt, head), ir.Constant(i64, width))
        md = builder.module.add_metadata([ir.Constant(ir.IntType(32), 1)])
        with cgutils.for_range(builder, nvec) as loop:
            i = builder.add(head, builder.mul(loop.index, ir.Constant(i64, width)))
            v = builder.load(builder.bitcast(builder.gep(sp, [i]), vec.as_pointer()), align=size)
            st = builder.store(v, builder.bitcast(builder.gep(op, [i]), vec.as_pointer()), align=32)
            st.set_metadata("nontemporal", md)
        t0 = builder.add(head, builder.mul(nvec, ir.Constant(i64, width)))
        with cgutils.for_range(builder, builder.sub(cnt, t0)) as loop:
            i = builder.add(t0, loop.index)
            builder.store(builder.load(builder.gep(sp, [i])), builder.gep(op, [i]))
        return context.get_dummy_value()

    return types.void(out, ob, src, sb, n), codegen
