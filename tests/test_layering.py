"""The package tree is the pipeline: a module imports only from its own layer or a lower one (lazy imports inside
functions included), and no two modules import each other, directly or round a loop."""
from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "vidkit"

LAYERS = [  # lowest first; a module's layer is its first dotted part after `vidkit`
    {"__init__", "errors", "files", "choices", "config", "rundir", "formats", "metrics"},
    {"data"},
    {"models"},
    {"engine"},
    {"analysis"},
    {"flows"},
    {"kaggle"},
    {"cli", "app", "demo", "spot_demo", "__main__"},
]

ALLOWED_UP = {  # (importer, imported): why this one import runs up the pipeline
}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    return next(i for i, names in enumerate(LAYERS) if top in names)


def imports_of(path: Path, module: str) -> set[str]:
    """Every vidkit module `path` imports, at the top or inside a function."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}  # `from vidkit.data import folds` names a module
    return {m for m in found if m == "vidkit" or m.startswith("vidkit.")}


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in SRC.rglob("*.py")}
    return {m: {i for i in imports_of(p, m) if i in paths and i != m} for m, p in paths.items()}


def test_no_import_runs_up_the_pipeline():
    graph = import_graph()
    up = sorted((m, i) for m, deps in graph.items() for i in deps
                if layer_of(i) > layer_of(m))
    assert [pair for pair in up if pair not in ALLOWED_UP] == []


def test_every_allowed_exception_is_still_needed():
    graph = import_graph()
    assert [pair for pair in ALLOWED_UP if pair[1] not in graph.get(pair[0], set())] == []


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle (a list of modules, the first repeated at the end), or [] when there is none."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state and (cycle := visit(d)):
                return cycle
        state[m] = 2
        stack.pop()
        return []

    for m in sorted(graph):
        if m not in state and (cycle := visit(m)):
            return cycle
    return []


def package_edges(graph):
    """A package's __init__ re-exporting its modules is not a cycle with them: drop module -> own package."""
    return {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in graph.items()}


def test_no_import_cycle():
    assert find_cycle(package_edges(import_graph())) == []


def test_the_walk_sees_lazy_imports_and_cycles():
    cyc = {"a": {"b"}, "b": {"c"}, "c": {"a"}}
    assert find_cycle(cyc) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) == []
    cfg = SRC / "cli.py"
    assert "vidkit.flows.cv" in imports_of(cfg, "vidkit.cli")  # imported inside a verb's main()
