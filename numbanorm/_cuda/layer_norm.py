"""LayerNorm CUDA launchers on the rows view (twin of ``numbanorm/_cpu/layer_norm.py``).

Layout: ``x``, ``out``, ``grad_out``, ``grad_x`` are C-contiguous ``(M, N)`` device arrays
of the compute dtype (float32 or float64); ``weight``/``bias`` contiguous ``(N,)``;
``mean``/``rstd`` ``(M,)`` of the compute dtype. Launchers have the CPU entry points'
names and signatures and take Numba device arrays.

The kernels are the row kernels of ``_rows.py`` (shared with RMSNorm): the row in
registers, one DRAM read and one write in the forward, ``dy`` and ``x`` read once in the
backward with ``grad_weight``/``grad_bias`` partials accumulated in the same kernel; long
rows or few rows split across blocks (launch plan: ``_plan.plan_rows``). Deterministic,
no atomics.
"""
from . import _rows


def forward(x, weight, bias, eps, out, mean, rstd):
    """Normalize each row of ``x`` into ``out``; fill ``mean`` and ``rstd``."""
    m, n = x.shape
    if m == 0 or n == 0:
        return
    _rows.forward(x, weight, bias, eps, out, mean, rstd, True)


def stats(x, eps, mean, rstd):
    """Fill ``mean`` and ``rstd = 1/sqrt(var + eps)`` of each row of ``x``."""
    m, n = x.shape
    if m == 0 or n == 0:
        return
    _rows.stats(x, eps, mean, rstd, True)


def backward(grad_out, x, weight, mean, rstd, grad_x, grad_weight, grad_bias):
    """Fill ``grad_x`` (M, N), ``grad_weight`` and ``grad_bias`` (N,) from saved stats."""
    m, n = x.shape
    if m == 0 or n == 0:
        return
    _rows.backward(grad_out, x, weight, mean, rstd, grad_x, grad_weight, grad_bias, True)


PTX_SIGNATURES = []  # the kernels live in _rows.py
