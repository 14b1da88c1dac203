"""The package's shape: layers, no import cycles, small files and classes (docs/architecture.md).

Layers, low to high: base (errors, codes, inputs, kinds, options, report, train, zoo, data) <
modelmap, runlog < measure < diagnose, lrfind < fix < present, lab, demo, integrations < cli.
A module may import its own layer or lower ones, never a higher one; every import counts,
also one inside a function.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "graddoctor"

LAYERS = {
    "errors": 0, "codes": 0, "inputs": 0, "kinds": 0, "options": 0, "report": 0, "stack": 0, "train": 0, "zoo": 0,
    "data": 0,
    "modelmap": 1, "runlog": 1,
    "measure": 2,
    "diagnose": 3, "lrfind": 3,
    "fix": 4,
    "present": 5, "lab": 5, "demo": 5, "integrations": 5,
    "cli": 6, "__main__": 6,
}
MAX_FILE_LINES = 400
MAX_CLASS_LINES = 250


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in SRC.rglob("*.py")}


def _imports(path: Path, name: str) -> set[str]:
    """graddoctor modules imported anywhere in the file (absolute or relative, any depth)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("graddoctor")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.startswith("graddoctor"):
                found.add(mod)
                found |= {f"{mod}.{a.name}" for a in node.names}
    return found


def _resolve(imported: str, modules: dict[str, Path]) -> str | None:
    while imported and imported not in modules:
        imported = imported.rpartition(".")[0]
    return imported or None


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps = {_resolve(i, modules) for i in _imports(path, name)}
        graph[name] = {d for d in deps if d and d != name and d != "graddoctor"}
    return graph


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


def test_every_module_has_a_layer():
    unplaced = sorted(m for m in _modules() if m != "graddoctor" and _layer(m) is None)
    assert unplaced == [], f"add these to LAYERS (and docs/architecture.md): {unplaced}"


def test_no_module_imports_a_higher_layer():
    bad = sorted(f"{m} ({_layer(m)}) -> {d} ({_layer(d)})" for m, deps in _graph().items()
                 for d in deps if m != "graddoctor" and (_layer(d) or 0) > (_layer(m) or 0))
    assert bad == []


def test_no_import_cycles():
    graph = _graph()
    # a package imports its own submodules in __init__ to re-export them; that is not a cycle
    def edges(m: str) -> set[str]:
        return {d for d in graph[m] if not d.startswith(m + ".")}
    cycles, state = [], {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for d in sorted(edges(m)):
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d):] + [d] if d in stack else [m, d])
            elif d not in state:
                visit(d, stack + [d])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert cycles == []


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_files_and_classes_are_small(path):
    text = path.read_text()
    lines = len(text.splitlines())
    assert lines <= MAX_FILE_LINES, f"{path.name}: {lines} lines > {MAX_FILE_LINES}: split it by concept"
    big = [(n.name, n.end_lineno - n.lineno + 1) for n in ast.walk(ast.parse(text))
           if isinstance(n, ast.ClassDef) and n.end_lineno - n.lineno + 1 > MAX_CLASS_LINES]
    assert big == [], f"classes over {MAX_CLASS_LINES} lines: {big}"


def test_no_module_shares_its_name_with_a_public_function():
    import graddoctor as gd

    clashes = [n for n in ("check", "watch", "repair", "lr_find")
               if (SRC / f"{n}.py").exists() or (SRC / n).is_dir()]
    assert clashes == [] and callable(gd.check) and callable(gd.watch) and callable(gd.repair)
