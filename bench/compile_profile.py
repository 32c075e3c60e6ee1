"""Where one cold first call spends its compile time: ``python bench/compile_profile.py OP SIZE``.

OP and SIZE are those of ``numbanorm bench --compile`` (``numbanorm/_bench/_compile.py``:
e.g. ``local_response_norm_backward large``). Runs the call once in this process on an
empty temporary ``NUMBA_CACHE_DIR`` (unless one is set) and prints, in CPU seconds:

* per compiled dispatcher signature (``numba.core.event`` "numba:compile" events): its
  exclusive time (nested compiles of the functions it calls subtracted) and inclusive time;
* per LLVM code library: function passes, module passes (cheap + full) and machine-code
  emission, with the final module's function and instruction counts. A ``parallel=True``
  kernel shows up as four libraries (the kernel, ``__numba_parfor_gufunc_*`` and two
  wrappers), each re-optimising and re-emitting everything it links.

Diagnostic only (it patches Numba internals for timing); not a test.
"""
import collections
import os
import sys
import tempfile
import time

os.environ.setdefault("NUMBA_CACHE_DIR", tempfile.mkdtemp(prefix="numbanorm-profile-"))

from numba.core import codegen as cg  # noqa: E402
from numba.core import event  # noqa: E402

_stack, _compiles = [], []
_libs = collections.defaultdict(lambda: collections.defaultdict(float))


class _Listener(event.Listener):
    def on_start(self, ev):
        _stack.append([time.process_time(), 0.0, ev.data])

    def on_end(self, ev):
        t0, child, data = _stack.pop()
        tot = time.process_time() - t0
        if _stack:
            _stack[-1][1] += tot
        f = getattr(data.get("dispatcher"), "py_func", None)
        name = f"{f.__module__}.{f.__qualname__}" if f else str(data.get("dispatcher"))
        _compiles.append((tot - child, tot, name, str(data.get("args"))))


def _wrap(cls, meth, key):
    orig = getattr(cls, meth)

    def timed(self, *a, **k):
        t = time.process_time()
        r = orig(self, *a, **k)
        d = _libs[self.name]
        d[key] += time.process_time() - t
        if key == "module":
            m = self._final_module
            d["nfun"] = sum(1 for fn in m.functions if not fn.is_declaration)
            d["ninst"] = sum(1 for fn in m.functions for bb in fn.blocks for _ in bb.instructions)
        return r

    setattr(cls, meth, timed)


def main(name, size, top=20):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from numbanorm._bench._compile import CALLS, call_env

    event.register("numba:compile", _Listener())
    _wrap(cg.CPUCodeLibrary, "_optimize_functions", "function")
    _wrap(cg.CPUCodeLibrary, "_optimize_final_module", "module")
    _wrap(cg.JITCodeLibrary, "_finalize_specific", "emit")
    env = call_env(size)
    c0 = time.process_time()
    exec(CALLS[name], env)
    total = time.process_time() - c0
    print(f"{name} {size}: {total:.2f} CPU s, {len(_compiles)} dispatcher compiles")
    print("  excl    incl   dispatcher (signature)")
    for ex, inc, fn, args in sorted(_compiles, reverse=True)[:top]:
        print(f"  {ex:6.2f} {inc:6.2f}  {fn} {args[:100]}")
    libs = sorted(_libs.items(), key=lambda kv: -(kv[1]["function"] + kv[1]["module"] + kv[1]["emit"]))
    tot = {k: sum(v[k] for _, v in libs) for k in ("function", "module", "emit")}
    print(f"LLVM: {len(libs)} libraries; function passes {tot['function']:.2f}, module passes "
          f"{tot['module']:.2f}, emission {tot['emit']:.2f} CPU s")
    for lib, v in libs[:top]:
        print(f"  fn {v['function']:5.2f} mod {v['module']:5.2f} emit {v['emit']:5.2f} "
              f"functions {int(v['nfun']):3d} instructions {int(v['ninst']):6d}  {lib[:80]}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
