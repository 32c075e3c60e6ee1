"""Bad input: clear errors naming function, argument, expectation and value; nothing changes."""
import numpy as np
import pytest

import numbanorm
from numbanorm import layer_norm, layer_norm_backward, rms_norm, rms_norm_backward


@pytest.mark.parametrize(
    "call,exc,words",
    [
        (lambda x: layer_norm(x, 5), ValueError, ["layer_norm", "normalized_shape", "trailing", "(5,)"]),
        (lambda x: layer_norm(x, (3, 4, 4)), ValueError, ["normalized_shape"]),
        (lambda x: layer_norm(x, "4"), TypeError, ["normalized_shape", "int"]),
        (lambda x: layer_norm(x, 4, eps=-1.0), ValueError, ["layer_norm", "eps", ">= 0", "-1.0"]),
        (lambda x: layer_norm(x, 4, eps=float("nan")), ValueError, ["eps", "finite"]),
        (lambda x: layer_norm(x, 4, eps="a"), TypeError, ["eps"]),
        (lambda x: layer_norm(x, 4, np.ones(5)), ValueError, ["weight", "(4,)", "(5,)"]),
        (lambda x: layer_norm(x, 4, None, np.ones((2, 2))), ValueError, ["bias", "(4,)"]),
        (lambda x: layer_norm(x.astype(np.complex64), 4), TypeError, ["layer_norm", "'x'", "complex64"]),
        (lambda x: layer_norm(x.astype(object), 4), TypeError, ["'x'", "object"]),
        (lambda x: layer_norm(np.array([["a", "b"]]), 2), TypeError, ["'x'"]),
        (lambda x: layer_norm(x, 4, out=np.empty((3, 5))), ValueError, ["'out'", "shape"]),
        (lambda x: layer_norm(x, 4, out=np.empty((3, 4), np.int64)), TypeError, ["'out'", "int64"]),
        (lambda x: layer_norm(x, 4, return_stats="yes"), TypeError, ["return_stats"]),
        (lambda x: rms_norm(x, 4, eps=-1e-3), ValueError, ["rms_norm", "eps"]),
        (lambda x: rms_norm(x, 2), ValueError, ["rms_norm", "normalized_shape"]),
        (lambda x: layer_norm_backward(np.ones((3, 5)), x, 4), ValueError, ["layer_norm_backward", "grad_out", "shape"]),
        (lambda x: layer_norm_backward(np.ones((3, 4)), x, 4, mean=np.zeros(3)), ValueError, ["mean", "rstd"]),
        (lambda x: layer_norm_backward(np.ones((3, 4)), x, 4, mean=np.zeros(4), rstd=np.ones(4)), ValueError, ["'mean'", "shape"]),
        (lambda x: rms_norm_backward(np.ones((3, 4)), x, 4, rstd=np.ones((3, 2))), ValueError, ["rms_norm_backward", "rstd"]),
        (lambda x: rms_norm_backward(np.ones((3, 4), complex), x, 4), TypeError, ["grad_out"]),
    ],
)
def test_errors_name_function_argument_expected_and_got(call, exc, words):
    x = np.ones((3, 4))
    with pytest.raises(exc) as info:
        call(x)
    msg = str(info.value)
    for w in words:
        assert w in msg, (w, msg)


def test_failed_call_leaves_out_and_inputs_unchanged():
    x = np.arange(12.0).reshape(3, 4)
    out = np.full((3, 4), 7.0)
    with pytest.raises(ValueError):
        layer_norm(x, 4, np.ones(4), np.ones(5), out=out)
    with pytest.raises(ValueError):
        layer_norm(x, 4, eps=-1, out=out)
    with pytest.raises(TypeError):
        rms_norm(x, 4, out=out, return_stats=1)
    assert (out == 7.0).all()
    assert (x == np.arange(12.0).reshape(3, 4)).all()


def test_read_only_out_rejected_before_writing():
    x = np.ones((2, 3))
    out = np.zeros((2, 3))
    out.flags.writeable = False
    with pytest.raises(ValueError, match="out"):
        layer_norm(x, 3, out=out)


def test_array_likes_go_through_asarray(tmp_path):
    y = layer_norm([[1.0, 2.0, 3.0]], 3)
    assert isinstance(y, np.ndarray)

    class HasArray:
        def __array__(self, dtype=None, copy=None):
            return np.array([[1.0, 2.0, 3.0]])

    np.testing.assert_array_equal(layer_norm(HasArray(), 3), y)
    mm = np.lib.format.open_memmap(tmp_path / "a.npy", mode="w+", dtype=np.float64, shape=(1, 3))
    mm[:] = [[1.0, 2.0, 3.0]]
    np.testing.assert_array_equal(layer_norm(mm, 3), y)


def test_numpy_scalar_and_int_eps_accepted():
    x = np.ones((2, 3))
    layer_norm(x, np.int64(3), eps=np.float32(1e-3))
    layer_norm(x, (3,), eps=0)
    rms_norm(x, [3], eps=1)


def test_public_names_and_unknown_attribute():
    for name in numbanorm.__all__:
        assert name in dir(numbanorm)
    with pytest.raises(AttributeError, match="no_such_norm"):
        numbanorm.no_such_norm


def test_zero_variance_with_zero_eps_gives_inf_nan_not_an_exception():
    x = np.ones((2, 3))
    y = layer_norm(x, 3, eps=0.0)
    assert np.isnan(y).all()  # 0 * inf, as torch gives
    assert np.isinf(rms_norm(np.zeros((1, 3)), 3, eps=0.0, return_stats=True)[1]).all()


def _plain_cases(rng):
    """(x, normalized_shape, weight, bias, eps, out): calls the fast path takes, and each
    changed in one way that sends it through the general checks."""
    x = rng.standard_normal((6, 16)).astype(np.float32)
    w = rng.standard_normal(16).astype(np.float32)
    b = rng.standard_normal(16).astype(np.float32)
    base = dict(x=x, ns=16, w=w, b=b, eps=1e-5, out=np.empty_like(x))
    yield True, base
    yield True, dict(base, w=None, b=None, out=None)
    yield True, dict(base, x=x[None], out=np.empty((1, 6, 16), np.float32))  # 3-D
    yield False, dict(base, w=np.repeat(w, 2)[::2])  # strided parameter: made contiguous
    yield True, dict(base, x=x.astype(np.float64), w=w.astype(np.float64), b=None, out=None)
    yield True, dict(base, ns=(16,))  # torch's spelling: a 1-tuple
    yield True, dict(base, ns=[16], w=None)  # or a 1-list
    yield False, dict(base, ns=(np.int64(16),))  # a NumPy integer: converted
    yield False, dict(base, ns=(6, 16), w=None, b=None)  # two normalized dims
    yield False, dict(base, eps=0)  # int eps
    yield False, dict(base, x=x.astype(np.float16), w=None, b=None, out=None)
    yield False, dict(base, x=x[::-1])  # negative strides
    yield False, dict(base, x=x.tolist())
    yield False, dict(base, w=w.astype(np.float64))
    yield False, dict(base, out=np.empty((6, 16)))  # float64 out of float32 results
    yield False, dict(base, out=np.empty((16, 6), np.float32).T)  # non-contiguous out
    yield False, dict(base, x=np.empty((0, 16), np.float32), out=None)


def test_plain_rows_fast_path_equals_the_general_path(rng):
    """layer_norm/rms_norm skip the general checks for plain NumPy calls
    (_validate.plain_rows); both paths must give bitwise the same results."""
    from numbanorm import _validate

    for plain, c in _plain_cases(rng):
        x, ns, w, b, eps, out = c["x"], c["ns"], c["w"], c["b"], c["eps"], c["out"]
        n = _validate.plain_rows(x, ns, eps, out, w, b)
        assert bool(n) is plain and n in (0, 16), c
        got = layer_norm(x, ns, w, b, eps, out=out)
        if out is not None:
            assert got is out
        got = np.array(got, copy=True)
        xa = np.asarray(x)
        if xa.size:
            want = layer_norm(xa, ns, w, b, float(eps), return_stats=True)[0]  # general path
            np.testing.assert_array_equal(got, want.astype(got.dtype))
        got = rms_norm(x, ns, w, eps, out=out)
        got = np.array(got, copy=True)
        if xa.size:
            want = rms_norm(xa, ns, w, float(eps), return_stats=True)[0]
            np.testing.assert_array_equal(got, want.astype(got.dtype))


def test_plain_rows_declines_when_a_device_is_forced(rng):
    from numbanorm import _validate
    from numbanorm._dispatch import force_device

    x = rng.standard_normal((2, 4))
    assert _validate.plain_rows(x, 4, 1e-5, None, None)
    with force_device("cpu"):
        assert not _validate.plain_rows(x, 4, 1e-5, None, None)


def test_messages_describe_sequences_of_arrays_and_long_values_briefly():
    """A tuple of arrays where one array goes (``out=(y, r)``) is named by its arrays'
    shapes, not their printed contents; any other long value is cut short."""
    x = np.ones((64, 64), np.float32)
    with pytest.raises(TypeError) as err:
        numbanorm.add_rms_norm(x, x, 64, out=(np.empty_like(x), np.empty_like(x)))
    msg = str(err.value)
    assert "add_rms_norm" in msg and "'out'" in msg
    assert "tuple of 2 (ndarray of shape (64, 64) and dtype float32" in msg and "1." not in msg
    with pytest.raises(TypeError) as err:
        layer_norm(x, 64, eps="a" * 1000)
    assert "'eps'" in str(err.value) and len(str(err.value)) < 400
