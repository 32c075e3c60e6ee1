"""rms_norm / add_rms_norm with dynamic per-row quantized outputs (issue 14, item 5).

Parity: the composition "normalize, then quantize" in NumPy (and PyTorch) to within one
quantization step: ``|q·scale − y| <= scale`` per element, the scale to float32 rounding.
"""
import numpy as np
import pytest

import numbanorm as nb

ml_dtypes = pytest.importorskip("ml_dtypes")
E4M3 = np.dtype(ml_dtypes.float8_e4m3fn)
BF16 = np.dtype(ml_dtypes.bfloat16)
F32 = np.float32
QMAX = {"int8": 127.0, "float8_e4m3": 448.0}


def _data(shape, dt=F32, seed=0):
    return (np.random.default_rng(seed).standard_normal(shape) * 2).astype(dt)


def _reference(y, quantize):
    """norm-then-quantize (vLLM's rms_norm_dynamic_per_token_quant): per-row scale."""
    y = np.asarray(y, np.float64)
    scale = np.abs(y).max(-1, keepdims=True) / QMAX[quantize]
    with np.errstate(invalid="ignore", divide="ignore"):
        v = np.where(scale > 0, y / scale, 0.0)
    if quantize == "int8":
        return np.clip(np.rint(v), -127, 127).astype(np.int8), scale
    return np.clip(v, -448, 448).astype(F32).astype(E4M3), scale


def _check(q, scale, y, quantize, stype=np.float32):
    qr, sr = _reference(y, quantize)
    assert q.dtype == qr.dtype and q.shape == y.shape and scale.shape == sr.shape and scale.dtype == stype
    assert np.allclose(scale, sr, rtol=2e-6, atol=0)
    deq = q.astype(np.float64) * scale
    step = sr if quantize == "int8" else np.abs(qr.astype(np.float64)) * sr / 8 + sr * 2.0 ** -9
    assert (np.abs(deq - y) <= step * (1 + 1e-5)).all()
    # against the reference codes: at most one step apart
    if quantize == "int8":
        assert np.abs(q.astype(int) - qr.astype(int)).max() <= 1
    else:
        assert np.abs(q.view(np.uint8).astype(int) - qr.view(np.uint8).astype(int)).max() <= 1


@pytest.mark.parametrize("quantize", ["int8", "float8_e4m3"])
@pytest.mark.parametrize("dt", [pytest.param(F32, id="f32"), pytest.param(np.float64, id="f64"),
                                pytest.param(BF16, id="bf16"), pytest.param(np.float16, id="f16")])
def test_rms_norm_quantized_is_norm_then_quantize(quantize, dt):
    x = _data((3, 5, 96), dt)
    w = _data(96, F32, 1)
    q, scale = nb.rms_norm(x, 96, w, quantize=quantize)
    y = nb.rms_norm(x.astype(np.float64), 96, w.astype(np.float64), eps=float(np.finfo(F32).eps)
                    if dt != np.float64 else None)
    assert scale.shape == (3, 5, 1)
    _check(q, scale, y, quantize, np.float64 if dt == np.float64 else np.float32)  # the compute dtype


def test_matches_torch_composition_int8():
    torch = pytest.importorskip("torch")
    x, w = _data((16, 128)), _data(128, F32, 1)
    q, scale = nb.rms_norm(x, 128, w, eps=1e-6, quantize="int8")
    y = torch.nn.functional.rms_norm(torch.from_numpy(x), (128,), torch.from_numpy(w), eps=1e-6)
    s = y.abs().amax(-1, keepdim=True) / 127
    qt = torch.clamp(torch.round(y / s), -127, 127).to(torch.int8)
    assert np.allclose(scale, s.numpy(), rtol=1e-6)
    assert np.abs(q.astype(int) - qt.numpy().astype(int)).max() <= 1


@pytest.mark.parametrize("quantize", ["int8", "float8_e4m3"])
def test_add_rms_norm_quantized_returns_q_scale_s(quantize):
    x, r = _data((8, 64)), _data((8, 64), seed=1)
    w = _data(64, F32, 2)
    q, scale, s, rstd = nb.add_rms_norm(x, r, 64, w, quantize=quantize, return_stats=True)
    assert np.array_equal(s, x + r) and rstd.shape == (8, 1)
    y, rstd2 = nb.rms_norm(s, 64, w, return_stats=True)
    assert np.allclose(rstd, rstd2, rtol=1e-6)
    _check(q, scale, y.astype(np.float64), quantize)
    # the residual stream updated in place, bfloat16 data
    xb, rb = x.astype(BF16), r.astype(BF16)
    q2, scale2, s2 = nb.add_rms_norm(xb, rb, 64, w, quantize=quantize, residual_out=rb)
    assert s2 is rb and np.array_equal(rb.astype(F32), (xb.astype(F32) + r.astype(BF16).astype(F32)).astype(BF16)
                                       .astype(F32))
    _check(q2, scale2, nb.rms_norm(rb.astype(np.float64), 64, w.astype(np.float64), eps=float(np.finfo(F32).eps)),
           quantize)


@pytest.mark.parametrize("quantize", ["int8", "float8_e4m3"])
def test_zero_and_nan_rows(quantize):
    x = _data((4, 32))
    x[1] = 0.0
    x[2, 5] = np.nan
    q, scale = nb.rms_norm(x, 32, quantize=quantize)
    assert scale[1, 0] == 0.0 and not q[1].astype(F32).any()  # no NaN for a zero row
    assert np.isnan(scale[2, 0]) and np.isnan(q[2].astype(F32) * scale[2]).all()  # dequantizes to NaN
    if quantize == "int8":
        assert not q[2].any()  # int8 has no NaN: 0
    assert np.isfinite(scale[[0, 3]]).all()


def test_out_is_the_q_buffer_and_rstd_comes_last():
    x = _data((6, 40))
    out = np.empty(x.shape, np.int8)
    q, scale, rstd = nb.rms_norm(x, 40, quantize="int8", out=out, return_stats=True)
    assert q is out and rstd.shape == scale.shape == (6, 1)
    q2, _ = nb.rms_norm(x, 40, quantize="int8")
    assert np.array_equal(out, q2)
    out8 = np.empty(x.shape, E4M3)
    assert nb.rms_norm(x, 40, quantize="float8_e4m3", out=out8)[0] is out8


def test_errors():
    x = _data((2, 8))
    with pytest.raises(ValueError) as e:
        nb.rms_norm(x, 8, quantize="x")
    assert str(e.value) == "rms_norm(): argument 'quantize' must be one of None, 'int8', 'float8_e4m3', got 'x'"
    with pytest.raises(ValueError, match=r"add_rms_norm\(\): argument 'quantize' must be one of"):
        nb.add_rms_norm(x, x, 8, quantize="int4")
    out = np.zeros((2, 8), F32)
    with pytest.raises(TypeError, match=r"argument 'out' must be an array of dtype int8 \(the quantized output\)"):
        nb.rms_norm(x, 8, quantize="int8", out=out)
    assert not out.any()  # a failed call writes nothing
    with pytest.raises(ValueError, match="casting"):
        nb.rms_norm(x, 8, quantize="int8", casting="llama")


@pytest.mark.cuda
@pytest.mark.parametrize("quantize", ["int8", "float8_e4m3"])
def test_cuda_kernels_match_cpu(quantize):
    from numbanorm._cuda import _layout
    from numbanorm._dispatch import force_device

    x, r, w = _data((5, 70)), _data((5, 70), seed=1), _data(70, F32, 2)
    x[3] = 0.0
    xb = x.astype(BF16)
    calls = [lambda: nb.rms_norm(x, 70, w, quantize=quantize),
             lambda: nb.add_rms_norm(x, r, 70, w, quantize=quantize),
             lambda: nb.rms_norm(xb, 70, w, quantize=quantize, return_stats=True)]
    cpu = [c() for c in calls]
    with force_device("cuda"), _layout.launch_settings(threads_per_block=32, max_blocks=2):
        gpu = [c() for c in calls]
    for c, g in zip(cpu, gpu):
        assert np.abs(c[0].view(np.int8).astype(int) - g[0].view(np.int8).astype(int)).max() <= 1
        for a, b in zip(c[1:], g[1:]):
            assert a.dtype == b.dtype and np.allclose(a.astype(F32), b.astype(F32), rtol=1e-6)


@pytest.mark.parametrize("rows", [20, 40])  # one chunk; several (above SERIAL_THRESHOLD)
@pytest.mark.parametrize("quantize", ["int8", "float8_e4m3"])
def test_streamed_codes_equal_cached_ones(quantize, rows, monkeypatch):
    from numbanorm._cpu import _rows_lowp

    x = _data((rows, 1029))
    ref = nb.rms_norm(x, 1029, quantize=quantize)
    ref2 = nb.add_rms_norm(x, x, 1029, quantize=quantize)
    monkeypatch.setattr(_rows_lowp, "STREAM_BYTES", 0)
    q, scale = nb.rms_norm(x, 1029, quantize=quantize)
    assert np.array_equal(q.view(np.uint8), ref[0].view(np.uint8)) and np.array_equal(scale, ref[1])
    q2 = nb.add_rms_norm(x, x, 1029, quantize=quantize)[0]
    assert np.array_equal(q2.view(np.uint8), ref2[0].view(np.uint8))
