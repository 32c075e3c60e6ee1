"""``numbanorm.onnx``: ONNX's normalization operators on numbanorm's kernels.

Checked against ONNX's own node test cases (regenerated from the case scripts the
``onnx`` package ships, run through ``onnx.reference.ReferenceEvaluator`` with
numbanorm's operators substituted) and against onnxruntime on one-node models.
"""
import importlib
import warnings

import numpy as np
import pytest

import numbanorm
import numbanorm.onnx as nno

onnx = pytest.importorskip("onnx")

OPS = {
    "LayerNormalization": "layernormalization",
    "RMSNormalization": "rmsnormalization",
    "BatchNormalization": "batch_normalization",
    "InstanceNormalization": "instance_normalization",
    "GroupNormalization": "groupnormalization",
    "LRN": "lrn",
    "LpNormalization": "lpnormalization",
    "MeanVarianceNormalization": "meanvariancenormalization",
}


def _onnx_cases():
    """ONNX's node test cases of the operators above (not the function-expanded models)."""
    node = importlib.import_module("onnx.backend.test.case.node")
    node._TargetOpType = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for mod in OPS.values():
            importlib.import_module(f"onnx.backend.test.case.node.{mod}")
    return [c for c in node._NodeTestCases
            if "expanded" not in c.name and any(n.op_type in OPS for n in c.model.graph.node)]


try:
    CASES = _onnx_cases()
except Exception:  # an onnx without its case scripts
    CASES = []


def test_every_operator_has_onnx_test_cases():
    covered = {n.op_type for c in CASES for n in c.model.graph.node}
    assert set(OPS) <= covered, set(OPS) - covered


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_onnx_node_test_cases(case):
    from onnx.reference import ReferenceEvaluator

    sess = ReferenceEvaluator(case.model, new_ops=nno.reference_ops())
    ours = [n for n in sess.rt_nodes_ if type(n).__module__ == "numbanorm.onnx"]
    assert ours, "numbanorm's operator was not used"
    names = [i.name for i in case.model.graph.input]
    for inputs, outputs in case.data_sets:
        got = sess.run(None, dict(zip(names, inputs)))
        assert len(got) == len(outputs)
        for g, w in zip(got, outputs):
            assert g.shape == w.shape and g.dtype == w.dtype, (g.shape, w.shape, g.dtype, w.dtype)
            np.testing.assert_allclose(g, w, rtol=max(case.rtol, 1e-4), atol=max(case.atol, 1e-5))


# --------------------------------------------------------------------------- onnxruntime


def _model(op, inputs, n_out, opset, **attrs):
    from onnx import TensorProto, helper

    ins = [helper.make_tensor_value_info(f"i{k}", helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
           for k, a in enumerate(inputs)]
    outs = [helper.make_tensor_value_info(f"o{k}", TensorProto.FLOAT, None) for k in range(n_out)]
    node = helper.make_node(op, [i.name for i in ins], [o.name for o in outs], **attrs)
    graph = helper.make_graph([node], "g", ins, outs)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)


def _ort(model, inputs):
    ort = pytest.importorskip("onnxruntime")
    try:
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception as e:  # an operator/opset this onnxruntime does not implement
        pytest.skip(f"onnxruntime cannot run it: {str(e).splitlines()[0][:120]}")
    return sess.run(None, {f"i{k}": a for k, a in enumerate(inputs)})


R = np.random.default_rng(7)
X4 = R.standard_normal((2, 6, 5, 4)).astype(np.float32) * 2 + 1
C = X4.shape[1]
SC, BI = (R.standard_normal(C).astype(np.float32) for _ in range(2))
MEAN, VAR = R.standard_normal(C).astype(np.float32), (R.random(C) + 0.5).astype(np.float32)

ORT_CASES = [
    ("LayerNormalization", [X4, SC[:4], BI[:4]], 3, 17, dict(axis=-1, epsilon=1e-3),
     lambda: nno.layer_normalization(X4, SC[:4], BI[:4], axis=-1, epsilon=1e-3)),
    ("LayerNormalization", [X4, np.ones((5, 4), np.float32)], 1, 17, dict(axis=2),
     lambda: nno.layer_normalization(X4, np.ones((5, 4), np.float32), axis=2)[:1]),
    ("RMSNormalization", [X4, SC[:4]], 1, 23, dict(axis=-1, epsilon=1e-4),
     lambda: (nno.rms_normalization(X4, SC[:4], axis=-1, epsilon=1e-4),)),
    ("BatchNormalization", [X4, SC, BI, MEAN, VAR], 1, 15, dict(epsilon=1e-4),
     lambda: (nno.batch_normalization(X4, SC, BI, MEAN, VAR, epsilon=1e-4),)),
    ("InstanceNormalization", [X4, SC, BI], 1, 17, dict(epsilon=1e-4),
     lambda: (nno.instance_normalization(X4, SC, BI, epsilon=1e-4),)),
    ("GroupNormalization", [X4, SC, BI], 1, 21, dict(num_groups=3, epsilon=1e-4),
     lambda: (nno.group_normalization(X4, SC, BI, num_groups=3, epsilon=1e-4),)),
    ("LRN", [X4], 1, 17, dict(size=5, alpha=0.5, beta=0.75, bias=2.0),  # onnxruntime: odd sizes only
     lambda: (nno.lrn(X4, size=5, alpha=0.5, beta=0.75, bias=2.0),)),
    ("LRN", [X4], 1, 17, dict(size=3),
     lambda: (nno.lrn(X4, size=3),)),
    ("LpNormalization", [X4], 1, 17, dict(axis=1, p=1),
     lambda: (nno.lp_normalization(X4, axis=1, p=1),)),
    ("LpNormalization", [X4], 1, 17, dict(axis=-1, p=2),
     lambda: (nno.lp_normalization(X4, axis=-1, p=2),)),
    ("MeanVarianceNormalization", [X4], 1, 17, dict(axes=[0, 2, 3]),
     lambda: (nno.mean_variance_normalization(X4),)),
]


@pytest.mark.parametrize("op,inputs,n_out,opset,attrs,ours", ORT_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(ORT_CASES)])
def test_matches_onnxruntime(op, inputs, n_out, opset, attrs, ours):
    want = _ort(_model(op, inputs, n_out, opset, **attrs), inputs)
    got = ours()
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-5)


def test_batch_normalization_training_mode_and_inputs_untouched():
    m0, v0 = MEAN.copy(), VAR.copy()
    y, rm, rv = nno.batch_normalization(X4, SC, BI, MEAN, VAR, epsilon=1e-5, momentum=0.8, training_mode=1)
    x64 = X4.astype(np.float64)
    mu, var = x64.mean(axis=(0, 2, 3)), x64.var(axis=(0, 2, 3))
    np.testing.assert_allclose(rm, 0.8 * m0 + 0.2 * mu, rtol=1e-5)
    np.testing.assert_allclose(rv, 0.8 * v0 + 0.2 * var, rtol=1e-5)
    want = (x64 - mu[:, None, None]) / np.sqrt(var[:, None, None] + 1e-5) * SC[:, None, None] + BI[:, None, None]
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(MEAN, m0)
    np.testing.assert_array_equal(VAR, v0)


def test_group_normalization_per_group_scale_is_opset_18():
    sg, bg = np.array([2.0, -1.0, 0.5], np.float32), np.array([0.0, 1.0, 3.0], np.float32)
    np.testing.assert_allclose(nno.group_normalization(X4, sg, bg, num_groups=3),
                               nno.group_normalization(X4, np.repeat(sg, 2), np.repeat(bg, 2), num_groups=3))
    with pytest.raises(ValueError, match="group_normalization.*'scale'"):
        nno.group_normalization(X4, np.ones(4), bg, num_groups=3)


def test_stash_type_and_errors():
    x = X4.astype(np.float64)
    y32, m32, _ = nno.layer_normalization(x, np.ones(4))
    assert y32.dtype == np.float64 and m32.dtype == np.float32
    y64, m64, _ = nno.layer_normalization(x, np.ones(4), stash_type=11)
    assert m64.dtype == np.float64
    np.testing.assert_allclose(y32, y64, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="stash_type"):
        nno.layer_normalization(x, np.ones(4), stash_type=10)
    with pytest.raises(ValueError, match="'axis'"):
        nno.layer_normalization(x, np.ones(4), axis=4)
    with pytest.raises(ValueError, match="'p'"):
        nno.lp_normalization(x, p=3)


def test_submodule_is_reachable_from_the_package():
    assert numbanorm.onnx is nno


def test_docstring_examples():
    import doctest

    failed, tried = doctest.testmod(nno, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert tried >= 9 and failed == 0


@pytest.mark.cuda
def test_operators_run_on_the_cuda_kernels(on_gpu):
    x = X4[:, :, :2, :3].copy()
    calls = [
        lambda: nno.layer_normalization(x, SC[:3], BI[:3]),
        lambda: (nno.rms_normalization(x, SC[:3]),),
        lambda: (nno.batch_normalization(x, SC, BI, MEAN, VAR),),
        lambda: nno.batch_normalization(x, SC, BI, MEAN, VAR, training_mode=1),
        lambda: (nno.instance_normalization(x, SC, BI),),
        lambda: (nno.group_normalization(x, SC[:3], BI[:3], num_groups=3),),
        lambda: (nno.lrn(x, size=2),),
        lambda: (nno.lp_normalization(x, axis=1, p=1),),
        lambda: (nno.mean_variance_normalization(x),),
    ]
    for call in calls:
        want = call()
        with on_gpu():
            got = call()
        for g, w in zip(got, want):
            assert type(g) is np.ndarray
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
