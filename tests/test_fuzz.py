"""Fuzz suite: every public function on drawn arrays and parameters (hypothesis).

For each function a strategy draws a call: the data's dtype (float16/32/64, non-native
byte order, integers), shape (0-size and 1-element axes included), memory layout
(C, Fortran, negative strides, strided views), parameters (eps, momentum, p, size,
groups, axes, the invalid ones too) and ``out=`` (none, a fresh array of a castable
dtype, ``x`` itself, a view overlapping ``x``). The call must then either

* return what the float64 twin in ``tests/reference.py`` returns, within the result
  dtype's tolerance, leaving every input unchanged (running statistics: updated as the
  twin updates them), or
* raise ``ValueError``/``TypeError`` whose message names the function, leaving ``out``,
  running statistics and every input unchanged —

never another exception type, a crash or a silently wrong value. A drawn call marked
valid must succeed; one marked invalid must raise.

Bounded for CI: ``NUMBANORM_FUZZ_EXAMPLES`` examples per function (default 15);
``NUMBANORM_FUZZ_EXAMPLES=500`` is the long local profile.
"""
import math
import os
import warnings
from dataclasses import dataclass, field

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import numbanorm as nn  # noqa: E402

import reference as ref  # noqa: E402

EXAMPLES = int(os.environ.get("NUMBANORM_FUZZ_EXAMPLES", 15))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 50, database=None,
                suppress_health_check=list(HealthCheck))

DATA_DTYPES = ["float32", "float64", "float16", ">f4", ">f8", "int16"]
PARAM_DTYPES = ["float32", "float64", ">f8"]
LAYOUTS = ["c", "f", "neg", "strided"]


@dataclass
class Case:
    """One drawn call: ``run()`` calls numbanorm, ``expect()`` the float64 twin."""

    fn: str
    run: object
    expect: object
    inputs: list  # arrays that must not change (unless they are the output)
    mutable: list = field(default_factory=list)  # running statistics: (ours, twin's copy)
    out: object = None
    valid: object = True  # True: must succeed; False: must raise; None: either
    rtype: object = None


def _result_dtype(dtype):
    dtype = np.dtype(dtype)
    if dtype.kind in "iub":
        return np.dtype(np.float64)
    return dtype.newbyteorder("=")


def _tol(dtype):
    kind = np.dtype(dtype).newbyteorder("=")
    if kind == np.float16:
        return 3e-2
    if kind == np.float32:
        return 5e-4
    return 1e-8


@st.composite
def arrays(draw, shape, dtype, scale=1.0, offset=0.0):
    """An array of ``shape``/``dtype`` in a drawn memory layout (values ~ N(offset, scale))."""
    seed = draw(st.integers(0, 2**32 - 1))
    vals = np.random.default_rng(seed).standard_normal(shape) * scale + offset
    dtype = np.dtype(dtype)
    vals = np.round(vals * 3) if dtype.kind in "iu" else vals
    vals = vals.astype(dtype)
    layout = draw(st.sampled_from(LAYOUTS))
    if layout == "f":
        return np.asfortranarray(vals)
    if layout == "neg" and vals.ndim:
        return vals[::-1].copy()[::-1]
    if layout == "strided" and vals.ndim:
        buf = np.zeros(shape[:-1] + (2 * shape[-1],), dtype)
        buf[..., ::2] = vals
        return buf[..., ::2]
    return vals


def dims(lo=0, hi=4):
    return st.integers(lo, hi)


@st.composite
def out_for(draw, x, shape, rtype):
    """(out, kind): None, a fresh array (result dtype or float64), x itself, or a view of
    a buffer that also holds a copy of x's values in an overlapping window."""
    kind = draw(st.sampled_from(["none", "fresh", "fresh64", "alias", "overlap"]))
    if kind == "fresh":
        return np.full(shape, 7, rtype), kind
    if kind == "fresh64":
        return np.full(shape, 7, np.float64), kind
    if kind == "alias" and x.dtype == rtype and x.shape == shape and x.flags.writeable:
        return x, kind
    if kind == "overlap" and x.size > 1 and x.dtype == rtype:
        return None, kind  # built by the case (it must move x into the shared buffer)
    return None, "none"


def _overlapping(x, draw):
    """(x2, out): x's values in a buffer, out a same-shaped view shifted by a few elements."""
    n = x.size
    shift = draw(st.integers(1, max(1, n - 1)))
    buf = np.zeros(n + shift, x.dtype)
    before = draw(st.booleans())
    xs, os_ = (shift, 0) if before else (0, shift)
    x2 = buf[xs:xs + n].reshape(x.shape)
    x2[...] = x
    return x2, buf[os_:os_ + n].reshape(x.shape)


def _with_out(draw, x, rtype):
    out, kind = draw(out_for(x, x.shape, rtype))
    if kind == "overlap":
        x, out = _overlapping(x, draw)
    return x, out


def _eps(draw, default=1e-5, allow_none=False):
    """(eps, valid)."""
    choice = draw(st.sampled_from(["default", "small", "zero", "negative", "nan"] + (["none"] if allow_none else [])))
    return {"default": (default, True), "small": (1e-3, True), "zero": (0.0, None), "negative": (-1.0, False),
            "nan": (math.nan, False), "none": (None, True)}[choice]


# --------------------------------------------------------------------------- row norms


@st.composite
def layer_norm_cases(draw, backward=False, rms=False):
    fn = ("rms_norm" if rms else "layer_norm") + ("_backward" if backward else "")
    nd = draw(st.integers(1, 3))
    shape = tuple(draw(dims()) for _ in range(nd))
    dtype = draw(st.sampled_from(DATA_DTYPES))
    x = draw(arrays(shape, dtype, scale=draw(st.sampled_from([0.5, 2.0])), offset=draw(st.sampled_from([0.0, 3.0]))))
    k = draw(st.integers(1, nd))
    nshape = tuple(shape[nd - k:])
    valid = True
    how = draw(st.sampled_from(["int", "tuple", "wrong"]))
    if how == "int" and k == 1:
        ns = nshape[0]
    elif how == "wrong":
        ns, valid = nshape[:-1] + (nshape[-1] + 1,), False
    else:
        ns = nshape
    eps, ok = _eps(draw, allow_none=rms)
    valid = False if ok is False else (None if (ok is None and valid) else valid)
    pdt = draw(st.sampled_from(PARAM_DTYPES))
    w = draw(arrays(nshape, pdt, 0.5, 1.0)) if draw(st.booleans()) else None
    b = draw(arrays(nshape, pdt)) if (not rms and not backward and draw(st.booleans())) else None
    if w is not None and draw(st.integers(0, 9)) == 0:
        w, valid = np.ones(nshape + (2,)), False
    rtype = _result_dtype(dtype)
    ctype = np.float64 if rtype == np.float64 else np.float32
    ref_eps = (np.finfo(ctype).eps if eps is None else eps) if rms else eps
    if backward:
        g = draw(arrays(shape, draw(st.sampled_from(["float32", "float64", ">f4"]))))
        x, out = _with_out(draw, x, rtype)
        xc, gc = x.copy(), g.copy()
        if rms:
            run = lambda: nn.rms_norm_backward(g, x, ns, w, eps=eps, out=out)  # noqa: E731
            expect = lambda: ref.rms_norm_backward(gc, xc, nshape, w, ref_eps)  # noqa: E731
        else:
            run = lambda: nn.layer_norm_backward(g, x, ns, w, eps=eps, out=out)  # noqa: E731
            expect = lambda: ref.layer_norm_backward(gc, xc, nshape, w, ref_eps)  # noqa: E731
        return Case(fn, run, expect, [x, g, w], out=out, valid=valid, rtype=rtype)
    x, out = _with_out(draw, x, rtype)
    xc = x.copy()
    if rms:
        run = lambda: nn.rms_norm(x, ns, w, eps, out=out)  # noqa: E731
        expect = lambda: ref.rms_norm(xc, nshape, w, ref_eps)  # noqa: E731
    else:
        run = lambda: nn.layer_norm(x, ns, w, b, eps, out=out)  # noqa: E731
        expect = lambda: ref.layer_norm(xc, nshape, w, b, eps)  # noqa: E731
    return Case(fn, run, expect, [x, w, b], out=out, valid=valid, rtype=rtype)


@st.composite
def add_norm_cases(draw, backward=False, rms=False):
    """The fused residual-add norms: y = norm(x + residual), s = x + residual (forward);
    gradients of both outputs (backward)."""
    fn = ("add_rms_norm" if rms else "add_layer_norm") + ("_backward" if backward else "")
    nd = draw(st.integers(1, 3))
    shape = tuple(draw(dims()) for _ in range(nd))
    dtype = draw(st.sampled_from([d for d in DATA_DTYPES if "int" not in d]))
    x = draw(arrays(shape, dtype, scale=draw(st.sampled_from([0.5, 2.0])), offset=draw(st.sampled_from([0.0, 3.0]))))
    nshape = tuple(shape[nd - 1:])
    ns = nshape[0] if draw(st.booleans()) else nshape
    eps, ok = _eps(draw, allow_none=rms)
    valid = {False: False, None: None}.get(ok, True)
    pdt = draw(st.sampled_from(PARAM_DTYPES))
    w = draw(arrays(nshape, pdt, 0.5, 1.0)) if draw(st.booleans()) else None
    offset = draw(st.sampled_from([0.0, 1.0]))
    rtype = _result_dtype(dtype)
    ctype = np.float64 if rtype == np.float64 else np.float32
    ref_eps = (np.finfo(ctype).eps if eps is None else eps) if rms else eps
    wref = None if w is None else w.astype(np.float64) + offset
    if backward:
        s_ = draw(arrays(shape, dtype))
        gy = draw(arrays(shape, draw(st.sampled_from(["float32", "float64"]))))
        gs = draw(arrays(shape, "float64")) if draw(st.booleans()) else None
        sc, gyc = s_.copy(), gy.copy()
        gsc = None if gs is None else gs.copy()
        nn_fn = nn.add_rms_norm_backward if rms else nn.add_layer_norm_backward

        def run():
            return nn_fn(gy, gs, s_, ns, w, eps=eps, weight_offset=offset)

        def expect():
            r = (ref.rms_norm_backward(gyc, sc, nshape, wref, ref_eps) if rms
                 else ref.layer_norm_backward(gyc, sc, nshape, wref, ref_eps))
            gx = r[0] if gsc is None else r[0] + gsc
            gw = None if w is None else r[1]
            return (gx, gw) if rms else (gx, gw, r[2])

        return Case(fn, run, expect, [s_, gy, gs, w], valid=valid, rtype=rtype)
    r_ = draw(arrays(shape, dtype))
    b = draw(arrays(nshape, pdt)) if (not rms and draw(st.booleans())) else None
    xc, rc = x.astype(np.float64), r_.astype(np.float64)
    nn_fn = nn.add_rms_norm if rms else nn.add_layer_norm
    args = () if rms else (b,)

    def run():
        return nn_fn(x, r_, ns, w, *args, eps, weight_offset=offset)

    def expect():
        s64 = (xc + rc).astype(rtype).astype(np.float64)  # s is rounded to its dtype first
        y = ref.rms_norm(s64, nshape, wref, ref_eps) if rms else ref.layer_norm(s64, nshape, wref, b, eps)
        return y, xc + rc

    return Case(fn, run, expect, [x, r_, w, b], valid=valid, rtype=rtype)


# --------------------------------------------------------------------------- batch family


@st.composite
def _channels_input(draw, min_nd=2, max_nd=4, c_min=1):
    nd = draw(st.integers(min_nd, max_nd))
    n = draw(dims(0, 3))
    c = draw(dims(c_min, 4))
    sp = tuple(draw(dims(1, 3)) for _ in range(nd - 2))
    cl = draw(st.booleans())
    shape = (n,) + sp + (c,) if cl else (n, c) + sp
    dtype = draw(st.sampled_from(DATA_DTYPES))
    x = draw(arrays(shape, dtype, scale=draw(st.sampled_from([0.5, 2.0])), offset=draw(st.sampled_from([0.0, 3.0]))))
    return x, (-1 if cl else 1), c, n * math.prod(sp), math.prod(sp)


@st.composite
def batch_norm_cases(draw, backward=False):
    fn = "batch_norm_backward" if backward else "batch_norm"
    x, ca, c, count, _ = draw(_channels_input())
    training = draw(st.booleans())
    valid = True
    pdt = draw(st.sampled_from(PARAM_DTYPES))
    have_stats = draw(st.booleans()) or not training
    rm = draw(arrays((c,), pdt)) if have_stats else None
    rv = np.abs(draw(arrays((c,), pdt))) + np.asarray(0.5, pdt) if have_stats else None
    if not training and draw(st.integers(0, 7)) == 0:
        rm = rv = None
        valid = False
    w = draw(arrays((c,), pdt, 0.5, 1.0)) if draw(st.booleans()) else None
    eps, ok = _eps(draw)
    if ok is False:
        valid = False
    elif ok is None and valid:
        valid = None
    rtype = _result_dtype(x.dtype)
    if training and count == 1 and valid is not False:
        valid = False  # one value per channel (PyTorch's rule)
    if backward:
        g = draw(arrays(x.shape, draw(st.sampled_from(["float32", "float64"]))))
        x, out = _with_out(draw, x, rtype)
        xc, gc = x.copy(), g.copy()
        if training:
            rm = rv = None
        run = lambda: nn.batch_norm_backward(g, x, w, training=training, running_mean=rm, running_var=rv,  # noqa
                                             eps=eps, channel_axis=ca, out=out)
        expect = lambda: ref.batch_norm_backward(gc, xc, w, training=training, running_mean=rm,  # noqa: E731
                                                 running_var=rv, eps=eps, channel_axis=ca)
        if training and count == 1:
            valid = None  # the backward of a one-value batch: no rule to follow
        return Case(fn, run, expect, [x, g, w, rm, rv], out=out, valid=valid, rtype=rtype)
    b = draw(arrays((c,), pdt)) if draw(st.booleans()) else None
    momentum = draw(st.sampled_from([0.1, 0.5, 1.0, 0.0]))
    x, out = _with_out(draw, x, rtype)
    xc = x.copy()
    rm2 = None if rm is None else rm.astype(np.float64)
    rv2 = None if rv is None else rv.astype(np.float64)
    run = lambda: nn.batch_norm(x, rm, rv, w, b, training, momentum, eps, channel_axis=ca, out=out)  # noqa
    expect = lambda: ref.batch_norm(xc, rm2, rv2, w, b, training, momentum, eps, channel_axis=ca)  # noqa: E731
    mutable = [] if rm is None else [(rm, rm2), (rv, rv2)]
    return Case(fn, run, expect, [x, w, b], mutable=mutable, out=out, valid=valid, rtype=rtype)


@st.composite
def group_norm_cases(draw, backward=False, instance=False):
    fn = ("instance_norm" if instance else "group_norm") + ("_backward" if backward else "")
    x, ca, c, count, spatial = draw(_channels_input(min_nd=3 if instance else 2))
    valid = True
    g_ = draw(st.sampled_from([1, 2, 3, 4, 0]))
    if not instance and (g_ == 0 or c % g_):
        valid = False
    pdt = draw(st.sampled_from(PARAM_DTYPES))
    w = draw(arrays((c,), pdt, 0.5, 1.0)) if draw(st.booleans()) else None
    eps, ok = _eps(draw)
    if ok is False:
        valid = False
    elif ok is None and valid:
        valid = None
    rtype = _result_dtype(x.dtype)
    if instance and spatial == 1 and valid is True:
        valid = None  # PyTorch refuses one spatial element when training; either is fine
    if backward:
        g = draw(arrays(x.shape, draw(st.sampled_from(["float32", "float64"]))))
        x, out = _with_out(draw, x, rtype)
        xc, gc = x.copy(), g.copy()
        if instance:
            run = lambda: nn.instance_norm_backward(g, x, w, eps=eps, channel_axis=ca, out=out)  # noqa: E731
            expect = lambda: ref.instance_norm_backward(gc, xc, w, eps, channel_axis=ca)  # noqa: E731
        else:
            run = lambda: nn.group_norm_backward(g, x, g_, w, eps=eps, channel_axis=ca, out=out)  # noqa: E731
            expect = lambda: ref.group_norm_backward(gc, xc, g_, w, eps, channel_axis=ca)  # noqa: E731
        return Case(fn, run, expect, [x, g, w], out=out, valid=valid, rtype=rtype)
    b = draw(arrays((c,), pdt)) if draw(st.booleans()) else None
    x, out = _with_out(draw, x, rtype)
    xc = x.copy()
    if instance:
        run = lambda: nn.instance_norm(x, None, None, w, b, True, 0.1, eps, channel_axis=ca, out=out)  # noqa
        expect = lambda: ref.instance_norm(xc, None, None, w, b, True, 0.1, eps, channel_axis=ca)  # noqa: E731
    else:
        run = lambda: nn.group_norm(x, g_, w, b, eps, channel_axis=ca, out=out)  # noqa: E731
        expect = lambda: ref.group_norm(xc, g_, w, b, eps, channel_axis=ca)  # noqa: E731
    return Case(fn, run, expect, [x, w, b], out=out, valid=valid, rtype=rtype)


# --------------------------------------------------------------------------- LRN, normalize, WS


@st.composite
def lrn_cases(draw, backward=False):
    fn = "local_response_norm" + ("_backward" if backward else "")
    x, ca, c, count, _ = draw(_channels_input(min_nd=3, max_nd=4))
    size = draw(st.sampled_from([1, 2, 3, 5, 0]))
    valid = size >= 1
    mode = draw(st.sampled_from(["across_channels", "within_channel"]))
    conv = draw(st.sampled_from(["torch", "paper"]))
    alpha = draw(st.sampled_from([1e-4, 0.1, 1.0]))
    beta = draw(st.sampled_from([0.75, 0.5, 1.0]))
    k = draw(st.sampled_from([1.0, 2.0]))
    rtype = _result_dtype(x.dtype)
    kw = dict(mode=mode, convention=conv, channel_axis=ca)
    if backward:
        g = draw(arrays(x.shape, draw(st.sampled_from(["float32", "float64"]))))
        x, out = _with_out(draw, x, rtype)
        xc, gc = x.copy(), g.copy()
        run = lambda: nn.local_response_norm_backward(g, x, size, alpha, beta, k, out=out, **kw)  # noqa: E731
        expect = lambda: ref.local_response_norm_backward(gc, xc, size, alpha, beta, k, **kw)  # noqa: E731
        return Case(fn, run, expect, [x, g], out=out, valid=valid, rtype=rtype)
    x, out = _with_out(draw, x, rtype)
    xc = x.copy()
    run = lambda: nn.local_response_norm(x, size, alpha, beta, k, out=out, **kw)  # noqa: E731
    expect = lambda: ref.local_response_norm(xc, size, alpha, beta, k, **kw)  # noqa: E731
    return Case(fn, run, expect, [x], out=out, valid=valid, rtype=rtype)


@st.composite
def normalize_cases(draw, backward=False):
    fn = "normalize" + ("_backward" if backward else "")
    nd = draw(st.integers(1, 3))
    shape = tuple(draw(dims()) for _ in range(nd))
    x = draw(arrays(shape, draw(st.sampled_from(DATA_DTYPES)), scale=draw(st.sampled_from([0.5, 2.0]))))
    p = draw(st.sampled_from([2.0, 1.0, 3.0, math.inf, 0.5]))
    axis = draw(st.integers(-nd - 1, nd))
    valid = -nd <= axis < nd
    eps, ok = _eps(draw, default=1e-12)
    valid = valid and ok is not False
    rtype = _result_dtype(x.dtype)
    if backward:
        g = draw(arrays(shape, draw(st.sampled_from(["float32", "float64"]))))
        x, out = _with_out(draw, x, rtype)
        xc, gc = x.copy(), g.copy()
        run = lambda: nn.normalize_backward(g, x, p, axis, eps, out=out)  # noqa: E731
        expect = lambda: ref.normalize_backward(gc, xc, p, axis, eps)  # noqa: E731
        return Case(fn, run, expect, [x, g], out=out, valid=valid, rtype=rtype)
    x, out = _with_out(draw, x, rtype)
    xc = x.copy()
    run = lambda: nn.normalize(x, p, axis, eps, out=out)  # noqa: E731
    expect = lambda: ref.normalize(xc, p, axis, eps)  # noqa: E731
    return Case(fn, run, expect, [x], out=out, valid=valid, rtype=rtype)


@st.composite
def weight_standardize_cases(draw, backward=False):
    fn = "weight_standardize" + ("_backward" if backward else "")
    nd = draw(st.integers(2, 4))
    shape = tuple(draw(dims(1 if i else 0, 4)) for i in range(nd))
    w = draw(arrays(shape, draw(st.sampled_from(DATA_DTYPES)), scale=draw(st.sampled_from([0.5, 2.0]))))
    eps, ok = _eps(draw)
    valid = ok
    rtype = _result_dtype(w.dtype)
    if backward:
        g = draw(arrays(shape, draw(st.sampled_from(["float32", "float64"]))))
        w, out = _with_out(draw, w, rtype)
        wc, gc = w.copy(), g.copy()
        run = lambda: nn.weight_standardize_backward(g, w, eps, out=out)  # noqa: E731
        expect = lambda: ref.weight_standardize_backward(gc, wc, eps)  # noqa: E731
        return Case(fn, run, expect, [w, g], out=out, valid=valid, rtype=rtype)
    w, out = _with_out(draw, w, rtype)
    wc = w.copy()
    run = lambda: nn.weight_standardize(w, eps, out=out)  # noqa: E731
    expect = lambda: ref.weight_standardize(wc, eps)  # noqa: E731
    return Case(fn, run, expect, [w], out=out, valid=valid, rtype=rtype)


# --------------------------------------------------------------------------- scaling


@st.composite
def scaling_cases(draw, minmax=False):
    fn = "min_max_scale" if minmax else "standardize"
    nd = draw(st.integers(1, 3))
    shape = tuple(draw(dims()) for _ in range(nd))
    x = draw(arrays(shape, draw(st.sampled_from(DATA_DTYPES)), scale=draw(st.sampled_from([0.5, 2.0])),
                    offset=draw(st.sampled_from([0.0, 3.0]))))
    how = draw(st.sampled_from(["int", "tuple", "none", "bad"]))
    valid = True
    if how == "int":
        axis = draw(st.integers(-nd, nd - 1))
    elif how == "tuple":
        axis = tuple(sorted(set(draw(st.lists(st.integers(0, nd - 1), min_size=1, max_size=nd)))))
    elif how == "none":
        axis = None
    else:
        axis, valid = nd, False
    rtype = _result_dtype(x.dtype)
    x, out = _with_out(draw, x, rtype)
    xc = x.copy()
    if minmax:
        lo, hi = draw(st.sampled_from([(0.0, 1.0), (-1.0, 1.0), (1.0, 1.0), (2.0, -2.0)]))
        valid = valid and lo < hi
        clip = draw(st.booleans())
        run = lambda: nn.min_max_scale(x, (lo, hi), axis, clip=clip, out=out)  # noqa: E731
        expect = lambda: ref.min_max_scale(xc, (lo, hi), axis, clip)  # noqa: E731
    else:
        ddof = draw(st.sampled_from([0, 1, -1]))
        valid = valid and ddof >= 0
        run = lambda: nn.standardize(x, axis, ddof, out=out)  # noqa: E731
        expect = lambda: ref.standardize(xc, axis, ddof)  # noqa: E731
    return Case(fn, run, expect, [x], out=out, valid=valid, rtype=rtype)


# --------------------------------------------------------------------------- the check


def _snapshot(arrays_):
    return [(a, a.copy()) for a in arrays_ if isinstance(a, np.ndarray)]


def _same(a, b):
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True)


def _close(got, want, tol, what):
    got = np.asarray(got)
    want = np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    g64 = got.astype(np.float64)
    scale = max(1.0, float(np.nanmax(np.abs(want), initial=0.0)) if want.size else 1.0)
    bad = ~(np.isclose(g64, want, rtol=tol, atol=tol * scale, equal_nan=True))
    assert not bad.any(), f"{what}: max error {np.nanmax(np.abs(g64 - want)[bad])} at {np.argwhere(bad)[0]}"


def check(case):
    out = case.out
    watched = [a for a in case.inputs if a is not None and a is not out]
    before = _snapshot(watched)
    mutable_before = [(a, a.copy()) for a, _ in case.mutable]
    out_before = None if out is None else out.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            result = case.run()
        except (ValueError, TypeError) as e:
            assert case.valid is not True, f"{case.fn}: a valid call raised {type(e).__name__}: {e}"
            assert f"{case.fn}(" in str(e) or case.fn in str(e), f"{case.fn}: message does not name it: {e}"
            for a, copy in before + mutable_before:
                if out is None or not np.may_share_memory(a, out):
                    assert _same(a, copy), f"{case.fn}: an input changed by a failed call"
            if out is not None:
                assert _same(out, out_before), f"{case.fn}: out changed by a failed call"
            return "error"
        assert case.valid is not False, f"{case.fn}: an invalid call returned a result"
        with np.errstate(all="ignore"):
            want = case.expect()
    tol = _tol(case.rtype)
    got = result if isinstance(result, tuple) else (result,)
    want = want if isinstance(want, tuple) else (want,)
    assert len(got) == len(want), case.fn
    if out is not None:
        assert got[0] is out, f"{case.fn}: out= was not returned"
    else:
        assert np.asarray(got[0]).dtype == case.rtype, f"{case.fn}: dtype {np.asarray(got[0]).dtype}"
    for i, (g, w) in enumerate(zip(got, want)):
        if w is None:
            assert g is None, f"{case.fn}: output {i} should be None"
            continue
        _close(g, w, tol if i == 0 else max(tol, 1e-6) * 10, f"{case.fn} output {i}")
    for a, copy in before:
        if out is None or not np.may_share_memory(a, out):
            assert _same(a, copy), f"{case.fn}: an input changed"
    for ours, twin in case.mutable:
        _close(ours, twin, max(_tol(ours.dtype), 1e-6), f"{case.fn} running statistics")
    return "ok"


STRATEGIES = {
    "layer_norm": layer_norm_cases(),
    "layer_norm_backward": layer_norm_cases(backward=True),
    "rms_norm": layer_norm_cases(rms=True),
    "rms_norm_backward": layer_norm_cases(backward=True, rms=True),
    "add_rms_norm": add_norm_cases(rms=True),
    "add_rms_norm_backward": add_norm_cases(backward=True, rms=True),
    "add_layer_norm": add_norm_cases(),
    "add_layer_norm_backward": add_norm_cases(backward=True),
    "batch_norm": batch_norm_cases(),
    "batch_norm_backward": batch_norm_cases(backward=True),
    "group_norm": group_norm_cases(),
    "group_norm_backward": group_norm_cases(backward=True),
    "instance_norm": group_norm_cases(instance=True),
    "instance_norm_backward": group_norm_cases(backward=True, instance=True),
    "local_response_norm": lrn_cases(),
    "local_response_norm_backward": lrn_cases(backward=True),
    "normalize": normalize_cases(),
    "normalize_backward": normalize_cases(backward=True),
    "weight_standardize": weight_standardize_cases(),
    "weight_standardize_backward": weight_standardize_cases(backward=True),
    "standardize": scaling_cases(),
    "min_max_scale": scaling_cases(minmax=True),
}


def test_every_public_function_is_fuzzed():
    ops = {n for n in nn.__all__ if n[0].islower() and n != "threading_layer"}
    assert ops <= set(STRATEGIES), sorted(ops - set(STRATEGIES))


@pytest.mark.parametrize("fn", sorted(STRATEGIES))
def test_fuzz(fn):
    @FUZZ
    @given(STRATEGIES[fn])
    def run(case):
        check(case)

    run()
