"""Fused residual add + LayerNorm CPU kernels on the rows view.

Layout as :mod:`numbanorm._cpu.add_rms_norm` plus ``bias`` ``(N,)`` and ``mean`` ``(M,)``;
``rstd = 1/sqrt(var(s) + eps)``. One pass over memory: each row of ``x`` and ``res`` is
read once; ``s = x + res`` goes to the chunk's scratch row while the shifted sums
Σ(s − k), Σ(s − k)² are taken about k = the mean of the row's first ``LEAD`` sums (the
one-pass statistics of :func:`._stats.mean_var`); a row where that shift is too far from
the mean is redone in two passes over the cached sum (:func:`._stats.mean_var_two_pass`). Then the normalized row is written from the cached
sum; streamed outputs use non-temporal stores (:func:`.add_rms_norm._write_row`). Aliasing rules
as in :mod:`.add_rms_norm` (a row is read completely before its outputs are written).
"""
import numpy as np
from numba import njit

from .. import _config
from ._stats import BLOCK, LEAD, U, mean_var_two_pass
from ._stream import EDGE, stream_fence
from .add_rms_norm import _write_row, scratch_rows, stream_flags
from ._threads import SERIAL_COUNTER, first_chunk, later_chunk
from .layer_norm import _chunks, run_chunks


@njit(nogil=True, **_config.JIT_OPTIONS)
def _forward(x, res, weight, bias, eps, s, out, mean, rstd, scratch, stream, counter):
    m, n = x.shape
    nchunks = scratch.shape[0]
    t = x.dtype.type
    of = out.reshape(-1)
    sf = s.reshape(-1)
    edge = np.empty((2, EDGE), x.dtype)
    pend = np.zeros(2, np.int64)
    c = first_chunk(counter, nchunks)
    while c < nchunks:
        start = c * m // nchunks
        stop = (c + 1) * m // nchunks
        for i in range(start, stop):
            xr = x[i]
            rr = res[i]
            srow = scratch[c, 0]
            lead = min(n, LEAD)
            k = t(0.0)
            for j in range(U(lead)):
                k += xr[j] + rr[j]
            k = t(k / lead)
            s1 = np.float64(0.0)
            s2 = np.float64(0.0)
            for j0 in range(0, n, BLOCK):
                b1 = t(0.0)
                b2 = t(0.0)
                for j in range(U(j0), U(min(j0 + BLOCK, n))):
                    v = xr[j] + rr[j]
                    srow[j] = v
                    d = v - k
                    b1 += d
                    b2 += d * d
                s1 += b1
                s2 += b2
            dm = s1 / n
            var = s2 / n - dm * dm
            if dm * dm <= var:
                mu = k + dm
                mu_t = t(mu)
            else:  # shift too far from the mean, or NaN/inf in the row
                mu, var, mu_t = mean_var_two_pass(srow)
            r = 1.0 / np.sqrt(var + eps)
            mean[i] = mu
            rstd[i] = r
            r_t = t(r)
            _write_row(srow, i, start, stop, mu_t, r_t, weight, bias, out, s, of, sf, stream, edge, pend)
        if stream:
            stream_fence()
        c = later_chunk(counter, nchunks)


def forward(x, res, weight, bias, eps, s, out, mean, rstd):
    """``s = x + res`` and ``out = (s − mean) * rstd * weight + bias`` per row; fill the stats."""
    if x.size < _config.SERIAL_THRESHOLD:  # small call: serial twin, one chunk, no streaming
        _forward(x, res, weight, bias, eps, s, out, mean, rstd, scratch_rows(1, x.shape[1], x.dtype), 0,
                 SERIAL_COUNTER)
        return
    m, n = x.shape
    stream = stream_flags(out, s, x, res)
    nchunks = _chunks(m)
    run_chunks(_forward, x.size, nchunks, x, res, weight, bias, eps, s, out, mean, rstd,
               scratch_rows(nchunks, n, x.dtype), stream)
