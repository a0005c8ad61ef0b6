"""The package's layers: imports run down, never up, and no two modules import each other.

The import graph of ``src/proxyseg`` is read with ``ast`` (every ``import`` and ``from ... import`` of a
proxyseg module, at module level or inside a function: a lazy import is still a dependency), a package
standing for its ``__init__.py``. A module may import modules of its own layer or of a layer below it.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = "proxyseg"

#: The layers, lowest first: the only declaration of the order. A name is a subpackage or a top-level
#: module of proxyseg; ``proxyseg`` itself (its ``__init__``) sits with core. ``settings`` (the config
#: sections' classes, built on core's settings machinery) has a layer of its own just above core: core
#: must not import it, everything above may. ``dictionary`` sits above ``teacher``, as in the workflow: its
#: material can be the teacher's decisions (``nmf.material: teacher``, read through ``teacher.dumpfile``).
LAYERS = (
    ("proxyseg", "core"),
    ("settings",),
    ("dsp", "nn"),
    ("corpora", "features", "training"),
    ("teacher",),
    ("dictionary",),
    ("proxy",),
    ("evaluate", "explain"),
    ("segmenter",),
    ("plan", "cli"),
)


def _modules(src: Path) -> dict[str, Path]:
    """Dotted name -> file of every module (a package is named by its ``__init__.py``)."""
    out = {}
    for path in sorted((src / ROOT).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of ``name`` that is a module (``a.b.func`` -> ``a.b``), None outside proxyseg."""
    parts = name.split(".")
    while parts:
        if ".".join(parts) in modules:
            return ".".join(parts)
        parts.pop()
    return None


def import_graph() -> dict[str, set[str]]:
    """Module -> the proxyseg modules it imports."""
    return _graph(SRC)


@functools.cache
def _graph(src: Path) -> dict[str, set[str]]:
    modules = _modules(src)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                # ``from a import b``: b is the module a.b when there is one, else a name in a
                targets = [f"{base}.{a.name}" for a in node.names]
            for t in targets:
                dep = _resolve(t, modules) if t.split(".")[0] == ROOT else None
                if dep is not None and dep != mod:
                    graph[mod].add(dep)
    return graph


def layer(module: str) -> int:
    parts = module.split(".")
    name = ROOT if len(parts) == 1 else parts[1]
    for i, names in enumerate(LAYERS):
        if name in names:
            return i
    raise AssertionError(f"{module}: its layer is not declared in tests/test_layers.py LAYERS")


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out = []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def test_every_module_has_a_layer():
    for module in import_graph():
        layer(module)


def test_no_import_cycle():
    graph = import_graph()
    cycles = _cycles(graph)
    described = ["; ".join(f"{a} -> {b}" for a in comp for b in sorted(graph[a] & set(comp))) for comp in cycles]
    assert not cycles, "modules that import each other (directly or round a longer cycle):\n" + "\n".join(described)


def test_no_import_runs_up_the_layers():
    graph = import_graph()
    up = sorted(f"{a} -> {b}" for a, deps in graph.items() for b in deps if layer(b) > layer(a))
    assert not up, "imports that run up the layers (tests/test_layers.py LAYERS):\n" + "\n".join(up)


def test_the_graph_sees_lazy_and_relative_imports(tmp_path, monkeypatch):
    """The reader itself: a function-level import, a relative one and ``from package import module``."""
    pkg = tmp_path / ROOT
    (pkg / "core").mkdir(parents=True)
    (pkg / "teacher").mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "core" / "__init__.py").write_text("")
    (pkg / "core" / "a.py").write_text("def f():\n    from proxyseg.teacher import b\n")
    (pkg / "core" / "c.py").write_text("from .a import f\nfrom . import a\n")
    (pkg / "teacher" / "__init__.py").write_text("")
    (pkg / "teacher" / "b.py").write_text("import proxyseg.core.c\nfrom proxyseg.core.a import f\n")
    monkeypatch.setitem(globals(), "SRC", tmp_path)
    graph = import_graph()
    assert graph["proxyseg.core.a"] == {"proxyseg.teacher.b"}
    assert graph["proxyseg.core.c"] == {"proxyseg.core.a"}
    assert graph["proxyseg.teacher.b"] == {"proxyseg.core.c", "proxyseg.core.a"}
    assert _cycles(graph) == [["proxyseg.core.a", "proxyseg.core.c", "proxyseg.teacher.b"]]
