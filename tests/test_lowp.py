"""bfloat16 / float16 data in and out of the row norms without a float32 copy (issue 14, item 4).

Parity: PyTorch's float32 compositions rounded once (``F.rms_norm(x.float(), ...).to(bf16)``)
to within one unit in the last place of the 16-bit result; the simulator runs the CUDA
kernels on the same inputs.
"""
import tracemalloc

import numpy as np
import pytest

import numbanorm as nb

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = np.dtype(ml_dtypes.bfloat16)
F16 = np.dtype(np.float16)
F32 = np.float32
EPS32 = float(np.finfo(np.float32).eps)
#: relative size of one ulp (upper bound): 2**-7 (bfloat16), 2**-10 (float16)
ULP = {BF16: 2.0 ** -7, F16: 2.0 ** -10}
DTYPES = [pytest.param(BF16, id="bf16"), pytest.param(F16, id="f16")]


def _data(shape, dt, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) * 3).astype(dt)


def _close(y, ref, dt):
    """Within one ulp of the 16-bit ``ref`` (tiny values: an absolute floor)."""
    assert y.dtype == dt
    a, b = y.astype(F32), np.asarray(ref).astype(dt).astype(F32)
    tol = np.abs(b) * ULP[dt] + 1e-6
    bad = ~(np.abs(a - b) <= tol) & ~(np.isnan(a) & np.isnan(b))
    assert not bad.any(), f"{bad.sum()} entries off by more than 1 ulp: {a[bad][:4]} vs {b[bad][:4]}"


def _f32(a):
    return np.asarray(a).astype(F32)


def _ref_rms(s, w, eps=EPS32):
    s = s.astype(np.float64)
    return s / np.sqrt((s * s).mean(-1, keepdims=True) + eps) * w


def _ref_ln(s, w, b, eps=1e-5):
    s = s.astype(np.float64)
    mu = s.mean(-1, keepdims=True)
    return (s - mu) / np.sqrt(((s - mu) ** 2).mean(-1, keepdims=True) + eps) * w + b


@pytest.mark.parametrize("dt", DTYPES)
def test_row_norms_match_torch_float32_compositions(dt):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    tdt = {BF16: torch.bfloat16, F16: torch.float16}[dt]
    x, r = _data((33, 200), dt), _data((33, 200), dt, 1)
    w, b = _data(200, F32, 2), _data(200, F32, 3)

    def t(a):
        return torch.from_numpy(a.view(np.int16)).view(tdt)

    def back(tt):
        return tt.to(tdt).view(torch.int16).numpy().view(dt)

    tw, tb = torch.from_numpy(w), torch.from_numpy(b)
    _close(nb.rms_norm(x, 200, w), back(F.rms_norm(t(x).float(), (200,), tw, eps=EPS32)), dt)
    _close(nb.layer_norm(x, 200, w, b), back(F.layer_norm(t(x).float(), (200,), tw, tb)), dt)
    ts = t(x) + t(r)  # the residual stream in the data dtype (torch's x + residual on half tensors)
    y, s = nb.add_rms_norm(x, r, 200, w)
    assert np.array_equal(s.view(np.int16), ts.view(torch.int16).numpy())
    _close(y, back(F.rms_norm(ts.float(), (200,), tw, eps=EPS32)), dt)
    y, s = nb.add_layer_norm(x, r, 200, w, b)
    _close(y, back(F.layer_norm(ts.float(), (200,), tw, tb)), dt)
    _close(nb.normalize(x, axis=-1), back(F.normalize(t(x).float(), dim=-1)), dt)
    _close(nb.normalize(x, p=1, axis=1), back(F.normalize(t(x).float(), p=1, dim=1)), dt)


@pytest.mark.parametrize("dt", DTYPES)
def test_stats_are_float32_and_shaped_like_torch(dt):
    x = _data((2, 3, 4, 8), dt)
    y, mean, rstd = nb.layer_norm(x, (4, 8), return_stats=True)
    assert y.dtype == dt and y.shape == x.shape
    assert mean.dtype == rstd.dtype == np.float32 and mean.shape == rstd.shape == (2, 3, 1, 1)
    ref = _ref_ln(x.reshape(6, 32), 1.0, 0.0).reshape(x.shape)
    _close(y, ref, dt)
    x64 = x.astype(np.float64).reshape(6, 32)
    assert np.allclose(mean.ravel(), x64.mean(1), rtol=1e-6)
    y, rstd = nb.rms_norm(x, 8, return_stats=True)
    assert rstd.dtype == np.float32 and rstd.shape == (2, 3, 4, 1)


@pytest.mark.parametrize("dt", DTYPES)
def test_out_inplace_strided_and_weight_forms(dt):
    x = _data((16, 64), dt)
    w = _data(64, F32, 1)
    ref = nb.rms_norm(x, 64, w)
    _close(ref, _ref_rms(x, w), dt)
    out = np.empty_like(x)
    assert nb.rms_norm(x, 64, w, out=out) is out and np.array_equal(out.view(np.int16), ref.view(np.int16))
    out32 = np.empty(x.shape, F32)
    assert nb.rms_norm(x, 64, w, out=out32) is out32
    assert np.array_equal(out32, ref.astype(F32))  # rounded to the data dtype, then widened
    xc = x.copy()
    assert nb.rms_norm(xc, 64, w, out=xc) is xc and np.array_equal(xc.view(np.int16), ref.view(np.int16))
    # a 16-bit weight, a weight offset (Gemma), a strided view
    assert np.array_equal(nb.rms_norm(x, 64, w.astype(dt)).view(np.int16),
                          nb.rms_norm(x, 64, w.astype(dt).astype(F32)).view(np.int16))
    _close(nb.rms_norm(x, 64, w, weight_offset=1.0), _ref_rms(x, 1.0 + w), dt)
    big = _data((16, 128), dt, 4)
    _close(nb.layer_norm(big[:, ::2], 64), _ref_ln(big[:, ::2], 1.0, 0.0), dt)
    _close(nb.normalize(big[::-1, ::2], axis=-1), nb.normalize(np.ascontiguousarray(big[::-1, ::2]), axis=-1), dt)


@pytest.mark.parametrize("dt", DTYPES)
def test_fused_residual_forms(dt):
    x, r = _data((8, 32), dt), _data((8, 32), dt, 1)
    w = _data(32, F32, 2)
    y, s = nb.add_rms_norm(x, r, 32, w)
    s_ref = (x.astype(F32) + r.astype(F32)).astype(dt)
    assert np.array_equal(s.view(np.int16), s_ref.view(np.int16))
    _close(y, _ref_rms(s_ref, w), dt)
    # float32 residual stream: s not rounded, y is the norm of the float32 sum
    y32, s32 = nb.add_rms_norm(x, r.astype(F32), 32, w, residual_dtype=np.float32)
    assert s32.dtype == np.float32 and np.array_equal(s32, x.astype(F32) + r.astype(F32))
    _close(y32, _ref_rms(s32, w), dt)
    # in place on the residual stream (FlashInfer's fused_add_rmsnorm)
    rr = r.copy()
    y2, s2 = nb.add_layer_norm(x, rr, 32, w, residual_out=rr)
    assert s2 is rr and np.array_equal(rr.view(np.int16), s_ref.view(np.int16))
    _close(y2, _ref_ln(s_ref, w, 0.0), dt)


def test_nan_stays_in_its_row():
    x = _data((4, 16), BF16)
    x[1, 3] = np.nan
    y = nb.rms_norm(x, 16)
    assert np.isnan(y[1].astype(F32)).all() and np.isfinite(np.delete(y, 1, 0).astype(F32)).all()


@pytest.mark.parametrize("fn", ["rms_norm", "layer_norm", "normalize"])
def test_no_float32_copy_of_the_array(fn):
    """Peak memory of a call is the 16-bit result, not a float32 copy of x (2x its size)."""
    x = _data((256, 1024), BF16)
    call = {"rms_norm": lambda: nb.rms_norm(x, 1024), "layer_norm": lambda: nb.layer_norm(x, 1024),
            "normalize": lambda: nb.normalize(x, axis=-1)}[fn]
    call()  # compile outside the measurement
    tracemalloc.start()
    try:
        call()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1.5 * x.nbytes, f"peak {peak} bytes for a {x.nbytes}-byte input"


def test_torch_bfloat16_tensors_in_and_out():
    torch = pytest.importorskip("torch")
    t = torch.randn(4, 32).to(torch.bfloat16)
    y = nb.rms_norm(t, 32)
    assert isinstance(y, torch.Tensor) and y.dtype == torch.bfloat16
    ref = torch.nn.functional.rms_norm(t.float(), (32,), eps=EPS32).to(torch.bfloat16)
    assert (y.float() - ref.float()).abs().max().item() <= ref.float().abs().max().item() * 2 ** -7
    out = torch.empty_like(t)
    assert nb.layer_norm(t, 32, out=out) is out
    assert torch.equal(out, nb.layer_norm(t, 32))


def test_backward_and_other_ops_accept_bfloat16():
    """Outside the row forwards bfloat16 goes through a float32 copy, like float16."""
    x = _data((4, 16), BF16)
    g = _data((4, 16), BF16, 1)
    gx, gw = nb.rms_norm_backward(g, x, 16, np.ones(16, F32))
    assert gx.dtype == BF16 and gw.dtype == BF16
    ref, _ = nb.rms_norm_backward(g.astype(F32), x.astype(F32), 16, np.ones(16, F32))
    _close(gx, ref, BF16)
    y = nb.normalize(x, axis=0)  # not the last axis: the float32-copy path
    assert y.dtype == BF16
    _close(y, nb.normalize(x.astype(F32), axis=0), BF16)


def test_errors_name_the_argument():
    x = _data((4, 16), BF16)
    with pytest.raises(ValueError, match=r"rms_norm\(\): argument 'out' must be an array of shape \(4, 16\)"):
        nb.rms_norm(x, 16, out=np.empty((4, 15), BF16))
    with pytest.raises(TypeError, match=r"argument 'out' must be an array whose dtype bfloat16"):
        nb.rms_norm(x, 16, out=np.empty((4, 16), np.int32))
    with pytest.raises(ValueError, match="normalized_shape"):
        nb.layer_norm(x, 15)


# ------------------------------------------------------------------ CUDA simulator


@pytest.mark.cuda
@pytest.mark.parametrize("dt", DTYPES)
def test_cuda_kernels_match_cpu(dt):
    from numbanorm._cuda import _layout
    from numbanorm._dispatch import force_device

    x, r = _data((5, 70), dt), _data((5, 70), dt, 1)
    w, b = _data(70, F32, 2), _data(70, F32, 3)
    calls = [lambda: nb.rms_norm(x, 70, w), lambda: nb.layer_norm(x, 70, w, b),
             lambda: nb.add_rms_norm(x, r, 70, w), lambda: nb.add_layer_norm(x, r, 70, w, b),
             lambda: nb.add_rms_norm(x, r.astype(F32), 70, w, residual_dtype=np.float32),
             lambda: nb.normalize(x, axis=-1), lambda: nb.normalize(x, p=np.inf, axis=-1)]
    cpu = [c() for c in calls]
    with force_device("cuda"), _layout.launch_settings(threads_per_block=32, max_blocks=2):
        gpu = [c() for c in calls]
        out = np.zeros_like(x)
        assert nb.rms_norm(x, 70, w, out=out) is out
    for c, g in zip(cpu, gpu):
        for a, b_ in zip(c if isinstance(c, tuple) else (c,), g if isinstance(g, tuple) else (g,)):
            assert b_.dtype == a.dtype
            if a.dtype.itemsize == 2:
                _close(b_, a, dt)
            else:
                assert np.allclose(b_, a, rtol=1e-6)
    _close(out, cpu[0], dt)


@pytest.mark.parametrize("dt", DTYPES)
def test_streamed_outputs_equal_cached_ones(dt, monkeypatch):
    """Outputs of at least STREAM_BYTES go through a scratch row and non-temporal stores
    (forced here on small arrays; the flag is a kernel argument, so the same machine code
    runs): same bits, misaligned outputs and odd rows included."""
    from numbanorm._cpu import _rows_lowp

    x, r = _data((20, 1027), dt), _data((20, 1027), dt, 1)  # below SERIAL_THRESHOLD: no new compiles
    w = _data(1027, F32, 2)
    calls = [lambda o: nb.rms_norm(x, 1027, w, out=o), lambda o: nb.layer_norm(x, 1027, w, w, out=o),
             lambda o: nb.add_rms_norm(x, r, 1027, w, out=o)[0], lambda o: nb.add_layer_norm(x, r, 1027, out=o)[0],
             lambda o: nb.normalize(x, axis=-1, out=o)]
    cached = [c(np.empty_like(x)) for c in calls]
    monkeypatch.setattr(_rows_lowp, "STREAM_BYTES", 0)
    for c, ref in zip(calls, cached):
        buf = np.zeros(x.size + 1, dt)
        out = buf[1:].reshape(x.shape)  # 2-byte misaligned for the vector stores
        assert c(out) is out
        assert np.array_equal(out.view(np.int16), ref.view(np.int16))
