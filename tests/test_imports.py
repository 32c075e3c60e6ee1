"""The package's import graph, read statically: no import circle, and the layers only import down.

Every ``import`` / ``from ... import`` in ``numbanorm/**/*.py`` counts, those inside
functions included (they run on first call, and a circle through them is still a
circle); relative imports are resolved against the importing module's package, and
``from pkg import name`` counts as an import of ``pkg.name`` when that is a module.
``importlib.import_module`` calls with computed names (the dispatch layer's kernel and
Dask-builder lookups) are not imports here: they are the downward calls the layers make.
"""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "numbanorm"


def module_names(root):
    """{dotted module name: path} of every .py file under the package directory ``root``."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _package_of(name, path):
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def imports_of(name, path, modules):
    """The modules of the package that module ``name`` imports anywhere in its source."""
    pkg = _package_of(name, path)
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in modules else mod for a in node.names]
        else:
            continue
        for t in targets:
            # importing a.b.c runs the packages a.b and a first: count those not already
            # being imported (ancestors of the importer) as imports too
            parts = t.split(".")
            for i in range(len(parts), 0, -1):
                m = ".".join(parts[:i])
                if m in modules and m != name and not (i < len(parts) and name.startswith(m + ".")):
                    found.add(m)
    return found


def import_graph(root):
    modules = module_names(root)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def find_cycle(graph):
    """One import circle as a list [m0, m1, ..., m0], or None."""
    state = {}
    stack = []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == "open":
                return stack[stack.index(n):] + [n]
            if n not in state:
                cycle = visit(n)
                if cycle:
                    return cycle
        stack.pop()
        state[m] = "done"
        return None

    for m in sorted(graph):
        if m not in state:
            cycle = visit(m)
            if cycle:
                return cycle
    return None


def reachable(graph, start):
    seen, todo = set(), [start]
    while todo:
        for n in graph.get(todo.pop(), ()):
            if n not in seen:
                seen.add(n)
                todo.append(n)
    return seen


@pytest.fixture(scope="module")
def graph():
    return import_graph(ROOT)


def test_no_import_circle(graph):
    assert len(graph) > 50  # the walk really saw the package
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_ops_never_import_dask(graph):
    for name, deps in graph.items():
        if name.startswith("numbanorm._ops."):
            bad = sorted(d for d in reachable(graph, name) if d.startswith("numbanorm._dask"))
            assert not bad, f"{name} imports {bad}"


def test_ops_have_no_dask_branches():
    """Dask is chosen by the dispatch layer: no ``dev.is_dask``-style test in the public ops."""
    for path in sorted((ROOT / "_ops").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute):
                assert "dask" not in node.attr.lower(), f"{path.name}: .{node.attr}"
            if isinstance(node, ast.Name):
                assert "dask" not in node.id.lower(), f"{path.name}: {node.id}"


def test_dask_builders_and_stats_only_import_down(graph):
    """The Dask builders and the shared statistics never climb back into the public ops,
    the package's public namespace or the estimators (``_ops._common`` is a leaf helper)."""
    above = ("numbanorm._ops.", "numbanorm.modules", "numbanorm.scalers", "numbanorm._scaler")
    for name in graph:
        if name.startswith("numbanorm._dask") or name == "numbanorm._stats_host":
            deps = reachable(graph, name)
            bad = sorted(d for d in deps if d == "numbanorm" or (d.startswith(above) and d != "numbanorm._ops._common"))
            assert not bad, f"{name} imports {bad}"


def test_walker_sees_relative_and_function_level_imports(tmp_path):
    """The walker catches a circle closed by a function-level relative import (so the tests
    above can fail), resolves ``from .. import x`` and ``from .pkg import mod``."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from . import a\n")
    (pkg / "a.py").write_text("from .sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("import numpy\n\ndef f():\n    from .. import c\n    return c\n")
    (pkg / "c.py").write_text("X = 1\n")
    g = import_graph(pkg)
    assert g["pkg"] == {"pkg.a"}
    assert g["pkg.a"] == {"pkg.sub", "pkg.sub.b"}
    assert g["pkg.sub.b"] == {"pkg.c"}
    assert find_cycle(g) is None
    (pkg / "c.py").write_text("def g():\n    from .a import b\n")  # closes c -> a -> sub.b -> c
    cycle = find_cycle(import_graph(pkg))
    assert cycle is not None and cycle[0] == cycle[-1] and set(cycle) == {"pkg.a", "pkg.sub.b", "pkg.c"}


def test_every_dask_handoff_has_a_builder():
    """Each ``dev.build("<op>", <compute function>, ...)`` in ``_ops/<mod>.py`` passes one of that
    module's own functions (its compute function, never the public op) and has its builder:
    a function ``<op>`` in ``_dask/<mod>.py`` taking the compute function first (the rule
    ``_dispatch._builder`` follows)."""
    handoffs = 0
    for path in sorted((ROOT / "_ops").glob("*.py")):
        tree = ast.parse(path.read_text())
        own = {d.name for d in tree.body if isinstance(d, ast.FunctionDef)}
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "build"):
                continue
            first, compute = node.args[0], node.args[1]
            assert isinstance(first, ast.Constant) and isinstance(first.value, str), (
                f"{path.name}: dev.build() must name its builder with a string")
            name = first.value
            assert isinstance(compute, ast.Name) and compute.id in own and compute.id.startswith("_compute"), (
                f"{path.name}: dev.build({name!r}, ...) must pass one of the module's _compute functions")
            target = ROOT / "_dask" / path.name
            assert target.exists(), f"{path.name}: no _dask/{path.name} for {name}"
            defs = {d.name: d for d in ast.parse(target.read_text()).body if isinstance(d, ast.FunctionDef)}
            assert name in defs, f"_dask/{path.name} has no builder {name}()"
            assert defs[name].args.args[0].arg == "compute", f"_dask/{path.name}:{name}() must take 'compute' first"
            handoffs += 1
    assert handoffs >= 19
