"""Slow, obviously-correct float64 NumPy twins of every public function (bottleneck style).

Each twin has the public function's name and the formula written as plainly as
possible: no kernels, no canonical views, no cleverness. Tests compare the fast
functions with these, and with PyTorch when it is installed. Inputs are converted to
float64; results are float64.

Sections are appended per normalization; keep each self-contained. The last section holds
the test-data and finite-difference helpers the channel-norm tests share.
"""
import numpy as np


def _f64(a):
    return None if a is None else np.asarray(a, dtype=np.float64)


# --- layer_norm / rms_norm -------------------------------------------------------------


def _trailing_axes(x, normalized_shape):
    k = 1 if np.ndim(normalized_shape) == 0 else len(normalized_shape)
    return tuple(range(x.ndim - k, x.ndim))


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    x = _f64(x)
    axes = _trailing_axes(x, normalized_shape)
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    y = (x - mean) / np.sqrt(var + eps)
    if weight is not None:
        y = y * _f64(weight)
    if bias is not None:
        y = y + _f64(bias)
    return y


def layer_norm_backward(grad_out, x, normalized_shape, weight=None, eps=1e-5):
    x, g = _f64(x), _f64(grad_out)
    axes = _trailing_axes(x, normalized_shape)
    n = np.prod([x.shape[a] for a in axes])
    mean = x.mean(axis=axes, keepdims=True)
    rstd = 1.0 / np.sqrt(((x - mean) ** 2).mean(axis=axes, keepdims=True) + eps)
    xhat = (x - mean) * rstd
    w = np.ones(x.shape[x.ndim - len(axes):]) if weight is None else _f64(weight)
    gw_in = g * w
    grad_x = rstd / n * (n * gw_in - gw_in.sum(axis=axes, keepdims=True)
                         - xhat * (gw_in * xhat).sum(axis=axes, keepdims=True))
    lead = tuple(range(x.ndim - len(axes)))
    grad_w = None if weight is None else (g * xhat).sum(axis=lead)
    return grad_x, grad_w, g.sum(axis=lead)


def rms_norm(x, normalized_shape, weight=None, eps=None):
    x = _f64(x)
    eps = np.finfo(np.float64).eps if eps is None else eps
    axes = _trailing_axes(x, normalized_shape)
    y = x / np.sqrt((x * x).mean(axis=axes, keepdims=True) + eps)
    return y if weight is None else y * _f64(weight)


def rms_norm_backward(grad_out, x, normalized_shape, weight=None, eps=None):
    x, g = _f64(x), _f64(grad_out)
    eps = np.finfo(np.float64).eps if eps is None else eps
    axes = _trailing_axes(x, normalized_shape)
    n = np.prod([x.shape[a] for a in axes])
    rstd = 1.0 / np.sqrt((x * x).mean(axis=axes, keepdims=True) + eps)
    xhat = x * rstd
    w = np.ones(x.shape[x.ndim - len(axes):]) if weight is None else _f64(weight)
    gw_in = g * w
    grad_x = rstd * (gw_in - xhat * (gw_in * xhat).sum(axis=axes, keepdims=True) / n)
    lead = tuple(range(x.ndim - len(axes)))
    return grad_x, None if weight is None else (g * xhat).sum(axis=lead)


# --- batch_norm / instance_norm / group_norm ------------------------------------------------
# Channels moved to axis 1 with np.moveaxis (the twins may transpose; the kernels never do).
# Running statistics are updated in place in the given NumPy arrays, as the public functions do.


def _to_cf(a, channel_axis):
    return None if a is None else np.moveaxis(_f64(a), channel_axis, 1)


def _from_cf(a, channel_axis):
    return np.moveaxis(a, 1, channel_axis)


def _chan(v, ndim):
    """A per-channel vector shaped to broadcast against (N, C, *spatial)."""
    return _f64(v).reshape((1, -1) + (1,) * (ndim - 2))


def _running_factor(momentum, num_batches_tracked):
    return 1.0 / (int(np.asarray(num_batches_tracked or 0).reshape(-1)[0]) + 1) if momentum is None else momentum


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
               eps=1e-5, *, channel_axis=1, num_batches_tracked=None, unbiased_running_var=True):
    x = _to_cf(x, channel_axis)
    axes = (0,) + tuple(range(2, x.ndim))
    if training:
        mean = x.mean(axis=axes)
        var = ((x - _chan(mean, x.ndim)) ** 2).mean(axis=axes)
        if running_mean is not None and x.size:
            n = x.size // x.shape[1]
            f = _running_factor(momentum, num_batches_tracked)
            batch_var = var * n / (n - 1) if unbiased_running_var else var
            running_mean[...] = (1 - f) * _f64(running_mean) + f * mean
            running_var[...] = (1 - f) * _f64(running_var) + f * batch_var
    else:
        mean, var = _f64(running_mean), _f64(running_var)
    y = (x - _chan(mean, x.ndim)) / np.sqrt(_chan(var, x.ndim) + eps)
    if weight is not None:
        y = y * _chan(weight, x.ndim)
    if bias is not None:
        y = y + _chan(bias, x.ndim)
    return _from_cf(y, channel_axis)


def batch_norm_backward(grad_out, x, weight=None, *, training=True, running_mean=None, running_var=None,
                        eps=1e-5, channel_axis=1):
    x, g = _to_cf(x, channel_axis), _to_cf(grad_out, channel_axis)
    axes = (0,) + tuple(range(2, x.ndim))
    n = x.size // x.shape[1]
    if training:
        mean = x.mean(axis=axes, keepdims=True)
        var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    else:
        mean, var = _chan(running_mean, x.ndim), _chan(running_var, x.ndim)
    rstd = 1.0 / np.sqrt(var + eps)
    xhat = (x - mean) * rstd
    w = np.ones(x.shape[1]) if weight is None else _f64(weight)
    if training:
        grad_x = _chan(w, x.ndim) * rstd * (g - g.sum(axis=axes, keepdims=True) / n
                                            - xhat * (g * xhat).sum(axis=axes, keepdims=True) / n)
    else:
        grad_x = _chan(w, x.ndim) * rstd * g
    grad_w = None if weight is None else (g * xhat).sum(axis=axes)
    return _from_cf(grad_x, channel_axis), grad_w, g.sum(axis=axes)


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5, *, channel_axis=1):
    x = _to_cf(x, channel_axis)
    n, c = x.shape[:2]
    xg = x.reshape(n, num_groups, c // num_groups * int(np.prod(x.shape[2:])))
    mean = xg.mean(axis=2, keepdims=True)
    var = ((xg - mean) ** 2).mean(axis=2, keepdims=True)
    y = ((xg - mean) / np.sqrt(var + eps)).reshape(x.shape)
    if weight is not None:
        y = y * _chan(weight, x.ndim)
    if bias is not None:
        y = y + _chan(bias, x.ndim)
    return _from_cf(y, channel_axis)


def group_norm_backward(grad_out, x, num_groups, weight=None, eps=1e-5, *, channel_axis=1):
    x, g = _to_cf(x, channel_axis), _to_cf(grad_out, channel_axis)
    n, c = x.shape[:2]
    w = np.ones(c) if weight is None else _f64(weight)
    xg = x.reshape(n, num_groups, c // num_groups * int(np.prod(x.shape[2:])))
    m = xg.shape[2]
    mean = xg.mean(axis=2, keepdims=True)
    rstd = 1.0 / np.sqrt(((xg - mean) ** 2).mean(axis=2, keepdims=True) + eps)
    xhat = (xg - mean) * rstd
    gw = (g * _chan(w, x.ndim)).reshape(xg.shape)
    grad_x = rstd * (gw - gw.sum(axis=2, keepdims=True) / m - xhat * (gw * xhat).sum(axis=2, keepdims=True) / m)
    axes = (0,) + tuple(range(2, x.ndim))
    grad_w = None if weight is None else (g * xhat.reshape(x.shape)).sum(axis=axes)
    return _from_cf(grad_x.reshape(x.shape), channel_axis), grad_w, g.sum(axis=axes)


def instance_norm(x, running_mean=None, running_var=None, weight=None, bias=None, use_input_stats=True,
                  momentum=0.1, eps=1e-5, *, channel_axis=1, num_batches_tracked=None,
                  unbiased_running_var=True):
    xc = _to_cf(x, channel_axis)
    if not use_input_stats:
        return batch_norm(x, running_mean, running_var, weight, bias, False, eps=eps, channel_axis=channel_axis)
    n, c = xc.shape[:2]
    if running_mean is not None and xc.size:
        flat = xc.reshape(n, c, -1)
        s = flat.shape[2]
        mean = flat.mean(axis=2)
        var = ((flat - mean[:, :, None]) ** 2).mean(axis=2)
        if unbiased_running_var:
            var = var * s / (s - 1)
        f = _running_factor(momentum, num_batches_tracked)
        running_mean[...] = (1 - f) * _f64(running_mean) + f * mean.mean(axis=0)
        running_var[...] = (1 - f) * _f64(running_var) + f * var.mean(axis=0)
    return group_norm(x, c, weight, bias, eps, channel_axis=channel_axis)


def instance_norm_backward(grad_out, x, weight=None, eps=1e-5, *, channel_axis=1):
    c = np.shape(x)[channel_axis]
    return group_norm_backward(grad_out, x, c, weight, eps, channel_axis=channel_axis)


# --- min_max_scale / standardize (data scaling) ----------------------------------------


def _scaling_axes(x, axis):
    if axis is None:
        return tuple(range(x.ndim))
    return tuple(a % x.ndim for a in ((axis,) if np.ndim(axis) == 0 else axis))


def standardize(x, axis=0, ddof=0):
    """(x - nanmean) / nanstd(ddof); constant positions (scikit-learn's rule) scaled by 1."""
    x = _f64(x)
    axes = _scaling_axes(x, axis)
    with np.errstate(all="ignore"):
        n = (~np.isnan(x)).sum(axis=axes, keepdims=True).astype(np.float64)
        mean = np.nansum(x, axis=axes, keepdims=True) / n
        var = np.nansum((x - mean) ** 2, axis=axes, keepdims=True) / np.where(n - ddof > 0, n - ddof, np.nan)
        eps = np.finfo(np.float64).eps
        constant = var <= n * eps * var + (n * mean * eps) ** 2
        std = np.where(constant, 1.0, np.sqrt(var))
        return (x - mean) / std


def min_max_scale(x, feature_range=(0.0, 1.0), axis=0, clip=False):
    """(x - nanmin) / (nanmax - nanmin) * (hi - lo) + lo; constant positions map to lo."""
    x = _f64(x)
    lo, hi = float(feature_range[0]), float(feature_range[1])
    axes = _scaling_axes(x, axis)
    if x.size == 0:
        return x.copy()
    with np.errstate(all="ignore"):
        mn = np.nanmin(x, axis=axes, keepdims=True)
        mx = np.nanmax(x, axis=axes, keepdims=True)
        rng = mx - mn
        constant = rng < 10 * np.finfo(np.float64).eps
        y = np.where(constant, lo, (x - mn) / np.where(constant, 1.0, rng) * (hi - lo) + lo)
        y = np.where(np.isnan(x), np.nan, y)
        if clip:
            y = np.where(np.isnan(y), y, np.clip(y, lo, hi))
        return y


# --- local_response_norm / normalize / weight_standardize ------------------------------


def _lrn_window(size, convention):
    """(lo, hi): the window of position i is i - lo ... i + hi."""
    if convention == "torch":
        return size // 2, (size - 1) // 2
    if convention == "onnx":
        return (size - 1) // 2, size // 2
    return size // 2, size // 2


def _lrn_sum(a, axes, lo, hi):
    """Zero-padded window sums of ``a``: out[i] = sum of a[j] for j in i-lo..i+hi on every axis."""
    out = a.copy()
    for ax in axes:
        n = a.shape[ax]
        pad = [(0, 0)] * a.ndim
        pad[ax] = (lo, hi)
        p = np.pad(out, pad)
        out = sum(np.take(p, np.arange(d, d + n), axis=ax) for d in range(lo + hi + 1))
    return out


def _lrn_setup(x, size, alpha, mode, convention, channel_axis):
    x = _f64(x)
    ca = channel_axis % x.ndim
    if mode == "across_channels":
        axes = (ca,)
        a = alpha if convention == "paper" else alpha / size
    else:
        axes = tuple(ax for ax in range(1, x.ndim) if ax != ca)
        a = alpha if convention == "paper" else alpha / size ** len(axes)
    lo, hi = _lrn_window(size, convention)
    return x, axes, a, lo, hi


def local_response_norm(x, size, alpha=1e-4, beta=0.75, k=1.0, mode="across_channels",
                        convention="torch", channel_axis=1):
    x, axes, a, lo, hi = _lrn_setup(x, size, alpha, mode, convention, channel_axis)
    s = k + a * _lrn_sum(x * x, axes, lo, hi)
    return x / s ** beta


def local_response_norm_backward(grad_out, x, size, alpha=1e-4, beta=0.75, k=1.0,
                                 mode="across_channels", convention="torch", channel_axis=1):
    x, axes, a, lo, hi = _lrn_setup(x, size, alpha, mode, convention, channel_axis)
    g = _f64(grad_out)
    s = k + a * _lrn_sum(x * x, axes, lo, hi)
    # x_j appears in the window of every i with j in i-lo..i+hi, i.e. i in j-hi..j+lo
    t = g * x * s ** (-beta - 1)
    return g * s ** -beta - 2 * a * beta * x * _lrn_sum(t, axes, hi, lo)


def _lp_norm(x, p, axis):
    """torch.linalg.vector_norm: max |x| (inf), min |x| (-inf), the count of nonzeros (0)."""
    if p == np.inf:
        return np.abs(x).max(axis=axis, keepdims=True, initial=0.0)
    if p == -np.inf:
        return np.abs(x).min(axis=axis, keepdims=True, initial=np.inf)
    if p == 0:
        return (x != 0).sum(axis=axis, keepdims=True).astype(np.float64)
    with np.errstate(divide="ignore"):  # p < 0: |0|**p = inf, the norm is 0
        return (np.abs(x) ** p).sum(axis=axis, keepdims=True) ** (1.0 / p)


def normalize(x, p=2.0, axis=1, eps=1e-12):
    x = _f64(x)
    return x / np.maximum(_lp_norm(x, p, axis), eps)


def normalize_backward(grad_out, x, p=2.0, axis=1, eps=1e-12):
    """torch autograd of x / norm(x).clamp_min(eps) (the clamp passes where norm >= eps)."""
    x, g = _f64(x), _f64(grad_out)
    n = _lp_norm(x, p, axis)
    d = np.maximum(n, eps)
    with np.errstate(divide="ignore", invalid="ignore"):
        if np.isinf(p):
            mask = (np.abs(x) == n) | np.isnan(x)
            dn = np.sign(x) * mask / mask.sum(axis=axis, keepdims=True)
        elif p == 0:  # the count of nonzeros has no gradient
            dn = np.zeros_like(x)
        else:
            dn = np.sign(x) * np.abs(x) ** (p - 1) * n ** (1 - p)
            dn = np.where((x == 0) | (n == 0), 0.0, dn)
    through = (n >= eps)
    return g / d - through * (g * x).sum(axis=axis, keepdims=True) / d ** 2 * dn


def weight_standardize(weight, eps=1e-5):
    w = _f64(weight)
    axes = tuple(range(1, w.ndim))
    mean = w.mean(axis=axes, keepdims=True)
    var = ((w - mean) ** 2).mean(axis=axes, keepdims=True)
    return (w - mean) / np.sqrt(var + eps)


def weight_standardize_backward(grad_out, weight, eps=1e-5):
    w, g = _f64(weight), _f64(grad_out)
    axes = tuple(range(1, w.ndim))
    n = int(np.prod([w.shape[a] for a in axes]))
    mean = w.mean(axis=axes, keepdims=True)
    rstd = 1.0 / np.sqrt(((w - mean) ** 2).mean(axis=axes, keepdims=True) + eps)
    what = (w - mean) * rstd
    return rstd * (g - g.sum(axis=axes, keepdims=True) / n
                   - what * (g * what).sum(axis=axes, keepdims=True) / n)


# --- shared test helpers (not twins) ---------------------------------------------------------


def channels_last(a):
    """The same data channels-last: (N, C, *S) -> (N, *S, C), C-contiguous."""
    return np.ascontiguousarray(np.moveaxis(a, 1, -1))


def channels_first(a, channel_axis):
    """``a`` of the layout ``channel_axis`` selects (1, or -1: channels-last) as (N, C, *S)."""
    return a if channel_axis == 1 else np.moveaxis(a, -1, 1)


def channel_data(rng, shape, dtype=np.float64, channel_axis=1):
    """Test input of the logical (N, C, *S) ``shape``, channels-last memory for ``channel_axis=-1``."""
    x = rng.standard_normal(shape) * 2 + 0.5
    return (x if channel_axis == 1 else channels_last(x)).astype(dtype)


def channel_pair(rng, c, dtype=np.float64):
    """(standard normal, uniform in [0.5, 1.5)) vectors of length ``c``: weight and bias, or
    running mean and variance."""
    return rng.standard_normal(c).astype(dtype), (rng.random(c) + 0.5).astype(dtype)


def assert_matches_differences(loss, args, grads, h=1e-6, rtol=1e-6, atol=1e-7):
    """Each ``grads[name]`` equals the central differences of the scalar ``loss(**args)`` in
    ``args[name]`` (one element at a time, step ``h``)."""
    for name, grad in grads.items():
        arr = args[name]
        num = np.zeros_like(arr)
        for idx in np.ndindex(arr.shape):
            d = np.zeros_like(arr)
            d[idx] = h
            num[idx] = (loss(**{**args, name: arr + d}) - loss(**{**args, name: arr - d})) / (2 * h)
        np.testing.assert_allclose(grad, num, rtol=rtol, atol=atol)


def assert_torch_grads(grads, tensors, channel_axis, rtol=1e-9, atol=1e-11):
    """(grad_x, grad_weight, grad_bias) equal the ``.grad`` of PyTorch's (x, weight, bias)
    leaves; ``grad_x`` is in the ``channel_axis`` layout, the tensors channels-first."""
    gx, gw, gb = grads
    for ours, t in zip((channels_first(gx, channel_axis), gw, gb), tensors):
        np.testing.assert_allclose(ours, t.grad.numpy(), rtol=rtol, atol=atol)


def in_threads(fn, n, repeats=3, timeout=120):
    """``[fn(i) for i in range(n)]`` computed by ``n`` concurrent Python threads, each
    calling ``fn(i)`` ``repeats`` times (its last result kept); re-raises the first error."""
    import threading

    results, errors = [None] * n, []

    def run(i):
        try:
            for _ in range(repeats):
                results[i] = fn(i)
        except Exception as e:  # pragma: no cover - raised below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout)
    if errors:
        raise errors[0]
    return results
