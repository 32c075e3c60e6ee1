"""AddRMSNorm / AddLayerNorm layers: forward/backward against PyTorch modules, memory_efficient."""
import numpy as np
import pytest

import numbanorm


@pytest.mark.parametrize("memory_efficient", [False, True])
@pytest.mark.parametrize("kind", ["rms", "layer"])
def test_layers_match_torch(torch, rng, kind, memory_efficient):
    x, r = rng.standard_normal((4, 5, 16)), rng.standard_normal((4, 5, 16))
    gy, gs = rng.standard_normal(x.shape), rng.standard_normal(x.shape)
    if kind == "rms":
        layer = numbanorm.AddRMSNorm(16, eps=1e-6, dtype=np.float64, memory_efficient=memory_efficient)
        tl = torch.nn.RMSNorm(16, eps=1e-6, dtype=torch.float64)
    else:
        layer = numbanorm.AddLayerNorm(16, dtype=np.float64, memory_efficient=memory_efficient)
        tl = torch.nn.LayerNorm(16, dtype=torch.float64)
    w = rng.uniform(0.5, 2.0, 16)
    layer.weight[...] = w
    with torch.no_grad():
        tl.weight.copy_(torch.tensor(w))
    tx, tr = torch.tensor(x, requires_grad=True), torch.tensor(r, requires_grad=True)
    ts = tx + tr
    ty = tl(ts)
    torch.autograd.backward([ty, ts], [torch.tensor(gy), torch.tensor(gs)])
    y, s = layer(x, r)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    gx = layer.backward(gy, gs)
    np.testing.assert_allclose(gx, tx.grad.numpy(), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(layer.weight_grad, tl.weight.grad.numpy(), rtol=1e-8, atol=1e-10)
    if kind == "layer":
        np.testing.assert_allclose(layer.bias_grad, tl.bias.grad.numpy(), rtol=1e-9, atol=1e-10)


def test_gemma_offset_layer(rng):
    layer = numbanorm.AddRMSNorm(8, dtype=np.float32, weight_offset=1.0)
    x, r = rng.standard_normal((3, 8)).astype(np.float32), rng.standard_normal((3, 8)).astype(np.float32)
    y, s = layer(x, r)  # weight zeros-initialised in Gemma; ones here: (1 + 1) scaling
    np.testing.assert_allclose(y, 2 * numbanorm.rms_norm(x + r, 8), rtol=1e-6)


def test_fused_layers_are_in_modules_all():
    """``from numbanorm.modules import *`` gives the fused layers too (they are public)."""
    import numbanorm.modules as mods

    assert {"AddLayerNorm", "AddRMSNorm"} <= set(mods.__all__)
    assert all(getattr(mods, n) is getattr(numbanorm, n) for n in ("AddLayerNorm", "AddRMSNorm"))
