"""The row normalizations' fused and convention paths, shared by four public modules.

* :func:`forward`: ``add_layer_norm`` / ``add_rms_norm`` (``s = x + residual`` and
  ``y = norm(s)`` in one kernel pass), and ``layer_norm`` / ``rms_norm`` called with
  ``weight_offset`` or ``casting`` (no residual).
* :func:`backward`: the fused backwards (``grad_s`` added to ``grad_x``), and the
  ``y=`` (memory-saving) / ``weight_offset`` forms of ``layer_norm_backward`` /
  ``rms_norm_backward``; all on the ``_rows_grad`` kernels.

``centered`` is True for LayerNorm, False for RMSNorm. Weight conventions:

* ``weight_offset`` ``o``: the effective weight is ``o + w`` (Gemma: ``o = 1``), used in
  the forward and for ``grad_x``; ``grad_weight`` is unchanged (d(o + w)/dw = 1). Without
  a weight there is no scaling and the offset is ignored.
* A residual stream narrower than the compute dtype (``s`` in float16, or float32 under
  float64 ``x``) is rounded before it is normalized:
  ``y`` is the norm of ``s`` as returned (PyTorch's ``norm(x + residual)`` on half
  tensors); a float32 stream (``residual_dtype=np.float32``) is not rounded.
* ``casting`` (only differs for half-precision data, whose compute dtype is float32;
  for float32/float64 data all choices give the same result):

  - None (default) or ``"gemma"``: everything in the compute dtype, rounded once at the
    end: ``y = half(x̂ · (o + w) [+ b])`` (HF Gemma: ``_norm(x.float()) * (1 + w.float())``
    then ``.type_as(x)``); what every numbanorm function does.
  - ``"llama"``: normalize in float32, round, then scale in the data dtype:
    ``y = half(half(x̂) · half(o + w)) [+ half(b), rounded]`` (HF Llama:
    ``w * x̂.to(input_dtype)``).
  - ``"none"``: the data dtype throughout: the statistics are accumulated in float32 (as
    PyTorch's half reductions are) and rounded to the data dtype, every elementwise step
    rounds: RMS ``y = half(half(x_h · half(rstd)) · w_h)``; LN
    ``y = half(half(half(half(x_h − half(μ)) · half(rstd)) · w_h) + b_h)``.
"""
import numpy as np

from .. import _dispatch, _validate
from .. import _pool
from ._common import Output, canonical, prod, stat_result

_MACHINE_EPS = {np.dtype(t): float(np.finfo(t).eps) for t in (np.float32, np.float64)}

CASTINGS = ("none", "llama", "gemma")


def check_offset(fn, value):
    return 0.0 if value is None else _validate.real(fn, value, "weight_offset")


def check_casting(fn, value):
    return None if value is None else _validate.choice(fn, value, "casting", CASTINGS)


def _eps(fn, eps, centered, ctype):
    if eps is None and not centered:
        return _MACHINE_EPS[ctype]
    return _validate.eps(fn, eps)


def _rows(shape, nshape):
    n = prod(nshape)
    m = prod(shape) // n if n else prod(shape[: len(shape) - len(nshape)])
    return m, n


def _stat_shape(x_shape, k):
    return tuple(x_shape[: len(x_shape) - k]) + (1,) * k


def _saved(fn, arg, dev, value, x_shape, k, m, ctype):
    from ._rows import saved_stat

    return saved_stat(fn, arg, dev, value, x_shape, k, m, ctype)


def _same_array(a, b):
    """True when ``a`` and ``b`` view the same memory with the same layout (in place)."""
    ia = getattr(a, "__array_interface__", None) or getattr(a, "__cuda_array_interface__", None)
    ib = getattr(b, "__array_interface__", None) or getattr(b, "__cuda_array_interface__", None)
    if ia is None or ib is None:
        return a is b
    return (ia["data"][0] == ib["data"][0] and ia.get("strides") == ib.get("strides")
            and tuple(ia["shape"]) == tuple(ib["shape"]) and ia["typestr"] == ib["typestr"])


def _overlapping(dev, out, arrays):
    """The ``arrays`` that ``out`` overlaps other than exactly (those need a scratch buffer;
    an exact alias is safe: the fused kernels read a row before they write it)."""
    if out is None:
        return ()
    return tuple(a for a in arrays if dev.may_share_memory(out, a) and not _same_array(out, a))


def _stype(fn, rtype, residual_dtype, r_dtype):
    """dtype of the residual stream ``s``: ``residual_dtype``, else x's and residual's promotion."""
    if residual_dtype is not None:
        try:
            dt = np.dtype(residual_dtype)
        except TypeError:
            raise TypeError(
                f"{fn}(): argument 'residual_dtype' must be a float dtype, got {residual_dtype!r}") from None
        if dt not in (np.float16, np.float32, np.float64):
            raise TypeError(f"{fn}(): argument 'residual_dtype' must be float16, float32 or float64, got {dt}")
        return dt
    _, rr = _validate.float_dtypes(fn, "residual", r_dtype)
    return np.promote_types(rtype, rr)


def plain_add(centered, x, residual, n, weight, bias, eps, out, residual_out):
    """The fused add norms' fast path for plain NumPy calls (as ``layer_norm``'s ``_plain``):
    ``(y, s)``, or None when the call needs the general checks. Accepts what
    :func:`_validate.plain_fused` accepts (outputs that either are an input or overlap none)."""
    if centered and eps is None:
        return None
    n = _validate.plain_fused(x, residual, n, eps, out, residual_out, weight, bias)
    if not n:
        return None
    m = x.size // n
    dt = x.dtype
    y = _pool.empty_like(x) if out is None else out
    s = _pool.empty_like(x) if residual_out is None else residual_out
    rows = (m, n)
    if x.ndim != 2:  # a 2-D call's arrays are the rows view already (a reshape costs 0.3 us)
        x, residual, y2, s2 = x.reshape(rows), residual.reshape(rows), y.reshape(rows), s.reshape(rows)
    else:
        y2, s2 = y, s
    w = np.ones(n, dt) if weight is None else weight
    k = _dispatch.CPU.kernels("add_layer_norm" if centered else "add_rms_norm")
    if centered:
        k.forward(x, residual, w, np.zeros(n, dt) if bias is None else bias, eps, s2, y2, np.empty(m, dt),
                  np.empty(m, dt))
    else:
        k.forward(x, residual, w, _MACHINE_EPS[dt] if eps is None else eps, s2, y2, np.empty(m, dt))
    return y, s


def plain_backward(centered, grad_y, grad_s, v, n, weight, eps, stats, y, bias, weight_offset, out):
    """The fused add norms' backward fast path for plain NumPy calls (as ``layer_norm_backward``'s
    ``_plain_backward``): ``(grad_x, grad_weight[, grad_bias])``, or None when the call needs
    the general checks. Accepts what :func:`_validate.plain_rows_backward` accepts for
    ``v`` (the forward's ``s``), ``grad_y``, ``weight`` and the saved statistics ``stats``
    ((mean, rstd) or (rstd,)), ``grad_s`` None or like ``grad_y``, no ``y``/``bias``/offset,
    and ``out`` None or a writeable C-contiguous array of v's shape and dtype that overlaps
    no input (any overlap takes the general path's scratch buffer). None never means an error."""
    if y is not None or bias is not None or not (type(weight_offset) in (float, int) and weight_offset == 0):
        return None
    if centered and eps is None:
        return None
    n = _validate.plain_rows_backward(grad_y, v, n, eps, weight, stats)
    if not n:
        return None
    dt = v.dtype
    shape = v.shape
    if grad_s is not None and not _validate.plain_like(grad_s, dt, shape):
        return None
    if out is not None and not (_validate.plain_out(out, dt, shape)
                                and _validate.apart(out, (grad_y, grad_s, v, weight, *stats))):
        return None
    m = v.size // n
    rstd = None if stats[-1] is None else stats[-1].reshape(m)
    mean = stats[0].reshape(m) if centered and rstd is not None else None
    return _compute_backward(_dispatch.CPU, centered, False, grad_y, grad_s, v, (n,), weight, None,
                             _eps("", eps, centered, dt), 0.0, mean, rstd, dt, dt, out=out, out_a=out)


def forward(fn, centered, x, residual, normalized_shape, weight, bias, eps, *, weight_offset=0.0,
            casting=None, residual_dtype=None, out=None, residual_out=None, return_stats=False, add=True):
    """See the module doc; returns what the public function returns."""
    dev = _dispatch.device_of(fn, x=x, residual=residual, weight=weight, bias=bias, out=out,
                              residual_out=residual_out)
    offset = check_offset(fn, weight_offset)
    casting = check_casting(fn, casting)
    return_stats = _validate.flag(fn, return_stats, "return_stats")
    xa = dev.asarray(x)
    ctype, rtype = _validate.float_dtypes(fn, "x", xa.dtype)
    nshape = _validate.normalized_shape(fn, xa.shape, normalized_shape)
    shape = tuple(xa.shape)
    ra = stype = None
    if add:
        ra = dev.asarray(residual)
        if tuple(ra.shape) != shape:
            raise ValueError(f"{fn}(): argument 'residual' must have the shape of x {shape}, "
                             f"got shape {tuple(ra.shape)}")
        stype = _stype(fn, rtype, residual_dtype, ra.dtype)
        ctype = np.promote_types(ctype, _validate.float_dtypes(fn, "residual_dtype", stype)[0])
    elif residual_dtype is not None or residual_out is not None:
        raise TypeError(f"{fn}(): residual_dtype/residual_out belong to the add_* functions")
    eps = _eps(fn, eps, centered, ctype)
    m, n = _rows(shape, nshape)
    w = _validate.param(fn, "weight", dev, weight, nshape, ctype)
    b = _validate.param(fn, "bias", dev, bias, nshape, ctype) if centered else None
    out_a = _validate.out(fn, dev, out, shape, rtype)
    s_a = _validate.out(fn, dev, residual_out, shape, stype, arg="residual_out") if add else None
    if out_a is not None and s_a is not None and dev.may_share_memory(out_a, s_a):
        raise ValueError(f"{fn}(): arguments 'out' and 'residual_out' must not overlap, got overlapping arrays")
    if dev.deferred:
        return dev.build("forward", _compute, fn, centered, add, xa, ra, nshape, w, b, eps, offset, casting, ctype,
                         rtype, stype, return_stats, out=out, residual_out=residual_out)
    return _compute(dev, fn, centered, add, xa, ra, nshape, w, b, eps, offset, casting, ctype, rtype, stype,
                    return_stats, out=out, out_a=out_a, residual_out=residual_out, s_a=s_a)


def _compute(dev, fn, centered, add, xa, ra, nshape, w, b, eps, offset, casting, ctype, rtype, stype, return_stats,
             *, out=None, out_a=None, residual_out=None, s_a=None):
    """The kernels of :func:`forward` for validated arguments, nothing checked again.

    ``xa``/``ra``: ``dev``'s arrays (``ra`` None without ``add``); ``w``/``b``: flat
    contiguous ``ctype`` parameters or None; ``offset``/``casting``/``eps``: checked;
    ``stype``: the residual stream's dtype; ``out_a``/``s_a``: the checked outputs as
    ``dev``'s arrays (``out``/``residual_out`` the caller's). Also the Dask builder's
    per-block task. Returns what :func:`forward` returns.
    """
    shape = tuple(xa.shape)
    m, n = _rows(shape, nshape)
    rounded = casting in ("llama", "none") and rtype != ctype

    x2 = canonical(dev, xa, (m, n), ctype)
    r2 = canonical(dev, ra, (m, n), ctype) if add else None
    # what the kernels read: an output overlapping any of it (other than an exact alias of
    # x or residual) goes through a scratch buffer; the parameters count too (an output
    # over the weight changed it for the later rows)
    ins = tuple(a for a in (x2, r2, w, b) if a is not None)
    res_y = Output(dev, out, out_a, shape, (m, n), ctype, rtype, inputs=_overlapping(dev, out_a, ins))
    res_s = Output(dev, residual_out, s_a, shape, (m, n), ctype, stype,
                   inputs=_overlapping(dev, s_a, ins)) if add else None
    mean = dev.empty(m, ctype)
    rstd = dev.empty(m, ctype)
    if m and n:
        kern_w = dev.xp.ones(n, ctype) if w is None or rounded else (
            dev.kernels("_rows_grad").offset_weight(w, offset) if offset else w)
        kern_b = dev.xp.zeros(n, ctype) if b is None or rounded else b
        op = ("add_" if add else "") + ("layer_norm" if centered else "rms_norm")
        k = dev.kernels(op)
        if add and centered:
            k.forward(x2, r2, kern_w, kern_b, eps, res_s.buf, res_y.buf, mean, rstd)
        elif add:
            k.forward(x2, r2, kern_w, eps, res_s.buf, res_y.buf, rstd)
        elif centered:
            k.forward(x2, kern_w, kern_b, eps, res_y.buf, mean, rstd)
        else:
            k.forward(x2, kern_w, eps, res_y.buf, rstd)
        if add and np.dtype(stype).itemsize < ctype.itemsize:  # narrower residual stream:
            dev.kernels("_rows_grad").round_to(res_s.buf, stype)  # y is the norm of s as returned
            args = (kern_w, kern_b) if centered else (kern_w,)
            dev.kernels(op[4:]).forward(res_s.buf, *args, eps, res_y.buf, *((mean, rstd) if centered else (rstd,)))
        if rounded:
            w_eff = dev.xp.ones(n, ctype) if w is None else (
                dev.kernels("_rows_grad").offset_weight(w, offset) if offset else w)
            dev.kernels("_casting").round_output(
                casting, res_y.buf, res_s.buf if add else x2, w_eff, b, mean if centered else None, rstd, rtype)
    y = res_y.result()
    result = (y, res_s.result()) if add else (y,)
    if return_stats:
        sshape = _stat_shape(shape, len(nshape))
        stats = (mean, rstd) if centered else (rstd,)
        result += tuple(stat_result(dev, a, sshape) for a in stats)
    return result if len(result) > 1 else result[0]


def backward(fn, centered, grad_y, grad_s, v, normalized_shape, weight, *, eps, mean=None, rstd=None, y=None,
             bias=None, weight_offset=0.0, out=None, add=True, lowp=None):
    """See the module doc. ``v`` is the forward's normalized input (``x`` or ``s``), or None
    with ``y`` given. Returns ``(grad_x, grad_weight[, grad_bias])``.

    ``lowp``: the module :mod:`._lowp` (passed in: it imports this one) for 16-bit data,
    which the kernels then read and write as bit views (no float32 copy; see
    ``_lowp.rows_backward``; never for deferred inputs)."""
    name = "s" if add else "x"
    data = {name: v, "y": y} if v is not None else {"y": y, name: v}  # the data first: it fixes the device
    dev = _dispatch.device_of(fn, **data, grad_out=grad_y, grad_s=grad_s, weight=weight, bias=bias,
                              mean=mean, rstd=rstd, out=out)
    offset = check_offset(fn, weight_offset)
    if lowp is not None and (dev.deferred or not getattr(dev.kernels("_rows_grad"), "LOWP", False)):
        lowp = None  # a device without 16-bit backward kernels: the float32-copy path
    if (v is None) == (y is None):
        raise ValueError(f"{fn}(): give exactly one of '{name}' (the forward's input) and 'y' (its output), "
                         f"got {'both' if v is not None else 'neither'}")
    from_output = y is not None
    asarray = dev.asarray if lowp is None else (lambda a: lowp.asarray(dev, a))
    va = asarray(y if from_output else v)
    ga = asarray(grad_y)
    ctype, rtype = _validate.float_dtypes(fn, "y" if from_output else name, va.dtype)
    shape = tuple(va.shape)
    _validate.float_dtypes(fn, "grad_out", ga.dtype)
    if tuple(ga.shape) != shape:
        raise ValueError(
            f"{fn}(): argument 'grad_out' must have the shape of {name} {shape}, got shape {tuple(ga.shape)}")
    gsa = None
    if grad_s is not None:
        gsa = asarray(grad_s)
        _validate.float_dtypes(fn, "grad_s", gsa.dtype)
        if tuple(gsa.shape) != shape:
            raise ValueError(f"{fn}(): argument 'grad_s' must have the shape of {name} {shape}, "
                             f"got shape {tuple(gsa.shape)}")
    nshape = _validate.normalized_shape(fn, shape, normalized_shape)
    eps = _eps(fn, eps, centered, ctype)
    m, n = _rows(shape, nshape)
    k = len(nshape)
    w = _validate.param(fn, "weight", dev, weight, nshape, ctype)
    b = _validate.param(fn, "bias", dev, bias, nshape, ctype)
    if b is not None and not (from_output and centered):
        raise ValueError(f"{fn}(): argument 'bias' is used only with y= (layer norms), got a bias without y")
    if from_output and rstd is None:
        raise ValueError(f"{fn}(): argument 'rstd' is required with y= (statistics cannot be recomputed from y)")
    if centered and not from_output and (mean is None) != (rstd is None):
        raise ValueError(f"{fn}(): arguments 'mean' and 'rstd' must be given together, got only one")
    mean = _saved(fn, "mean", dev, mean, shape, k, m, ctype) if mean is not None and centered else None
    rstd = _saved(fn, "rstd", dev, rstd, shape, k, m, ctype) if rstd is not None else None
    out_a = _validate.out(fn, dev, out, shape, rtype) if lowp is None else lowp._out(fn, dev, out, shape, rtype)
    if dev.deferred:
        return dev.build("backward", _compute_backward, fn, centered, from_output, ga, gsa, va, nshape, w, b, eps,
                         offset, mean, rstd, ctype, rtype, out=out)
    return _compute_backward(dev, centered, from_output, ga, gsa, va, nshape, w, b, eps, offset, mean, rstd, ctype,
                             rtype, out=out, out_a=out_a, lowp=lowp)


def _compute_backward(dev, centered, from_output, ga, gsa, va, nshape, w, b, eps, offset, mean, rstd, ctype, rtype,
                      *, out=None, out_a=None, lowp=None):
    """The kernels of :func:`backward` for validated arguments: ``va`` the forward's input
    (or its output ``y`` with ``from_output``), ``ga``/``gsa`` the gradients (``gsa`` None
    without ``grad_s``), ``mean``/``rstd`` flat contiguous ``ctype`` statistics or None;
    ``lowp`` as in :func:`backward` (16-bit bit views); the rest as in :func:`_compute`.
    Also the Dask builder's per-block task."""
    shape = tuple(va.shape)
    m, n = _rows(shape, nshape)
    view = canonical if lowp is None else lowp._kernel_view
    ins = (va, ga) if gsa is None else (va, ga, gsa)
    if lowp is None:
        res = Output(dev, out, out_a, shape, (m, n), ctype, rtype, inputs=ins)
        gx2 = res.buf
    else:
        res = lowp._Result(dev, out_a, shape, rtype, ins)
        gx2 = res.kernel((m, n))
    grad_w = dev.zeros(n, ctype)
    grad_b = dev.zeros(n, ctype)
    if m and n:
        rk = dev.kernels("_rows_grad")
        v2 = view(dev, va, (m, n), ctype)
        if rstd is None:
            rstd = dev.empty(m, ctype)
            mean = dev.empty(m, ctype) if centered else None
            if lowp is not None:
                rk.stats(v2, bool(centered), eps, mean, rstd)
            elif centered:
                dev.kernels("layer_norm").stats(v2, eps, mean, rstd)
            else:
                dev.kernels("rms_norm").stats(v2, eps, rstd)
        wk = dev.xp.ones(n, ctype) if w is None else (rk.offset_weight(w, offset) if offset else w)
        cols = rk.columns(wk, b, from_output)
        rows = rk.row_stats(mean, rstd, from_output)
        gs2 = None if gsa is None else view(dev, gsa, (m, n), ctype)
        rk.backward(view(dev, ga, (m, n), ctype), v2, cols, rows, gs2, bool(centered), gx2, grad_w, grad_b)
    grad_w = None if w is None else stat_result(dev, grad_w, nshape, rtype)
    if lowp is None:
        gx = res.result()
    else:
        gx = res.result(lambda a: lowp._wrap(dev, None, a))
        if out is not None and out_a is not out:
            dev.copy_back(out, out_a)  # host out= forced through the GPU, or a torch view
        gx = out if gx is None else gx
    if centered:
        return gx, grad_w, stat_result(dev, grad_b, nshape, rtype)
    return gx, grad_w
