"""Grouped channel statistics on the ``(B, O, C, I)`` view: the CPU core of BatchNorm,
InstanceNorm and GroupNorm.

Layout: ``x`` (and ``out``, ``grad_out``, ``grad_x``) is a C-contiguous ``(B, O, C, I)``
array of the compute dtype (float32 or float64); statistics are float64 ``(B, G)`` arrays,
per ``(b, g)`` over the ``O × I`` positions of the ``C // G`` channels of group ``g``:

* BatchNorm: ``B = 1``, ``G = C`` (NCHW: ``O = N, I = H·W``; channels-last ``O = N·H·W, I = 1``);
* InstanceNorm: ``B = N``, ``G = C``;  GroupNorm: ``B = N``, ``G = num_groups``
  (channels-first: ``O = 1, I = spatial`` = rows ``(N·G, C/G·spatial)``;
  channels-last: ``O = spatial, I = 1``).

No layout is ever transposed: with ``I = 1`` (channels-last) the inner loops run over the
contiguous channels, otherwise over the contiguous ``I`` positions of one ``(b, o, c)`` row.

Three kernel families, chosen from the shape only (never the thread count), so results are
reproducible on any machine:

* **rows** (``O = 1``, ``I > 1``, at least ``ROWS_MIN`` rows: GroupNorm/InstanceNorm
  channels-first): one ``prange``
  over the ``B·G`` rows; a row (its C/G channel rows) is read from memory once for its
  statistics and normalized while it is still in cache; the backward likewise, with
  per-``(b, c)`` float64 sums for grad_weight/grad_bias added over ``b`` in order.
* **slab** (``I = 1``, ``B >= SLAB_MIN_BATCH``: channels-last GroupNorm/InstanceNorm): one
  ``prange`` over the ``B`` samples, each ``(O, C)`` slab reduced per channel (inner loop
  over the contiguous channels) and normalized while it is in cache.
* **generic** (BatchNorm, and whatever the others do not take): a reduction over a fixed
  grid of ``B × KO × KI`` work items (chunks of O and I) writing float64 partial sums
  ``(B, KO·KI, C)`` that are merged in item order (deterministic, no atomics), then one
  element-wise ``prange`` pass.

Numerics. Statistics are shifted sums: each ``(b, c)`` channel (rows kernels: each ``(b, g)``
group) is shifted by its first element ``K`` and one pass accumulates ``Σ(x−K)`` and
``Σ(x−K)²``. Runs of ``BLOCK`` values are summed in the data dtype (vector registers, no
conversions) and those run sums in float64, so statistics cost one read of the data at memory
speed while float32 data with a large common offset keeps its precision (``x − K`` is exact
there). Channels are merged into groups with Chan's formula
``M2 = Σ M2_c + n Σ (μ_c − μ_g)²``. The element-wise passes run in the data dtype as
``(x − μ_hi)·s + (h − μ_lo·s)`` with ``μ = μ_hi + μ_lo`` split into its data-dtype rounding
and the float64 remainder (the same split keeps the backward's ``Σ dy·(x − μ)`` exact to
float64).

Each parallel kernel has a serial twin used below ``SERIAL_THRESHOLD`` elements.
"""
import numpy as np
from numba import njit, prange

from .. import _config
from .._config import REDUCE_CHUNKS

_opts = _config.JIT_OPTIONS

#: values summed in the data dtype before a float64 accumulation (I-runs or channels-last rows).
BLOCK = 256

#: the fused kernels parallelize over rows / samples: they need at least this many of them.
ROWS_MIN = 8
SLAB_MIN_BATCH = 8


def chunking(b, o, i):
    """(KO, KI): how many chunks of the O and I axes each of the B slices is cut into.

    Depends on the shape only (so reductions are reproducible on any thread count):
    about ``REDUCE_CHUNKS`` work items in all, chunks of I no shorter than 2048 elements,
    channels-last chunks (I = 1) no shorter than 64 rows (their partial rows cost a merge).
    """
    per_b = max(1, REDUCE_CHUNKS // b)
    if i == 1:
        return max(1, min(per_b, o // 64)), 1
    ko = min(o, per_b)
    return ko, max(1, min(-(-per_b // ko), i // 2048))


# --- inline building blocks --------------------------------------------------------------


@njit(**_opts, inline="always")
def _row_moments(xr, k):
    """(Σ(x−k), Σ(x−k)²) of a 1-D row as float64; ``k`` in the data dtype."""
    s = np.float64(0.0)
    ss = np.float64(0.0)
    for i0 in range(0, xr.shape[0], BLOCK):
        xb = xr[i0:i0 + BLOCK]  # a sliced run and range(len): the form LLVM vectorizes
        a = k - k
        q = k - k
        for i in range(xb.shape[0]):
            v = xb[i] - k
            a += v
            q += v * v
        s += a
        ss += q
    return s, ss


@njit(**_opts, inline="always")
def _row_grad_sums(gr, xr, m):
    """(Σg, Σg·(x−m)) of 1-D rows as float64; ``m`` in the data dtype."""
    s = np.float64(0.0)
    sx = np.float64(0.0)
    for i0 in range(0, xr.shape[0], BLOCK):
        gb = gr[i0:i0 + BLOCK]
        xb = xr[i0:i0 + BLOCK]
        a = m - m
        q = m - m
        for i in range(xb.shape[0]):
            g = gb[i]
            a += g
            q += g * (xb[i] - m)
        s += a
        sx += q
    return s, sx


@njit(**_opts, inline="always")
def _row_grad_sums_dx(gr, xr, m, alpha, dr):
    """As :func:`_row_grad_sums`, also writing ``dr = alpha·g`` (constant statistics)."""
    s = np.float64(0.0)
    sx = np.float64(0.0)
    for i0 in range(0, xr.shape[0], BLOCK):
        gb = gr[i0:i0 + BLOCK]
        xb = xr[i0:i0 + BLOCK]
        db = dr[i0:i0 + BLOCK]
        a = m - m
        q = m - m
        for i in range(xb.shape[0]):
            g = gb[i]
            db[i] = alpha * g
            a += g
            q += g * (xb[i] - m)
        s += a
        sx += q
    return s, sx


@njit(**_opts, inline="always")
def _slab_moments(x2, o0, o1, k, a1, a2, t1, t2):
    """a1[c] += Σ(x2[o, c] − k[c]), a2[c] += Σ(...)² over rows o0..o1 of an (O, C) array.

    Runs of ``BLOCK`` rows are summed into ``t1``/``t2`` (data dtype, 4 rows per sweep over
    the channels), then into the float64 ``a1``/``a2``.
    """
    nc = x2.shape[1]
    for ob in range(o0, o1, BLOCK):
        oe = min(ob + BLOCK, o1)
        for c in range(nc):
            t1[c] = 0.0
            t2[c] = 0.0
        o = ob
        while o + 4 <= oe:
            r0 = x2[o]
            r1 = x2[o + 1]
            r2 = x2[o + 2]
            r3 = x2[o + 3]
            for c in range(nc):
                kc = k[c]
                v0 = r0[c] - kc
                v1 = r1[c] - kc
                v2 = r2[c] - kc
                v3 = r3[c] - kc
                t1[c] += (v0 + v1) + (v2 + v3)
                t2[c] += (v0 * v0 + v1 * v1) + (v2 * v2 + v3 * v3)
            o += 4
        while o < oe:
            r0 = x2[o]
            for c in range(nc):
                v0 = r0[c] - k[c]
                t1[c] += v0
                t2[c] += v0 * v0
            o += 1
        for c in range(nc):
            a1[c] += t1[c]
            a2[c] += t2[c]


@njit(**_opts, inline="always")
def _slab_grad_sums(g2, x2, o0, o1, m, a1, a2, t1, t2):
    """a1[c] += Σ g2[o, c], a2[c] += Σ g2·(x2 − m[c]) over rows o0..o1 (blocked as above)."""
    nc = x2.shape[1]
    for ob in range(o0, o1, BLOCK):
        oe = min(ob + BLOCK, o1)
        for c in range(nc):
            t1[c] = 0.0
            t2[c] = 0.0
        o = ob
        while o + 2 <= oe:
            g0 = g2[o]
            g1 = g2[o + 1]
            r0 = x2[o]
            r1 = x2[o + 1]
            for c in range(nc):
                mc = m[c]
                t1[c] += g0[c] + g1[c]
                t2[c] += g0[c] * (r0[c] - mc) + g1[c] * (r1[c] - mc)
            o += 2
        while o < oe:
            g0 = g2[o]
            r0 = x2[o]
            for c in range(nc):
                t1[c] += g0[c]
                t2[c] += g0[c] * (r0[c] - m[c])
            o += 1
        for c in range(nc):
            a1[c] += t1[c]
            a2[c] += t2[c]


@njit(**_opts, inline="always")
def _merge_group(k, s1, s2, n, c0, cg):
    """(mean, biased var) of channels c0..c0+cg from per-channel shifted sums (Chan)."""
    tot = np.float64(0.0)
    for c in range(c0, c0 + cg):
        tot += k[c] + s1[c] / n
    mu = tot / cg
    m2 = np.float64(0.0)
    for c in range(c0, c0 + cg):
        d = (k[c] + s1[c] / n) - mu
        m2 += (s2[c] - s1[c] * (s1[c] / n)) + n * d * d
    v = m2 / (n * cg)
    if v < 0.0:
        v = 0.0
    return mu, v


# --- generic: reductions -----------------------------------------------------------------


def _moments_inner(x, ko, ki, p1, p2):
    """Partial Σ(x−K), Σ(x−K)² per (b, item, c) for I > 1; K = x[b, 0, c, 0]."""
    nb, no, nc, ni = x.shape
    per = ko * ki
    for it in prange(nb * per):
        b = it // per
        r = it - b * per
        jo = r // ki
        ji = r - jo * ki
        i0 = ji * ni // ki
        i1 = (ji + 1) * ni // ki
        for o in range(jo * no // ko, (jo + 1) * no // ko):
            for c in range(nc):
                s, ss = _row_moments(x[b, o, c, i0:i1], x[b, 0, c, 0])
                p1[b, r, c] += s
                p2[b, r, c] += ss


def _moments_last(x, ko, p1, p2, t1, t2):
    """Partial Σ(x−K), Σ(x−K)² per (b, item, c) for the (B, O, C) channels-last view."""
    nb, no, nc = x.shape
    for it in prange(nb * ko):
        b = it // ko
        r = it - b * ko
        _slab_moments(x[b], r * no // ko, (r + 1) * no // ko, x[b, 0], p1[b, r], p2[b, r], t1[it], t2[it])


def _grad_moments_inner(dy, x, mean, ko, ki, q1, q2):
    """Partial Σdy, Σdy·(x−mean[b,c]) per (b, item, c) for I > 1 (``mean`` in the data dtype)."""
    nb, no, nc, ni = x.shape
    per = ko * ki
    for it in prange(nb * per):
        b = it // per
        r = it - b * per
        jo = r // ki
        ji = r - jo * ki
        i0 = ji * ni // ki
        i1 = (ji + 1) * ni // ki
        for o in range(jo * no // ko, (jo + 1) * no // ko):
            for c in range(nc):
                s, sx = _row_grad_sums(dy[b, o, c, i0:i1], x[b, o, c, i0:i1], mean[b, c])
                q1[b, r, c] += s
                q2[b, r, c] += sx


def _grad_moments_last(dy, x, mean, ko, q1, q2, t1, t2):
    """Partial Σdy, Σdy·(x−mean[b,c]) per (b, item, c) for the (B, O, C) view."""
    nb, no, nc = x.shape
    for it in prange(nb * ko):
        b = it // ko
        r = it - b * ko
        _slab_grad_sums(dy[b], x[b], r * no // ko, (r + 1) * no // ko, mean[b], q1[b, r], q2[b, r],
                        t1[it], t2[it])


def _grad_eval_inner(dy, x, mean, alpha, ko, ki, q1, q2, dx):
    """Constant statistics: partial Σdy, Σdy·(x−mean) and dx = alpha·dy in one pass, I > 1."""
    nb, no, nc, ni = x.shape
    per = ko * ki
    for it in prange(nb * per):
        b = it // per
        r = it - b * per
        jo = r // ki
        ji = r - jo * ki
        i0 = ji * ni // ki
        i1 = (ji + 1) * ni // ki
        for o in range(jo * no // ko, (jo + 1) * no // ko):
            for c in range(nc):
                s, sx = _row_grad_sums_dx(dy[b, o, c, i0:i1], x[b, o, c, i0:i1], mean[b, c], alpha[b, c],
                                          dx[b, o, c, i0:i1])
                q1[b, r, c] += s
                q2[b, r, c] += sx


def _grad_eval_last(dy, x, mean, alpha, ko, q1, q2, dx, t1, t2):
    """Constant statistics, (B, O, C) view: dx = alpha·dy, then the partial sums of the rows."""
    nb, no, nc = x.shape
    for it in prange(nb * ko):
        b = it // ko
        r = it - b * ko
        o0 = r * no // ko
        o1 = (r + 1) * no // ko
        a = alpha[b]
        for o in range(o0, o1):
            gr = dy[b, o]
            dr = dx[b, o]
            for c in range(nc):
                dr[c] = a[c] * gr[c]
        _slab_grad_sums(dy[b], x[b], o0, o1, mean[b], q1[b, r], q2[b, r], t1[it], t2[it])


# --- generic: element-wise passes --------------------------------------------------------


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
        xr = x[b, o, c]
        yr = out[b, o, c]
        for i in range(ni):
            yr[i] = (xr[i] - m) * s + h


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
        gr = dy[b, o, c]
        xr = x[b, o, c]
        dr = dx[b, o, c]
        for i in range(ni):
            dr[i] = a * gr[i] + be * (xr[i] - m) + ga


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


# --- rows: channels-first groups, fused ---------------------------------------------------


def _rows_forward(x, groups, eps, weight, bias, out, mean, rstd, var, coef):
    """One (b, g) row per iteration: shifted sums, then normalize while the row is in cache.

    ``x``/``out``: (B, C, I); ``coef``: (B, C, 3) scratch of the data dtype (each iteration
    owns its channels' entries: μ_hi, scale, shift).
    """
    nb, nc, ni = x.shape
    cg = nc // groups
    n = np.float64(cg * ni)
    for t in prange(nb * groups):
        b = t // groups
        g = t - b * groups
        c0 = g * cg
        k = x[b, c0, 0]
        s = np.float64(0.0)
        ss = np.float64(0.0)
        for c in range(c0, c0 + cg):
            a, q = _row_moments(x[b, c], k)
            s += a
            ss += q
        d = s / n
        v = ss / n - d * d
        if v < 0.0:
            v = 0.0
        r = 1.0 / np.sqrt(v + eps)
        mu = k + d
        mean[b, g] = mu
        var[b, g] = v
        rstd[b, g] = r
        for c in range(c0, c0 + cg):
            cf = coef[b, c]
            cf[0] = mu
            sc = r * weight[c]
            cf[1] = sc
            cf[2] = bias[c] - (mu - cf[0]) * sc
            m_t = cf[0]
            s_t = cf[1]
            h_t = cf[2]
            xr = x[b, c]
            yr = out[b, c]
            for i in range(ni):
                yr[i] = (xr[i] - m_t) * s_t + h_t


def _rows_backward(dy, x, weight, mean, rstd, dx, sum1, sum2, coef):
    """One (b, g) row per iteration: Σdy, Σdy(x−μ) per channel, then dx from the cached row.

    ``sum1``/``sum2``: (B, C) float64 outputs; ``coef``: (B, C, 4) scratch of the data dtype.
    """
    nb, nc, ni = x.shape
    groups = mean.shape[1]
    cg = nc // groups
    ng = np.float64(cg * ni)
    for t in prange(nb * groups):
        b = t // groups
        g = t - b * groups
        c0 = g * cg
        mu = mean[b, g]
        r = rstd[b, g]
        cf0 = coef[b, c0]
        cf0[0] = mu
        m_t = cf0[0]
        lo = mu - m_t
        sg = np.float64(0.0)
        sgx = np.float64(0.0)
        for c in range(c0, c0 + cg):
            a, bx = _row_grad_sums(dy[b, c], x[b, c], m_t)
            bx -= lo * a
            sum1[b, c] = a
            sum2[b, c] = bx
            sg += weight[c] * a
            sgx += weight[c] * bx
        be = -r * r * r * sgx / ng
        ga = -r * sg / ng - be * lo
        for c in range(c0, c0 + cg):
            cf = coef[b, c]
            cf[0] = mu
            cf[1] = r * weight[c]
            cf[2] = be
            cf[3] = ga
            al = cf[1]
            be_t = cf[2]
            ga_t = cf[3]
            gr = dy[b, c]
            xr = x[b, c]
            dr = dx[b, c]
            for i in range(ni):
                dr[i] = al * gr[i] + be_t * (xr[i] - m_t) + ga_t


# --- slab: channels-last groups, fused per sample ------------------------------------------


def _slab_forward(x, groups, eps, weight, bias, out, mean, rstd, var, acc, tmp):
    """One sample's (O, C) slab per iteration: per-channel shifted sums, merge, normalize.

    ``acc``: (B, 3, C) float64 scratch; ``tmp``: (B, 5, C) scratch of the data dtype.
    """
    nb, no, nc = x.shape
    cg = nc // groups
    n = np.float64(no)
    for b in prange(nb):
        a1 = acc[b, 0]
        a2 = acc[b, 1]
        k64 = acc[b, 2]
        k = x[b, 0]
        for c in range(nc):
            a1[c] = 0.0
            a2[c] = 0.0
            k64[c] = k[c]
        _slab_moments(x[b], 0, no, k, a1, a2, tmp[b, 0], tmp[b, 1])
        m_t = tmp[b, 2]
        s_t = tmp[b, 3]
        h_t = tmp[b, 4]
        for g in range(groups):
            mu, v = _merge_group(k64, a1, a2, n, g * cg, cg)
            r = 1.0 / np.sqrt(v + eps)
            mean[b, g] = mu
            var[b, g] = v
            rstd[b, g] = r
            for c in range(g * cg, (g + 1) * cg):
                m_t[c] = mu
                sc = r * weight[c]
                s_t[c] = sc
                h_t[c] = bias[c] - (mu - m_t[c]) * sc
        for o in range(no):
            xr = x[b, o]
            yr = out[b, o]
            for c in range(nc):
                yr[c] = (xr[c] - m_t[c]) * s_t[c] + h_t[c]


def _slab_backward(dy, x, weight, mean, rstd, dx, sum1, sum2, tmp):
    """One sample's (O, C) slab per iteration: Σdy, Σdy(x−μ) per channel, then dx.

    ``sum1``/``sum2``: (B, C) float64 outputs; ``tmp``: (B, 6, C) scratch of the data dtype.
    """
    nb, no, nc = x.shape
    groups = mean.shape[1]
    cg = nc // groups
    ng = np.float64(no * cg)
    for b in prange(nb):
        a1 = sum1[b]
        a2 = sum2[b]
        m_t = tmp[b, 0]
        for c in range(nc):
            a1[c] = 0.0
            a2[c] = 0.0
            m_t[c] = mean[b, c // cg]
        _slab_grad_sums(dy[b], x[b], 0, no, m_t, a1, a2, tmp[b, 4], tmp[b, 5])
        al = tmp[b, 1]
        be = tmp[b, 2]
        ga = tmp[b, 3]
        for g in range(groups):
            r = rstd[b, g]
            lo = mean[b, g] - m_t[g * cg]
            sg = np.float64(0.0)
            sgx = np.float64(0.0)
            for c in range(g * cg, (g + 1) * cg):
                a2[c] -= lo * a1[c]
                sg += weight[c] * a1[c]
                sgx += weight[c] * a2[c]
            beta = -r * r * r * sgx / ng
            gamma = -r * sg / ng - beta * lo
            for c in range(g * cg, (g + 1) * cg):
                al[c] = r * weight[c]
                be[c] = beta
                ga[c] = gamma
        for o in range(no):
            xr = x[b, o]
            gr = dy[b, o]
            dr = dx[b, o]
            for c in range(nc):
                dr[c] = al[c] * gr[c] + be[c] * (xr[c] - m_t[c]) + ga[c]


_MOM_INNER = _config.twins(_moments_inner)
_MOM_LAST = _config.twins(_moments_last)
_GMOM_INNER = _config.twins(_grad_moments_inner)
_GMOM_LAST = _config.twins(_grad_moments_last)
_GEVAL_INNER = _config.twins(_grad_eval_inner)
_GEVAL_LAST = _config.twins(_grad_eval_last)
_APPLY_INNER = _config.twins(_apply_inner)
_APPLY_LAST = _config.twins(_apply_last)
_GAPPLY_INNER = _config.twins(_grad_apply_inner)
_GAPPLY_LAST = _config.twins(_grad_apply_last)
_ROWS_FWD = _config.twins(_rows_forward)
_ROWS_BWD = _config.twins(_rows_backward)
_SLAB_FWD = _config.twins(_slab_forward)
_SLAB_BWD = _config.twins(_slab_backward)


# --- small serial finishing steps (per (b, c) / (b, g) arrays) ---------------------------


@njit(**_opts)
def _group_stats(x, p1, p2, groups, eps, mean, var, rstd):
    """Merge the partials into per-(b, g) mean, biased variance and 1/sqrt(var + eps)."""
    nb, no, nc, ni = x.shape
    n = np.float64(no * ni)
    cg = nc // groups
    nparts = p1.shape[1]
    k = np.empty(nc)
    s1 = np.empty(nc)
    s2 = np.empty(nc)
    for b in range(nb):
        for c in range(nc):
            k[c] = x[b, 0, c, 0]
            a = np.float64(0.0)
            q = np.float64(0.0)
            for r in range(nparts):
                a += p1[b, r, c]
                q += p2[b, r, c]
            s1[c] = a
            s2[c] = q
        for g in range(groups):
            mu, v = _merge_group(k, s1, s2, n, g * cg, cg)
            mean[b, g] = mu
            var[b, g] = v
            rstd[b, g] = 1.0 / np.sqrt(v + eps)


@njit(**_opts)
def _expand(mean, rstd, weight, bias, m_bc, scale_bc, shift_bc):
    """Per-(b, c) coefficients of the normalize pass: μ_hi, scale, bias − μ_lo·scale."""
    nb, nc = m_bc.shape
    cg = nc // mean.shape[1]
    for b in range(nb):
        for c in range(nc):
            g = c // cg
            mu = mean[b, g]
            m_bc[b, c] = mu
            sc = rstd[b, g] * weight[c]
            scale_bc[b, c] = sc
            shift_bc[b, c] = bias[c] - (mu - m_bc[b, c]) * sc


@njit(**_opts)
def _expand_mean(mean, m_bc):
    nb, nc = m_bc.shape
    cg = nc // mean.shape[1]
    for b in range(nb):
        for c in range(nc):
            m_bc[b, c] = mean[b, c // cg]


@njit(**_opts)
def _merge_partials(q1, q2, mean, m_bc, sum1, sum2):
    """sum1 = Σ_k q1, sum2 = Σ_k q2 − μ_lo·sum1 (chunk order): Σdy and Σdy·(x − μ)."""
    nb, nparts, nc = q1.shape
    cg = nc // mean.shape[1]
    for b in range(nb):
        for c in range(nc):
            a = np.float64(0.0)
            q = np.float64(0.0)
            for k in range(nparts):
                a += q1[b, k, c]
                q += q2[b, k, c]
            sum1[b, c] = a
            sum2[b, c] = q - (mean[b, c // cg] - m_bc[b, c]) * a


@njit(**_opts)
def _grad_coefficients(sum1, sum2, weight, mean, m_bc, rstd, count, training, alpha, beta, gamma):
    """Per-(b, c) coefficients of dx = alpha·dy + beta·(x − μ_hi) + gamma.

    With ĝ = w·dy over the N_g = count·C/G elements of a group, r = rstd:
    dx = r·w·dy − r·mean(ĝ) − (x−μ)·r³·mean(ĝ·(x−μ))  (training; the last two terms vanish
    when the statistics are constants, ``training=False``); μ_lo folds into gamma.
    """
    nb, nc = sum1.shape
    groups = rstd.shape[1]
    cg = nc // groups
    ng = np.float64(count) * cg
    for b in range(nb):
        for g in range(groups):
            r = rstd[b, g]
            sg = np.float64(0.0)
            sgx = np.float64(0.0)
            for c in range(g * cg, (g + 1) * cg):
                sg += weight[c] * sum1[b, c]
                sgx += weight[c] * sum2[b, c]
            be = -r * r * r * sgx / ng if training else 0.0
            ga = -r * sg / ng if training else 0.0
            for c in range(g * cg, (g + 1) * cg):
                alpha[b, c] = r * weight[c]
                beta[b, c] = be
                gamma[b, c] = ga - be * (mean[b, g] - m_bc[b, c])


@njit(**_opts)
def _param_grads(sum1, sum2, rstd, grad_weight, grad_bias):
    """grad_weight[c] = Σ_b rstd[b, g]·Σdy(x−μ), grad_bias[c] = Σ_b Σdy, in b order."""
    nb, nc = sum1.shape
    cg = nc // rstd.shape[1]
    for c in range(nc):
        sw = np.float64(0.0)
        sb = np.float64(0.0)
        for b in range(nb):
            sw += rstd[b, c // cg] * sum2[b, c]
            sb += sum1[b, c]
        grad_weight[c] = sw
        grad_bias[c] = sb


# --- entry points -----------------------------------------------------------------------


def _partials(x):
    """Chunk counts and zeroed float64 partial-sum buffers (B, KO·KI, C) for ``x``."""
    nb, no, nc, ni = x.shape
    ko, ki = chunking(nb, no, ni)
    return ko, ki, np.zeros((nb, ko * ki, nc)), np.zeros((nb, ko * ki, nc))


def _path(x, groups):
    """'rows', 'slab' or 'generic' for a (B, O, C, I) input (see the module docstring)."""
    nb, no, nc, ni = x.shape
    if no == 1 and ni > 1 and nb * groups >= ROWS_MIN:
        return "rows"
    if ni == 1 and nb >= SLAB_MIN_BATCH:
        return "slab"
    return "generic"


def stats(x, groups, eps, mean, rstd, var):
    """Per-(b, g) float64 ``mean``, ``rstd`` and biased ``var`` ``(B, G)`` of ``x`` (B, O, C, I)."""
    nb, no, nc, ni = x.shape
    ko, ki, p1, p2 = _partials(x)
    if ni == 1:
        scratch = np.empty((2, nb * ko, nc), x.dtype)
        _config.launch(_MOM_LAST, x.size, x.reshape(nb, no, nc), ko, p1, p2, scratch[0], scratch[1])
    else:
        _config.launch(_MOM_INNER, x.size, x, ko, ki, p1, p2)
    _group_stats(x, p1, p2, groups, eps, mean, var, rstd)


def normalize(x, mean, rstd, weight, bias, out):
    """out = (x − mean)·rstd·weight + bias with per-(b, g) float64 ``mean``/``rstd``."""
    nb, no, nc, ni = x.shape
    m_bc = np.empty((nb, nc), x.dtype)
    s_bc = np.empty((nb, nc), x.dtype)
    h_bc = np.empty((nb, nc), x.dtype)
    _expand(mean, rstd, weight, bias, m_bc, s_bc, h_bc)
    if ni == 1:
        _config.launch(_APPLY_LAST, x.size, x.reshape(nb, no, nc), m_bc, s_bc, h_bc, out.reshape(nb, no, nc))
    else:
        _config.launch(_APPLY_INNER, x.size, x, m_bc, s_bc, h_bc, out)


def forward(x, groups, eps, weight, bias, out, mean, rstd, var):
    """Statistics of ``x`` per (b, g) into ``mean``/``rstd``/``var``, then normalize into ``out``."""
    nb, no, nc, ni = x.shape
    path = _path(x, groups)
    if path == "rows":
        _config.launch(_ROWS_FWD, x.size, x.reshape(nb, nc, ni), groups, eps, weight, bias, out.reshape(nb, nc, ni),
                mean, rstd, var, np.empty((nb, nc, 3), x.dtype))
    elif path == "slab":
        _config.launch(_SLAB_FWD, x.size, x.reshape(nb, no, nc), groups, eps, weight, bias, out.reshape(nb, no, nc),
                mean, rstd, var, np.empty((nb, 3, nc)), np.empty((nb, 5, nc), x.dtype))
    else:
        stats(x, groups, eps, mean, rstd, var)
        normalize(x, mean, rstd, weight, bias, out)


def backward(grad_out, x, weight, mean, rstd, training, grad_x, grad_weight, grad_bias):
    """``grad_x`` (B, O, C, I), ``grad_weight``/``grad_bias`` (C,) from per-(b, g) float64 stats.

    ``training=False`` treats ``mean``/``rstd`` as constants (BatchNorm in eval mode).
    """
    nb, no, nc, ni = x.shape
    sum1 = np.zeros((nb, nc))
    sum2 = np.zeros((nb, nc))
    path = _path(x, mean.shape[1]) if training else "generic"
    if path == "rows":
        shape3 = (nb, nc, ni)
        _config.launch(_ROWS_BWD, x.size, grad_out.reshape(shape3), x.reshape(shape3), weight, mean, rstd,
                grad_x.reshape(shape3), sum1, sum2, np.empty((nb, nc, 4), x.dtype))
    elif path == "slab":
        shape3 = (nb, no, nc)
        _config.launch(_SLAB_BWD, x.size, grad_out.reshape(shape3), x.reshape(shape3), weight, mean, rstd,
                grad_x.reshape(shape3), sum1, sum2, np.empty((nb, 6, nc), x.dtype))
    else:
        m_bc = np.empty((nb, nc), x.dtype)
        _expand_mean(mean, m_bc)
        ko, ki, q1, q2 = _partials(x)
        last = ni == 1
        if last:
            shape3 = (nb, no, nc)
            dy_v, x_v, dx_v = (a.reshape(shape3) for a in (grad_out, x, grad_x))
            scratch = np.empty((2, nb * ko, nc), x.dtype)
        else:
            dy_v, x_v, dx_v = grad_out, x, grad_x
        alpha = np.empty((nb, nc), x.dtype)
        beta = np.empty((nb, nc), x.dtype)
        gamma = np.empty((nb, nc), x.dtype)
        if training:
            if last:
                _config.launch(_GMOM_LAST, x.size, dy_v, x_v, m_bc, ko, q1, q2, scratch[0], scratch[1])
            else:
                _config.launch(_GMOM_INNER, x.size, dy_v, x_v, m_bc, ko, ki, q1, q2)
            _merge_partials(q1, q2, mean, m_bc, sum1, sum2)
            _grad_coefficients(sum1, sum2, weight, mean, m_bc, rstd, no * ni, True, alpha, beta, gamma)
            k = _GAPPLY_LAST if last else _GAPPLY_INNER
            _config.launch(k, x.size, dy_v, x_v, m_bc, alpha, beta, gamma, dx_v)
        else:  # constant statistics: dx = r·w·dy, fused with the parameter-gradient sums
            _grad_coefficients(sum1, sum2, weight, mean, m_bc, rstd, no * ni, False, alpha, beta, gamma)
            if last:
                _config.launch(_GEVAL_LAST, x.size, dy_v, x_v, m_bc, alpha, ko, q1, q2, dx_v, scratch[0], scratch[1])
            else:
                _config.launch(_GEVAL_INNER, x.size, dy_v, x_v, m_bc, alpha, ko, ki, q1, q2, dx_v)
            _merge_partials(q1, q2, mean, m_bc, sum1, sum2)
    _param_grads(sum1, sum2, rstd, grad_weight, grad_bias)


def fill(a, value):
    """a[...] = value (statistics of empty slices)."""
    a[...] = value
