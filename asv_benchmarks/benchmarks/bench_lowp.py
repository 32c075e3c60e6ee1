"""asv: 16-bit (bfloat16, float16) and quantized (int8, float8 e4m3) rms_norm, CPU.

The issue-14 targets on (8192, 4096) with ``out=``: bfloat16 ``rms_norm`` <= 0.6 x the
float32 time (half the bytes), int8-quantized <= 1.0 x plain float32 ``rms_norm``.
The float32 rows are the baselines (same call, float32 data / no quantization).
"""
import numpy as np

import numbanorm

from .common import ROWS_SHAPES, SMOKE

LOWP = ["float32", "bfloat16", "float16"][: 2 if SMOKE else 3]  # append-only
QUANT = ["none", "int8", "float8_e4m3"][: 2 if SMOKE else 3]  # append-only


def _dtype(name):
    if name == "bfloat16":
        try:
            import ml_dtypes
        except ImportError:
            raise NotImplementedError("ml_dtypes is not installed") from None
        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def _x(shape, dtype):
    rng = np.random.default_rng(0)
    return rng.standard_normal(shape, dtype=np.float32).astype(dtype)


class RMSNormLowPrecision:
    params = [ROWS_SHAPES, LOWP]
    param_names = ["shape", "dtype"]

    def setup(self, shape, dtype):
        self.x = _x(shape, _dtype(dtype))
        self.w = _x(shape[-1], np.float32)
        self.out = np.empty_like(self.x)
        self.time_rms_norm_lowp(shape, dtype)  # compile / warm up outside the timing

    def time_rms_norm_lowp(self, shape, dtype):
        numbanorm.rms_norm(self.x, shape[-1], self.w, out=self.out)


class RMSNormQuantized:
    params = [ROWS_SHAPES, QUANT]
    param_names = ["shape", "quantize"]

    def setup(self, shape, quantize):
        self.x = _x(shape, np.float32)
        self.w = _x(shape[-1], np.float32)
        self.q = None if quantize == "none" else quantize
        qdt = {"none": np.float32, "int8": np.int8}.get(quantize)
        self.out = np.empty(shape, qdt if qdt is not None else _e4m3())
        self.time_rms_norm_quantized(shape, quantize)

    def time_rms_norm_quantized(self, shape, quantize):
        numbanorm.rms_norm(self.x, shape[-1], self.w, out=self.out, quantize=self.q)


class AddRMSNormQuantized:
    params = [ROWS_SHAPES, QUANT]
    param_names = ["shape", "quantize"]

    def setup(self, shape, quantize):
        self.x, self.r = _x(shape, np.float32), _x(shape, np.float32)
        self.w = _x(shape[-1], np.float32)
        self.s = np.empty_like(self.x)
        self.q = None if quantize == "none" else quantize
        qdt = {"none": np.float32, "int8": np.int8}.get(quantize)
        self.out = np.empty(shape, qdt if qdt is not None else _e4m3())
        self.time_add_rms_norm_quantized(shape, quantize)

    def time_add_rms_norm_quantized(self, shape, quantize):
        numbanorm.add_rms_norm(self.x, self.r, shape[-1], self.w, out=self.out, residual_out=self.s,
                               quantize=self.q)


def _e4m3():
    try:
        import ml_dtypes
    except ImportError:
        raise NotImplementedError("ml_dtypes is not installed") from None
    return np.dtype(ml_dtypes.float8_e4m3fn)
