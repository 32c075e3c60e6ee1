"""examples/train_digits.py: its claims hold on a small fixed-seed run; its backward passes are right.

The claims are asserted as orderings of measured quantities (which variant ends lower, which
loses more accuracy), never as hard-coded numbers.
"""
import importlib.util
import math
import pathlib
import sys

import numpy as np
import pytest

import numbanorm as nb

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "train_digits.py"


@pytest.fixture(scope="module")
def td():
    spec = importlib.util.spec_from_file_location("train_digits", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["train_digits"] = mod
    spec.loader.exec_module(mod)
    yield mod
    sys.modules.pop("train_digits", None)


@pytest.fixture(scope="module")
def res(td):
    return td.run_experiments(quick=True, seed=0)


def bad_if_nan(v):
    return math.inf if not math.isfinite(v) else v


# --------------------------------------------------------------------------------------
# the claims


def test_high_learning_rate(res):
    hi = res["high_lr"]
    assert hi["none"]["blew_up"] and hi["none"]["failed"]
    for k in ("batch", "group+ws"):
        assert not hi[k]["failed"], k
        assert not hi[k]["nonfinite"], k
    for k in ("batch", "group+ws"):
        assert bad_if_nan(hi[k]["final_loss"]) < bad_if_nan(hi["none"]["final_loss"]), k


def test_normalization_lowers_the_loss_faster(res):
    sp = res["speed"]
    assert not sp["none"]["failed"]  # a learning rate where the plain network trains
    for k in ("batch", "layer", "group+ws"):
        assert sp[k]["first_epoch_loss"] < sp["none"]["first_epoch_loss"], k
        assert sp[k]["final_loss"] < sp["none"]["final_loss"], k


def test_group_norm_survives_tiny_batches(res):
    sb = res["small_batch"]
    assert sb["group+ws bs=2"]["test_acc"] > sb["batch bs=2"]["test_acc"]
    assert sb["group+ws bs=2"]["final_loss"] < sb["batch bs=2"]["final_loss"]
    bn_drop = sb["batch bs=32"]["test_acc"] - sb["batch bs=2"]["test_acc"]
    gn_drop = sb["group+ws bs=32"]["test_acc"] - sb["group+ws bs=2"]["test_acc"]
    assert bn_drop > gn_drop
    # batch size 1: GroupNorm trains, BatchNorm refuses (PyTorch's rule)
    assert not sb["group+ws bs=1"]["failed"]
    assert sb["group+ws bs=1"]["test_acc"] > sb["batch bs=2"]["test_acc"]
    assert "more than 1 value per channel" in res["batch_bs1_error"]


def test_recurrent_cell(td, res):
    for task, cells in res["rnn"].items():
        # the constant-prediction baseline on in-distribution sequences
        x, y, mask = td.make_sequences(task, np.full(2000, 20), np.random.default_rng(0))
        base = max(y[mask].mean(), 1 - y[mask].mean())
        for cell, r in cells.items():
            assert r["acc"][20] > base + 0.2, (task, cell)
            assert r["loss_curve"][-1] < r["loss_curve"][0], (task, cell)
            assert set(r["acc"]) == {20, 60, 200}
        p, ln = cells["plain"], cells["layer_norm"]
        assert ln["z_drift"] < p["z_drift"], task
        assert ln["saturation"] < p["saturation"], task


def test_claims_summary_agrees(res):
    assert res["claims"] and all(res["claims"].values()), res["claims"]


def test_report_and_plot(td, res, tmp_path):
    text = td.format_table(res)
    for name in ("none", "batch", "layer", "group+ws", "group+ws bs=1", "sign / layer_norm", "parity / plain"):
        assert name in text
    pytest.importorskip("matplotlib")
    out = td.plot(res, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out == tmp_path / "curves.png"


def test_command_line(td, res, tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    seen = {}

    def fake(quick, seed):
        seen.update(quick=quick, seed=seed)
        return res

    monkeypatch.setattr(td, "run_experiments", fake)
    png = tmp_path / "c.png"
    assert td.main(["--quick", "--seed", "3", "--plot", str(png)]) == 0
    assert seen == {"quick": True, "seed": 3}
    assert png.exists()
    out = capsys.readouterr().out
    assert "claims:" in out and "plot saved" in out


# --------------------------------------------------------------------------------------
# data and building blocks


def test_generated_data_without_sklearn(td, monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # import fails
    X, y, Xt, yt, source = td.load_data(0)
    assert source == "synthetic"
    assert X.shape == (1348, 64) and Xt.shape == (449, 64)
    assert X.min() >= 0 and X.max() <= 1 and set(np.unique(y)) == set(range(10))
    r = td.train_mlp((X, y, Xt, yt, source), "layer", lr=0.1, epochs=1, seed=0)
    assert r["loss_curve"][-1] < r["loss_curve"][0]


def test_mlp_uses_numbanorm_layers(td):
    assert isinstance(td.MLP(4, (8,), 3, norm="batch").norms[0], nb.BatchNorm1d)
    assert isinstance(td.MLP(4, (8,), 3, norm="layer").norms[0], nb.LayerNorm)
    assert isinstance(td.MLP(4, (8,), 3, norm="group", groups=2).norms[0], nb.GroupNorm)
    with pytest.raises(ValueError, match="norm"):
        td.MLP(4, (8,), 3, norm="weight")


def _num_grad(f, a, idx, h=1e-6):
    old = a[idx]
    a[idx] = old + h
    fp = f()
    a[idx] = old - h
    fm = f()
    a[idx] = old
    return (fp - fm) / (2 * h)


@pytest.mark.parametrize("norm,ws", [(None, False), ("batch", False), ("layer", False), ("group", True),
                                     ("group", False)])
def test_mlp_backward_matches_finite_differences(td, norm, ws):
    rng = np.random.default_rng(0)
    net = td.MLP(5, (8, 6), 3, norm=norm, groups=2, ws=ws, seed=1, dtype=np.float64)
    X = rng.standard_normal((7, 5))
    y = rng.integers(0, 3, 7)

    def loss():
        return td.softmax_xent(net.forward(X), y)[0]

    _, d = td.softmax_xent(net.forward(X), y)
    net.backward(d)
    checks = [(net.W[0], "W0"), (net.W[1], "W1"), (net.W_out, "W_out")]
    if norm is not None:
        for i, layer in enumerate(net.norms):
            checks += [(layer.weight, ("norm", i, "weight")), (layer.bias, ("norm", i, "bias"))]
    for arr, key in checks:
        grad = net.grads[key] if isinstance(key, str) else net.norms[key[1]].grads[key[2]]
        for idx in [tuple(rng.integers(0, s) for s in arr.shape) for _ in range(3)]:
            np.testing.assert_allclose(grad[idx], _num_grad(loss, arr, idx), rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("layer_norm", [False, True])
def test_rnn_backward_matches_finite_differences(td, layer_norm):
    rng = np.random.default_rng(2)
    net = td.RNN(1, 6, 2, layer_norm=layer_norm, seed=3, dtype=np.float64)
    x, y, mask = td.make_sequences("sign", [3, 6, 5], rng)
    x = x.astype(np.float64)

    def loss():
        return td.masked_xent(net.forward(x), y, mask)[0]

    _, d, _ = td.masked_xent(net.forward(x), y, mask)
    net.backward(d)
    for name, arr in net.params.items():
        for idx in [tuple(rng.integers(0, s) for s in arr.shape) for _ in range(3)]:
            np.testing.assert_allclose(net.grads[name][idx], _num_grad(loss, arr, idx), rtol=1e-5, atol=1e-9)


def test_sequences(td):
    rng = np.random.default_rng(0)
    x, y, mask = td.make_sequences("parity", [2, 4], rng)
    assert x.shape == (4, 2, 1) and y.shape == mask.shape == (4, 2)
    assert mask[:, 0].tolist() == [True, True, False, False]
    np.testing.assert_array_equal(y, np.cumsum(x[..., 0], axis=0) % 2)
    x, y, mask = td.make_sequences("sign", [5], rng)
    c = np.cumsum(x[:, 0, 0])
    np.testing.assert_array_equal(y[:, 0], c > 0)
    np.testing.assert_array_equal(mask[:, 0], c != 0)
    with pytest.raises(ValueError, match="task"):
        td.make_sequences("copy", [3], rng)
