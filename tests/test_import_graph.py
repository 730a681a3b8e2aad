"""The modules of servicelogs import each other without a cycle (deferred imports inside functions
included: a cycle there is one module reaching back into its caller), and the run knows no engine."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module → the servicelogs modules it imports (`from servicelogs import x` names module x when it is one)."""
    modules = {module_name(p): p for p in (SRC / "servicelogs").rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name in modules)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1], base]).strip(".")
                for alias in node.names:
                    target = f"{base}.{alias.name}"
                    edges.add(target if target in modules else base)
        graph[name] = {e for e in edges if e in modules and e != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                found.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_the_graph_is_read_from_the_sources() -> None:
    graph = import_graph()
    assert "servicelogs.run" in graph["servicelogs.engines.local"]
    assert "servicelogs.ledger" in graph["servicelogs.run"]


def test_no_import_cycle_among_servicelogs_modules() -> None:
    assert cycles(import_graph()) == []


@pytest.mark.parametrize("engine_free", ["servicelogs.run", "servicelogs.ledger", "servicelogs.layout"])
def test_the_run_and_the_ledger_import_no_engine_and_no_catalog(engine_free: str) -> None:
    reached = import_graph()[engine_free]
    assert not {m for m in reached if m.startswith(("servicelogs.engines", "servicelogs.catalogs"))}


def test_engines_touch_no_ledger() -> None:
    graph = import_graph()
    engines = [m for m in graph if m.startswith("servicelogs.engines")]
    assert engines and not [m for m in engines if "servicelogs.ledger" in graph[m]]
