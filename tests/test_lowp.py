"""bfloat16 / float16 data in and out of the row norms and their backwards without a float32 copy (issue 14, item 4).

Parity: PyTorch's float32 compositions rounded once (``F.rms_norm(x.float(), ...).to(bf16)``)
to within one unit in the last place of the 16-bit result; the simulator runs the CUDA
kernels on the same inputs.
"""
import tracemalloc

import numpy as np
import pytest

import numbanorm as nb
from numbanorm import _config

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


def _backward_calls(dt, shape, seed=0):
    """Each 16-bit row backward and its float32-copy twin (the same call on float32 copies)."""
    x, g, gs = _data(shape, dt, seed), _data(shape, dt, seed + 1), _data(shape, dt, seed + 2)
    n = shape[-1]
    w, b = _data(n, F32, seed + 3), _data(n, F32, seed + 4)
    y, _, rstd = nb.layer_norm(x, n, w, b, return_stats=True)
    yr, rr = nb.rms_norm(x, n, w, return_stats=True)
    calls = {
        "layer_norm": lambda g, x, gs, y, yr: nb.layer_norm_backward(g, x, n, w),
        "rms_norm": lambda g, x, gs, y, yr: nb.rms_norm_backward(g, x, n, w),
        "add_layer_norm": lambda g, x, gs, y, yr: nb.add_layer_norm_backward(g, gs, x, n, w),
        "add_rms_norm": lambda g, x, gs, y, yr: nb.add_rms_norm_backward(g, gs, x, n, w, weight_offset=1.0),
        "layer_norm_y": lambda g, x, gs, y, yr: nb.layer_norm_backward(g, None, n, w, y=y, bias=b, rstd=rstd),
        "rms_norm_y": lambda g, x, gs, y, yr: nb.rms_norm_backward(g, None, n, w, y=yr, rstd=rr),
    }
    return calls, (g, x, gs, y, yr)


@pytest.mark.parametrize("dt", DTYPES)
def test_backwards_match_the_float32_copy_path(dt):
    """16-bit backwards (kernels on bit views) = the same math on float32 copies, rounded
    once: within one ulp of it; dtypes as the float32-copy path gives them."""
    calls, args = _backward_calls(dt, (37, 300))
    f32 = tuple(a.astype(F32) for a in args)
    for name, call in calls.items():
        got, ref = call(*args), call(*f32)
        assert got[0].dtype == dt and got[0].shape == args[1].shape, name
        _close(got[0], ref[0], dt)
        for a, r in zip(got[1:], ref[1:]):  # parameter grads: the data dtype, as before
            assert a.dtype == dt, name
            _close(a, r, dt)


@pytest.mark.parametrize("dt", DTYPES)
def test_backwards_match_torch_autograd(dt):
    """Against PyTorch autograd of the forward computed in float32 from the 16-bit data
    (what the kernels compute), grads rounded to the data dtype once."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x, g = _data((9, 64), dt), _data((9, 64), dt, 1)
    w, b = _data(64, F32, 2), _data(64, F32, 3)
    for centered in (False, True):
        tx = torch.tensor(x.astype(F32), requires_grad=True)
        tw = torch.tensor(w, requires_grad=True)
        tb = torch.tensor(b, requires_grad=True)
        out = F.layer_norm(tx, (64,), tw, tb) if centered else F.rms_norm(tx, (64,), tw, eps=EPS32)
        out.backward(torch.from_numpy(g.astype(F32)))
        got = nb.layer_norm_backward(g, x, 64, w) if centered else nb.rms_norm_backward(g, x, 64, w)
        _close(got[0], tx.grad.numpy(), dt)
        # parameter grads are sums over rows of 16-bit products: 2 ulp
        np.testing.assert_allclose(got[1].astype(F32), tw.grad.numpy(), rtol=2 * ULP[dt], atol=1e-3)
        if centered:
            np.testing.assert_allclose(got[2].astype(F32), tb.grad.numpy(), rtol=2 * ULP[dt], atol=1e-3)


@pytest.mark.parametrize("fn", ["layer_norm", "rms_norm", "add_rms_norm", "layer_norm_y"])
def test_backward_makes_no_float32_copy(fn):
    """Peak memory of a 16-bit backward is grad_x (16-bit), not float32 copies of the data."""
    calls, args = _backward_calls(BF16, (256, 1024))
    call = calls[fn]
    call(*args)  # compile outside the measurement
    tracemalloc.start()
    try:
        call(*args)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1.5 * args[0].nbytes, f"peak {peak} bytes for a {args[0].nbytes}-byte grad_out"


@pytest.mark.parametrize("dt", DTYPES)
def test_backward_out_mixed_dtypes_and_streamed_grad_x(dt, monkeypatch):
    from numbanorm._cpu import _rows_grad

    x, g = _data((20, 1027), dt), _data((20, 1027), dt, 1)  # odd rows: unaligned heads and tails
    w = _data(1027, F32, 2)
    ref = nb.rms_norm_backward(g, x, 1027, w)
    out = np.empty_like(x)
    assert nb.rms_norm_backward(g, x, 1027, w, out=out)[0] is out
    assert np.array_equal(out.view(np.int16), ref[0].view(np.int16))
    gc = g.copy()  # out= grad_out (read before written: through a scratch buffer)
    assert nb.rms_norm_backward(gc, x, 1027, w, out=gc)[0] is gc
    assert np.array_equal(gc.view(np.int16), ref[0].view(np.int16))
    out32 = np.empty(x.shape, F32)  # a float32 out= gets the 16-bit result widened
    assert nb.rms_norm_backward(g, x, 1027, w, out=out32)[0] is out32
    assert np.array_equal(out32, ref[0].astype(F32))
    # float32 grad_out with 16-bit x: grad_x follows x (another kernel specialization, whose
    # fast-math row sums may round differently: 1 ulp)
    gx = nb.rms_norm_backward(g.astype(F32), x, 1027, w)[0]
    _close(gx, ref[0], dt)
    monkeypatch.setattr(_rows_grad, "STREAM_BYTES", 0)  # streaming stores: same bits
    buf = np.zeros(x.size + 1, dt)
    out = buf[1:].reshape(x.shape)
    for call in (lambda o: nb.rms_norm_backward(g, x, 1027, w, out=o),
                 lambda o: nb.add_layer_norm_backward(g, x, x, 1027, w, out=o)):
        cached = call(None)
        assert call(out)[0] is out
        assert np.array_equal(out.view(np.int16), cached[0].view(np.int16))


def test_other_ops_accept_bfloat16():
    """Outside the row ops bfloat16 goes through a float32 copy, like float16."""
    x = _data((4, 16), BF16)
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
             lambda: nb.normalize(x, axis=-1), lambda: nb.normalize(x, p=np.inf, axis=-1),
             # saved statistics: RMS kernels get rstd as their mean argument too (a stop-19
             # defect wrote mean = 0 over it)
             lambda: nb.rms_norm(x, 70, w, return_stats=True), lambda: nb.layer_norm(x, 70, w, b, return_stats=True),
             lambda: nb.add_rms_norm(x, r, 70, w, return_stats=True)]
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


@pytest.mark.cuda
@pytest.mark.parametrize("dt", DTYPES)
def test_cuda_backwards_match_cpu(dt):
    """The CUDA backward kernels on 16-bit bit views (``_cuda/_rows_grad.grad_kernels``)
    against the CPU ones: grad_x within one ulp, parameter grads to float32 rounding."""
    from numbanorm._cuda import _layout
    from numbanorm._dispatch import force_device

    calls, args = _backward_calls(dt, (5, 70))
    cpu = {k: c(*args) for k, c in calls.items()}
    with force_device("cuda"), _layout.launch_settings(threads_per_block=32, max_blocks=2):
        gpu = {k: c(*args) for k, c in calls.items()}
        gx32 = nb.rms_norm_backward(args[0].astype(F32), args[1], 70, None)[0]  # float32 grad_out
    for k in calls:
        for a, b in zip(cpu[k], gpu[k]):
            b = np.asarray(b)
            assert a.dtype == b.dtype, k
            _close(b, a, dt) if a.shape == args[1].shape else np.testing.assert_allclose(
                b.astype(F32), a.astype(F32), rtol=2 * ULP[dt], atol=1e-3)
    _close(np.asarray(gx32), nb.rms_norm_backward(args[0].astype(F32), args[1], 70, None)[0], dt)


@pytest.mark.cuda
def test_cuda_bfloat16_copy_paths():
    """The ops without 16-bit kernels take bfloat16 through float32 device copies
    (``_layout.copyto`` converts the bits): same values as the CPU. Stop 19 crashed here
    (the bfloat16 host array was never moved to the device)."""
    from numbanorm._cuda import _layout
    from numbanorm._dispatch import force_device

    x, g = _data((6, 5, 7), BF16), _data((6, 5, 7), BF16, 1)
    calls = [lambda: nb.normalize(x, axis=0), lambda: nb.normalize(x, p=1, axis=1),
             lambda: nb.normalize_backward(g, x, axis=-1),  # (now the 16-bit kernel, see below)
             lambda: nb.normalize_backward(g, x, axis=1)]
    cpu = [c() for c in calls]
    with force_device("cuda"), _layout.launch_settings(threads_per_block=32, max_blocks=2):
        gpu = [c() for c in calls]
        out = np.zeros_like(x)
        assert nb.normalize(x, axis=1, out=out) is out
    for a, b in zip(cpu, gpu):
        assert b.dtype == a.dtype == x.dtype
        _close(np.asarray(b), a, BF16)
    _close(out, nb.normalize(x, axis=1), BF16)


@pytest.mark.parametrize("rows", [20, 40])
@pytest.mark.parametrize("dt", DTYPES)
def test_streamed_outputs_equal_cached_ones(dt, rows, monkeypatch):
    """Outputs of at least STREAM_BYTES go through a staging buffer and non-temporal stores
    (forced here on small arrays; the flag is a kernel argument, so the same machine code
    runs): same bits, misaligned outputs and odd rows included; 40 rows are above
    SERIAL_THRESHOLD, so several chunks run on the pool and the lines two chunks share
    take ordinary stores (``_rows_lowp.write_row``'s ``first``/``last``)."""
    from numbanorm._cpu import _rows_lowp

    x, r = _data((rows, 1027), dt), _data((rows, 1027), dt, 1)  # same kernels at both sizes: no new compiles
    w = _data(1027, F32, 2)
    assert (x.size < _config.SERIAL_THRESHOLD) == (rows == 20)
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


# ------------------------------------------------------------- normalize_backward on 16-bit data

NORM_PS = [2.0, 1.0, np.inf, -np.inf, 3.0, 0.5, 0.0, -1.0]


def _normalize_data(shape, dt):
    x, g = _data(shape, dt), _data(shape, dt, 1)
    x[0, ..., :3] = 0
    x[1, ...] = 0  # zero rows: the eps clamp (dy / eps)
    x[2, ..., 1] = x[2, ..., 4] = 40  # ties of the inf norm
    return g, x


def _copy_path_normalize_backward(g, x, p):
    """The float32-copy path the 16-bit kernels replace: float32 math, then the cast."""
    with np.errstate(over="ignore"):
        return nb.normalize_backward(g.astype(F32), x.astype(F32), p, -1).astype(x.dtype)


def _ulps(a, ref, dt):
    a, b = a.astype(np.float64), ref.astype(np.float64)
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    with np.errstate(invalid="ignore", over="ignore"):  # spacing of inf
        return same, np.where(same, 0.0, np.abs(a - b) / np.spacing(np.abs(ref).astype(dt)).astype(np.float64))


@pytest.mark.parametrize("dt", DTYPES)
def test_normalize_backward_matches_the_float32_copy_path(dt):
    """16-bit normalize_backward along the last axis (bit views, grad_x rounded once) against
    the float32-copy path: p = 2 (float32 math, the copy path's float32 value rounded once)
    bitwise; other p (float64 math) within one ulp, differing only where the copy path
    rounds twice (float64 → float32 → 16-bit), i.e. rarely. A float32 grad_out gives the
    same bits. The large shape runs the parallel twin."""
    for shape in ((7, 33), (200, 300)):
        g, x = _normalize_data(shape, dt)
        for p in NORM_PS:
            got = nb.normalize_backward(g, x, p, -1)
            assert got.dtype == dt and got.shape == x.shape
            same, ulps = _ulps(got, _copy_path_normalize_backward(g, x, p), dt)
            if p == 2.0:
                assert same.all(), p
            assert ulps.max() <= 1.0 and same.mean() > 0.99, p
            np.testing.assert_array_equal(nb.normalize_backward(g.astype(F32), x, p, -1).view(np.uint16),
                                          got.view(np.uint16))


@pytest.mark.parametrize("dt", DTYPES)
def test_normalize_backward_16bit_out_and_layouts(dt):
    g, x = _normalize_data((6, 4, 50), dt)
    want = nb.normalize_backward(g, x, 2.0, -1)
    np.testing.assert_array_equal(nb.normalize_backward(g[:, :, ::-1], x[:, :, ::-1], 2.0, -1).view(np.uint16),
                                  want[:, :, ::-1].view(np.uint16))  # strided inputs: copied to rows
    out = np.zeros_like(x)
    assert nb.normalize_backward(g, x, 2.0, -1, out=out) is out
    np.testing.assert_array_equal(out.view(np.uint16), want.view(np.uint16))
    g2 = g.copy()
    assert nb.normalize_backward(g2, x, 2.0, -1, out=g2) is g2  # out = grad_out: scratch, then a copy
    np.testing.assert_array_equal(g2.view(np.uint16), want.view(np.uint16))
    out32 = np.zeros(x.shape, F32)
    nb.normalize_backward(g, x, 2.0, -1, out=out32)
    np.testing.assert_array_equal(out32, want.astype(F32))
    with pytest.raises(ValueError, match="normalize_backward\\(\\): argument 'grad_out' must have the shape"):
        nb.normalize_backward(g[:1], x, 2.0, -1)


def test_normalize_backward_makes_no_float32_copy():
    g, x = _normalize_data((256, 1024), BF16)
    nb.normalize_backward(g, x, 2.0, -1)  # compile outside the measurement
    tracemalloc.start()
    try:
        nb.normalize_backward(g, x, 2.0, -1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1.5 * x.nbytes, f"peak {peak} bytes for a {x.nbytes}-byte input"


@pytest.mark.cuda
@pytest.mark.parametrize("dt", DTYPES)
def test_cuda_normalize_backward_16bit(dt):
    """The CUDA 16-bit kernel (``_cuda/_rows_lowp.normalize_backward_kernel``): bitwise the
    GPU float32-copy path rounded once (its float64 math), every p, 16-bit and float32
    grad_out; within one ulp of the CPU (whose p = 2 math is float32)."""
    from numbanorm._cuda import _layout
    from numbanorm._dispatch import force_device

    g, x = _normalize_data((5, 70), dt)
    cpu = {p: nb.normalize_backward(g, x, p, -1) for p in NORM_PS}
    with force_device("cuda"), _layout.launch_settings(threads_per_block=32, max_blocks=2):
        for p in NORM_PS:
            got = np.asarray(nb.normalize_backward(g, x, p, -1))
            assert got.dtype == dt
            same, ulps = _ulps(got, np.asarray(_copy_path_normalize_backward(g, x, p)), dt)
            assert ulps.max() <= 1.0 and same.mean() > 0.99, p
            mixed = np.asarray(nb.normalize_backward(g.astype(F32), x, p, -1))
            np.testing.assert_array_equal(mixed.view(np.uint16), got.view(np.uint16))
            assert _ulps(got, cpu[p], dt)[1].max() <= 1.0, p  # (the zero row: ±inf on both)
