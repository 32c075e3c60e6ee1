"""Grouped channel statistics on the ``(B, O, C, I)`` view: the CPU core of BatchNorm,
InstanceNorm and GroupNorm.

Layout: ``x`` (and ``out``, ``grad_out``, ``grad_x``) is a C-contiguous ``(B, O, C, I)``
array of the compute dtype (float32 or float64); statistics are per ``(b, g)``, over the
``O × I`` positions of the ``C // G`` channels of group ``g``:

* BatchNorm: ``B = 1``, ``G = C`` (NCHW: ``O = N, I = H·W``; channels-last ``O = N·H·W, I = 1``);
* InstanceNorm: ``B = N``, ``G = C``;  GroupNorm: ``B = N``, ``G = num_groups``
  (channels-first: ``O = 1, I = spatial`` = rows ``(N·G, C/G·spatial)``;
  channels-last: ``O = spatial, I = 1``).

So no layout is ever transposed: the channels-last case (``I = 1``) runs kernels whose inner
loop goes over the contiguous channels, the others over the contiguous ``I`` positions.

Thread mapping. Reductions: a fixed grid of ``B × KO × KI`` work items (``KO`` chunks of ``O``,
``KI`` chunks of ``I``, chosen from the shape only, never from the thread count); each item
writes its own float64 partial sums ``(B, KO·KI, C)``, summed afterwards in item order —
deterministic, no atomics. Element-wise passes: one ``prange`` over ``(b, o, c)`` rows of
``I`` elements, or over ``(b, o)`` rows of ``C`` elements when ``I = 1``.

Numerics: shifted sums in float64. Each ``(b, c)`` slice is shifted by its first element
``K``; a single pass accumulates ``Σ(x−K)`` and ``Σ(x−K)²``, so float32 data with a large
common offset keeps its precision while the data is read from memory once. Channels are
merged into groups with Chan's pairwise formula ``M2 = Σ M2_c + n Σ (μ_c − μ_g)²``.

Each parallel kernel has a serial twin used below ``SERIAL_THRESHOLD`` elements.
"""
import numpy as np
from numba import njit, prange

from .. import _config
from .._config import FASTMATH, REDUCE_CHUNKS

_opts = dict(fastmath=FASTMATH, cache=True)


def chunking(b, o, i):
    """(KO, KI): how many chunks of the O and I axes each of the B slices is cut into.

    Depends on the shape only (so reductions are reproducible on any thread count):
    about ``REDUCE_CHUNKS`` work items in all, chunks of I no shorter than 2048 elements.
    """
    r = REDUCE_CHUNKS
    ko = max(1, min(o, r // b)) if b < r else 1
    ki = max(1, min(-(-r // (b * ko)), i // 2048))
    return ko, ki


# --- reductions -------------------------------------------------------------------------


def _moments_inner(x, ko, ki, p1, p2):
    """Partial Σ(x−K), Σ(x−K)² per (b, item, c) for I > 1; K = x[b, 0, c, 0]."""
    nb, no, nc, ni = x.shape
    per = ko * ki
    for it in prange(nb * per):
        b = it // per
        r = it - b * per
        jo = r // ki
        ji = r - jo * ki
        o0 = jo * no // ko
        o1 = (jo + 1) * no // ko
        i0 = ji * ni // ki
        i1 = (ji + 1) * ni // ki
        for o in range(o0, o1):
            for c in range(nc):
                k = np.float64(x[b, 0, c, 0])
                s = np.float64(0.0)
                ss = np.float64(0.0)
                for i in range(i0, i1):
                    v = x[b, o, c, i] - k
                    s += v
                    ss += v * v
                p1[b, r, c] += s
                p2[b, r, c] += ss


def _moments_last(x, ko, p1, p2):
    """Partial Σ(x−K), Σ(x−K)² per (b, item, c) for the (B, O, C) channels-last view."""
    nb, no, nc = x.shape
    for it in prange(nb * ko):
        b = it // ko
        r = it - b * ko
        o0 = r * no // ko
        o1 = (r + 1) * no // ko
        k = x[b, 0]
        a1 = p1[b, r]
        a2 = p2[b, r]
        for o in range(o0, o1):
            xr = x[b, o]
            for c in range(nc):
                v = np.float64(xr[c]) - k[c]
                a1[c] += v
                a2[c] += v * v


def _grad_moments_inner(dy, x, mean, ko, ki, q1, q2):
    """Partial Σdy, Σdy·(x−mean[b,c]) per (b, item, c) for I > 1."""
    nb, no, nc, ni = x.shape
    per = ko * ki
    for it in prange(nb * per):
        b = it // per
        r = it - b * per
        jo = r // ki
        ji = r - jo * ki
        o0 = jo * no // ko
        o1 = (jo + 1) * no // ko
        i0 = ji * ni // ki
        i1 = (ji + 1) * ni // ki
        for o in range(o0, o1):
            for c in range(nc):
                m = mean[b, c]
                s = np.float64(0.0)
                sx = np.float64(0.0)
                for i in range(i0, i1):
                    g = np.float64(dy[b, o, c, i])
                    s += g
                    sx += g * (x[b, o, c, i] - m)
                q1[b, r, c] += s
                q2[b, r, c] += sx


def _grad_moments_last(dy, x, mean, ko, q1, q2):
    """Partial Σdy, Σdy·(x−mean[b,c]) per (b, item, c) for the (B, O, C) view."""
    nb, no, nc = x.shape
    for it in prange(nb * ko):
        b = it // ko
        r = it - b * ko
        o0 = r * no // ko
        o1 = (r + 1) * no // ko
        m = mean[b]
        a1 = q1[b, r]
        a2 = q2[b, r]
        for o in range(o0, o1):
            xr = x[b, o]
            gr = dy[b, o]
            for c in range(nc):
                g = np.float64(gr[c])
                a1[c] += g
                a2[c] += g * (xr[c] - m[c])


# --- element-wise passes ----------------------------------------------------------------


def _apply_inner(x, mean, scale, shift, out):
    """out = (x − mean[b,c]) · scale[b,c] + shift[b,c] for I > 1."""
    nb, no, nc, ni = x.shape
    per = no * nc
    for t in prange(nb * per):
        b = t // per
        r = t - b * per
        o = r // nc
        c = r - o * nc
        m = mean[b, c]
        s = scale[b, c]
        h = shift[b, c]
        for i in range(ni):
            out[b, o, c, i] = (x[b, o, c, i] - m) * s + h


def _apply_last(x, mean, scale, shift, out):
    """out = (x − mean[b,c]) · scale[b,c] + shift[b,c] for the (B, O, C) view."""
    nb, no, nc = x.shape
    for t in prange(nb * no):
        b = t // no
        o = t - b * no
        m = mean[b]
        s = scale[b]
        h = shift[b]
        xr = x[b, o]
        yr = out[b, o]
        for c in range(nc):
            yr[c] = (xr[c] - m[c]) * s[c] + h[c]


def _grad_apply_inner(dy, x, mean, alpha, beta, gamma, dx):
    """dx = alpha·dy + beta·(x − mean) + gamma, coefficients per (b, c), for I > 1."""
    nb, no, nc, ni = x.shape
    per = no * nc
    for t in prange(nb * per):
        b = t // per
        r = t - b * per
        o = r // nc
        c = r - o * nc
        m = mean[b, c]
        a = alpha[b, c]
        be = beta[b, c]
        ga = gamma[b, c]
        for i in range(ni):
            dx[b, o, c, i] = a * dy[b, o, c, i] + be * (x[b, o, c, i] - m) + ga


def _grad_apply_last(dy, x, mean, alpha, beta, gamma, dx):
    """dx = alpha·dy + beta·(x − mean) + gamma, coefficients per (b, c), (B, O, C) view."""
    nb, no, nc = x.shape
    for t in prange(nb * no):
        b = t // no
        o = t - b * no
        m = mean[b]
        a = alpha[b]
        be = beta[b]
        ga = gamma[b]
        xr = x[b, o]
        gr = dy[b, o]
        dr = dx[b, o]
        for c in range(nc):
            dr[c] = a[c] * gr[c] + be[c] * (xr[c] - m[c]) + ga[c]


def _twins(f):
    return njit(parallel=True, **_opts)(f), njit(**_opts)(f)


_MOM_INNER = _twins(_moments_inner)
_MOM_LAST = _twins(_moments_last)
_GMOM_INNER = _twins(_grad_moments_inner)
_GMOM_LAST = _twins(_grad_moments_last)
_APPLY_INNER = _twins(_apply_inner)
_APPLY_LAST = _twins(_apply_last)
_GAPPLY_INNER = _twins(_grad_apply_inner)
_GAPPLY_LAST = _twins(_grad_apply_last)


def _launch(twins, size, *args):
    if size < _config.SERIAL_THRESHOLD:
        twins[1](*args)
    else:
        with _config.KERNEL_LOCK:
            twins[0](*args)


# --- small serial finishing steps (per (b, c) / (b, g) arrays) ---------------------------


@njit(**_opts)
def _group_stats(x, p1, p2, groups, eps, mean, var, rstd):
    """Merge the partials into per-(b, g) mean, biased variance and 1/sqrt(var + eps)."""
    nb, no, nc, ni = x.shape
    n = np.float64(no * ni)
    cg = nc // groups
    nparts = p1.shape[1]
    mu_c = np.empty(cg)
    m2_c = np.empty(cg)
    for b in range(nb):
        for g in range(groups):
            tot = np.float64(0.0)
            for j in range(cg):
                c = g * cg + j
                s1 = np.float64(0.0)
                s2 = np.float64(0.0)
                for r in range(nparts):
                    s1 += p1[b, r, c]
                    s2 += p2[b, r, c]
                mu_c[j] = x[b, 0, c, 0] + s1 / n
                m2_c[j] = s2 - s1 * (s1 / n)
                tot += mu_c[j]
            mu = tot / cg
            m2 = np.float64(0.0)
            for j in range(cg):
                d = mu_c[j] - mu
                m2 += m2_c[j] + n * d * d
            v = m2 / (n * cg)
            if v < 0.0:
                v = 0.0
            mean[b, g] = mu
            var[b, g] = v
            rstd[b, g] = 1.0 / np.sqrt(v + eps)


@njit(**_opts)
def _expand(mean, rstd, weight, bias, m_bc, scale_bc, shift_bc):
    """Per-(b, c) coefficients of the normalize pass from per-(b, g) statistics."""
    nb, nc = m_bc.shape
    cg = nc // mean.shape[1]
    for b in range(nb):
        for c in range(nc):
            g = c // cg
            m_bc[b, c] = mean[b, g]
            scale_bc[b, c] = rstd[b, g] * weight[c]
            shift_bc[b, c] = bias[c]


@njit(**_opts)
def _expand_mean(mean, m_bc):
    nb, nc = m_bc.shape
    cg = nc // mean.shape[1]
    for b in range(nb):
        for c in range(nc):
            m_bc[b, c] = mean[b, c // cg]


@njit(**_opts)
def _grad_coefficients(q1, q2, weight, rstd, count, training, alpha, beta, gamma, grad_weight, grad_bias):
    """Merge gradient partials; per-(b, c) coefficients of dx; grad_weight, grad_bias.

    With ĝ = w·dy over the N_g = count·C/G elements of a group, r = rstd:
    dx = r·w·dy − r·mean(ĝ) − (x−μ)·r³·mean(ĝ·(x−μ))  (training; the last two terms vanish
    when the statistics are constants, ``training=False``).
    """
    nb, nparts, nc = q1.shape
    groups = rstd.shape[1]
    cg = nc // groups
    ng = np.float64(count) * cg
    a_c = np.empty(cg)
    b_c = np.empty(cg)
    gw = np.zeros(nc)
    gb = np.zeros(nc)
    for b in range(nb):
        for g in range(groups):
            r = rstd[b, g]
            sg = np.float64(0.0)
            sgx = np.float64(0.0)
            for j in range(cg):
                c = g * cg + j
                s1 = np.float64(0.0)
                s2 = np.float64(0.0)
                for k in range(nparts):
                    s1 += q1[b, k, c]
                    s2 += q2[b, k, c]
                a_c[j] = s1
                b_c[j] = s2
                sg += weight[c] * s1
                sgx += weight[c] * s2
                gw[c] += r * s2
                gb[c] += s1
            be = -r * r * r * sgx / ng if training else 0.0
            ga = -r * sg / ng if training else 0.0
            for j in range(cg):
                c = g * cg + j
                alpha[b, c] = r * weight[c]
                beta[b, c] = be
                gamma[b, c] = ga
    for c in range(nc):
        grad_weight[c] = gw[c]
        grad_bias[c] = gb[c]


# --- entry points -----------------------------------------------------------------------


def _partials(x):
    """Chunk counts and zeroed float64 partial-sum buffers (B, KO·KI, C) for ``x``."""
    nb, no, nc, ni = x.shape
    ko, ki = chunking(nb, no, ni)
    return ko, ki, np.zeros((nb, ko * ki, nc)), np.zeros((nb, ko * ki, nc))


def stats(x, groups, eps, mean, rstd, var):
    """Per-(b, g) float64 ``mean``, ``rstd`` and biased ``var`` ``(B, G)`` of ``x`` (B, O, C, I)."""
    nb, no, nc, ni = x.shape
    ko, ki, p1, p2 = _partials(x)
    if ni == 1:
        _launch(_MOM_LAST, x.size, x.reshape(nb, no, nc), ko, p1, p2)
    else:
        _launch(_MOM_INNER, x.size, x, ko, ki, p1, p2)
    _group_stats(x, p1, p2, groups, eps, mean, var, rstd)


def normalize(x, mean, rstd, weight, bias, out):
    """out = (x − mean)·rstd·weight + bias with per-(b, g) float64 ``mean``/``rstd``."""
    nb, no, nc, ni = x.shape
    m_bc = np.empty((nb, nc), x.dtype)
    s_bc = np.empty((nb, nc), x.dtype)
    h_bc = np.empty((nb, nc), x.dtype)
    _expand(mean, rstd, weight, bias, m_bc, s_bc, h_bc)
    if ni == 1:
        _launch(_APPLY_LAST, x.size, x.reshape(nb, no, nc), m_bc, s_bc, h_bc, out.reshape(nb, no, nc))
    else:
        _launch(_APPLY_INNER, x.size, x, m_bc, s_bc, h_bc, out)


def forward(x, groups, eps, weight, bias, out, mean, rstd, var):
    """Statistics of ``x`` per (b, g) into ``mean``/``rstd``/``var``, then normalize into ``out``."""
    stats(x, groups, eps, mean, rstd, var)
    normalize(x, mean, rstd, weight, bias, out)


def backward(grad_out, x, weight, mean, rstd, training, grad_x, grad_weight, grad_bias):
    """``grad_x`` (B, O, C, I), ``grad_weight``/``grad_bias`` (C,) from per-(b, g) float64 stats.

    ``training=False`` treats ``mean``/``rstd`` as constants (BatchNorm in eval mode).
    """
    nb, no, nc, ni = x.shape
    m_bc = np.empty((nb, nc))
    _expand_mean(mean, m_bc)
    ko, ki, q1, q2 = _partials(x)
    if ni == 1:
        _launch(_GMOM_LAST, x.size, grad_out.reshape(nb, no, nc), x.reshape(nb, no, nc), m_bc, ko, q1, q2)
    else:
        _launch(_GMOM_INNER, x.size, grad_out, x, m_bc, ko, ki, q1, q2)
    alpha = np.empty((nb, nc), x.dtype)
    beta = np.empty((nb, nc), x.dtype)
    gamma = np.empty((nb, nc), x.dtype)
    _grad_coefficients(q1, q2, weight, rstd, no * ni, training, alpha, beta, gamma, grad_weight, grad_bias)
    m_t = m_bc.astype(x.dtype)
    if ni == 1:
        _launch(_GAPPLY_LAST, x.size, grad_out.reshape(nb, no, nc), x.reshape(nb, no, nc), m_t,
                alpha, beta, gamma, grad_x.reshape(nb, no, nc))
    else:
        _launch(_GAPPLY_INNER, x.size, grad_out, x, m_t, alpha, beta, gamma, grad_x)


def fill(a, value):
    """a[...] = value (statistics of empty slices)."""
    a[...] = value
