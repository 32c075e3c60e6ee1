"""Per-row statistics shared by :mod:`.layer_norm`, :mod:`.rms_norm` and :mod:`._fused`: their
shape and the checks of saved ``mean`` / ``rstd`` (a leaf module, so the fused norms need not
import :mod:`.layer_norm`, which imports them)."""
from .. import _validate


def stat_shape(x_shape, k):
    """Shape of per-row statistics: the leading dims of ``x_shape`` and ``k`` trailing 1s."""
    return tuple(x_shape[: len(x_shape) - k]) + (1,) * k


def saved_stat(fn, arg, dev, value, x_shape, k, m, ctype):
    """Saved mean/rstd: shaped like the leading dims, with or without trailing 1s."""
    value = _validate.array(fn, arg, dev, value)
    lead = tuple(x_shape[: len(x_shape) - k])
    if tuple(value.shape) not in (lead, lead + (1,) * k):
        raise ValueError(
            f"{fn}(): argument '{arg}' must have shape {lead + (1,) * k} (as returned with "
            f"return_stats=True) or {lead}, got shape {tuple(value.shape)}"
        )
    if value.dtype.kind != "f":
        raise TypeError(f"{fn}(): argument '{arg}' must be a floating array, got dtype {value.dtype}")
    return dev.contiguous(value, ctype).reshape(m)
