"""Row forwards with non-temporal (streaming) output stores: bitwise the ordinary path.

Outputs of at least ``FORWARD_STREAM_BYTES`` are written by the parallel kernels with
``_stream.nt_store`` (a ``!nontemporal`` store LLVM vectorises to ``vmovntps``); patching the
threshold to 0 sends a small call (above the serial threshold, so the parallel kernel runs)
down that path, with misaligned rows (odd row length, output offset by one element).
"""
import importlib
import platform
import re

import numpy as np
import pytest

import numbanorm
from numbanorm import _config

SHAPE = (48, 777)  # 37,296 elements: the parallel kernel; odd rows: unaligned heads/tails


def _call(op, x, r, w, b, out, s):
    n = x.shape[1]
    if op == "layer_norm":
        return (numbanorm.layer_norm(x, n, w, b, out=out),)
    if op == "rms_norm":
        return (numbanorm.rms_norm(x, n, w, out=out),)
    if op == "add_rms_norm":
        return numbanorm.add_rms_norm(x, r, n, w, out=out, residual_out=s)
    return numbanorm.add_layer_norm(x, r, n, w, b, out=out, residual_out=s)


def _misaligned(shape, dtype):
    """An uninitialised C-contiguous array whose data start one element past 32 bytes."""
    size = int(np.prod(shape))
    buf = np.empty(size + 16, dtype)
    skip = (-buf.ctypes.data % 32) // buf.itemsize + 1
    return buf[skip:skip + size].reshape(shape)


def _stream_everything(monkeypatch, op):
    """Thresholds 0 (the fused kernels read it in add_rms_norm's ``stream_flags``)."""
    name = "add_rms_norm" if op.startswith("add") else op
    kern = importlib.import_module(f"numbanorm._cpu.{name}")
    monkeypatch.setattr(kern, "FORWARD_STREAM_BYTES", 0)
    if hasattr(kern, "FORWARD_STREAM_ROW_BYTES"):  # layer_norm, rms_norm
        monkeypatch.setattr(kern, "FORWARD_STREAM_ROW_BYTES", 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("op", ["layer_norm", "rms_norm", "add_rms_norm", "add_layer_norm"])
def test_streamed_forward_is_bitwise_the_cached_one(rng, monkeypatch, op, dtype):
    assert np.prod(SHAPE) >= _config.SERIAL_THRESHOLD
    x = (rng.standard_normal(SHAPE) * 2 + 0.5).astype(dtype)
    r = rng.standard_normal(SHAPE).astype(dtype)
    w = rng.standard_normal(SHAPE[1]).astype(dtype)
    b = rng.standard_normal(SHAPE[1]).astype(dtype)
    cached = _call(op, x, r, w, b, None, None)
    _stream_everything(monkeypatch, op)
    for out, s in [(None, None), (_misaligned(SHAPE, dtype), _misaligned(SHAPE, dtype))]:
        streamed = _call(op, x, r, w, b, out, None if not op.startswith("add") else s)
        for u, v in zip(cached, streamed):
            assert not np.shares_memory(v, x)
            np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize("op", ["layer_norm", "add_rms_norm"])
def test_in_place_calls_above_the_threshold(rng, monkeypatch, op):
    """An output overlapping an input is written with ordinary stores: same values."""
    x = rng.standard_normal(SHAPE).astype(np.float32)
    r = rng.standard_normal(SHAPE).astype(np.float32)
    w = rng.standard_normal(SHAPE[1]).astype(np.float32)
    want = _call(op, x, r, w, w, None, None)
    _stream_everything(monkeypatch, op)
    xc, rc = x.copy(), r.copy()
    got = _call(op, xc, rc, w, w, xc, rc if op.startswith("add") else None)
    assert got[0] is xc
    for u, v in zip(want, got):
        np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_line_span_streams_whole_lines_of_long_rows(dtype):
    """``line_span``: long rows stream from a cache-line boundary in whole runs (the
    head and tail are the lines shared with the neighbouring rows); short rows and
    element-misaligned arrays fall back to ``stream_span``'s ordinary head and tail."""
    from numba import njit

    from numbanorm._cpu._stream import LINE, LINE_ROW_BYTES, STREAM_RUN, line_span

    @njit(cache=False)
    def span(flat, base, n):
        return line_span(flat, base, n)

    size = np.dtype(dtype).itemsize
    n = LINE_ROW_BYTES // size + 3
    buf = np.empty(4 * n + 64, dtype)
    for base in range(2 * LINE // size):
        h, e, lined = span(buf, base, n)
        assert lined and (buf.ctypes.data + (base + h) * size) % LINE == 0
        assert h < LINE // size and (e - h) % STREAM_RUN == 0 and 0 <= n - e < STREAM_RUN
    assert not span(buf, 0, LINE_ROW_BYTES // size - 1)[2]
    odd = np.frombuffer(np.empty(4 * n * size + 8, np.uint8)[1:1 + 4 * n * size].data, dtype)
    assert span(odd, 0, n) == (n, n, False)


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86 streaming stores")
def test_nt_store_loop_compiles_to_streaming_vector_stores():
    from numba import njit

    from numbanorm._cpu._stream import stream_fence, stream_row

    @njit(cache=False)
    def copy_row(flat, dst, src, n):
        stream_row(flat, dst, 0, src, n)
        stream_fence()

    a, src = np.zeros(1000, np.float32), np.arange(1000, dtype=np.float32)
    copy_row(a, a, src, 1000)
    np.testing.assert_array_equal(a, src)
    asm = copy_row.inspect_asm(copy_row.signatures[0])
    assert "movntps" in asm  # vmovntps (AVX) / movntps (SSE)
    assert "sfence" in asm


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86 streaming stores")
@pytest.mark.parametrize("kind", ["bf16", "f16", "int8", "e4m3"])
def test_16_and_8_bit_rows_compile_to_streaming_integer_stores(kind):
    """The row writer of the 16-bit and quantized kernels (``_rows_lowp.write_row``, through
    ``_quant._quant_row`` for the codes) streams the bit patterns with ``vmovntdq`` (the
    codes of a block staged in a cached buffer, then copied with ``_stream.nt_copy``: a
    16/8-bit store of a converted value would become an AVX-512 truncating store, which
    has no non-temporal form) and fences; streamed = cached bits."""
    from numba import njit

    from numbanorm._cpu import _quant, _rows_lowp
    from numbanorm._cpu._stream import stream_fence

    n = 1000
    src = np.linspace(-3, 3, n).astype(np.float32)
    w = np.linspace(0.5, 2, n).astype(np.float32)
    dt = {"bf16": np.uint16, "f16": np.int16, "int8": np.int8, "e4m3": np.uint8}[kind]
    if kind in ("bf16", "f16"):
        @njit(cache=False)
        def row(src, w, out, stream):
            _rows_lowp.write_row(_rows_lowp.SCALE, src, src.size, np.float32(0.5), np.float32(0.0), w, w, out, 0,
                                 stream, src, np.empty(_rows_lowp.STAGE, out.dtype), 0, True, True)
            stream_fence()
    else:
        @njit(cache=False)
        def row(src, w, out, stream):
            _quant._quant_row(src, src.size, 0.0, w, np.float32(100.0), out, 0, stream, src,
                              np.empty(_rows_lowp.STAGE, out.dtype), 0, True, True)
            stream_fence()

    buf = np.zeros(n + 64, dt)
    out = buf[1:n + 1]  # a misaligned start: scalar head, aligned streamed span, tail
    cached = np.zeros(n, dt)
    row(src, w, out, True)
    row(src, w, cached, False)
    np.testing.assert_array_equal(out, cached)
    if kind in ("bf16", "f16"):
        ref = (src * np.float32(0.5) * w).astype(np.float16 if kind == "f16" else _bf16())
        np.testing.assert_array_equal(out, ref.view(dt))
    asm = row.inspect_asm(row.signatures[0])
    # vmovntdq / vmovntps (the back end picks the domain of the converted value: float16
    # codes come from vcvtps2ph) / SSE2 movntdq; a 16/8-bit store would not be "movnt"
    assert re.search(r"\bv?movnt(dq|ps)\b", asm)
    assert "sfence" in asm


def _bf16():
    return pytest.importorskip("ml_dtypes").bfloat16
