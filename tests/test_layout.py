"""The layout rules of the code base, checked on the import graph (README "Design in one screen").

- ``stages/`` and ``classifiers/`` import only datapipe's core: never the command line
  (``datapipe.cli``, ``datapipe.commands``) and never each other.
- datapipe's core never imports ``stages/`` or ``classifiers/`` (it reaches them through the
  registry, ``datapipe.stage._load_all``); only the command line may. The engine names the
  two packages (not their modules) to ship them to cluster workers.
- Only ``datapipe/ray_backend.py`` imports Ray.
- No import cycles between modules, lazy (function-level) imports included.

The graph is read from the source with ``ast`` (nothing is imported), so a test fixture can
check that a planted violation is caught.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("datapipe", "stages", "classifiers")


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def import_graph(root: Path = REPO) -> dict[str, set[str]]:
    """``{module: {imported module, ...}}`` for every module of the three packages under ``root``;
    ``from pkg import name`` points at ``pkg.name`` where that is a module, else at ``pkg``."""
    files = {(_module_name(p, root)): p for pkg in PACKAGES for p in (root / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for mod, path in files.items():
        is_pkg = path.name == "__init__.py"
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                edges.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                names = [f"{target}.{a.name}" for a in node.names]
                subs = [n for n in names if n in files]
                edges.update(subs)
                if len(subs) < len(names):
                    edges.add(target)
        graph[mod] = {e for e in edges if e != mod}
    return graph


def _internal(graph: dict[str, set[str]], name: str) -> str | None:
    """The module of ``graph`` that an import of ``name`` executes last (its deepest known prefix)."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        cand = ".".join(parts[:i])
        if cand in graph:
            return cand
    return None


def _top(name: str) -> str:
    return name.split(".")[0]


def _is_cli(name: str) -> bool:
    return name == "datapipe.cli" or name == "datapipe.commands" or name.startswith("datapipe.commands.")


#: the engine ships the packages themselves (not their internals) to cluster workers
#: (``runtime_env.py_modules``); the registry imports them with importlib
_SHIPS_CODE = {("datapipe.ray_backend", "stages"), ("datapipe.ray_backend", "classifiers")}


def violations(graph: dict[str, set[str]]) -> list[str]:
    out = []
    for mod, edges in sorted(graph.items()):
        for e in sorted(edges):
            top = _top(e)
            if top == "ray" and mod != "datapipe.ray_backend":
                out.append(f"{mod} imports ray (only datapipe.ray_backend may)")
            if _top(mod) in ("stages", "classifiers"):
                if _is_cli(e):
                    out.append(f"{mod} imports the command line ({e})")
                other = "classifiers" if _top(mod) == "stages" else "stages"
                if top == other:
                    out.append(f"{mod} imports {e} ({_top(mod)}/ must not import {other}/)")
            elif (_top(mod) == "datapipe" and not _is_cli(mod) and top in ("stages", "classifiers")
                  and (mod, e) not in _SHIPS_CODE):
                out.append(f"core module {mod} imports {e} (use the registry)")
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan). An edge to a package
    counts as an edge to its ``__init__``; a submodule importing its own package's ``__init__``
    for a name is a cycle when the ``__init__`` imports it back."""
    edges = {m: {t for t in (_internal(graph, e) for e in es) if t and t != m} for m, es in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_layout_rules_hold():
    bad = violations(import_graph())
    assert not bad, "layout rules broken:\n" + "\n".join(bad)


def test_no_import_cycles():
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, src in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(src)
    for pkg in PACKAGES:
        (tmp_path / pkg).mkdir(exist_ok=True)
        (tmp_path / pkg / "__init__.py").touch()
    return tmp_path


@pytest.mark.parametrize("files, expect", [
    ({"datapipe/report.py": "from stages.perplexity import X\n", "stages/perplexity.py": "X = 1\n"},
     "core module datapipe.report imports stages.perplexity"),
    ({"stages/a.py": "def f():\n    from datapipe.commands import mix\n",
      "datapipe/commands/__init__.py": "", "datapipe/commands/mix.py": ""},
     "stages.a imports the command line (datapipe.commands.mix)"),
    ({"classifiers/apply.py": "import stages.extract\n", "stages/extract.py": ""},
     "classifiers.apply imports stages.extract"),
    ({"stages/x.py": "import ray\n"}, "stages.x imports ray"),
    ({"datapipe/ray_backend.py": "import stages\nfrom stages.extract import E\n", "stages/extract.py": ""},
     "core module datapipe.ray_backend imports stages.extract"),
])
def test_planted_violations_are_caught(tmp_path, files, expect):
    bad = violations(import_graph(_tree(tmp_path, files)))
    assert any(b.startswith(expect) for b in bad), bad


def test_planted_cycle_is_caught(tmp_path):
    root = _tree(tmp_path, {
        "datapipe/io/__init__.py": "from .warc import read\n",
        "datapipe/io/warc.py": "def read():\n    from datapipe.io import helper\n",
        "stages/a.py": "from . import b\n", "stages/b.py": "x = 1\n",
    })
    found = cycles(import_graph(root))
    assert found == [["datapipe.io", "datapipe.io.warc"]], found


def test_commands_may_import_stages(tmp_path):
    root = _tree(tmp_path, {"datapipe/commands/__init__.py": "",
                            "datapipe/commands/mix.py": "from stages.tokenize import T\n",
                            "stages/tokenize.py": "T = 1\n"})
    assert violations(import_graph(root)) == []
