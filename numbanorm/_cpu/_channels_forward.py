"""Forward kernels of the grouped channel statistics (CPU): shifted sums, group merges and
the normalize passes, for the three kernel families of :mod:`._channels` (generic chunked
reductions and element-wise passes; fused rows; fused slabs): serial chunk kernels (``nogil``) that
:func:`._threads.launch` runs on a pool of threads, or calls once for a small input.

The layouts, the numerics and the choice between the families are described in
:mod:`._channels`, which holds the entry points; the backward kernels are in
:mod:`._channels_grad`.
"""
import numpy as np
from numba import njit

from .. import _config
from ._threads import first_chunk, later_chunk

_opts = _config.JIT_OPTIONS

#: values summed in the data dtype before a float64 accumulation (I-runs or channels-last rows).
BLOCK = 256


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


@njit(**_opts, inline="always")
def _split(t, n):
    """(t // n, t % n): a flat work-item index as (outer, inner)."""
    b = t // n
    return b, t - b * n


@njit(**_opts, inline="always")
def _chunk(it, ko, ki, no, ni):
    """(b, item, o0, o1, i0, i1) of work item ``it`` of the (B, O, I) partial-sum split:
    ``ko × ki`` items per sample, rows o0..o1 and the I-run i0..i1 of each."""
    b, r = _split(it, ko * ki)
    jo, ji = _split(r, ki)
    return b, r, jo * no // ko, (jo + 1) * no // ko, ji * ni // ki, (ji + 1) * ni // ki


# --- generic: reductions -----------------------------------------------------------------


@njit(nogil=True, **_opts)
def _moments_inner(x, ko, ki, p1, p2, nch, counter):
    """Partial Σ(x−K), Σ(x−K)² per (b, item, c) for I > 1; K = x[b, 0, c, 0]. Chunks of
    the ``B·KO·KI`` items are taken from ``counter`` (see :mod:`._threads`)."""
    nb, no, nc, ni = x.shape
    n = nb * ko * ki
    ch = first_chunk(counter, nch)
    while ch < nch:
        for it in range(ch * n // nch, (ch + 1) * n // nch):
            b, r, o0, o1, i0, i1 = _chunk(it, ko, ki, no, ni)
            for o in range(o0, o1):
                for c in range(nc):
                    s, ss = _row_moments(x[b, o, c, i0:i1], x[b, 0, c, 0])
                    p1[b, r, c] += s
                    p2[b, r, c] += ss
        ch = later_chunk(counter, nch)


@njit(nogil=True, **_opts)
def _moments_last(x, ko, p1, p2, t1, t2, nch, counter):
    """Partial Σ(x−K), Σ(x−K)² per (b, item, c) for the (B, O, C) channels-last view
    (chunks of the ``B·KO`` items from ``counter``)."""
    nb, no, nc = x.shape
    n = nb * ko
    ch = first_chunk(counter, nch)
    while ch < nch:
        for it in range(ch * n // nch, (ch + 1) * n // nch):
            b, r = _split(it, ko)
            o0 = r * no // ko
            o1 = (r + 1) * no // ko
            _slab_moments(x[b, o0:o1], 0, o1 - o0, x[b, 0], p1[b, r], p2[b, r], t1[it], t2[it])
        ch = later_chunk(counter, nch)


# --- generic: element-wise pass ----------------------------------------------------------


@njit(**_opts, inline="always")
def _apply_row(x, mean, scale, shift, out, b, o, c):
    """Row (b, o, c) of the I > 1 pass: out = (x − mean[b,c]) · scale[b,c] + shift[b,c]."""
    m = mean[b, c]
    s = scale[b, c]
    h = shift[b, c]
    xr = x[b, o, c]
    yr = out[b, o, c]
    for i in range(xr.shape[0]):
        yr[i] = (xr[i] - m) * s + h


@njit(nogil=True, **_opts)
def _apply_inner(x, mean, scale, shift, out, nch, counter):
    """out = (x − mean[b,c]) · scale[b,c] + shift[b,c] for I > 1, chunks of the B·O·C rows
    from ``counter``; a chunk runs as nested loops over its (b, o) runs of channel rows (no
    integer division per row: on (1, 32, 8, 16) two divisions per 16-element row tripled
    the pass's time)."""
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
                _apply_row(x, mean, scale, shift, out, b, o, c)
            t += c1 - c0
        ch = later_chunk(counter, nch)


@njit(**_opts, inline="always")
def _apply_rows(x2, m, s, h, y2):
    """y2 = (x2 − m) · s + h row by row for a run of channels-last rows ``x2`` (O', C).

    Loops over the whole of a sliced run, not over an ``o0..o1`` range of the sample's
    slab: LLVM's code for the latter took ~1.6x the time on (1, 100352, 64) float32."""
    for o in range(x2.shape[0]):
        xr = x2[o]
        yr = y2[o]
        for c in range(x2.shape[1]):
            yr[c] = (xr[c] - m[c]) * s[c] + h[c]


@njit(nogil=True, **_opts)
def _apply_last(x, mean, scale, shift, out, nch, counter):
    """out = (x − mean[b,c]) · scale[b,c] + shift[b,c] for the (B, O, C) view, chunks of the
    B·O rows from ``counter`` (nested loops over each chunk's runs of one sample's rows)."""
    nb, no, nc = x.shape
    n = nb * no
    ch = first_chunk(counter, nch)
    while ch < nch:
        t = ch * n // nch
        t1 = (ch + 1) * n // nch
        while t < t1:
            b, o0 = _split(t, no)
            o1 = min(no, o0 + (t1 - t))
            _apply_rows(x[b, o0:o1], mean[b], scale[b], shift[b], out[b, o0:o1])
            t += o1 - o0
        ch = later_chunk(counter, nch)


# --- rows: channels-first groups, fused --------------------------------------------------


@njit(**_opts, inline="always")
def _group_moments(s, ss, n, k, eps, b, g, mean, rstd, var):
    """Mean, biased variance (clamped at 0) and 1/sqrt(var + eps) of group (b, g) from its
    sums shifted by ``k`` (``s = Σ(x − k)``, ``ss = Σ(x − k)²`` over ``n`` values), stored
    in ``mean``/``var``/``rstd`` and returned as ``(mean, rstd)``."""
    d = s / n
    v = ss / n - d * d
    if v < 0.0:
        v = 0.0
    r = 1.0 / np.sqrt(v + eps)
    mu = k + d
    mean[b, g] = mu
    var[b, g] = v
    rstd[b, g] = r
    return mu, r


@njit(**_opts, inline="always")
def _normalize_channel(cf, mu, r, w, b):
    """Channel coefficients into ``cf`` (data dtype: μ_hi, scale ``r·w``, shift
    ``b − μ_lo·scale``), returned as read back: ``y = (x − μ_hi)·scale + shift``."""
    cf[0] = mu
    sc = r * w
    cf[1] = sc
    cf[2] = b - (mu - cf[0]) * sc
    return cf[0], cf[1], cf[2]


@njit(**_opts, inline="always")
def _normalize_run(xr, yr, m_t, s_t, h_t):
    """``yr = (xr − m_t)·s_t + h_t`` over a run of one channel."""
    for i in range(xr.shape[0]):
        yr[i] = (xr[i] - m_t) * s_t + h_t


@njit(**_opts, inline="always")
def _rows_item(x, xg, b, g, cg, n, eps, weight, bias, out, mean, rstd, var, coef):
    """Row (b, g) of :func:`_rows_forward`: its shifted sums (over the group's channels as
    one contiguous row of ``xg``, the (B·G, C/G·I) view), then normalize it."""
    c0 = g * cg
    k = x[b, c0, 0]
    s, ss = _row_moments(xg[b * (x.shape[1] // cg) + g], k)
    mu, r = _group_moments(s, ss, n, k, eps, b, g, mean, rstd, var)
    for c in range(c0, c0 + cg):
        m_t, s_t, h_t = _normalize_channel(coef[b, c], mu, r, weight[c], bias[c])
        _normalize_run(x[b, c], out[b, c], m_t, s_t, h_t)


@njit(nogil=True, **_opts)
def _rows_forward_flat(x, groups, eps, weight, bias, out, mean, rstd, var, nch, counter):
    """:func:`_rows_forward` of an I = 1 input ((N, C) GroupNorm) on its (B, C) view: each
    (b, g) row is a contiguous run of channels, normalized by loops over them (the general
    kernel's per-channel loop would run once per value). Same statistics and coefficients
    (μ_hi, then scale and shift per channel into a (3, C/G) scratch of the data dtype that
    each chunk allocates: it stays in L1, where a (B, 3, C) one tripled the memory traffic).
    """
    nb, nc = x.shape
    cg = nc // groups
    n = np.float64(cg)
    nt = nb * groups
    ch = first_chunk(counter, nch)
    while ch < nch:
        cf = np.empty((3, cg), x.dtype)
        t0 = ch * nt // nch
        b, g = _split(t0, groups)
        for t in range(t0, (ch + 1) * nt // nch):
            c0 = g * cg
            xr = x[b, c0:c0 + cg]
            yr = out[b, c0:c0 + cg]
            k = xr[0]
            s, ss = _row_moments(xr, k)
            mu, r = _group_moments(s, ss, n, k, eps, b, g, mean, rstd, var)
            cf[0, 0] = mu
            m_t = cf[0, 0]
            lo = mu - m_t
            s_t = cf[1]
            h_t = cf[2]
            for j in range(cg):
                sc = r * weight[c0 + j]
                s_t[j] = sc
                h_t[j] = bias[c0 + j] - lo * sc
            for j in range(cg):
                yr[j] = (xr[j] - m_t) * s_t[j] + h_t[j]
            g += 1
            if g == groups:
                g = 0
                b += 1
        ch = later_chunk(counter, nch)


@njit(nogil=True, **_opts)
def _rows_forward(x, groups, eps, weight, bias, out, mean, rstd, var, coef, nch, counter):
    """One (b, g) row per step: shifted sums, then normalize while the row is in cache;
    chunks of the B·G rows from ``counter``, (b, g) advanced per row (no division).

    ``x``/``out``: (B, C, I); ``coef``: (B, C, 3) scratch of the data dtype (each row owns
    its channels' entries: μ_hi, scale, shift).
    """
    nb, nc, ni = x.shape
    cg = nc // groups
    n = np.float64(cg * ni)
    xg = x.reshape(nb * groups, cg * ni)
    nt = nb * groups
    ch = first_chunk(counter, nch)
    while ch < nch:
        t0 = ch * nt // nch
        b, g = _split(t0, groups)
        for t in range(t0, (ch + 1) * nt // nch):
            _rows_item(x, xg, b, g, cg, n, eps, weight, bias, out, mean, rstd, var, coef)
            g += 1
            if g == groups:
                g = 0
                b += 1
        ch = later_chunk(counter, nch)


# --- runs: BatchNorm channels-first, fused per channel -----------------------------------


@njit(nogil=True, **_opts)
def _runs_forward(x, eps, weight, bias, out, mean, rstd, var, coef, nch, counter):
    """One channel per step (BatchNorm NCHW, ``(1, O, C, I)``, O > 1): the shifted sums of
    its O runs of I values (``k`` its first value; the runs in o order, each blocked as
    :func:`_row_moments`), then the runs normalized while they are in cache, as
    :func:`_rows_item` does a row. ``mean``/``rstd``/``var``: (1, C); ``coef``: (C, 3)
    scratch of the data dtype (μ_hi, scale, shift)."""
    _, no, nc, ni = x.shape
    n = np.float64(no * ni)
    ch = first_chunk(counter, nch)
    while ch < nch:
        for c in range(ch * nc // nch, (ch + 1) * nc // nch):
            k = x[0, 0, c, 0]
            s = np.float64(0.0)
            ss = np.float64(0.0)
            for o in range(no):
                a, q = _row_moments(x[0, o, c], k)
                s += a
                ss += q
            mu, r = _group_moments(s, ss, n, k, eps, 0, c, mean, rstd, var)
            m_t, s_t, h_t = _normalize_channel(coef[c], mu, r, weight[c], bias[c])
            for o in range(no):
                _normalize_run(x[0, o, c], out[0, o, c], m_t, s_t, h_t)
        ch = later_chunk(counter, nch)


# --- slab: channels-last groups, fused per sample ----------------------------------------


@njit(nogil=True, **_opts)
def _slab_forward(x, groups, eps, weight, bias, out, mean, rstd, var, acc, tmp, nch, counter):
    """One sample's (O, C) slab per step: per-channel shifted sums, merge, normalize
    (chunks of the B samples from ``counter``).

    ``acc``: (B, 3, C) float64 scratch; ``tmp``: (B, 5, C) scratch of the data dtype.
    """
    nb, no, nc = x.shape
    cg = nc // groups
    n = np.float64(no)
    ch = first_chunk(counter, nch)
    while ch < nch:
        for b in range(ch * nb // nch, (ch + 1) * nb // nch):
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
            _apply_rows(x[b], m_t, s_t, h_t, out[b])
        ch = later_chunk(counter, nch)


# --- small serial finishing steps (per (b, c) / (b, g) arrays) ---------------------------


@njit(**_opts, inline="always")
def _group_stats_into(x, p1, p2, groups, eps, mean, var, rstd):
    """Body of :func:`_group_stats`: the partials added in part order (the inner loops run
    over the contiguous channels of one part row), then per group Chan's merge; with one
    channel per group (BatchNorm) the merge is its closed form, vectorized over channels
    (what :func:`_merge_group` computes for ``cg = 1``: the μ_c − μ_g term is 0)."""
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
            s1[c] = 0.0
            s2[c] = 0.0
        for r in range(nparts):
            q1 = p1[b, r]
            q2 = p2[b, r]
            for c in range(nc):
                s1[c] += q1[c]
                s2[c] += q2[c]
        if cg == 1:
            mb = mean[b]
            vb = var[b]
            rb = rstd[b]
            for c in range(nc):
                d = s1[c] / n
                v = (s2[c] - s1[c] * d) / n
                if v < 0.0:  # NaN stays NaN
                    v = 0.0
                mb[c] = k[c] + d
                vb[c] = v
                rb[c] = 1.0 / np.sqrt(v + eps)
        else:
            for g in range(groups):
                mu, v = _merge_group(k, s1, s2, n, g * cg, cg)
                mean[b, g] = mu
                var[b, g] = v
                rstd[b, g] = 1.0 / np.sqrt(v + eps)


@njit(**_opts)
def _group_stats(x, p1, p2, groups, eps, mean, var, rstd):
    """Merge the partials into per-(b, g) mean, biased variance and 1/sqrt(var + eps)."""
    _group_stats_into(x, p1, p2, groups, eps, mean, var, rstd)


@njit(**_opts, inline="always")
def _expand_into(mean, rstd, weight, bias, m_bc, scale_bc, shift_bc):
    """Body of :func:`_expand`: loops over rows of the (B, C) arrays and, with one channel
    per group (BatchNorm), one vectorized loop over the channels (2-D indexing and a
    ``c // cg`` per channel made it ~4 ns a channel, ~5 µs of a (256, 1024) BatchNorm)."""
    nb, nc = m_bc.shape
    groups = mean.shape[1]
    cg = nc // groups
    for b in range(nb):
        mb = mean[b]
        rb = rstd[b]
        m_r = m_bc[b]
        s_r = scale_bc[b]
        h_r = shift_bc[b]
        if cg == 1:
            for c in range(nc):
                mu = mb[c]
                m_r[c] = mu
                sc = rb[c] * weight[c]
                s_r[c] = sc
                h_r[c] = bias[c] - (mu - m_r[c]) * sc
        else:
            for g in range(groups):
                mu = mb[g]
                r = rb[g]
                for c in range(g * cg, (g + 1) * cg):
                    m_r[c] = mu
                    sc = r * weight[c]
                    s_r[c] = sc
                    h_r[c] = bias[c] - (mu - m_r[c]) * sc


@njit(**_opts)
def _expand(mean, rstd, weight, bias, m_bc, scale_bc, shift_bc):
    """Per-(b, c) coefficients of the normalize pass: μ_hi, scale, bias − μ_lo·scale."""
    _expand_into(mean, rstd, weight, bias, m_bc, scale_bc, shift_bc)


@njit(**_opts)
def _finish(x, p1, p2, groups, eps, mean, var, rstd, weight, bias, coef):
    """:func:`_group_stats`, then :func:`_expand` into ``coef`` (3, B, C) of the data dtype:
    the generic forward's finishing steps in one dispatch."""
    _group_stats_into(x, p1, p2, groups, eps, mean, var, rstd)
    _expand_into(mean, rstd, weight, bias, coef[0], coef[1], coef[2])


@njit(**_opts)
def _running_coefficients(running_mean, running_var, eps, weight, bias, coef):
    """The (3, 1, C) coefficients of an eval-mode BatchNorm pass straight from the running
    statistics (float32 or float64 ``(C,)``, read exactly as float64): what
    ``running_stats`` then :func:`_expand` compute, in one dispatch without the (1, C)
    float64 mean/rstd or float64 copies of float32 running arrays."""
    m_c = coef[0, 0]
    s_c = coef[1, 0]
    h_c = coef[2, 0]
    rstd = np.empty(m_c.shape[0])
    for c in range(m_c.shape[0]):  # rstd first, as its own loop: in one expression with the
        rstd[c] = 1.0 / np.sqrt(running_var[c] + eps)  # weight LLVM (reassoc) rewrote it (1 ulp)
    for c in range(m_c.shape[0]):
        mu = np.float64(running_mean[c])
        sc = rstd[c] * weight[c]
        m_c[c] = mu
        s_c[c] = sc
        h_c[c] = bias[c] - (mu - m_c[c]) * sc
