"""SASS measurement of the CUDA kernels without a GPU: registers, spills, local memory,
occupancy and hot-loop instructions per element, from ``ptxas -v`` and ``nvdisasm``.

``python -m numbanorm._cuda._sass [--cc 90] [--dtype float32] [--verbose] [MODULE[.KERNEL] ...]``
prints the table that docs/gpu.md shows. Each kernel's first ``PTX_SIGNATURES`` entry of
the given dtype is compiled with ``numba.cuda.compile_ptx`` (NVVM, no driver needed), then
assembled for ``sm_<cc>`` with ``ptxas -v`` and disassembled with ``nvdisasm``. The tools
come from the ``nvidia-cuda-nvcc`` and ``nvidia-cuda-nvdisasm`` wheels (``pip install
numbanorm[sass]``) or ``$NUMBANORM_CUDA_BIN`` / ``PATH``.

How "instructions per element" is counted
-----------------------------------------
A *loop* is a backward branch ``BRA`` to a label at a lower address; *innermost* loops
contain no other loop. For each innermost loop that touches global memory, the number of
elements one iteration handles is

(loops that load nothing, such as fill loops and the store-only paths of empty rows,
are skipped)

* the elements it stores (``STG``; ``.64``/``.128`` count 2/4 float32 or 1/2 float64
  elements), when it stores (every element-wise pass writes one output per element);
* (row loops first drop the per-row scalars of :data:`ROW_SCALARS`: statistics stored
  and loaded once per row)
* otherwise the elements it loads divided by ``reads`` (the number of per-element global
  loads of the kernel's reduction loops: 1 for a forward statistic of ``x``; 2-3 for a
  backward one reading ``dy``, ``x`` and sometimes ``weight``), listed per kernel in
  :data:`READS`.

A loop's figure is its instruction count over its elements per iteration. A loop right
after a loop with the same kind (store or no store) and a larger unroll is taken as the
remainder (epilogue) of that loop and skipped. The kernel's figure is the sum over its
remaining loops: what one element costs across all passes of the kernel. Straight-line
kernels whose row body is unrolled inside the row loop count the same way (the row loop is
then the innermost loop). ``occupancy`` is resident warps / 64 for the kernel's block size
(sm_90: 64 K registers, 2048 threads, 32 blocks, 228 KiB shared memory per SM).
"""
import argparse
import dataclasses
import functools
import importlib
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile

#: per-element global loads of store-free (reduction) loops, by "module.kernel"; default 1
READS = {
    "_rows._split_backward_ln_t256_v4": 3,
    "_rows._split_backward_rms_t256_v4": 3,
    "_channels._grad_moments_inner": 2,
    "_channels._grad_moments_last": 2,
    "_normalize_rows._rows_backward_warp": 2,
    "_normalize_rows._rows_backward_block": 2,
    "_normalize_channels._chan_backward": 2,
    "_normalize_rows._rows_backward_warp_p2": 2,
    "_normalize_rows._rows_backward_block_p2": 2,
    "_normalize_channels._chan_backward_p2": 2,
    "_normalize_rows._rows_backward_warp_p1": 2,
    "_normalize_rows._rows_backward_block_p1": 2,
    "_normalize_channels._chan_backward_p1": 2,
    "_normalize_rows._rows_backward_warp_pinf": 2,
    "_normalize_rows._rows_backward_block_pinf": 2,
    "_normalize_channels._chan_backward_pinf": 2,
    "_normalize_channels._chan_grad_partial_p2": 2,
    "_normalize_channels._chan_grad_partial_p1": 2,
    "weight_standardize._backward_warp": 2,
    "weight_standardize._backward_block": 2,
    "local_response_norm._grad_tp": 2,
}

#: per-row scalars inside a row loop (stores, loads; width-weighted like the elements),
#: by kernel-name prefix: the row statistics written (mean, rstd, chunk partials) and
#: read (shift, saved mean/rstd, merged coefficients) once per row, not per element
ROW_SCALARS = {
    "_rows._forward_rows_ln": (2, 1),
    "_rows._forward_rows_rms": (1, 0),
    "_rows._stats_rows_ln": (2, 1),
    "_rows._stats_rows_rms": (1, 0),
    "_rows._split_stats_ln": (8, 1),
    "_rows._split_stats_rms": (2, 0),
    "_rows._split_backward": (4, 2),
}

#: the kernel families the issue's table covers (module, kernels); None = every kernel
FAMILIES = [
    ("_rows", None),
    ("_channels", ["_moments_inner", "_moments_last", "_grad_moments_inner", "_grad_moments_last"]),
    ("_channels_apply", None),
    ("standardize", ["_moments_cols", "_moments_segs", "_transform_cols", "_transform_cols_div",
                     "_transform_rows", "_transform_rows_div"]),
    ("_normalize_rows", None),
    ("_normalize_channels", None),
    ("local_response_norm", None),
    ("weight_standardize", None),
]

SM = {"regs": 65536, "threads": 2048, "blocks": 32, "smem": 228 * 1024, "warps": 64}


@dataclasses.dataclass
class Loop:
    start: int
    end: int
    instructions: int
    loads: int
    stores: int
    elements: float
    per_element: float
    remainder: bool = False


@dataclasses.dataclass
class Report:
    name: str
    signature: str
    registers: int
    spill_stores: int
    spill_loads: int
    stack: int
    local: bool
    shared: int
    threads: int
    occupancy: float
    loops: list
    per_element: float


def tool(name):
    """Path of a CUDA binary tool (``ptxas``, ``nvdisasm``) or None."""
    cands = []
    if os.environ.get("NUMBANORM_CUDA_BIN"):
        cands.append(os.path.join(os.environ["NUMBANORM_CUDA_BIN"], name))
    try:
        import nvidia

        for root in nvidia.__path__:
            for sub in ("cu13", "cuda_nvcc", "cuda_nvdisasm"):
                cands.append(os.path.join(root, sub, "bin", name))
    except ImportError:  # pragma: no cover - wheels absent
        pass
    for c in cands:
        if os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return shutil.which(name)


def _run(cmd):
    return subprocess.run(cmd, capture_output=True, text=True, check=True)


_INSN = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(.*?);")
_LABEL = re.compile(r"^\s*(\.L_x_\d+):")
_BRA = re.compile(r"\bBRA\b.*`\((\.L_x_\d+)\)")
_MEM = re.compile(r"\b(LDG|STG)(\.[A-Z0-9.]+)?\b")


def _width(suffix, itemsize):
    m = re.search(r"\.(64|128)\b", suffix or "")
    bits = int(m.group(1)) if m else 32
    return max(bits // 8 // itemsize, 1) if bits // 8 >= itemsize else 1


def parse_sass(text):
    """[(address, text)] and {label: address} of one kernel's disassembly."""
    insns, labels, pending = [], {}, []
    for line in text.splitlines():
        lm = _LABEL.match(line)
        if lm:
            pending.append(lm.group(1))
            continue
        im = _INSN.search(line)
        if im:
            addr = int(im.group(1), 16)
            for p in pending:
                labels[p] = addr
            pending = []
            insns.append((addr, im.group(2).strip()))
    return insns, labels


def find_loops(insns, labels, itemsize, reads, scalars=(0, 0)):
    """Innermost loops with global memory accesses, see the module docstring."""
    spans = []
    for addr, text in insns:
        bm = _BRA.search(text)
        if bm and labels.get(bm.group(1), addr + 1) <= addr:
            spans.append((labels[bm.group(1)], addr))
    inner = [s for s in spans if not any(o != s and s[0] <= o[0] and o[1] <= s[1] for o in spans)]
    loops = []
    for start, end in sorted(set(inner)):
        body = [t for a, t in insns if start <= a <= end and not t.startswith("NOP")]
        loads = stores = 0
        for t in body:
            for kind, suf in _MEM.findall(t):
                n = _width(suf, itemsize)
                if kind == "LDG":
                    loads += n
                else:
                    stores += n
        if not loads:
            continue  # no global access, or a fill / empty-row path that only stores
        stores = max(stores - scalars[0], 0)
        loads = max(loads - scalars[1], 0)
        elements = stores if stores else loads / reads
        if not elements:
            continue
        loops.append(Loop(start, end, len(body), loads, stores, elements, len(body) / elements))
    for prev, cur in zip(loops, loops[1:]):
        if bool(prev.stores) == bool(cur.stores) and cur.elements < prev.elements and not prev.remainder:
            cur.remainder = True
    return loops


def occupancy(registers, threads, shared):
    """Resident warps / 64 on an sm_90 SM for a block of ``threads``."""
    warps = -(-threads // 32)
    regs_per_warp = -(-max(registers, 1) * 32 // 256) * 256
    by_regs = SM["regs"] // (regs_per_warp * warps)
    by_threads = SM["threads"] // (warps * 32)
    by_smem = SM["smem"] // shared if shared else SM["blocks"]
    blocks = min(by_regs, by_threads, by_smem, SM["blocks"])
    return blocks * warps / SM["warps"]


_PTXAS = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_REGS = re.compile(r"Used (\d+) registers")
_SMEM = re.compile(r"(\d+) bytes smem")


@functools.lru_cache(maxsize=None)
def _compile(module, index, cc):
    from numba import cuda

    mod = importlib.import_module(f"numbanorm._cuda.{module}")
    kernel, sig = mod.PTX_SIGNATURES[index]
    ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=cc)
    ptxas, nvdisasm = tool("ptxas"), tool("nvdisasm")
    if not ptxas or not nvdisasm:
        raise FileNotFoundError("ptxas/nvdisasm not found: pip install numbanorm[sass] or set NUMBANORM_CUDA_BIN")
    with tempfile.TemporaryDirectory() as d:
        src, cub = os.path.join(d, "k.ptx"), os.path.join(d, "k.cubin")
        with open(src, "w") as f:
            f.write(ptx)
        info = _run([ptxas, "-v", f"-arch=sm_{cc[0]}{cc[1]}", src, "-o", cub]).stderr
        sass = _run([nvdisasm, "-c", cub]).stdout
    return ptx, info, sass


def measure(module, kernel_name, dtype="float32", cc=(9, 0), threads=256):
    """:class:`Report` of ``numbanorm._cuda.<module>.<kernel_name>`` for ``dtype`` data."""
    mod = importlib.import_module(f"numbanorm._cuda.{module}")
    named = [(i, s) for i, (k, s) in enumerate(mod.PTX_SIGNATURES) if k.py_func.__name__ == kernel_name]
    index = next((i for i, s in named if f"{dtype}[" in s), named[0][0])
    sig = mod.PTX_SIGNATURES[index][1]
    ptx, info, sass = _compile(module, index, tuple(cc))
    m = _PTXAS.search(info)
    stack, spill_st, spill_ld = (int(v) for v in m.groups()) if m else (0, 0, 0)
    regs = int(_REGS.search(info).group(1))
    sm = _SMEM.search(info)
    shared = int(sm.group(1)) if sm else 0
    itemsize = 8 if dtype == "float64" else (2 if dtype == "float16" else 4)
    insns, labels = parse_sass(sass)
    name = f"{module}.{kernel_name}"
    scalars = next((v for k, v in ROW_SCALARS.items() if name.startswith(k)), (0, 0))
    loops = find_loops(insns, labels, itemsize, READS.get(name, 1), scalars)
    total = sum(lp.per_element for lp in loops if not lp.remainder)
    return Report(
        f"{module}.{kernel_name}", sig, regs, spill_st, spill_ld, stack, ".local" in ptx, shared,
        threads, occupancy(regs, threads, shared), loops, total,
    )


#: selection names that stand for several modules (a module split along its seam)
ALIASES = {"normalize": ("_normalize_rows", "_normalize_channels")}


def kernels(selection=None):
    """[(module, kernel)] of the families (or of ``selection``: 'module' or 'module.kernel';
    'normalize' selects the modules of :data:`ALIASES`)."""
    if selection:
        selection = [m for name in selection for m in ALIASES.get(name, (name,))]
    out = []
    for module, names in FAMILIES:
        mod = importlib.import_module(f"numbanorm._cuda.{module}")
        all_names = list(dict.fromkeys(k.py_func.__name__ for k, _ in mod.PTX_SIGNATURES))
        for n in all_names if names is None else [n for n in names if n in all_names]:
            if not selection or module in selection or f"{module}.{n}" in selection:
                out.append((module, n))
    return out


def table(reports):
    """Markdown table of :class:`Report` rows."""
    rows = ["| kernel | regs | spills (st/ld B) | local | occupancy | hot loops (insns/elements) | insns/element |",
            "|---|---:|---:|---|---:|---|---:|"]
    for r in reports:
        loops = ", ".join(
            f"{lp.instructions}/{lp.elements:g}" for lp in r.loops if not lp.remainder
        ) or "-"
        rows.append(
            f"| {r.name} | {r.registers} | {r.spill_stores}/{r.spill_loads} | {'yes' if r.local else 'no'} "
            f"| {r.occupancy:.0%} | {loops} | {r.per_element:.1f} |"
        )
    return "\n".join(rows)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m numbanorm._cuda._sass", description=__doc__.split("\n")[0])
    p.add_argument("select", nargs="*", help="module or module.kernel (default: every family)")
    p.add_argument("--cc", default="90")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--threads", type=int, default=256)
    p.add_argument("--verbose", action="store_true", help="print every loop")
    a = p.parse_args(argv)
    cc = (int(a.cc[:-1]), int(a.cc[-1]))
    reps = []
    for module, name in kernels(a.select):
        r = measure(module, name, a.dtype, cc, a.threads)
        reps.append(r)
        if a.verbose:
            for lp in r.loops:
                print(f"# {r.name} loop {lp.start:#x}-{lp.end:#x}: {lp.instructions} insns, "
                      f"LDG {lp.loads} STG {lp.stores} elements {lp.elements:g}"
                      f"{' (remainder)' if lp.remainder else ''}", file=sys.stderr)
    print(table(reps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
