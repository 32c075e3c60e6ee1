"""Launch plans from the shape and the device's SM count (pure functions, no GPU needed).

Every plan here takes ``sm_count`` as an argument, so tests compute the geometry of
realistic shapes for an H100/H200 (132 SMs) on a machine without a GPU
(tests/test_cuda_plan.py). Launchers pass :func:`sm_count`: the ``sm_count`` launch
setting when set, else the current device's ``MULTIPROCESSOR_COUNT`` (2 under the
simulator). "Filling the device" means at least ``2 * sm_count`` blocks, or a persistent
grid of ``sm_count * resident`` blocks that loops.

Row plans (LayerNorm, RMSNorm on the rows view ``(m, n)``), :func:`plan_rows`:

``"warp"``
    rows that one warp holds in registers (``vpt`` values per lane): one warp per row,
    ``threads // 32`` rows per block, persistent grid-stride over row groups.
``"block"``
    ``n <= row_threads * vpt_max``: one team of ``team`` threads (whole warps, the whole
    block) per row, the row in registers, grid-stride over rows. The team is an exact fit
    (``team * vpt == n``: no bounds checks in the kernel) when ``n`` allows one.
``"split"``
    rows too long for one block's registers, or too few rows to fill the device
    (``m * 1 < 2 * sm_count`` and ``n >= split_min``): each row is cut into ``chunks``
    chunks of ``team * vpt`` values, one block per (chunk, row): grid ``(chunks, m)``;
    per-chunk partial statistics are merged in chunk order by a second kernel (no atomics).

``vpt_max`` is the ``row_vpt`` setting (16 forward; half of it backward, which holds
``dy`` and ``x``), ``row_threads`` the largest team (1024), ``split_min`` the shortest row
that is split (4096). The simulator tests lower all of them to reach every mode with tiny
shapes.
"""
import collections
import functools

from . import _layout

RowPlan = collections.namedtuple("RowPlan", "mode team vpt threads grid chunks")
RowPlan.__doc__ = """``mode`` ('warp', 'block', 'split'); ``team`` threads per row (or
chunk); ``vpt`` values per thread; ``threads`` block size; ``grid`` (1-tuple or
``(chunks, m)``); ``chunks`` per row (1 unless split)."""

#: threads resident per SM (sm_90): the persistent grids hold at most this many per SM
SM_THREADS = 2048


def _pow2(v):
    return 1 << max(0, (int(v) - 1).bit_length())


_sm_cache = {}


def sm_count():
    """SM count the plans use: the ``sm_count`` setting, else the current device's."""
    s = _layout.settings().get("sm_count")
    if s:
        return s
    if _layout.SIMULATOR:
        return 2
    from numba import cuda

    dev = cuda.get_current_device()
    key = dev.id
    if key not in _sm_cache:
        _sm_cache[key] = int(dev.MULTIPROCESSOR_COUNT)
    return _sm_cache[key]


def _team(n, vmax, row_threads):
    """(team, vpt) for one row: an exact fit ``team * vpt == n`` (team a multiple of 32,
    the largest ``vpt <= vmax`` that gives one) when there is one, else the smallest team
    of whole warps that holds the row with ``vpt <= vmax``."""
    for vpt in range(vmax, 0, -1):
        team, rem = divmod(n, vpt)
        if not rem and team % 32 == 0 and 32 <= team <= row_threads:
            return team, vpt
    team = min(row_threads, 32 * -(-n // (32 * vmax)))
    return team, -(-n // team)


@functools.lru_cache(maxsize=4096)
def plan_rows(m, n, sm, backward=False, vpt_max=16, row_threads=1024, split_min=4096, warp_threads=256):
    """:class:`RowPlan` of a rows ``(m, n)`` kernel on a device with ``sm`` SMs."""
    vmax = max(1, vpt_max // 2) if backward else vpt_max
    target = 2 * sm
    fits = n <= row_threads * vmax
    if fits and not (m < target and n >= split_min):
        team, vpt = _team(n, vmax, row_threads)
        if team == 32:
            rpb = max(1, warp_threads // 32)
            if -(-m // rpb) < target:  # few rows: smaller blocks, more of them
                rpb = max(1, min(rpb, -(-m // target)))
            blocks = -(-m // rpb)
            return RowPlan("warp", 32, vpt, 32 * rpb, (min(blocks, sm * (SM_THREADS // (32 * rpb))),), 1)
        return RowPlan("block", team, vpt, team, (min(m, sm * (SM_THREADS // team)),), 1)
    team = min(256, row_threads)
    vpt = vmax
    while m * -(-n // (team * vpt)) < target and (vpt > 1 or team > 128):
        if vpt > 1:
            vpt //= 2
        else:
            team //= 2
    chunks = -(-n // (team * vpt))
    return RowPlan("split", team, vpt, team, (chunks, m), chunks)


def rows(m, n, backward=False):
    """:func:`plan_rows` with the current device and launch settings."""
    s = _layout.settings()
    return plan_rows(m, n, sm_count(), backward, s["row_vpt"], s["row_threads"], s["split_min"],
                     s["threads_per_block"])


@functools.lru_cache(maxsize=1024)
def plan_columns(n, sm, team=128):
    """(blocks, team) of the split backward's column kernel: one block per ``team``
    columns, looping over the rows (it owns its columns' grad_weight/grad_bias)."""
    return -(-n // team), team


def blocks_of(plan):
    """Number of blocks a plan launches."""
    b = 1
    for g in plan.grid:
        b *= g
    return b
