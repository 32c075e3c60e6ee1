"""Transform parameters of ``standardize`` / ``min_max_scale`` computed on the device.

The statistics kernels leave per-channel moments or extrema in device memory; these
one-thread-per-channel kernels turn them into the ``(sub, mul, div, add)`` float64 arrays
of the shared transform (``standardize.transform``) with the same float64 operations as
the NumPy code of ``numbanorm/_ops/standardize.py`` (``zscore_params``) and
``numbanorm/_ops/min_max_scale.py`` (``minmax_params``), so nothing goes to the host and
back in the middle of a call. (On a GPU the compiler may contract a multiply-add into an
FMA: the constant-feature tests can then differ from the CPU's in the last bit of their
bound.)
"""
import math

from numba import cuda, float64

from . import _layout

#: float64 machine epsilon (np.finfo(np.float64).eps)
EPS = 2.220446049250313e-16


@cuda.jit
def _zscore(count, mean, m2, ddof, recip, sub, mul, div, add):
    """sub = mean, div = std (1 for scikit-learn's near-constant channels), mul = 1, add = 0;
    ``recip``: mul = 1 / std instead and ``div`` left alone (the ones constant)."""
    for c in range(cuda.grid(1), mean.shape[0], cuda.gridsize(1)):
        n = count[c]
        mu = mean[c]
        dof = n - ddof
        var = m2[c] / dof if dof > 0.0 else math.nan
        scale = math.sqrt(var) if var >= 0.0 else math.nan  # NaN (no dof) stays NaN
        t = n * mu * EPS
        if var <= n * EPS * var + t * t:  # _is_constant_feature
            scale = float64(1.0)
        sub[c] = mu
        add[c] = 0.0
        if recip:
            mul[c] = 1.0 / scale
        else:
            mul[c] = 1.0
            div[c] = scale


@cuda.jit
def _minmax(mn, mx, lo, hi, sub, mul, add):
    """scikit-learn's scale/min_ (a constant channel maps to ``lo``; none: NaN)."""
    for c in range(cuda.grid(1), mn.shape[0], cuda.gridsize(1)):
        a = mn[c]
        b = mx[c]
        if a > b:  # no value in the channel
            a = math.nan
            b = math.nan
        rng = b - a
        const = rng < 10.0 * EPS
        denom = float64(1.0) if const else rng
        scale = (hi - lo) / denom
        min_ = lo - a * scale
        sub[c] = a if const else 0.0
        mul[c] = scale
        add[c] = lo if const else min_  # div: the ones constant


def _params(tag, c, div=True):
    """Scratch (sub, mul, div, add); ``div=False``: the cached ones constant as ``div``
    (``standardize.transform`` then skips the division)."""
    sub, mul, add = (_layout.scratch(f"{tag}.{k}", (c,), "float64") for k in ("sub", "mul", "add"))
    d = _layout.scratch(f"{tag}.div", (c,), "float64") if div else _layout.ones(c, "float64")
    return sub, mul, d, add


def zscore(count, mean, m2, ddof, recip=False):
    """(sub, mul, div, add) device arrays of ``standardize`` from its moments.

    ``recip=True`` (float32 data): multiply by the float64 reciprocal of the standard
    deviation instead of dividing by it (the transform then has no float64 division per
    element; the float64 results differ by at most 1 ulp, far below float32's rounding)."""
    c = mean.shape[0]
    p = _params("zscore", c, div=not recip)
    blocks, tpb = _layout.launch_1d(c)
    _zscore[blocks, tpb, _layout.stream()](count, mean, m2, float(ddof), bool(recip), *p)
    return p


def minmax(mn, mx, lo, hi):
    """(sub, mul, div, add) device arrays of ``min_max_scale`` from its extrema."""
    c = mn.shape[0]
    sub, mul, div, add = _params("minmax", c, div=False)
    blocks, tpb = _layout.launch_1d(c)
    _minmax[blocks, tpb, _layout.stream()](mn, mx, float(lo), float(hi), sub, mul, add)
    return sub, mul, div, add


_V = "float64[::1]"
PTX_SIGNATURES = [
    (_zscore, f"void({_V}, {_V}, {_V}, float64, boolean, {_V}, {_V}, {_V}, {_V})"),
    (_minmax, f"void({_V}, {_V}, float64, float64, {_V}, {_V}, {_V})"),
]
