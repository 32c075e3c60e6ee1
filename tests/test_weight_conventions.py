"""weight_offset and casting on rms_norm / layer_norm and the fused add variants, checked
against the PyTorch compositions that define them (README "Transformer fusions")."""
import numpy as np
import pytest

import numbanorm
from numbanorm import add_layer_norm, add_rms_norm, layer_norm, layer_norm_backward, rms_norm, rms_norm_backward


@pytest.mark.parametrize("offset", [1.0, -0.5])
def test_weight_offset_forward_and_autograd(torch, rng, offset):
    F = torch.nn.functional
    x, g = rng.standard_normal((6, 3, 20)), rng.standard_normal((6, 3, 20))
    w, b = rng.standard_normal(20), rng.standard_normal(20)
    for kind in ("rms", "ln"):
        tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
        if kind == "rms":
            ty = F.rms_norm(tx, (20,), offset + tw, eps=1e-6)
            y = rms_norm(x, 20, w, 1e-6, weight_offset=offset)
            gx, gw = rms_norm_backward(g, x, 20, w, eps=1e-6, weight_offset=offset)
        else:
            ty = F.layer_norm(tx, (20,), offset + tw, torch.tensor(b))
            y = layer_norm(x, 20, w, b, weight_offset=offset)
            gx, gw, _ = layer_norm_backward(g, x, 20, w, weight_offset=offset)
        ty.backward(torch.tensor(g))
        np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(gx, tx.grad.numpy(), rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(gw, tw.grad.numpy(), rtol=1e-9, atol=1e-11)


def test_weight_offset_zero_is_the_plain_call(rng):
    x, w = rng.standard_normal((8, 16)).astype(np.float32), rng.standard_normal(16).astype(np.float32)
    np.testing.assert_array_equal(rms_norm(x, 16, w, weight_offset=0.0), rms_norm(x, 16, w))
    np.testing.assert_array_equal(layer_norm(x, 16, w, casting="gemma"), layer_norm(x, 16, w))


def _torch_llama(torch, x, w, eps):
    """HF LlamaRMSNorm.forward."""
    h = x.to(torch.float32)
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return w * h.to(x.dtype)


def _torch_gemma(torch, x, w, eps):
    """HF GemmaRMSNorm.forward (weight_offset=1)."""
    h = x.float()
    out = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return (out * (1.0 + w.float())).type_as(x)


def _torch_none(torch, x, w, eps):
    """Everything in the data dtype (statistics accumulated in float32, as torch's half mean)."""
    ms = x.float().pow(2).mean(-1, keepdim=True)
    rstd = torch.rsqrt(ms + eps).to(x.dtype)
    return (x * rstd) * w


@pytest.mark.parametrize("casting,offset,composition", [
    ("llama", 0.0, _torch_llama), ("gemma", 1.0, _torch_gemma), (None, 1.0, _torch_gemma),
    ("none", 0.0, _torch_none),
])
def test_rms_casting_matches_hf_compositions_in_float16(torch, rng, casting, offset, composition):
    x = (rng.standard_normal((64, 256)) * 3).astype(np.float16)
    w = (rng.standard_normal(256) * 0.3).astype(np.float16)
    want = composition(torch, torch.from_numpy(x), torch.from_numpy(w), 1e-6).numpy()
    y = rms_norm(x, 256, w, 1e-6, weight_offset=offset, casting=casting)
    assert y.dtype == np.float16
    ulp = np.spacing(np.abs(want).astype(np.float16)).astype(np.float64)
    err = np.abs(y.astype(np.float64) - want.astype(np.float64)) / ulp
    assert err.max() <= 1.0  # within one unit of the last place (torch's rsqrt rounds differently)
    assert (err == 0).mean() > 0.9  # and mostly bitwise equal: the cast order is the same


def test_casting_orders_differ_on_half_data(rng):
    """The three orders give different roundings on float16 (so the option matters), and
    coincide on float32 data."""
    x = (rng.standard_normal((64, 256)) * 3).astype(np.float16)
    w = (rng.standard_normal(256) * 0.3).astype(np.float16)
    ys = {c: rms_norm(x, 256, w, casting=c) for c in ("none", "llama", "gemma")}
    assert (ys["llama"] != ys["gemma"]).any() and (ys["none"] != ys["llama"]).any()
    x32, w32 = x.astype(np.float32), w.astype(np.float32)
    ref = rms_norm(x32, 256, w32)
    for c in ("none", "llama", "gemma"):
        np.testing.assert_array_equal(rms_norm(x32, 256, w32, casting=c), ref)


def test_layer_norm_llama_casting(torch, rng):
    F = torch.nn.functional
    x = (rng.standard_normal((32, 128)) * 2 + 1).astype(np.float16)
    w, b = rng.standard_normal(128).astype(np.float16), rng.standard_normal(128).astype(np.float16)
    tx, tw, tb = map(torch.from_numpy, (x, w, b))
    want = (F.layer_norm(tx.float(), (128,)).to(torch.float16) * tw + tb).numpy()
    y = layer_norm(x, 128, w, b, casting="llama")
    err = np.abs(y.astype(np.float64) - want) / np.spacing(np.abs(want).astype(np.float16)).astype(np.float64)
    assert err.max() <= 1.0 and (err == 0).mean() > 0.9


def test_add_variants_take_the_conventions(rng):
    x = (rng.standard_normal((16, 64))).astype(np.float16)
    r = (rng.standard_normal((16, 64))).astype(np.float16)
    w = rng.standard_normal(64).astype(np.float16)
    y, s = add_rms_norm(x, r, 64, w, weight_offset=1.0, casting="llama")
    np.testing.assert_array_equal(y, rms_norm(s, 64, w, weight_offset=1.0, casting="llama"))
    y, s = add_layer_norm(x, r, 64, w, casting="none")
    np.testing.assert_array_equal(y, layer_norm(s, 64, w, casting="none"))


def test_bad_casting_and_offset_are_errors(rng):
    x = rng.standard_normal((2, 4))
    with pytest.raises(ValueError, match="rms_norm\\(\\): argument 'casting' must be one of"):
        rms_norm(x, 4, casting="bf16")
    with pytest.raises(TypeError, match="layer_norm\\(\\): argument 'weight_offset' must be a real number"):
        layer_norm(x, 4, weight_offset="1")
    with pytest.raises(ValueError, match="layer_norm_backward\\(\\): argument 'weight_offset'"):
        layer_norm_backward(x, x, 4, weight_offset=float("inf"))


@pytest.mark.cuda
def test_gpu_weight_offset(on_gpu, rng):
    x, g, w = rng.standard_normal((4, 12)), rng.standard_normal((4, 12)), rng.standard_normal(12)
    want = rms_norm(x, 12, w, weight_offset=1.0), rms_norm_backward(g, x, 12, w, weight_offset=1.0)
    with on_gpu():
        y = rms_norm(x, 12, w, weight_offset=1.0)
        gx, gw = rms_norm_backward(g, x, 12, w, weight_offset=1.0)
    np.testing.assert_allclose(y, want[0], rtol=1e-12)
    np.testing.assert_allclose(gx, want[1][0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gw, want[1][1], rtol=1e-10, atol=1e-12)
    assert numbanorm.rms_norm is rms_norm


# ---------------------------------------------------------------- casting kernels (_cpu/_casting.py, _cuda/_casting.py)


def _half_dtypes():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    return {"f16": np.dtype(np.float16), "bf16": np.dtype(ml_dtypes.bfloat16)}


def _numpy_casting(kind, buf, src, w, b, mean, rstd, half):
    """The NumPy composition the kernels replace (ufuncs of the half dtype round every step)."""
    if kind == "llama":
        y = buf.astype(half) * w.astype(half)
    else:
        h = src.astype(half)
        if mean is not None:
            h = h - mean.astype(half)[:, None]
        y = (h * rstd.astype(half)[:, None]) * w.astype(half)
    if b is not None:
        y = y + b.astype(half)
    return y.astype(buf.dtype)


def _casting_inputs(shape, ct, half, centered, seed=0):
    rng = np.random.default_rng(seed)
    src = (rng.standard_normal(shape) * 3).astype(half).astype(ct)
    if ct == np.float64:  # a float64 stream: values between the half ones (rounded once, as astype)
        src = src + rng.standard_normal(shape) * 1e-3
    mean = src.mean(1) if centered else None
    rstd = 1 / np.sqrt(src.var(1) + 1e-5)
    buf = ((src - (mean[:, None] if centered else 0)) * rstd[:, None]).astype(ct)
    w = (rng.standard_normal(shape[1]) * 0.5 + 1).astype(ct)
    b = rng.standard_normal(shape[1]).astype(ct)
    buf.flat[:5] = [np.nan, np.inf, 1e6, 1e-9, -0.0]  # NaN, overflow to inf, underflow
    src.flat[:5] = [np.nan, -np.inf, 7e4, 1e-9, -0.0]
    return buf, src, w, b, None if mean is None else mean.astype(ct), rstd.astype(ct)


@pytest.mark.parametrize("half", ["f16", "bf16"])
@pytest.mark.parametrize("ct", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("kind", ["llama", "none"])
@pytest.mark.parametrize("centered,bias", [(False, False), (True, False), (True, True)])
def test_casting_kernel_matches_the_numpy_composition(half, ct, kind, centered, bias):
    """Every step rounded to the data dtype, bit for bit what NumPy float16 / ml_dtypes
    bfloat16 arithmetic gives (float64 compute too: one rounding to half); the large case
    runs the parallel twin."""
    from numbanorm._cpu._casting import round_output

    dt = _half_dtypes()[half]
    for shape in ((7, 33), (130, 257)):
        buf, src, w, b, mean, rstd = _casting_inputs(shape, ct, dt, centered)
        b = b if bias else None
        with np.errstate(all="ignore"):
            want = _numpy_casting(kind, buf, src, w, b, mean, rstd, dt)
        round_output(kind, buf, src, w, b, mean, rstd, dt)
        np.testing.assert_array_equal(buf, want)


@pytest.mark.parametrize("half", ["f16", "bf16"])
def test_llama_casting_is_the_composition_on_the_normalized_rows(half):
    """Public calls: llama = half(x̂)·half(w) (+ half(b)) on numbanorm's own float32 x̂,
    bitwise, bfloat16 included."""
    dt = _half_dtypes()[half]
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((16, 96)) * 2).astype(dt)
    w, b = rng.standard_normal(96).astype(np.float32), rng.standard_normal(96).astype(np.float32)
    xh = rms_norm(x.astype(np.float32), 96)
    np.testing.assert_array_equal(rms_norm(x, 96, w, casting="llama"), xh.astype(dt) * w.astype(dt))
    xh = layer_norm(x.astype(np.float32), 96)
    want = xh.astype(dt) * w.astype(dt) + b.astype(dt)
    np.testing.assert_array_equal(layer_norm(x, 96, w, b, casting="llama"), want)


@pytest.mark.cuda
@pytest.mark.parametrize("half", ["f16", "bf16"])
def test_gpu_casting_kernel_bits_equal_cpu(half):
    """The CUDA twin on the CPU kernel's inputs: the same bits (float32 and float64 compute)."""
    from numbanorm._cpu._casting import round_output as cpu_round
    from numbanorm._cuda import _layout
    from numbanorm._cuda._casting import round_output as gpu_round

    dt = _half_dtypes()[half]
    with _layout.launch_settings(threads_per_block=32, max_blocks=2):
        for ct in (np.float32, np.float64):
            for kind in ("llama", "none"):
                for centered, bias in ((False, False), (True, True)):
                    buf, src, w, b, mean, rstd = _casting_inputs((5, 21), ct, dt, centered, seed=1)
                    b = b if bias else None
                    dev = [None if a is None else _layout.as_device_array(a) for a in (buf, src, w, b, mean, rstd)]
                    gpu_round(kind, *dev, dt)
                    cpu_round(kind, buf, src, w, b, mean, rstd, dt)
                    np.testing.assert_array_equal(dev[0].copy_to_host(), buf)


@pytest.mark.cuda
@pytest.mark.parametrize("half", ["f16", "bf16"])
def test_gpu_casting_calls_equal_cpu(half):
    """rms_norm / layer_norm / the fused adds with casting 'llama' and 'none' on the GPU:
    bitwise the CPU results (outputs and residual streams), with and without weight,
    bias and weight_offset."""
    from numbanorm._cuda import _layout
    from numbanorm._dispatch import force_device

    dt = _half_dtypes()[half]
    rng = np.random.default_rng(5)
    x, r = (rng.standard_normal((5, 70)) * 3).astype(dt), (rng.standard_normal((5, 70)) * 3).astype(dt)
    w, b = rng.standard_normal(70).astype(np.float32), rng.standard_normal(70).astype(np.float32)
    calls = []
    for c in ("llama", "none"):
        for o in (0.0, 1.0):
            kw = dict(casting=c, weight_offset=o)
            calls += [lambda kw=kw: rms_norm(x, 70, w, **kw), lambda kw=kw: rms_norm(x, 70, None, **kw),
                      lambda kw=kw: layer_norm(x, 70, w, b, **kw), lambda kw=kw: layer_norm(x, 70, w, None, **kw),
                      lambda kw=kw: add_rms_norm(x, r, 70, w, **kw), lambda kw=kw: add_layer_norm(x, r, 70, w, b, **kw),
                      lambda kw=kw: add_rms_norm(x, r, 70, w, residual_dtype=np.float32, **kw)]
    cpu = [f() for f in calls]
    with force_device("cuda"), _layout.launch_settings(threads_per_block=32, max_blocks=2):
        gpu = [f() for f in calls]
    for a, g in zip(cpu, gpu):
        for aa, gg in zip(a if isinstance(a, tuple) else (a,), g if isinstance(g, tuple) else (g,)):
            gg = np.asarray(gg)
            assert gg.dtype == aa.dtype
            np.testing.assert_array_equal(gg.view(np.uint16 if aa.itemsize == 2 else np.uint32),
                                          aa.view(np.uint16 if aa.itemsize == 2 else np.uint32))


@pytest.mark.parametrize("casting", [None, "gemma", "llama", "none"])
@pytest.mark.parametrize("op", ["rms_norm", "layer_norm", "add_rms_norm", "add_layer_norm"])
def test_bfloat16_weights_take_every_casting(rng, casting, op):
    """bfloat16 data with bfloat16 weights (a Llama/Gemma checkpoint as loaded) under every
    ``casting``: the result of the same call with the weights widened to float32 (exact),
    where the float32-copy paths ("llama", "none") used to reject the weight's dtype."""
    bf16 = pytest.importorskip("ml_dtypes").bfloat16
    x = rng.standard_normal((4, 32)).astype(bf16)
    r = rng.standard_normal((4, 32)).astype(bf16)
    w = rng.standard_normal(32).astype(bf16)
    b = rng.standard_normal(32).astype(bf16)
    f = getattr(numbanorm, op)
    args = (x, r) if op.startswith("add_") else (x,)
    params = (w, b) if "layer" in op else (w,)
    got = f(*args, 32, *params, casting=casting)
    want = f(*args, 32, *(p.astype(np.float32) for p in params), casting=casting)
    for g, e in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
        assert g.dtype == bf16
        np.testing.assert_array_equal(g.astype(np.float32), e.astype(np.float32))
