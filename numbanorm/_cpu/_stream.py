"""Memory-traffic intrinsics: non-temporal (streaming) row stores and software prefetch.

For outputs much larger than the caches, ordinary stores first read every output line
(read-for-ownership), so a kernel that reads x and writes y moves 3 bytes per byte of y,
while glibc's memcpy behind ``np.copyto`` switches to non-temporal stores and moves 2.
These intrinsics write a contiguous run with ``!nontemporal`` 32-byte vector stores
(scalar head until the output is aligned, scalar tail). Kernels use them only for
outputs of at least :data:`STREAM_BYTES`; smaller outputs stay in cache for the next op.

Arrays are addressed as flat C-contiguous buffers plus an element offset (any ndim).

:func:`prefetch` asks for one cache line ahead of use: the row kernels prefetch the next
row block by block while they write the current one, so reading rows from memory overlaps
the computation instead of waiting for each row (the hardware prefetcher alone leaves
layer_norm forward at ~1.1-1.3 × np.copyto on (8192, 4096); with it ~1.0).
"""
import platform

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from .._config import JIT_OPTIONS

#: unsigned index type (as ``._stats.U``): no wrap-around checks, loops vectorise
U = np.uintp

#: outputs of at least this many bytes are written with non-temporal (streaming) stores:
#: they bypass the caches and skip the read-for-ownership of every output line, as
#: glibc's memcpy (np.copyto) does for large copies. Smaller outputs stay cached.
STREAM_BYTES = 64 << 20


def _cpu_vendor():
    """``vendor_id`` of the first CPU in /proc/cpuinfo ("GenuineIntel", "AuthenticAMD"), or ""."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


_INTEL = _cpu_vendor() == "GenuineIntel"

#: the row forwards (layer_norm, rms_norm, the fused add norms, normalize along the last
#: axis) stream from this output size. On Intel it is 16 MiB: they read each row from
#: memory once and write its output once, so the read-for-ownership of the output is a
#: third of their traffic; on the 2-core Xeon streaming was 0.73-0.89x the cached time at
#: 16 MiB (4096 x 1024 float32) and 1.17-1.51x at 6-8 MiB, while the backwards and the
#: scalers' transform, which read two or three arrays per output, still lost 8-11 % at
#: 16 MiB, so they keep STREAM_BYTES. On the 2-core EPYC (32 MiB L3) streaming lost at
#: 16 MiB (1.10-1.41x for (4096, 1024), 0.95 for (1024, 4096)) and won only from 64 MiB
#: ((4096, 4096): 0.77-0.85x), so everywhere but Intel the forwards keep STREAM_BYTES too.
FORWARD_STREAM_BYTES = 16 << 20 if _INTEL else STREAM_BYTES

#: layer_norm's and rms_norm's forwards stream only rows of at least this many bytes. On
#: the EPYC their streamed 4 KiB rows lost even at 64-128 MiB (streamed / cached, (16384 and
#: 32768, 1024) float32: rms_norm 1.07-1.25x, layer_norm 1.00-1.10x), while 8 KiB rows won
#: ((16384, 2048): 0.89x and 0.76x; (8192, 4096): 0.84x and 0.78x); on the Xeon 4 KiB rows
#: won (0.72x and 0.76x at (4096, 1024)), so there is no minimum.
FORWARD_STREAM_ROW_BYTES = 0 if _INTEL else 8 << 10


def _stream_codegen(context, builder, signature, args, axpby, acc):
    """IR of one streamed row: ``out[ob + i] = x[xb + i] * a (+ y[yb + i] * b)`` for i < n,
    stored with ``!nontemporal`` 32-byte vector stores (scalar head until ``out`` is
    32-byte aligned, scalar tail), while accumulating in float64 over the *next* row
    (``+ n`` in the same arrays): ``acc = 1``: sum of squares of x (forward, ``x`` the
    data); ``acc = 2``: sum of squares of y and sum of x * y (backward: ``x = dy``,
    ``y`` the data). Fixed summation order (lanes, then head/tail), so deterministic."""
    outty = signature.args[0]
    oarr = context.make_array(outty)(context, builder, args[0])
    op = builder.gep(oarr.data, [args[1]])
    xarr = context.make_array(signature.args[2])(context, builder, args[2])
    xp = builder.gep(xarr.data, [args[3]])
    a = args[4]
    if axpby:
        yarr = context.make_array(signature.args[5])(context, builder, args[5])
        yp = builder.gep(yarr.data, [args[6]])
        b = args[7]
        n = args[8]
    else:
        yp = xp
        b = None
        n = args[5]
    size = outty.dtype.bitwidth // 8
    elt = context.get_data_type(outty.dtype)
    width = 32 // size
    vec = ir.VectorType(elt, width)
    f64 = ir.DoubleType()
    dvec = ir.VectorType(f64, width)
    i64 = ir.IntType(64)
    i32 = ir.IntType(32)
    flags = ("contract",)

    def splat(v, vt):
        u = builder.insert_element(ir.Constant(vt, ir.Undefined), v, ir.Constant(i32, 0))
        return builder.shuffle_vector(u, ir.Constant(vt, ir.Undefined), ir.Constant(ir.VectorType(i32, width), [0] * width))

    def load(ptr, i, vector):
        p = builder.gep(ptr, [i])
        if vector:
            return builder.load(builder.bitcast(p, vec.as_pointer()), align=size)
        return builder.load(p)

    def widen(v, vector):
        if size == 8:
            return v
        return builder.fpext(v, dvec if vector else f64)

    av = splat(a, vec)
    bv = splat(b, vec) if axpby else None
    zero_s = ir.Constant(f64, 0.0)
    zero_v = ir.Constant(dvec, [0.0] * width)
    s1 = cgutils.alloca_once_value(builder, zero_s)
    s2 = cgutils.alloca_once_value(builder, zero_s)
    v1 = cgutils.alloca_once_value(builder, zero_v)
    v2 = cgutils.alloca_once_value(builder, zero_v)

    def body(i, vector):
        xv = load(xp, i, vector)
        r = builder.fmul(xv, av if vector else a, flags=flags)
        if axpby:
            r = builder.fadd(r, builder.fmul(load(yp, i, vector), bv if vector else b, flags=flags), flags=flags)
        if acc:
            j = builder.add(i, n)
            if acc == 1:
                u = widen(load(xp, j, vector), vector)
                tgt = v1 if vector else s1
                builder.store(builder.fadd(builder.load(tgt), builder.fmul(u, u, flags=flags), flags=flags), tgt)
            else:
                u = widen(load(yp, j, vector), vector)
                w = widen(load(xp, j, vector), vector)
                t1, t2 = (v1, v2) if vector else (s1, s2)
                builder.store(builder.fadd(builder.load(t1), builder.fmul(u, u, flags=flags), flags=flags), t1)
                builder.store(builder.fadd(builder.load(t2), builder.fmul(w, u, flags=flags), flags=flags), t2)
        return r

    mis = builder.and_(builder.ptrtoint(op, i64), ir.Constant(i64, 31))
    head = builder.udiv(builder.and_(builder.sub(ir.Constant(i64, 32), mis), ir.Constant(i64, 31)),
                        ir.Constant(i64, size))
    head = builder.select(builder.icmp_unsigned("<", head, n), head, n)
    with cgutils.for_range(builder, head) as loop:
        builder.store(body(loop.index, False), builder.gep(op, [loop.index]))
    nvec = builder.udiv(builder.sub(n, head), ir.Constant(i64, width))
    md = builder.module.add_metadata([ir.Constant(i32, 1)])
    with cgutils.for_range(builder, nvec) as loop:
        i = builder.add(head, builder.mul(loop.index, ir.Constant(i64, width)))
        st = builder.store(body(i, True), builder.bitcast(builder.gep(op, [i]), vec.as_pointer()), align=32)
        st.set_metadata("nontemporal", md)
    t0 = builder.add(head, builder.mul(nvec, ir.Constant(i64, width)))
    with cgutils.for_range(builder, builder.sub(n, t0)) as loop:
        i = builder.add(t0, loop.index)
        builder.store(body(i, False), builder.gep(op, [i]))
    if not acc:
        return context.get_dummy_value()

    def total(vslot, sslot):
        vv = builder.load(vslot)
        t = builder.load(sslot)
        for k in range(width):
            t = builder.fadd(t, builder.extract_element(vv, ir.Constant(i32, k)))
        return t

    if acc == 1:
        return total(v1, s1)
    return context.make_tuple(builder, signature.return_type, [total(v1, s1), total(v2, s2)])


def _float_arrays(*arrs):
    return all(isinstance(a, types.Array) and a.dtype in (types.float32, types.float64) for a in arrs)


@intrinsic
def stream_scale(typingctx, out, ob, x, xb, a, n):
    """out[ob:ob+n] = x[xb:xb+n] * a with streaming stores (flat C arrays, one dtype)."""
    if not _float_arrays(out, x) or x.dtype != out.dtype or a != out.dtype:
        return None
    return types.void(out, ob, x, xb, a, n), lambda c, b, s, a_: _stream_codegen(c, b, s, a_, False, 0)


@intrinsic
def stream_scale_next(typingctx, out, ob, x, xb, a, n):
    """As _stream_scale; returns sum(x[xb+n : xb+2n] ** 2) (the next row) in float64."""
    if not _float_arrays(out, x) or x.dtype != out.dtype or a != out.dtype:
        return None
    return types.float64(out, ob, x, xb, a, n), lambda c, b, s, a_: _stream_codegen(c, b, s, a_, False, 1)


@intrinsic
def stream_axpby(typingctx, out, ob, x, xb, a, y, yb, b, n):
    """out[ob:ob+n] = x[xb:xb+n] * a + y[yb:yb+n] * b with streaming stores."""
    if not _float_arrays(out, x, y) or not (x.dtype == y.dtype == out.dtype == a == b):
        return None
    return types.void(out, ob, x, xb, a, y, yb, b, n), lambda c, b_, s, a_: _stream_codegen(c, b_, s, a_, True, 0)


@intrinsic
def stream_axpby_next(typingctx, out, ob, x, xb, a, y, yb, b, n):
    """As _stream_axpby; returns (sum y_next ** 2, sum x_next * y_next) over the next row."""
    if not _float_arrays(out, x, y) or not (x.dtype == y.dtype == out.dtype == a == b):
        return None
    sig = types.UniTuple(types.float64, 2)(out, ob, x, xb, a, y, yb, b, n)
    return sig, lambda c, b_, s, a_: _stream_codegen(c, b_, s, a_, True, 2)


@intrinsic
def prefetch(typingctx, arr, idx):
    """``llvm.prefetch`` of ``arr[idx]`` (read, keep in all cache levels). Never faults."""
    if not isinstance(arr, types.Array):
        return None
    sig = types.void(arr, idx)

    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]], wraparound=False)
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0i8")
        builder.call(fn, [builder.bitcast(ptr, i8p), ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return sig, codegen


#: byte alignment of the vectorised :func:`nt_store` runs (one AVX vector: ``vmovntps``
#: faults on a misaligned address)
STREAM_ALIGN = 32

#: :func:`stream_span` runs are a multiple of this many elements (twice as many for 1-byte
#: outputs): a multiple of every vector width times unroll factor LLVM picks (16 float32
#: lanes × 4, 32 int8 lanes × 4 at most), so the vectorised loop never leaves a scalar
#: remainder (see :func:`nt_store`)
STREAM_RUN = 64


@intrinsic
def nt_store(typingctx, arr, idx, val):
    """``arr.flat[idx] = val`` (a C-contiguous float or integer array) as a store with
    ``!nontemporal`` metadata, which LLVM's loop vectoriser keeps: a loop of them becomes
    ``vmovntps`` / ``vmovntpd`` (float) or ``vmovntdq`` (integer: the bit patterns of the
    16-bit and 8-bit outputs, :mod:`._bits`) streaming stores (no read-for-ownership of the
    output lines).

    The store is declared :data:`STREAM_ALIGN`-aligned (x86 has aligned streaming vector
    stores only; LLVM refuses to vectorise under-aligned ones), so use it only in loops
    over a :func:`stream_span` run: its start is aligned and its length a multiple of
    :data:`STREAM_RUN`, so every executed store is a whole aligned vector. Unlike
    :func:`stream_scale` the value is computed in plain Numba code, so a kernel's
    streamed and ordinary output loops share one expression (bitwise the same values).
    End a kernel's streamed writes with :func:`stream_fence`.
    """
    if not isinstance(arr, types.Array) or not (arr.dtype in (types.float32, types.float64) or (
            isinstance(arr.dtype, types.Integer) and arr.dtype.bitwidth in (8, 16, 32, 64))):
        return None

    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = builder.gep(ary.data, [args[1]])
        v = context.cast(builder, args[2], signature.args[2], aryty.dtype)
        st = builder.store(v, ptr, align=STREAM_ALIGN)
        st.set_metadata("nontemporal", builder.module.add_metadata([ir.Constant(ir.IntType(32), 1)]))
        return context.get_dummy_value()

    return types.void(arr, idx, val), codegen


def _packed_codegen(context, builder, signature, args):
    aryty = signature.args[0]
    bw = aryty.dtype.bitwidth
    i32 = ir.IntType(32)
    ary = context.make_array(aryty)(context, builder, args[0])
    ptr = builder.bitcast(builder.gep(ary.data, [args[1]]), i32.as_pointer())
    word = None
    for k, (c, ct) in enumerate(zip(args[2:], signature.args[2:])):
        if ct.bitwidth > bw:
            c = builder.trunc(c, ir.IntType(bw))
        c = builder.zext(c, i32)
        c = builder.shl(c, ir.Constant(i32, k * bw)) if k else c
        word = c if word is None else builder.or_(word, c)
    st = builder.store(word, ptr, align=STREAM_ALIGN)
    st.set_metadata("nontemporal", builder.module.add_metadata([ir.Constant(i32, 1)]))
    return context.get_dummy_value()


def _packed_ok(arr, codes):
    return (isinstance(arr, types.Array) and isinstance(arr.dtype, types.Integer)
            and len(codes) * arr.dtype.bitwidth == 32 and all(isinstance(c, types.Integer) for c in codes))


@intrinsic
def nt_store2(typingctx, arr, idx, c0, c1):
    """``arr.flat[idx:idx + 2] = (c0, c1)`` (16-bit integer ``arr``) as one 32-bit
    :func:`nt_store` (``idx`` aligned as there; little-endian: ``c0`` low).

    What the narrow outputs stream with: a loop of 16-bit or 8-bit ``nt_store`` calls
    on converted values vectorises to a narrowing conversion feeding the store, which the
    x86 back end folds into an AVX-512 truncating store (``vpmovdw``/``vpmovdb`` to
    memory) that has no non-temporal form, silently dropping the hint; packed into 32
    bits in integer arithmetic the store stays ``vmovntdq``. (The forwards' 16-bit and
    8-bit rows stream through a staging buffer instead, :func:`nt_copy`.)"""
    if not _packed_ok(arr, (c0, c1)):
        return None
    return types.void(arr, idx, c0, c1), _packed_codegen


@intrinsic
def nt_copy(typingctx, dst, dstart, src, sstart, n):
    """``dst.flat[dstart:dstart + n] = src.flat[sstart:sstart + n]`` (C-contiguous arrays
    of one integer dtype) with ``!nontemporal`` 32-byte vector stores (``vmovntdq``) of
    the bytes: ``dst.flat[dstart]`` must be :data:`STREAM_ALIGN`-aligned and ``n`` elements
    a multiple of 32 bytes (a :func:`line_span` run or shared-line edge); ``src`` may be
    anywhere (unaligned loads).

    How the 8- and 16-bit forward outputs stream (``_rows_lowp.write_row``): a kernel
    converts a block of values into a small cached buffer with ordinary stores (contiguous
    narrowing stores, ``vpmovdb``/``vpmovdw`` or packs) and copies it out with this.
    Converting straight into 32-bit words for :func:`nt_store` (an ``nt_store4`` of four
    int8 codes, as :func:`nt_store2` packs two 16-bit ones) made the loop deinterleave its
    lanes (``vpermt2ps``: one shuffle port) and left int8 rows ~1.45 x the float32 row
    time on the AVX-512 Xeon of issue 14 (0.93-1.0 x through the buffer)."""
    if not (isinstance(dst, types.Array) and isinstance(src, types.Array) and dst.dtype == src.dtype
            and isinstance(dst.dtype, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        size = signature.args[0].dtype.bitwidth // 8
        i8 = ir.IntType(8)
        i32 = ir.IntType(32)
        i64 = ir.IntType(64)
        vec = ir.VectorType(i8, STREAM_ALIGN)
        darr = context.make_array(signature.args[0])(context, builder, args[0])
        sarr = context.make_array(signature.args[2])(context, builder, args[2])
        dstart, sstart, n = (context.cast(builder, args[k], signature.args[k], types.int64) for k in (1, 3, 4))
        dp = builder.bitcast(builder.gep(darr.data, [dstart]), i8.as_pointer())
        sp = builder.bitcast(builder.gep(sarr.data, [sstart]), i8.as_pointer())
        nvec = builder.udiv(builder.mul(n, ir.Constant(i64, size)), ir.Constant(i64, STREAM_ALIGN))
        md = builder.module.add_metadata([ir.Constant(i32, 1)])
        with cgutils.for_range(builder, nvec) as loop:
            off = builder.mul(loop.index, ir.Constant(i64, STREAM_ALIGN))
            v = builder.load(builder.bitcast(builder.gep(sp, [off]), vec.as_pointer()), align=1)
            st = builder.store(v, builder.bitcast(builder.gep(dp, [off]), vec.as_pointer()), align=STREAM_ALIGN)
            st.set_metadata("nontemporal", md)
        return context.get_dummy_value()

    return types.void(dst, dstart, src, sstart, n), codegen


def _address_mod(modulus):
    """An intrinsic ``(arr, idx) -> int64``: the address of ``arr.flat[idx]`` modulo
    ``modulus`` bytes (a power of two)."""

    def typer(typingctx, arr, idx):
        if not isinstance(arr, types.Array):
            return None

        def codegen(context, builder, signature, args):
            ary = context.make_array(signature.args[0])(context, builder, args[0])
            i64 = ir.IntType(64)
            addr = builder.ptrtoint(builder.gep(ary.data, [args[1]]), i64)
            return builder.and_(addr, ir.Constant(i64, modulus - 1))

        return types.int64(arr, idx), codegen

    return intrinsic(typer)


#: ``_misalignment(arr, idx)``: the address of ``arr.flat[idx]`` modulo :data:`STREAM_ALIGN`
_misalignment = _address_mod(STREAM_ALIGN)


@njit(inline="always", **JIT_OPTIONS)
def stream_span(arr, idx, n):
    """``(h, e)``: elements ``idx + h .. idx + e`` of the flat ``arr`` (of the run
    ``idx .. idx + n``) may be written with :func:`nt_store` — aligned start, length a
    multiple of :data:`STREAM_RUN`; the head ``[0, h)`` and tail ``[e, n)`` take ordinary
    stores. ``(n, n)`` when no element is aligned (an unaligned array)."""
    size = arr.itemsize
    run = STREAM_RUN if size > 1 else 2 * STREAM_RUN
    mis = _misalignment(arr, idx)
    if mis % size != 0:
        return n, n
    h = min(n, ((STREAM_ALIGN - mis) % STREAM_ALIGN) // size)
    return h, h + (n - h) // run * run


@njit(inline="always", **JIT_OPTIONS)
def row_span(flat, base, n, stream):
    """:func:`stream_span` of the row at ``base`` when ``stream``, else ``(n, n)`` (every
    element an ordinary store): the one loop structure of a kernel's streamed and cached
    outputs, ``[0, h)`` and ``[e, n)`` ordinary, ``[h, e)`` :func:`nt_store`."""
    if stream:
        return stream_span(flat, base, n)
    return n, n


@njit(inline="always", **JIT_OPTIONS)
def stream_row(flat, dst, base, src, n):
    """``dst[:n] = src[:n]`` with :func:`nt_store` over the stream span (``dst`` is the row
    of the C-contiguous ``flat`` array starting at element ``base``)."""
    h, e = stream_span(flat, base, n)
    for j in range(U(h)):
        dst[j] = src[j]
    for j in range(U(h), U(e)):
        nt_store(flat, base + j, src[j])
    for j in range(U(e), U(n)):
        dst[j] = src[j]


#: bytes of a cache line: :func:`line_span` streams rows in whole lines
LINE = 64

#: rows of fewer bytes are streamed with :func:`stream_span` (ordinary head and tail);
#: longer ones with :func:`line_span` (a line never spans more than two rows)
LINE_ROW_BYTES = 1024


#: ``_line_offset(arr, idx)``: the address of ``arr.flat[idx]`` modulo :data:`LINE` (bytes)
_line_offset = _address_mod(LINE)


@njit(inline="always", **JIT_OPTIONS)
def line_span(flat, base, n):
    """``(h, e, lined)`` of the row ``flat[base:base + n]`` of a streamed output.

    ``lined`` (rows of at least :data:`LINE_ROW_BYTES`, element-aligned array): ``h`` is
    the first element on a cache-line boundary, ``[h, e)`` a :func:`nt_store` run
    (a multiple of :data:`STREAM_RUN`), and the head ``[0, h)`` and tail ``[e, n)`` are
    the parts of the lines the row shares with its neighbours (at most
    ``STREAM_RUN + LINE`` elements together): a kernel stages them in a small row-edge
    buffer and streams each shared line whole with :func:`flush_edge` once both rows'
    values are in it. Rows start wherever NumPy put the array (its large allocations
    start 16 bytes into a page), so a row rarely starts on a line; writing those edge
    lines with ordinary stores (a read-for-ownership, and the line's other part streamed:
    a partial-line write) made a row copy ~1.25-1.5 x the flat streaming copy on the
    2-core EPYC of issue 11, against ~1.02 x for line-aligned rows.

    Not ``lined``: :func:`stream_span`'s ``(h, e)`` (ordinary head and tail stores)."""
    if n * flat.itemsize < LINE_ROW_BYTES:
        h, e = stream_span(flat, base, n)
        return h, e, False
    size = flat.itemsize
    mis = _line_offset(flat, base)
    if mis % size != 0:
        return n, n, False
    run = STREAM_RUN if size > 1 else 2 * STREAM_RUN
    h = ((LINE - mis) % LINE) // size
    return h, h + (n - h) // run * run, True


@njit(inline="always", **JIT_OPTIONS)
def flush_edge(flat, start, edge, k):
    """Stream ``edge[:k]`` (a float row-edge buffer) to ``flat[start:start + k]``: whole
    cache lines (``start`` on a line, ``k`` elements a multiple of one: the tail of one
    row and the head of the next, :func:`line_span`), so every store is an aligned
    vector. ``x * 1`` leaves every value that arithmetic produces bitwise the same."""
    if k > 0:
        stream_scale(flat, start, edge, 0, flat.dtype.type(1.0), k)


#: elements of a row-edge buffer (:func:`line_span`: a row's tail + the next row's head)
EDGE = 2 * STREAM_RUN + LINE


def overlaps(out, *inputs):
    """Whether ``out`` may share memory with an input (an in-place call). Such outputs are
    not streamed: their lines are in cache after the row is read, and the overlap would
    fail the vectorised :func:`nt_store` loop's runtime alias check (a scalar loop)."""
    return any(np.may_share_memory(out, a) for a in inputs)


#: x86 (``sfence``); elsewhere a full fence (AArch64 ``dmb ish`` orders ``stnp`` too)
_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86")


@intrinsic
def stream_fence(typingctx):
    """A store fence: orders this thread's streaming stores, which are weakly ordered,
    before anything it stores next — called once per chunk after its last
    :func:`nt_store`, so the results are visible when the parallel region ends. x86:
    ``sfence`` (LLVM's ``fence seq_cst`` is a ``lock or``, which does not order
    non-temporal stores on every CPU); elsewhere ``fence seq_cst``."""
    def codegen(context, builder, signature, args):
        if _X86:
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), []),
                                                "llvm.x86.sse.sfence")
            builder.call(fn, [])
        else:
            builder.fence("seq_cst")
        return context.get_dummy_value()

    return types.void(), codegen


#: elements of a row written between two batches of prefetches of the next row (the batch
#: covers the same elements of the next row: ~16 cache lines in flight per thread)
PREFETCH_BLOCK = 256


@njit(inline="always", **JIT_OPTIONS)
def prefetch_run(row, j0, j1):
    """Prefetch the cache lines of ``row[j0:j1]`` (a C-contiguous 1-D row)."""
    for q in range(j0, j1, max(1, 64 // row.itemsize)):
        prefetch(row, np.uintp(q))


@intrinsic
def wide_vectors(typingctx):
    """Let LLVM vectorise the calling kernel with 512-bit vectors (function attribute
    ``"prefer-vector-width"="512"``); a no-op on CPUs without AVX-512.

    LLVM's x86 tuning for AVX-512 server cores caps its vectors at 256 bits
    (``prefer-256-bit``, from Skylake-SP, whose clock dropped under 512-bit code). The
    16-bit and quantized row kernels are bound by their per-element conversion work (a
    bfloat16 rounding is 7 integer ops, the codes narrowing shuffles), not memory, on a
    2-thread AVX-512 machine: with 512-bit vectors bfloat16 ``rms_norm`` (8192, 4096)
    went 9.3 -> 6.6-6.9 ms on the Xeon of issue 14 (float32: ~9.6 ms either way, so the
    float32 kernels keep the default). Call it once at the top of a kernel."""
    def codegen(context, builder, signature, args):
        # llvmlite's FunctionAttributes accepts only LLVM's keyword attributes; a string
        # attribute is printed verbatim in the function's definition
        set.add(builder.function.attributes, '"prefer-vector-width"="512"')
        return context.get_dummy_value()

    return types.void(), codegen
