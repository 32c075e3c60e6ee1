"""Row-normalization forwards on 16-bit GPU data (bfloat16, float16), twin of
``numbanorm/_cpu/_rows_lowp.py``, and the host helpers of 16-bit device arrays.

Layout: C-contiguous ``(M, N)`` device arrays; a bfloat16 array is passed as its
``uint16`` bit view (converted in the kernel: ``f32 = bits << 16``; stores round to
nearest even with NaN kept, the CPU rule), float16 arrays as ``float16`` (loaded and
stored directly, ``cvt.f32.f16`` / ``cvt.rn.f16.f32``), float32 residual streams as
float32. ``weight``/``bias`` float32 ``(N,)``, ``mean``/``rstd`` float32 ``(M,)``.

Kernels: one block per row (rows grid-strided by ``gridDim.x``), its threads striding over
the row; float32 element math, float64 block reductions (:mod:`._reduce`). The statistics
pass reads the row from DRAM, the write pass re-reads it from L1/L2. Kernels are built per
combination of formats (``x``, residual, ``s``, ``y``) by :func:`rows_kernel` (the format
of an array is a compile-time constant of its loader/storer), as ``_rows.forward_rows``
builds its launch-plan kernels.
"""
import functools
import math

import numpy as np
from numba import cuda, float32, float64

from . import _layout
from ._bf16 import bf16_bits, bf16_value, odd32
from ._reduce import block_max, block_min, block_sum, block_sum2
from .normalize import P0, PINF, PNINF, _acc, _clamp, _dnorm, _finish, _init, _is_tie

SIMULATOR = _layout.SIMULATOR

#: array formats: bfloat16 bits (uint16), float16, float32, float64
BF16, F16, F32, F64 = "bf16", "f16", "f32", "f64"

@functools.lru_cache(maxsize=None)
def loader(f):
    """Device function ``ld(a, i, j)``: element ``(i, j)`` as float32 (float64 for F64)."""
    if f == BF16:
        @cuda.jit(device=True, inline="always")
        def ld(a, i, j):
            return bf16_value(a[i, j])
    elif f == F64:
        @cuda.jit(device=True, inline="always")
        def ld(a, i, j):
            return float64(a[i, j])
    else:
        @cuda.jit(device=True, inline="always")
        def ld(a, i, j):
            return float32(a[i, j])
    return ld


@functools.lru_cache(maxsize=None)
def storer(f):
    """Device function ``st(a, i, j, v)``: store ``v`` rounded to ``a``'s format and
    return the stored value (float32; float64 for F64)."""
    if f == BF16:
        @cuda.jit(device=True, inline="always")
        def st(a, i, j, v):
            b = bf16_bits(v)
            a[i, j] = b
            return bf16_value(b)
    elif f == F16:
        @cuda.jit(device=True, inline="always")
        def st(a, i, j, v):
            a[i, j] = v
            return float32(a[i, j])
    elif f == F64:
        @cuda.jit(device=True, inline="always")
        def st(a, i, j, v):
            a[i, j] = v
            return float64(v)
    else:
        @cuda.jit(device=True, inline="always")
        def st(a, i, j, v):
            v32 = float32(v)
            a[i, j] = v32
            return v32
    return st


@cuda.jit(device=True, inline="always")
def _rsqrt(var, eps):
    return 1.0 / math.sqrt(var + eps)


@functools.lru_cache(maxsize=None)
def rows_kernel(centered, add, fx, fr, fs, fy):
    """The forward of ``[add_]layer_norm`` (``centered``) / ``[add_]rms_norm`` for arrays of
    the given formats (module doc). Arguments ``(x, res, w, b, eps, s, y, mean, rstd)``;
    without ``add``, ``res`` and ``s`` are ignored (pass ``x``); RMS ignores ``b``/``mean``."""
    ld_x, ld_r, ld_s = loader(fx), loader(fr), loader(fs)
    st_s, st_y = storer(fs), storer(fy)

    @cuda.jit(device=True, inline="always")
    def ld_src(x, s, i, j):
        if add:
            return ld_s(s, i, j)
        return ld_x(x, i, j)

    @cuda.jit
    def _rows_lowp(x, res, w, b, eps, s, y, mean, rstd):
        m, n = x.shape
        tid = cuda.threadIdx.x
        nt = cuda.blockDim.x
        for i in range(cuda.blockIdx.x, m, cuda.gridDim.x):
            acc = float32(0.0)
            for j in range(tid, n, nt):
                if add:
                    v = float32(st_s(s, i, j, ld_x(x, i, j) + ld_r(res, i, j)))
                else:
                    v = float32(ld_x(x, i, j))
                acc += v if centered else v * v
            tot = block_sum(float64(acc)) / n
            mu = float64(0.0)
            if centered:
                mu = tot
                mu32 = float32(mu)
                acc2 = float32(0.0)
                for j in range(tid, n, nt):
                    d = float32(ld_src(x, s, i, j)) - mu32
                    acc2 += d * d
                dm = mu - mu32
                var = block_sum(float64(acc2)) / n - dm * dm
                tot = var if var > 0.0 else 0.0 * var  # NaN kept
            r = _rsqrt(tot, eps)
            if tid == 0:
                if centered:  # RMS launches pass rstd as mean too
                    mean[i] = mu
                rstd[i] = r
            r32 = float32(r)
            sh = float32(-mu * r)
            for j in range(tid, n, nt):
                v = (float32(ld_src(x, s, i, j)) * r32 + sh) * w[j]
                st_y(y, i, j, v + b[j] if centered else v)

    return _rows_lowp


@functools.lru_cache(maxsize=None)
def normalize_kernel(fx):
    """Lp normalize the rows of ``x`` (format ``fx``) into ``y`` (same format); ``pk`` as
    ``numbanorm/_cpu/normalize.py`` (0: p=2, 1: p=1, 2: inf, 3: other p, 4: -inf, 5: p=0)."""
    ld, st = loader(fx), storer(fx)

    @cuda.jit
    def _normalize_lowp(x, pk, p, eps, y):
        m, n = x.shape
        tid = cuda.threadIdx.x
        nt = cuda.blockDim.x
        for i in range(cuda.blockIdx.x, m, cuda.gridDim.x):
            a = float64(math.inf) if pk == 4 else float64(0.0)
            for j in range(tid, n, nt):
                v = abs(float64(ld(x, i, j)))
                if pk == 0:
                    a += v * v
                elif pk == 1:
                    a += v
                elif pk == 2:
                    a = v if (v > a or v != v) else a
                elif pk == 4:
                    a = v if (v < a or v != v) else a
                elif pk == 5:
                    a += 1.0 if v != 0.0 else 0.0
                elif v == 0.0:
                    a += 0.0 if p > 0.0 else math.inf
                else:
                    a += v ** p
            if pk == 2:
                nrm = block_max(a)
            elif pk == 4:
                nrm = block_min(a)
            else:
                nrm = block_sum(a)
            if pk == 0:
                nrm = math.sqrt(nrm)
            elif pk == 3:
                nrm = nrm ** (1.0 / p)
            d = float32(eps if nrm < eps else nrm)
            for j in range(tid, n, nt):
                st(y, i, j, float32(ld(x, i, j)) / d)

    return _normalize_lowp


@functools.lru_cache(maxsize=None)
def normalize_backward_kernel(fg, fx):
    """Gradient of :func:`normalize_kernel` for ``grad_out`` / ``x`` of formats ``fg`` /
    ``fx`` into ``grad_x`` (format ``fx``): the float64 math of the float32 rows kernel
    (``normalize.kernels``' ``rows_backward``), each element rounded once (float64 →
    :func:`._bf16.odd32` → the 16-bit format). A block per row, as the forward."""
    ld_g, ld_x, st = loader(fg), loader(fx), storer(fx)

    @cuda.jit
    def _normalize_backward_lowp(grad_out, x, pk, p, eps, grad_x):
        m, n = x.shape
        tid = cuda.threadIdx.x
        nt = cuda.blockDim.x
        maxred = pk == PINF or pk == PNINF
        for i in range(cuda.blockIdx.x, m, cuda.gridDim.x):
            a = _init(pk)
            s = float64(0.0)
            for j in range(tid, n, nt):
                v = float64(ld_x(x, i, j))
                a = _acc(v, a, pk, p)
                s += float64(ld_g(grad_out, i, j)) * v
            if maxred:
                a = block_max(a)
                s = block_sum(s)
            else:
                a, s = block_sum2(a, s)
            nrm = _finish(a, pk, p)
            cnt = float64(0.0)
            if maxred:
                for j in range(tid, n, nt):
                    if _is_tie(float64(ld_x(x, i, j)), nrm):
                        cnt += 1.0
                cnt = block_sum(cnt)
            inv_d = 1.0 / _clamp(nrm, eps)
            coef = s * inv_d * inv_d if nrm >= eps and pk != P0 else 0.0
            rn = 1.0 / nrm if nrm != 0.0 else 0.0
            for j in range(tid, n, nt):
                d = float64(ld_g(grad_out, i, j)) * inv_d - coef * _dnorm(float64(ld_x(x, i, j)), nrm, rn, pk, p, cnt)
                st(grad_x, i, j, odd32(d))

    return _normalize_backward_lowp


def row_launch(m, n):
    """(blocks, threads): a block per row, at most ``max_blocks`` blocks grid-striding."""
    s = _layout.settings()
    threads = max(32, min(s["threads_per_block"], 32 * -(-n // 32)))
    return max(1, min(m, s["max_blocks"])), threads


_FMT = {np.dtype(np.uint16): BF16, np.dtype(np.float16): F16, np.dtype(np.int16): F16,
        np.dtype(np.float32): F32, np.dtype(np.float64): F64}


def _f(a):
    return _FMT[np.dtype(a.dtype)]


def _f16(a):
    """float16 data reach the kernels as float16 (the host layer views them as int16)."""
    return a.view(np.float16) if a.dtype == np.int16 else a


def _launch(kernel, m, n, *args):
    blocks, threads = row_launch(m, n)
    kernel[blocks, threads](*args)


def rms_forward(x, weight, eps, out, rstd):
    m, n = x.shape
    k = rows_kernel(False, False, _f(x), _f(x), _f(x), _f(out))
    _launch(k, m, n, _f16(x), _f16(x), weight, weight, eps, _f16(x), _f16(out), rstd, rstd)


def ln_forward(x, weight, bias, eps, out, mean, rstd):
    m, n = x.shape
    k = rows_kernel(True, False, _f(x), _f(x), _f(x), _f(out))
    _launch(k, m, n, _f16(x), _f16(x), weight, bias, eps, _f16(x), _f16(out), mean, rstd)


def add_rms_forward(x, res, weight, eps, s, out, rstd):
    m, n = x.shape
    k = rows_kernel(False, True, _f(x), _f(res), _f(s), _f(out))
    _launch(k, m, n, _f16(x), _f16(res), weight, weight, eps, _f16(s), _f16(out), rstd, rstd)


def add_ln_forward(x, res, weight, bias, eps, s, out, mean, rstd):
    m, n = x.shape
    k = rows_kernel(True, True, _f(x), _f(res), _f(s), _f(out))
    _launch(k, m, n, _f16(x), _f16(res), weight, bias, eps, _f16(s), _f16(out), mean, rstd)


def normalize_forward(x, p, eps, out):
    from .._cpu.normalize import _pkind  # plain Python: the norm's code

    m, n = x.shape
    _launch(normalize_kernel(_f(x)), m, n, _f16(x), _pkind(p), float(p), float(eps), _f16(out))


def normalize_backward(grad_out, x, p, eps, grad_x):
    from .._cpu.normalize import _pkind  # plain Python: the norm's code

    m, n = x.shape
    k = normalize_backward_kernel(_f(grad_out), _f(x))
    _launch(k, m, n, _f16(grad_out), _f16(x), _pkind(p), float(p), float(eps), _f16(grad_x))


# ------------------------------------------------------------------ host helpers (_ops/_lowp.py)


def bits(a, dt):
    """Zero-copy view of a device array as the same-size integer dtype ``dt``."""
    return a.view(dt)


def _torch_bf16(a):
    return str(getattr(a, "dtype", "")) == "torch.bfloat16"


def device_array(dev, a):
    """``a`` as a Numba device array; torch CUDA bfloat16 tensors (no
    ``__cuda_array_interface__`` for that dtype) through an int16 view, re-typed bfloat16."""
    if _torch_bf16(a) and not dev.host:
        import torch

        from .._ops._lowp import bfloat16

        return dev.asarray(a.detach().view(torch.int16)).view(bfloat16())
    from .. import _interop
    from .._ops._lowp import _host

    if dev.host or type(a) is np.ndarray or _interop.memory(a) != "cuda":
        h = _host(a)
        if h.dtype.kind == "V":  # bfloat16: copied to the device as its bits
            return _layout.as_device_array(h.view(np.uint16)).view(h.dtype)
        return dev.asarray(h)
    return dev.asarray(a)


def widen(a):
    """A float32 copy of a (small) bfloat16 device parameter."""
    out = _layout.empty(a.shape, np.float32)
    if a.size:
        src = _layout.ascontiguous(a.view(np.uint16), np.uint16)
        blocks, tpb = _layout.launch_1d(a.size)
        _widen[blocks, tpb](src.reshape(a.size), out.reshape(a.size))
    return out


@cuda.jit
def _widen(src, out):
    for i in range(cuda.grid(1), src.shape[0], cuda.gridsize(1)):
        out[i] = bf16_value(src[i])


def copy_into(out, buf):
    """``out[...] = buf`` (same dtype, or 16-bit/float32 results into a wider ``out``)."""
    if out.dtype == buf.dtype and out.dtype.itemsize == 2:
        _layout.copyto(out.view(np.uint16), buf.view(np.uint16))
    elif buf.dtype.kind == "V":  # bfloat16 into float32/float64
        tmp = widen(buf)
        _layout.copyto(out, tmp)
    else:
        _layout.copyto(out, buf)


def wrap(dev, a):
    """A device result in the caller's type; bfloat16 through an integer view for torch
    (and CuPy, which types bfloat16 from ml_dtypes since v14)."""
    if a.dtype.kind != "V" or dev.host:
        return dev.wrap(a)
    if dev.kind == "torch":
        import torch

        return torch.as_tensor(a.view(np.int16), device=dev.like.device).view(torch.bfloat16)
    if dev.kind == "cupy":
        import cupy

        return cupy.asarray(a.view(np.uint16)).view(a.dtype)
    return a


def _signatures():
    sigs = []
    m2 = {BF16: "uint16[:, ::1]", F16: "float16[:, ::1]", F32: "float32[:, ::1]"}
    v = "float32[::1]"
    for fx in (BF16, F16):
        for centered in (False, True):
            for add, fr, fs in ((False, fx, fx), (True, fx, fx), (True, F32, F32)):
                k = rows_kernel(centered, add, fx, fr, fs, fx)
                sigs.append((k, f"void({m2[fx]}, {m2[fr]}, {v}, {v}, float64, {m2[fs]}, {m2[fx]}, {v}, {v})"))
        sigs.append((normalize_kernel(fx), f"void({m2[fx]}, int64, float64, float64, {m2[fx]})"))
        for fg in (fx, F32):  # 16-bit or float32 grad_out
            sigs.append((normalize_backward_kernel(fg, fx),
                         f"void({m2[fg]}, {m2[fx]}, int64, float64, float64, {m2[fx]})"))
    sigs.append((_widen, "void(uint16[::1], float32[::1])"))
    return sigs


PTX_SIGNATURES = _signatures()
