#!/usr/bin/env python
"""Refcount calls inside loops of every compiled numbanorm CPU kernel.

Numba increfs an array argument of an ``inline="always"`` helper at each inlined call and
decrefs it on every branch path; when the helper reads that array only under a branch, its
refcount pruning cannot pair the two, and the loop around the call makes an atomic
``NRT_incref``/``NRT_decref`` pair per element and no longer vectorises (the fused-add
backward ran ~80x slower that way). This script compiles the common specializations
(``numbanorm precompile``'s calls, float32, into a temporary cache), then, for each compiled
kernel, parses its optimised LLVM IR into a control-flow graph per function, finds the loops
(nested strongly connected components) and prints the refcount calls found at each loop
depth, deepest first. Calls at depth 1-2 are per chunk or per row (harmless); calls at the
depth of an element loop are the pitfall.

    python bench/nrt_audit.py [EXTRA.py]   # EXTRA: more calls to compile first (exec'd)
"""
import os, re, sys, tempfile
os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp()
sys.setrecursionlimit(100000)
import numbanorm
from numbanorm import _precompile
_precompile.run(dtypes=("float32",), progress=False, stream=sys.stderr)
if len(sys.argv) > 1:
    exec(open(sys.argv[1]).read(), {"numbanorm": numbanorm})
from numba.core.registry import CPUDispatcher

def functions(ir):
    for m in re.finditer(r'^define [^@]*@"?([^"(]+)"?\(.*?\{\n(.*?)^\}', ir, re.S | re.M):
        yield m.group(1), m.group(2)

def blocks(body):
    out, name, lines = {}, "entry", []
    for ln in body.split("\n"):
        m = re.match(r'^([\w.$"-]+):', ln)
        if m:
            out[name] = lines; name, lines = m.group(1).strip('"'), []
        else:
            lines.append(ln)
    out[name] = lines
    return out

def succs(lines):
    for ln in reversed(lines):
        if re.search(r'\b(br|switch|invoke|ret|unreachable|resume)\b', ln):
            return [l.strip('"') for l in re.findall(r'label %("?[\w.$-]+"?)', ln)]
    return []

def sccs(nodes, edges):
    idx, low, st, on, res, c = {}, {}, [], set(), [], [0]
    def strong(v):
        idx[v] = low[v] = c[0]; c[0] += 1; st.append(v); on.add(v)
        for w in edges.get(v, ()):
            if w not in nodes: continue
            if w not in idx:
                strong(w); low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], idx[w])
        if low[v] == idx[v]:
            comp = set()
            while True:
                w = st.pop(); on.discard(w); comp.add(w)
                if w == v: break
            res.append(comp)
    for v in nodes:
        if v not in idx: strong(v)
    return res

def depth_of(nodes, edges, d, out):
    for comp in sccs(nodes, edges):
        if len(comp) == 1:
            v = next(iter(comp))
            if v not in edges.get(v, ()):
                continue
        for v in comp: out[v] = d
        # headers: entered from outside; drop edges into them from inside, recurse
        heads = {w for v in nodes - comp for w in edges.get(v, ()) if w in comp} or {min(comp)}
        inner = {v: [w for w in edges.get(v, ()) if w not in heads] for v in comp}
        depth_of(comp, inner, d + 1, out)

rows = []
seen = set()
for name, mod in list(sys.modules.items()):
    if not name.startswith("numbanorm._cpu"): continue
    cands = []
    for attr, obj in vars(mod).items():
        if isinstance(obj, (tuple, list)):
            cands += [(f"{attr}[{i}]", o) for i, o in enumerate(obj)]
        elif isinstance(obj, dict):
            cands += [(f"{attr}[{k!r}]", o) for k, o in obj.items()]
        else:
            cands.append((attr, obj))
    for attr, obj in cands:
        if not isinstance(obj, CPUDispatcher) or id(obj) in seen: continue
        seen.add(id(obj))
        for sig, cres in obj.overloads.items():
            try: ir = cres.library.get_llvm_str()
            except Exception: continue
            for fname, body in functions(ir):
                if "NRT_" in fname or not fname.startswith("_ZN"): continue
                bl = blocks(body)
                edges = {b: succs(l) for b, l in bl.items()}
                depth = {}
                depth_of(set(bl), edges, 1, depth)
                if not depth: continue
                maxd = max(depth.values())
                hits = {}
                for b, l in bl.items():
                    n = sum(1 for ln in l if re.search(r"call void @NRT_(incref|decref)", ln))
                    if n and b in depth:
                        hits[depth[b]] = hits.get(depth[b], 0) + n
                if hits:
                    rows.append((max(hits), maxd, f"{name}.{attr}", fname[:60], hits, str(sig)[:70]))
rows.sort(key=lambda r: (r[0] - r[1], r[0]), reverse=True)
for r in rows:
    print(f"deepest-NRT-depth {r[0]} / loop depth {r[1]}  {r[2]}  {r[4]}  {r[5]}")
