"""onnxruntime, the CPU peer users pick for inference: an optional baseline of the bench.

:func:`node` builds a one-node ONNX model (``onnx.helper``) for an operator at a given
opset and returns a zero-argument callable running it in an ``InferenceSession`` on the
CPU execution provider (all cores, its defaults), inputs bound once. It returns None when
``onnx`` or ``onnxruntime`` is not installed or this onnxruntime cannot run the operator,
so every case simply lacks the column then. onnxruntime returns a fresh output from its
own recycling allocator, so compare it with numbanorm's calls *without* ``out=``
(:func:`add` adds both).
"""


def _modules():
    try:
        import onnx  # noqa: F401
        import onnxruntime
        from onnx import helper
    except ImportError:
        return None, None
    return onnxruntime, helper


def node(op, inputs, opset, n_out=1, **attrs):
    """A callable running the ONNX operator ``op`` (opset ``opset``, attributes ``attrs``)
    on the NumPy ``inputs`` (their order is the operator's), or None."""
    ort, helper = _modules()
    if ort is None:
        return None
    ins = [helper.make_tensor_value_info(f"i{k}", helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
           for k, a in enumerate(inputs)]
    elem = helper.np_dtype_to_tensor_dtype(inputs[0].dtype)
    outs = [helper.make_tensor_value_info(f"o{k}", elem, None) for k in range(n_out)]
    graph = helper.make_graph([helper.make_node(op, [i.name for i in ins], [o.name for o in outs], **attrs)],
                              op, ins, outs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)
    try:
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception:  # an operator/opset this onnxruntime does not implement
        return None
    feed = {f"i{k}": a for k, a in enumerate(inputs)}
    names = [f"o{k}" for k in range(n_out)]
    return lambda: sess.run(names, feed)


def add(fns, new_output, op, inputs, opset, n_out=1, **attrs):
    """Add ``"onnxruntime"`` (when available) and ``"numbanorm_new"`` (``new_output``:
    numbanorm's call returning a fresh output, as onnxruntime does) to a case's ``fns``."""
    fn = node(op, inputs, opset, n_out, **attrs)
    if fn is not None:
        fns["onnxruntime"] = fn
        fns["numbanorm_new"] = new_output
    return fns
