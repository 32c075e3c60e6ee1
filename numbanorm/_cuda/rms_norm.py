"""RMSNorm CUDA launchers on the rows view (twin of ``numbanorm/_cpu/rms_norm.py``).

Layout: ``x``, ``out``, ``grad_out``, ``grad_x`` are C-contiguous ``(M, N)`` device arrays
of the compute dtype; ``weight`` is ``(N,)`` (ones when the caller gave none); ``rstd`` is
``(M,)`` = 1/sqrt(mean(x²) + eps). Launchers have the CPU entry points' names and
signatures. Kernels: ``_rows.py`` (the LayerNorm row kernels without the mean: one read
and one write forward, ``dy``/``x`` read once backward with ``grad_weight`` partials in
the same kernel; launch plan ``_plan.plan_rows``).
"""
from . import _rows


def forward(x, weight, eps, out, rstd):
    """RMS-normalize each row of ``x`` into ``out``; fill ``rstd``."""
    m, n = x.shape
    if m == 0 or n == 0:
        return
    _rows.forward(x, weight, weight, eps, out, rstd, rstd, False)


def stats(x, eps, rstd):
    """Fill ``rstd = 1/sqrt(mean(x²) + eps)`` of each row of ``x``."""
    m, n = x.shape
    if m == 0 or n == 0:
        return
    _rows.stats(x, eps, rstd, rstd, False)


def backward(grad_out, x, weight, rstd, grad_x, grad_weight):
    """Fill ``grad_x`` (M, N) and ``grad_weight`` (N,) from the saved ``rstd``."""
    m, n = x.shape
    if m == 0 or n == 0:
        return
    _rows.backward(grad_out, x, weight, rstd, rstd, grad_x, grad_weight, grad_weight, False)


PTX_SIGNATURES = []  # the kernels live in _rows.py
