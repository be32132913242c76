"""Structure the issue fixes: imports one way (model -> export -> backends, no cycle in the
runtime core, lazy imports included), and no source file over 400 lines."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "clip_depth_ros"
MAX_LINES = 400


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Core modules ``path`` imports anywhere in its body (function-level imports too)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and getattr(block.test, "id", "") == "TYPE_CHECKING"
                   for stmt in block.body for n in ast.walk(stmt)}
    for node in ast.walk(tree):
        if id(node) in typing_only:  # annotations only: never imported at run time
            continue
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        for target in targets:
            while target and target not in modules:  # a name inside a module -> the module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph(root: Path = CORE, skip: tuple[str, ...] = ("ros",)) -> dict[str, set[str]]:
    """module -> core modules it imports (the ROS adapter excluded: it sits on top)."""
    files = [p for p in root.rglob("*.py")
             if not any(part in skip for part in p.relative_to(root).parts)]
    modules = {_module_name(p) for p in files}
    return {_module_name(p): _imports(p, modules) for p in files}


def _is_package_link(a: str, b: str) -> bool:
    """A package's __init__ importing its own submodule (and back) is not a layering cycle."""
    return b.startswith(a + ".") or a.startswith(b + ".")


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle (module names) or []."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if _is_package_link(node, nxt):
                continue
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return []


def test_runtime_core_has_no_import_cycle():
    assert find_cycle(import_graph()) == []


def test_export_and_backends_import_one_way():
    graph = import_graph()
    assert not any(m.startswith("clip_depth_ros.backends") for m in
                   graph["clip_depth_ros.export_onnx"]), "the exporter imports a backend"
    assert not any(m.startswith(("clip_depth_ros.backends", "clip_depth_ros.export_onnx"))
                   for mod, deps in graph.items() if mod.startswith("clip_depth_ros.model")
                   for m in deps), "the model imports export or backends"
    assert graph["clip_depth_ros.backends.engine_cache"] <= {"clip_depth_ros.atomic_io"}


def test_the_cycle_finder_sees_a_cycle():
    """Control: the finder reports a cycle when there is one (also through lazy imports)."""
    graph = {"a.x": {"a.y"}, "a.y": {"a.z"}, "a.z": {"a.x"}, "a": {"a.x"}}
    assert find_cycle(graph) == ["a.x", "a.y", "a.z", "a.x"]
    lazy = ast.parse("def f():\n    from .y import g\n")
    assert isinstance(lazy.body[0].body[0], ast.ImportFrom)


def test_no_source_file_over_400_lines():
    sources = [p for folder in ("clip_depth_ros", "training", "benchmarks", "test")
               for p in (ROOT / folder).rglob("*.py")]
    long = {str(p.relative_to(ROOT)): n for p in sources
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}
