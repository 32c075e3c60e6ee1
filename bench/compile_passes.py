"""Exclusive CPU time per Numba compiler pass of one cold first call:
``python bench/compile_passes.py OP SIZE`` (OP and SIZE as in ``numbanorm bench --compile``).

Complements ``bench/compile_profile.py`` (per dispatcher and per LLVM library): the
``numba:run_pass`` events, nested ones subtracted, summed per pass (``native_lowering``
includes the LLVM optimisation and machine-code emission of the function's library) and per
compiled function. Runs on an empty temporary ``NUMBA_CACHE_DIR`` unless one is set.
Diagnostic only; not a test.
"""
import collections
import os
import sys
import tempfile
import time

os.environ.setdefault("NUMBA_CACHE_DIR", tempfile.mkdtemp(prefix="numbanorm-passes-"))

from numba.core import event  # noqa: E402

_stack = []
_by_pass = collections.Counter()
_by_fn = collections.defaultdict(collections.Counter)


class _Listener(event.Listener):
    def on_start(self, ev):
        _stack.append([time.process_time(), 0.0])

    def on_end(self, ev):
        t0, child = _stack.pop()
        tot = time.process_time() - t0
        if _stack:
            _stack[-1][1] += tot
        if ev.kind == "numba:run_pass":
            name = ev.data["name"].split(" [")[0]
            _by_pass[name] += tot - child
            _by_fn[ev.data["qualname"]][name] += tot - child
        else:
            _by_pass["(compile, outside passes)"] += tot - child


def main(name, size, top=20):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for kind in ("numba:run_pass", "numba:compile"):
        event.register(kind, _Listener())
    from numbanorm._bench._compile import CALLS, call_env

    env = call_env(size)
    c0 = time.process_time()
    exec(CALLS[name], env)
    total = time.process_time() - c0
    print(f"{name} {size}: {total:.2f} CPU s, {sum(_by_pass.values()):.2f} in compiler passes")
    for p, v in _by_pass.most_common(12):
        print(f"  {v:6.2f} {p}")
    print("  typing lowering  all   function")
    for q, c in sorted(_by_fn.items(), key=lambda kv: -sum(kv[1].values()))[:top]:
        print(f"  {c['nopython_type_inference']:6.2f} {c['native_lowering']:6.2f} {sum(c.values()):6.2f}  {q}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
