"""First-call compile time of two source trees, A/B in one window:
``python bench/compile_ab.py OLD_TREE NEW_TREE [OUT.json] [OP ...]``.

A tree is a directory holding a ``numbanorm`` package (a ``git worktree`` of another commit,
say). For every (function, size) of ``numbanorm bench --compile`` (the installed numbanorm's
list), one fresh process per tree (``PYTHONPATH`` set to it) times the first call on an empty
``NUMBA_CACHE_DIR``, the trees' order alternating per row. This machine's speed drifts over
an hour by more than most compile changes, so two full ``--compile`` runs apart compare the
machine, not the code. Prints each row and the sums; not a test.
"""
import json
import os
import sys
import tempfile

from numbanorm._bench import _compile as C


def main(old, new, out=None, ops=()):
    trees = {"old": os.path.abspath(old), "new": os.path.abspath(new)}
    rows = []
    for name in [n for n in C.CALLS if not ops or any(n.startswith(o) for o in ops)]:
        for size in ("small", "large"):
            row = {"op": name, "size": size}
            for t in (("old", "new") if len(rows) % 2 == 0 else ("new", "old")):
                os.environ["PYTHONPATH"] = trees[t]
                with tempfile.TemporaryDirectory(prefix="numbanorm-ab-") as d:
                    row[t] = C._measure(name, size, d)["call"]
            rows.append(row)
            print("%-30s %-5s old %.2f s  new %.2f s" % (name, size, row["old"], row["new"]), flush=True)
    print("sum old %.1f s, new %.1f s" % (sum(r["old"] for r in rows), sum(r["new"] for r in rows)))
    if out:
        with open(out, "w") as f:
            json.dump(rows, f)


if __name__ == "__main__":
    args = sys.argv[1:]
    main(args[0], args[1], args[2] if len(args) > 2 else None, args[3:])
