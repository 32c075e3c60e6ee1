"""Launch settings and launch geometry of the CUDA kernels (numbanorm._cuda._layout re-exports them).

Launch configuration
--------------------
Settings (module-level, see :func:`set_launch` / :func:`launch_settings`):

``threads_per_block``
    block size of every kernel (multiple of 32, 32..1024; default 256, 64 in the
    simulator).
``max_blocks``
    cap on the grid of grid-stride kernels (default 4096; 4 in the simulator, so grid-
    stride loops really loop).
``warp_row_max``
    row kernels use one warp per row up to this row length, one block per row above
    (default 1024).
``sm_count``, ``row_vpt``, ``row_threads``, ``split_min``
    inputs of the row plans of :mod:`numbanorm._cuda._plan` (SM count: None = the
    device's; values per thread; largest row team; shortest row split across blocks).
``partial_blocks``
    target number of blocks of the per-block partial-sum kernels of deterministic column
    reductions (default 512, 4 in the simulator). Fixed numbers (not the SM count), so a
    result does not depend on which GPU computed it.

Tests lower them, e.g. ``with launch_settings(threads_per_block=64, max_blocks=3,
warp_row_max=32): ...`` (``set_threads_per_block(64)`` for the common case).
Launch geometry helpers (cached per size and settings): :func:`launch_1d`,
:func:`launch_rows`, :func:`launch_partials`.
"""
import contextlib
import functools
import operator

try:  # numba-cuda >= 0.2x keeps its own config
    from numba.cuda.core import config as _cuda_config
except ImportError:  # pragma: no cover - older numba-cuda
    from numba.core import config as _cuda_config

SIMULATOR = bool(_cuda_config.ENABLE_CUDASIM)

# --------------------------------------------------------------------------- settings

_DEFAULTS = {
    "threads_per_block": 64 if SIMULATOR else 256,
    "max_blocks": 4 if SIMULATOR else 4096,
    "warp_row_max": 1024,
    "partial_blocks": 4 if SIMULATOR else 512,
    # row plans (_plan.plan_rows): None = the device's SM count
    "sm_count": None,
    "row_vpt": 16,
    "row_threads": 1024,
    "split_min": 4096,
}
_settings = dict(_DEFAULTS)


def settings():
    """The current launch settings (a copy)."""
    return dict(_settings)


def _check_setting(name, value):
    if name not in _DEFAULTS:
        raise TypeError(f"set_launch(): unknown setting {name!r}; expected one of {', '.join(_DEFAULTS)}")
    if value is None:
        return _DEFAULTS[name]
    value = operator.index(value)
    if name in ("sm_count", "row_vpt", "row_threads", "split_min") and value < 1:
        raise ValueError(f"set_launch(): {name!r} must be >= 1, got {value}")
    if name in ("row_vpt", "row_threads") and value & (value - 1):
        raise ValueError(f"set_launch(): {name!r} must be a power of two, got {value}")
    if name == "threads_per_block" and not (32 <= value <= 1024 and value % 32 == 0):
        raise ValueError(f"set_launch(): 'threads_per_block' must be a multiple of 32 in 32..1024, got {value}")
    if name in ("max_blocks", "partial_blocks") and value < 1:
        raise ValueError(f"set_launch(): {name!r} must be >= 1, got {value}")
    if name == "warp_row_max" and value < 0:
        raise ValueError(f"set_launch(): 'warp_row_max' must be >= 0, got {value}")
    return value


def set_launch(**kwargs):
    """Change launch settings (None restores a default); returns the previous settings."""
    new = {k: _check_setting(k, v) for k, v in kwargs.items()}
    old = settings()
    _settings.update(new)
    return old


def set_threads_per_block(n=None):
    """Set the block size of every kernel (None: the default). Returns the previous one."""
    return set_launch(threads_per_block=n)["threads_per_block"]


@contextlib.contextmanager
def launch_settings(**kwargs):
    """Temporarily change launch settings (tests: small blocks so several blocks run)."""
    old = set_launch(**kwargs)
    try:
        yield settings()
    finally:
        _settings.clear()
        _settings.update(old)


def threads_per_block():
    return _settings["threads_per_block"]


@functools.lru_cache(maxsize=1024)
def _launch_1d(n, tpb, max_blocks):
    return max(1, min(max_blocks, -(-n // tpb))), tpb


def launch_1d(n):
    """(blocks, threads) for a grid-stride kernel over ``n`` items."""
    s = _settings
    return _launch_1d(n, s["threads_per_block"], s["max_blocks"])


@functools.lru_cache(maxsize=1024)
def _launch_rows(m, n, tpb, max_blocks, warp_row_max):
    if n <= warp_row_max:
        rows_per_block = tpb // 32
        return True, max(1, min(max_blocks, -(-m // rows_per_block))), tpb
    threads = min(tpb, 32 * -(-n // 32))
    return False, max(1, min(max_blocks, m)), threads


def launch_rows(m, n):
    """Geometry of a rows ``(m, n)`` kernel: ``(warp_per_row, blocks, threads)``.

    ``warp_per_row=True``: each warp owns a row (``threads // 32`` rows per block, rows
    ``blockIdx.x * rpb + warp`` grid-strided by ``gridDim.x * rpb``). ``False``: each
    block owns a row (rows ``blockIdx.x`` grid-strided by ``gridDim.x``), its threads
    striding over the row.
    """
    s = _settings
    return _launch_rows(m, n, s["threads_per_block"], s["max_blocks"], s["warp_row_max"])


@functools.lru_cache(maxsize=1024)
def _launch_partials(m, n, tpb, partial_blocks):
    threads = min(tpb, 32 * -(-n // 32))
    col_blocks = -(-n // threads)
    chunks = max(1, min(m, -(-partial_blocks // col_blocks)))
    return (col_blocks, chunks), threads, chunks


def launch_partials(m, n):
    """Geometry of a column-partials kernel over rows ``(m, n)``.

    Returns ``(grid, threads, chunks)``: ``grid = (column_blocks, chunks)``; thread ``t``
    of block ``(bx, c)`` owns column ``bx * threads + t`` and rows
    ``c * m // chunks .. (c + 1) * m // chunks`` and writes ``part[c, column]``; then
    ``_reduce.sum_partials(part, out)`` sums the ``chunks`` rows in order. ``chunks``
    depends only on the shape and the settings, so results are reproducible.
    """
    s = _settings
    return _launch_partials(m, n, s["threads_per_block"], s["partial_blocks"])
