"""Every CUDA kernel compiles to PTX for sm_80 and sm_90 without local memory.

Discovers every ``numbanorm/_cuda/*.py`` module (pkgutil, so modules added later are
picked up), compiles each ``(kernel, signature)`` of its ``PTX_SIGNATURES`` with
``numba.cuda.compile_ptx(kernel.py_func, sig, cc=cc)`` and asserts ``.local`` (register
spills, local arrays) is absent. Also checks that every ``@cuda.jit`` kernel a module
defines is listed. Needs numba-cuda with NVVM, no GPU;
skipped under the simulator (conftest) and where NVVM is missing.
"""
import importlib
import pkgutil

import pytest

pytestmark = pytest.mark.ptx
pytest.importorskip("numba.cuda")

CCS = [(8, 0), (9, 0)]


def _cuda_modules():
    import numbanorm._cuda as pkg

    return sorted(
        f"{pkg.__name__}.{info.name}" for info in pkgutil.iter_modules(pkg.__path__) if not info.ispkg
    )


MODULES = _cuda_modules()


def _import(name):
    return importlib.import_module(name)


def _cases():
    """(module, kernel name, index, signature) for every listed signature; import errors fail later."""
    cases = []
    for name in MODULES:
        try:
            mod = _import(name)
        except Exception:  # reported by test_module_imports
            continue
        for i, entry in enumerate(getattr(mod, "PTX_SIGNATURES", ())):
            kernel, sig = entry
            kname = getattr(getattr(kernel, "py_func", kernel), "__name__", repr(kernel))
            short = name.rsplit(".", 1)[1]
            cases.append(pytest.param(name, i, sig, id=f"{short}.{kname}[{i}]"))
    return cases


def _kernel_name(kernel):
    return getattr(getattr(kernel, "py_func", kernel), "__name__", repr(kernel))


@pytest.fixture(scope="module")
def compile_ptx():
    cuda = pytest.importorskip("numba.cuda")
    if getattr(cuda, "config", None) is not None and cuda.config.ENABLE_CUDASIM:
        pytest.skip("compile_ptx needs the real CUDA target, not the simulator")
    nvvm = pytest.importorskip("numba.cuda.cudadrv.nvvm")
    if not nvvm.is_available():
        pytest.skip("NVVM (the CUDA compiler library) is not available")
    return cuda.compile_ptx


@pytest.mark.parametrize("name", MODULES)
def test_module_imports(name):
    _import(name)


@pytest.mark.parametrize("cc", CCS, ids=lambda cc: f"sm{cc[0]}{cc[1]}")
@pytest.mark.parametrize("name,index,sig", _cases())
def test_kernel_compiles_without_local_memory(compile_ptx, name, index, sig, cc):
    kernel, sig2 = _import(name).PTX_SIGNATURES[index]
    assert sig2 == sig
    where = f"{name}.{_kernel_name(kernel)} {sig} cc={cc}"
    try:
        ptx, _ = compile_ptx(kernel.py_func, sig, cc=cc)
    except Exception as exc:
        hint = ""
        if "driver" in str(exc).lower():
            hint = (
                " (a device function called by this kernel needs a GPU to compile: declare "
                "device functions with @cuda.jit(device=True, inline=\"always\"), as in "
                "numbanorm/_cuda/_reduce.py)"
            )
        raise AssertionError(f"{where} failed to compile: {type(exc).__name__}: {exc}{hint}") from exc
    assert ".local" not in ptx, f"{where}: PTX uses local memory (spills or local arrays)"


@pytest.mark.parametrize("name", MODULES)
def test_every_kernel_is_listed(name):
    """Every @cuda.jit kernel the module defines is in its PTX_SIGNATURES (with the dtypes
    it is launched with: float32 and float64 data, float64 for internal buffers)."""
    cuda = pytest.importorskip("numba.cuda")
    if cuda.config.ENABLE_CUDASIM:
        pytest.skip("kernel objects are simulator stand-ins")
    from numba.cuda.dispatcher import CUDADispatcher

    mod = _import(name)
    listed = {id(kernel) for kernel, _ in getattr(mod, "PTX_SIGNATURES", ())}
    for attr, obj in vars(mod).items():
        if not isinstance(obj, CUDADispatcher) or obj.targetoptions.get("device"):
            continue
        if getattr(obj.py_func, "__module__", None) != mod.__name__:
            continue  # imported from another module, listed there
        assert id(obj) in listed, f"{name}.{attr} is a @cuda.jit kernel missing from {name}.PTX_SIGNATURES"


def test_discovery_finds_the_foundation_modules():
    for m in ("_layout", "_reduce", "layer_norm", "rms_norm"):
        assert f"numbanorm._cuda.{m}" in MODULES
    assert len(_cases()) >= 40


def test_import_numbanorm_does_not_load_numba_cuda():
    import subprocess
    import sys

    code = "import sys, numbanorm; print('numba.cuda' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
