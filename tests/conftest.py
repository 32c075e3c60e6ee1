"""Shared fixtures and markers.

* ``cuda`` marker: GPU-path tests. They run under the CUDA simulator
  (``NUMBA_ENABLE_CUDASIM=1``; `.ci/run` does this) or on a real GPU, and are skipped
  otherwise. Inside them, ``numbanorm._dispatch.force_device("cuda")`` sends NumPy inputs
  through the CUDA kernels and returns NumPy results.
* ``torch`` fixture: PyTorch when installed (parity tests), else the test is skipped.
"""
import os

import numpy as np
import pytest

SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"


def _have_gpu():
    if SIMULATOR:
        return True
    try:
        from numba import cuda

        return cuda.is_available()
    except Exception:
        return False


def pytest_collection_modifyitems(config, items):
    gpu = None
    for item in items:
        if "cuda" in item.keywords:
            if gpu is None:
                gpu = _have_gpu()
            if not gpu:
                item.add_marker(pytest.mark.skip(reason="no GPU and NUMBA_ENABLE_CUDASIM is not 1"))
        elif SIMULATOR and "ptx" in item.keywords:
            item.add_marker(pytest.mark.skip(reason="compile_ptx needs the real CUDA target, not the simulator"))


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture
def on_gpu():
    """Context manager factory: ``with on_gpu(): ...`` runs calls on the CUDA kernels."""
    from numbanorm._dispatch import force_device

    return lambda: force_device("cuda")


@pytest.fixture
def small_blocks():
    """Small blocks, few blocks in the grid and many chunks: several blocks and chunks really
    run (the channel norms' CUDA kernels; test modules of other kernels override it)."""
    from numbanorm._cuda import _layout

    with _layout.launch_settings(threads_per_block=32, max_blocks=3, partial_blocks=64):
        yield
