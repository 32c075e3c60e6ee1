"""SASS of the rewritten hot kernels (sm_90): no spills, no local memory, >= 50 % occupancy,
<= 25 hot-loop instructions per element (numbanorm/_cuda/_sass.py; docs/gpu.md has the
table for every kernel family). Needs NVVM and the ptxas/nvdisasm wheels (extra ``sass``);
skipped where they are missing and under the simulator."""
import pytest

pytestmark = pytest.mark.ptx


@pytest.fixture(scope="module")
def sass():
    cuda = pytest.importorskip("numba.cuda")
    if cuda.config.ENABLE_CUDASIM:
        pytest.skip("needs the real CUDA target, not the simulator")
    from numba.cuda.cudadrv import nvvm

    if not nvvm.is_available():
        pytest.skip("NVVM is not available")
    from numbanorm._cuda import _sass

    if not (_sass.tool("ptxas") and _sass.tool("nvdisasm")):
        pytest.skip("ptxas/nvdisasm not installed (pip install numbanorm[sass])")
    return _sass


def test_loop_finder_on_a_known_kernel(sass):
    """The baseline LN forward (warp per row): three passes over the row, each a loop
    unrolled by 4 with ~90+ instructions; the tool must see them (a parser that finds no
    loop would report 0 and pass every budget)."""
    r = sass.measure("rms_norm", "_stats_warp")
    assert r.registers > 0 and r.spill_stores == 0 and not r.local
    assert [lp.elements for lp in r.loops if not lp.remainder] == [4]
    assert r.per_element > 10


def test_occupancy_model():
    from numbanorm._cuda import _sass

    assert _sass.occupancy(32, 256, 0) == 1.0
    assert _sass.occupancy(64, 256, 0) == 0.5
    assert _sass.occupancy(72, 256, 0) == 0.375
    assert _sass.occupancy(32, 256, 100 * 1024) == 0.25
