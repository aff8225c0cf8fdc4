"""The packages ``registry`` and ``ssl_ext`` import one way: no module imports, directly or
through others, a module that imports it back.

Every ``import`` statement counts, including those inside functions: a lazy import hides a
cycle from the interpreter but not from a reader, who still has to understand both modules
at once. The graph is read from the source with ``ast`` (nothing is imported).
"""
import ast
from pathlib import Path
from typing import Dict, List, Set

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("registry", "ssl_ext")


def module_files() -> Dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def imported_modules(name: str, path: Path, known: Set[str]) -> Set[str]:
    """The package modules that ``name`` imports (``from pkg import mod`` counts as ``pkg.mod``)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in known}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                if submodule in known:
                    found.add(submodule)
                elif source in known:
                    found.add(source)
    found.discard(name)
    return found


def import_graph() -> Dict[str, Set[str]]:
    files = module_files()
    known = set(files)
    return {name: imported_modules(name, path, known) for name, path in files.items()}


def find_cycle(graph: Dict[str, Set[str]]) -> List[str]:
    """One import cycle as [a, b, ..., a], or [] when the graph has none (depth-first search)."""
    state: Dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: List[str] = []

    def visit(node: str) -> List[str]:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return []

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start)
            if cycle:
                return cycle
    return []


def test_the_cycle_finder_finds_a_cycle_and_accepts_a_tree():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def test_the_graph_sees_lazy_and_relative_imports():
    graph = import_graph()
    assert "registry.errors" in graph["registry.discovery"]
    assert "ssl_ext.config.validate" in graph["ssl_ext.config.compose"]  # imported inside a function


def test_registry_and_ssl_ext_have_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert not cycle, "import cycle: " + " -> ".join(cycle)


def imports_of(prefix: str, graph: Dict[str, Set[str]]) -> Dict[str, Set[str]]:
    return {m: targets for m, targets in graph.items() if m == prefix or m.startswith(prefix + ".")}


def test_offline_analysis_imports_no_training_hook():
    """Hooks use the analysis maths (prior_monitor), never the reverse."""
    offending = {m: sorted(t for t in targets if t.startswith("ssl_ext.hooks"))
                 for m, targets in imports_of("ssl_ext.analysis", import_graph()).items()}
    assert {m: t for m, t in offending.items() if t} == {}


def test_evaluation_imports_no_training_engine_module():
    """Evaluation gets data, trunks and optimizers from data/, models/ and engine/optimizers, not from the trainer."""
    training = ("ssl_ext.engine.trainer", "ssl_ext.engine.train_engine", "ssl_ext.engine.builders")
    offending = {m: sorted(t for t in targets if t in training)
                 for m, targets in imports_of("ssl_ext.benchmarks", import_graph()).items()}
    assert {m: t for m, t in offending.items() if t} == {}
