"""Row-normalization forwards on 16-bit data (bfloat16, float16) without a float32 copy.

Layout: ``x``, ``res`` and the outputs are C-contiguous ``(M, N)`` arrays of *bits*: a
bfloat16 array is seen as ``uint16``, a float16 array as ``int16`` (:mod:`._bits`); the
residual stream ``s`` of the fused kernels and ``res`` may also be float32 (a float32
residual stream under 16-bit activations). ``weight``/``bias`` are float32 ``(N,)`` (ones /
zeros when the caller gave none; the effective ``weight_offset + w``); the statistics
``mean``/``rstd`` are float32 ``(M,)``.

Each element is converted to float32 as it is loaded and rounded (nearest even) as it is
stored; all arithmetic is float32, every sum is blocked (float32 blocks of ``BLOCK``,
float64 totals) as in :mod:`._stats`. A row (8 KiB for N = 4096) is read from memory once:
the statistics pass pulls it into L1/L2 and the write pass re-reads it from there. The
fused ``add_*`` kernels round ``s = x + res`` to ``s``'s format first and normalize the
rounded ``s`` read back from its (cached) output row: ``y`` is the norm of ``s`` as
returned, as on the float32 copy path. Every row is read before it is written, element
by element, so ``out`` may be ``x`` and ``s`` may be ``x`` or ``res``.

Thread mapping: a ``prange`` over the fixed row chunks of :func:`.layer_norm._chunks`;
serial twins below ``SERIAL_THRESHOLD`` elements. Outputs of at least ``STREAM_BYTES`` are
computed into the chunk's scratch row and written with non-temporal stores
(:mod:`._ntcopy`), as the float32 kernels stream theirs.
"""
import numpy as np
from numba import njit, prange

from .. import _config
from ._bits import load, put
from ._stats import BLOCK, U
from . import _work
from ._ntcopy import stream_copy
from ._stream import PREFETCH_BLOCK, STREAM_BYTES, prefetch_run, stream_fence
from .layer_norm import _chunks
from .normalize import _acc, _clamp, _finish, _init, _pkind


@njit(inline="always", **_config.JIT_OPTIONS)
def _row_sq(row, n):
    """Σ row² (float64 total of float32 blocks) of a 16-bit/float32 row."""
    ss = np.float64(0.0)
    for j0 in range(0, n, BLOCK):
        sb = np.float32(0.0)
        for j in range(U(j0), U(min(j0 + BLOCK, n))):
            v = load(row, j)
            sb += v * v
        ss += sb
    return ss


@njit(inline="always", **_config.JIT_OPTIONS)
def _row_mean_var(row, n):
    """(mean, biased variance) as float64: a sum, then squares about the float32 mean
    corrected exactly (two passes over the cached row, see ``_stats.mean_var_two_pass``)."""
    s1 = np.float64(0.0)
    for j0 in range(0, n, BLOCK):
        sb = np.float32(0.0)
        for j in range(U(j0), U(min(j0 + BLOCK, n))):
            sb += load(row, j)
        s1 += sb
    mu = s1 / n
    mu_t = np.float32(mu)
    s2 = np.float64(0.0)
    for j0 in range(0, n, BLOCK):
        sb = np.float32(0.0)
        for j in range(U(j0), U(min(j0 + BLOCK, n))):
            d = load(row, j) - mu_t
            sb += d * d
        s2 += sb
    dm = mu - mu_t
    var = s2 / n - dm * dm
    return mu, (max(var, 0.0) if var == var else var)


def _rms_forward(x, weight, eps, out, rstd, scratch, stream):
    """Streamed outputs prefetch the next row run by run, as ``rms_norm``'s forward."""
    m, n = x.shape
    nchunks = scratch.shape[0]
    for c in prange(nchunks):
        stop = (c + 1) * m // nchunks
        for i in range(c * m // nchunks, stop):
            row = x[i]
            r = 1.0 / np.sqrt(_row_sq(row, n) / n + eps)
            rstd[i] = r
            r_t = np.float32(r)
            if stream:
                nxt = x[min(i + 1, stop - 1)]
                dst = scratch[c]
                for j0 in range(0, n, PREFETCH_BLOCK):
                    j1 = min(j0 + PREFETCH_BLOCK, n)
                    prefetch_run(nxt, j0, j1)
                    for j in range(U(j0), U(j1)):
                        put(dst, j, load(row, j) * r_t * weight[j])
                stream_copy(out, i * n, scratch, c * n, n)
            else:
                dst = out[i]
                for j in range(U(n)):
                    put(dst, j, load(row, j) * r_t * weight[j])
        if stream:  # order this chunk's streaming stores (see _stream.stream_fence)
            stream_fence()


def _ln_forward(x, weight, bias, eps, out, mean, rstd, scratch, stream):
    m, n = x.shape
    nchunks = scratch.shape[0]
    for c in prange(nchunks):
        for i in range(c * m // nchunks, (c + 1) * m // nchunks):
            row = x[i]
            mu, var = _row_mean_var(row, n)
            r = 1.0 / np.sqrt(var + eps)
            mean[i] = mu
            rstd[i] = r
            r_t = np.float32(r)
            sh = np.float32(-mu * r)
            dst = scratch[c] if stream else out[i]
            for j in range(U(n)):
                put(dst, j, (load(row, j) * r_t + sh) * weight[j] + bias[j])
            if stream:
                stream_copy(out, i * n, scratch, c * n, n)
        if stream:  # order this chunk's streaming stores (see _stream.stream_fence)
            stream_fence()


@njit(inline="always", **_config.JIT_OPTIONS)
def _add_rows(xr, rr, sr, n):
    """``s = round(x + res)`` written to ``sr``."""
    for j in range(U(n)):
        put(sr, j, load(xr, j) + load(rr, j))


def _add_rms_forward(x, res, weight, eps, s, out, rstd, scratch, stream):
    m, n = x.shape
    nchunks = scratch.shape[0]
    for c in prange(nchunks):
        for i in range(c * m // nchunks, (c + 1) * m // nchunks):
            srow = s[i]
            _add_rows(x[i], res[i], srow, n)
            r = 1.0 / np.sqrt(_row_sq(srow, n) / n + eps)
            rstd[i] = r
            r_t = np.float32(r)
            dst = scratch[c] if stream else out[i]
            for j in range(U(n)):
                put(dst, j, load(srow, j) * r_t * weight[j])
            if stream:
                stream_copy(out, i * n, scratch, c * n, n)
        if stream:  # order this chunk's streaming stores (see _stream.stream_fence)
            stream_fence()


def _add_ln_forward(x, res, weight, bias, eps, s, out, mean, rstd, scratch, stream):
    m, n = x.shape
    nchunks = scratch.shape[0]
    for c in prange(nchunks):
        for i in range(c * m // nchunks, (c + 1) * m // nchunks):
            srow = s[i]
            _add_rows(x[i], res[i], srow, n)
            mu, var = _row_mean_var(srow, n)
            r = 1.0 / np.sqrt(var + eps)
            mean[i] = mu
            rstd[i] = r
            r_t = np.float32(r)
            sh = np.float32(-mu * r)
            dst = scratch[c] if stream else out[i]
            for j in range(U(n)):
                put(dst, j, (load(srow, j) * r_t + sh) * weight[j] + bias[j])
            if stream:
                stream_copy(out, i * n, scratch, c * n, n)
        if stream:  # order this chunk's streaming stores (see _stream.stream_fence)
            stream_fence()


def _normalize_forward(x, pk, p, eps, out, scratch, stream):
    """Lp normalize each row: ``y = x / max(||x||_p, eps)`` (norm accumulated in float64,
    the division in float32 as torch's float32 composition does)."""
    m, n = x.shape
    nchunks = scratch.shape[0]
    for c in prange(nchunks):
        for i in range(c * m // nchunks, (c + 1) * m // nchunks):
            row = x[i]
            a = _init(pk)
            for j in range(n):
                a = _acc(np.float64(load(row, j)), a, pk, p)
            d = np.float32(_clamp(_finish(a, pk, p), eps))
            dst = scratch[c] if stream else out[i]
            for j in range(U(n)):
                put(dst, j, load(row, j) / d)
            if stream:
                stream_copy(out, i * n, scratch, c * n, n)
        if stream:  # order this chunk's streaming stores (see _stream.stream_fence)
            stream_fence()


_RMS = _config.twins(_rms_forward)
_LN = _config.twins(_ln_forward)
_ADD_RMS = _config.twins(_add_rms_forward)
_ADD_LN = _config.twins(_add_ln_forward)
_NORMALIZE = _config.twins(_normalize_forward)


def scratch(x, out):
    """``(scratch rows, stream)``: per-chunk rows of ``out``'s dtype that large calls
    (input or output of at least ``STREAM_BYTES``: the int8 codes of a 128 MiB input are
    32 MiB, still far beyond the caches) are computed into and streamed out of with
    non-temporal stores (:mod:`._ntcopy`); an empty ``(chunks, 0)`` array otherwise."""
    nchunks = 1 if x.size < _config.SERIAL_THRESHOLD else _chunks(x.shape[0])
    stream = max(out.nbytes, x.nbytes) >= STREAM_BYTES
    return _work.empty("lowp.scratch", (nchunks, x.shape[1] if stream else 0), out.dtype), stream


def rms_forward(x, weight, eps, out, rstd):
    """RMS-normalize the 16-bit rows of ``x`` into ``out`` (16-bit); fill ``rstd``."""
    _config.launch(_RMS, x.size, x, weight, eps, out, rstd, *scratch(x, out))


def ln_forward(x, weight, bias, eps, out, mean, rstd):
    """Layer-normalize the 16-bit rows of ``x`` into ``out``; fill ``mean``/``rstd``."""
    _config.launch(_LN, x.size, x, weight, bias, eps, out, mean, rstd, *scratch(x, out))


def add_rms_forward(x, res, weight, eps, s, out, rstd):
    """``s = x + res`` (rounded to ``s``'s format), ``out = rms_norm(s)``; fill ``rstd``."""
    _config.launch(_ADD_RMS, x.size, x, res, weight, eps, s, out, rstd, *scratch(x, out))


def add_ln_forward(x, res, weight, bias, eps, s, out, mean, rstd):
    """``s = x + res`` (rounded to ``s``'s format), ``out = layer_norm(s)``."""
    _config.launch(_ADD_LN, x.size, x, res, weight, bias, eps, s, out, mean, rstd, *scratch(x, out))


def normalize_forward(x, p, eps, out):
    """Lp-normalize the 16-bit rows of ``x`` into ``out``."""
    _config.launch(_NORMALIZE, x.size, x, _pkind(p), float(p), eps, out, *scratch(x, out))
