"""Backward kernels of the grouped channel statistics (CPU): the gradient sums Σdy and
Σdy·(x−μ), the dx passes (training and constant statistics) and the per-(b, c) finishing
steps (coefficients, parameter gradients), for the kernel families of :mod:`._channels`:
serial chunk kernels run on threads by :func:`._threads.launch`.

The layouts and numerics are described in :mod:`._channels`, which holds the entry
points; the forward kernels (and ``BLOCK``) are in :mod:`._channels_forward`.
"""
import numpy as np
from numba import njit

from .. import _config
from ._threads import first_chunk, later_chunk
from ._channels_forward import BLOCK, _chunk, _split

_opts = _config.JIT_OPTIONS


# --- inline building blocks --------------------------------------------------------------


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


# --- generic: reductions -----------------------------------------------------------------
# (every kernel takes chunks of its work items from ``counter``: see :mod:`._threads`)


@njit(nogil=True, **_opts)
def _grad_moments_inner(dy, x, mean, ko, ki, q1, q2, nch, counter):
    """Partial Σdy, Σdy·(x−mean[b,c]) per (b, item, c) for I > 1 (``mean`` in the data dtype)."""
    nb, no, nc, ni = x.shape
    n = nb * ko * ki
    ch = first_chunk(counter, nch)
    while ch < nch:
        for it in range(ch * n // nch, (ch + 1) * n // nch):
            b, r, o0, o1, i0, i1 = _chunk(it, ko, ki, no, ni)
            for o in range(o0, o1):
                for c in range(nc):
                    s, sx = _row_grad_sums(dy[b, o, c, i0:i1], x[b, o, c, i0:i1], mean[b, c])
                    q1[b, r, c] += s
                    q2[b, r, c] += sx
        ch = later_chunk(counter, nch)


@njit(nogil=True, **_opts)
def _grad_moments_last(dy, x, mean, ko, q1, q2, t1, t2, nch, counter):
    """Partial Σdy, Σdy·(x−mean[b,c]) per (b, item, c) for the (B, O, C) view."""
    nb, no, nc = x.shape
    n = nb * ko
    ch = first_chunk(counter, nch)
    while ch < nch:
        for it in range(ch * n // nch, (ch + 1) * n // nch):
            b, r = _split(it, ko)
            o0 = r * no // ko
            o1 = (r + 1) * no // ko  # a sliced run (see _channels_forward._apply_rows)
            _slab_grad_sums(dy[b, o0:o1], x[b, o0:o1], 0, o1 - o0, mean[b], q1[b, r], q2[b, r], t1[it], t2[it])
        ch = later_chunk(counter, nch)


@njit(nogil=True, **_opts)
def _grad_eval_inner(dy, x, mean, alpha, ko, ki, q1, q2, dx, nch, counter):
    """Constant statistics: partial Σdy, Σdy·(x−mean) and dx = alpha·dy in one pass, I > 1."""
    nb, no, nc, ni = x.shape
    n = nb * ko * ki
    ch = first_chunk(counter, nch)
    while ch < nch:
        for it in range(ch * n // nch, (ch + 1) * n // nch):
            b, r, o0, o1, i0, i1 = _chunk(it, ko, ki, no, ni)
            for o in range(o0, o1):
                for c in range(nc):
                    s, sx = _row_grad_sums_dx(dy[b, o, c, i0:i1], x[b, o, c, i0:i1], mean[b, c], alpha[b, c],
                                              dx[b, o, c, i0:i1])
                    q1[b, r, c] += s
                    q2[b, r, c] += sx
        ch = later_chunk(counter, nch)


@njit(nogil=True, **_opts)
def _grad_eval_last(dy, x, mean, alpha, ko, q1, q2, dx, t1, t2, nch, counter):
    """Constant statistics, (B, O, C) view: dx = alpha·dy, then the partial sums of the rows."""
    nb, no, nc = x.shape
    n = nb * ko
    ch = first_chunk(counter, nch)
    while ch < nch:
        for it in range(ch * n // nch, (ch + 1) * n // nch):
            b, r = _split(it, ko)
            o0 = r * no // ko
            o1 = (r + 1) * no // ko
            g2 = dy[b, o0:o1]  # sliced runs (see _channels_forward._apply_rows)
            d2 = dx[b, o0:o1]
            a = alpha[b]
            for o in range(g2.shape[0]):
                gr = g2[o]
                dr = d2[o]
                for c in range(nc):
                    dr[c] = a[c] * gr[c]
            _slab_grad_sums(g2, x[b, o0:o1], 0, o1 - o0, mean[b], q1[b, r], q2[b, r], t1[it], t2[it])
        ch = later_chunk(counter, nch)


# --- generic: element-wise pass ----------------------------------------------------------


@njit(nogil=True, **_opts)
def _grad_apply_inner(dy, x, mean, alpha, beta, gamma, dx, nch, counter):
    """dx = alpha·dy + beta·(x − mean) + gamma, coefficients per (b, c), for I > 1
    (chunks of the B·O·C rows, run as nested loops over their (b, o) runs of channel rows)."""
    nb, no, nc, ni = x.shape
    n = nb * no * nc
    ch = first_chunk(counter, nch)
    while ch < nch:
        t = ch * n // nch
        t1 = (ch + 1) * n // nch
        while t < t1:
            b, r = _split(t, no * nc)
            o, c0 = _split(r, nc)
            c1 = min(nc, c0 + (t1 - t))
            for c in range(c0, c1):
                m = mean[b, c]
                a = alpha[b, c]
                be = beta[b, c]
                ga = gamma[b, c]
                gr = dy[b, o, c]
                xr = x[b, o, c]
                dr = dx[b, o, c]
                for i in range(ni):
                    dr[i] = a * gr[i] + be * (xr[i] - m) + ga
            t += c1 - c0
        ch = later_chunk(counter, nch)


@njit(**_opts, inline="always")
def _grad_apply_rows(g2, x2, m, a, be, ga, d2):
    """d2 = a·g2 + be·(x2 − m) + ga row by row for a sliced run of channels-last rows (O', C)
    (loops over the whole run: see :func:`._channels_forward._apply_rows`)."""
    for o in range(x2.shape[0]):
        xr = x2[o]
        gr = g2[o]
        dr = d2[o]
        for c in range(x2.shape[1]):
            dr[c] = a[c] * gr[c] + be[c] * (xr[c] - m[c]) + ga[c]


@njit(nogil=True, **_opts)
def _grad_apply_last(dy, x, mean, alpha, beta, gamma, dx, nch, counter):
    """dx = alpha·dy + beta·(x − mean) + gamma, coefficients per (b, c), (B, O, C) view
    (chunks of the B·O rows, nested loops over each chunk's runs of one sample's rows)."""
    nb, no, nc = x.shape
    n = nb * no
    ch = first_chunk(counter, nch)
    while ch < nch:
        t = ch * n // nch
        t1 = (ch + 1) * n // nch
        while t < t1:
            b, o0 = _split(t, no)
            o1 = min(no, o0 + (t1 - t))
            _grad_apply_rows(dy[b, o0:o1], x[b, o0:o1], mean[b], alpha[b], beta[b], gamma[b], dx[b, o0:o1])
            t += o1 - o0
        ch = later_chunk(counter, nch)


# --- rows: channels-first groups, fused --------------------------------------------------


@njit(nogil=True, **_opts)
def _rows_backward(dy, x, weight, mean, rstd, dx, sum1, sum2, coef, nch, counter):
    """One (b, g) row per step: Σdy, Σdy(x−μ) per channel, then dx from the cached row.

    ``sum1``/``sum2``: (B, C) float64 outputs; ``coef``: (B, C, 4) scratch of the data dtype.
    """
    nb, nc, ni = x.shape
    groups = mean.shape[1]
    cg = nc // groups
    ng = np.float64(cg * ni)
    nt = nb * groups
    ch = first_chunk(counter, nch)
    while ch < nch:
        for t in range(ch * nt // nch, (ch + 1) * nt // nch):
            b, g = _split(t, groups)
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
        ch = later_chunk(counter, nch)


# --- runs: BatchNorm channels-first, fused per channel -----------------------------------


@njit(nogil=True, **_opts)
def _runs_backward(dy, x, weight, mean, rstd, dx, sum1, sum2, coef, nch, counter):
    """One channel per step (BatchNorm NCHW, ``(1, O, C, I)``, O > 1): Σdy, Σdy(x−μ) over
    its O runs of I values (in o order, each blocked as :func:`_row_grad_sums`), then dx
    from those runs while they are still in L1/L2 (the generic path reads dy and x from
    memory twice). The coefficients as :func:`_rows_backward`'s with one channel a group.

    ``sum1``/``sum2``: (1, C) float64 outputs; ``coef``: (C, 4) scratch of the data dtype.
    """
    _, no, nc, ni = x.shape
    ng = np.float64(no * ni)
    ch = first_chunk(counter, nch)
    while ch < nch:
        for c in range(ch * nc // nch, (ch + 1) * nc // nch):
            mu = mean[0, c]
            r = rstd[0, c]
            cf = coef[c]
            cf[0] = mu
            m_t = cf[0]
            lo = mu - m_t
            a = np.float64(0.0)
            bx = np.float64(0.0)
            for o in range(no):
                s, sx = _row_grad_sums(dy[0, o, c], x[0, o, c], m_t)
                a += s
                bx += sx
            bx -= lo * a
            sum1[0, c] = a
            sum2[0, c] = bx
            be = -r * r * r * (weight[c] * bx) / ng
            cf[1] = r * weight[c]
            cf[2] = be
            cf[3] = -r * (weight[c] * a) / ng - be * lo
            al = cf[1]
            be_t = cf[2]
            ga_t = cf[3]
            for o in range(no):
                gr = dy[0, o, c]
                xr = x[0, o, c]
                dr = dx[0, o, c]
                for i in range(ni):
                    dr[i] = al * gr[i] + be_t * (xr[i] - m_t) + ga_t
        ch = later_chunk(counter, nch)


# --- slab: channels-last groups, fused per sample ----------------------------------------


@njit(nogil=True, **_opts)
def _slab_backward(dy, x, weight, mean, rstd, dx, sum1, sum2, tmp, nch, counter):
    """One sample's (O, C) slab per step: Σdy, Σdy(x−μ) per channel, then dx.

    ``sum1``/``sum2``: (B, C) float64 outputs; ``tmp``: (B, 6, C) scratch of the data dtype.
    """
    nb, no, nc = x.shape
    groups = mean.shape[1]
    cg = nc // groups
    ng = np.float64(no * cg)
    ch = first_chunk(counter, nch)
    while ch < nch:
        for b in range(ch * nb // nch, (ch + 1) * nb // nch):
            a1 = sum1[b]
            a2 = sum2[b]
            m_t = tmp[b, 0]
            for c in range(nc):
                a1[c] = 0.0
                a2[c] = 0.0
            for g in range(groups):
                for c in range(g * cg, (g + 1) * cg):
                    m_t[c] = mean[b, g]
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
        ch = later_chunk(counter, nch)


# --- small serial finishing steps (per (b, c) / (b, g) arrays) ---------------------------
# The generic backward runs them as two dispatches, :func:`_grad_prepare` before its
# first pass and :func:`_grad_finish` after its reduction (a Numba dispatch of ~10 array
# arguments costs a few µs: four separate calls were ~20 µs of a (256, 1024) backward).


@njit(**_opts, inline="always")
def _expand_mean(mean, m_bc):
    """m_bc[b, c] = mean[b, g] in the data dtype (μ_hi)."""
    nb, nc = m_bc.shape
    groups = mean.shape[1]
    cg = nc // groups
    for b in range(nb):
        for g in range(groups):  # no c // cg per channel (see _channels_forward._expand_into)
            for c in range(g * cg, (g + 1) * cg):
                m_bc[b, c] = mean[b, g]


@njit(**_opts, inline="always")
def _merge_partials(q1, q2, mean, m_bc, sum1, sum2):
    """sum1 = Σ_k q1, sum2 = Σ_k q2 − μ_lo·sum1 (chunk order): Σdy and Σdy·(x − μ)."""
    nb, nparts, nc = q1.shape
    groups = mean.shape[1]
    cg = nc // groups
    for b in range(nb):
        for g in range(groups):
            mu = mean[b, g]
            for c in range(g * cg, (g + 1) * cg):
                a = np.float64(0.0)
                q = np.float64(0.0)
                for k in range(nparts):
                    a += q1[b, k, c]
                    q += q2[b, k, c]
                sum1[b, c] = a
                sum2[b, c] = q - (mu - m_bc[b, c]) * a


@njit(**_opts, inline="always")
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
    _param_grads_into(sum1, sum2, rstd, grad_weight, grad_bias)


@njit(**_opts, inline="always")
def _param_grads_into(sum1, sum2, rstd, grad_weight, grad_bias):
    """Body of :func:`_param_grads`."""
    nb, nc = sum1.shape
    groups = rstd.shape[1]
    cg = nc // groups
    for g in range(groups):
        for c in range(g * cg, (g + 1) * cg):
            sw = np.float64(0.0)
            sb = np.float64(0.0)
            for b in range(nb):
                sw += rstd[b, g] * sum2[b, c]
                sb += sum1[b, c]
            grad_weight[c] = sw
            grad_bias[c] = sb


@njit(**_opts)
def _grad_prepare(weight, mean, rstd, count, training, coef, sums):
    """Before the generic backward's pass: μ_hi into ``coef[0]`` (B, C) and, with constant
    statistics (``training=False``), the dx coefficients into ``coef[1:4]`` (which do not
    use the zeroed ``sums``). ``coef``: (4, B, C) of the data dtype (m_bc, alpha, beta,
    gamma); ``sums``: (2, B, C) float64."""
    _expand_mean(mean, coef[0])
    if not training:
        _grad_coefficients(sums[0], sums[1], weight, mean, coef[0], rstd, count, False, coef[1], coef[2], coef[3])


@njit(**_opts)
def _grad_finish(q1, q2, weight, mean, rstd, count, training, coef, sums, grad_weight, grad_bias):
    """After the generic backward's reduction, in one dispatch: the partials merged into
    ``sums`` (2, B, C) float64 (Σdy, Σdy·(x − μ)), with batch statistics
    (``training=True``) the dx coefficients into ``coef[1:4]``, and the parameter
    gradients (what :func:`_merge_partials`, :func:`_grad_coefficients` and
    :func:`_param_grads` compute, in that order)."""
    _merge_partials(q1, q2, mean, coef[0], sums[0], sums[1])
    if training:
        _grad_coefficients(sums[0], sums[1], weight, mean, coef[0], rstd, count, True, coef[1], coef[2], coef[3])
    _param_grads_into(sums[0], sums[1], rstd, grad_weight, grad_bias)
