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
        with pytest.raises(TypeError, match="casting='llama'"):
            rms_norm(x.astype(np.float16), 12, casting="llama")
    np.testing.assert_allclose(y, want[0], rtol=1e-12)
    np.testing.assert_allclose(gx, want[1][0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gw, want[1][1], rtol=1e-10, atol=1e-12)
    assert numbanorm.rms_norm is rms_norm
