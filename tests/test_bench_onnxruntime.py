"""The optional onnxruntime baseline of ``numbanorm bench`` / asv (``_bench/_onnxrt.py``)."""
import numpy as np
import pytest

import numbanorm
from numbanorm._bench import _onnxrt
from numbanorm._bench import layer_norm as ln_cases


def test_one_node_model_runs_the_operator(rng):
    pytest.importorskip("onnxruntime")
    x = rng.standard_normal((16, 32)).astype(np.float32)
    w, b = rng.standard_normal(32).astype(np.float32), rng.standard_normal(32).astype(np.float32)
    run = _onnxrt.node("LayerNormalization", [x, w, b], 17, axis=-1, epsilon=1e-5)
    np.testing.assert_allclose(run()[0], numbanorm.layer_norm(x, 32, w, b), rtol=1e-4, atol=1e-5)
    assert _onnxrt.node("NoSuchOperator", [x], 17) is None  # onnxruntime cannot run it: no column


def test_cases_get_the_columns_only_with_onnxruntime(monkeypatch):
    pytest.importorskip("onnxruntime")
    _, fns = ln_cases.forward((8, 16), "float32")
    assert {"onnxruntime", "numbanorm_new"} <= set(fns)
    np.testing.assert_allclose(fns["onnxruntime"]()[0], fns["numbanorm_new"](), rtol=1e-4, atol=1e-5)
    monkeypatch.setattr(_onnxrt, "_modules", lambda: (None, None))  # not installed
    _, fns = ln_cases.forward((8, 16), "float32")
    assert "onnxruntime" not in fns and "numbanorm_new" not in fns
