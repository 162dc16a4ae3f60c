"""The shape of bench/: a one-way import graph, rendering apart from measuring, no private imports."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from conftest import REPO, cli_env

BENCH = REPO / "bench"
# files in, markdown / plots / CSV out: never torch, not even lazily inside a function
# (every bench/*_report.py is a rendering module, so a new one is covered without being listed here)
RENDERING = tuple(sorted({"report", "compare", "stats", "paired"} | {p.stem for p in BENCH.glob("*_report.py")}))


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, imported names) for every import statement in a file, at any depth."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.append((node.module, [alias.name for alias in node.names]))
    return out


def _bench_graph() -> dict[str, set[str]]:
    graph = {}
    for path in BENCH.glob("*.py"):
        deps = set()
        for module, names in _imports(path):
            if module == "bench":
                deps |= set(names)
            elif module.startswith("bench."):
                deps.add(module.split(".")[1])
        graph[path.stem] = deps - {path.stem}
    return graph


def test_the_report_path_never_loads_torch():
    assert {"arms_report", "variance_report", "stats_report"} <= set(RENDERING)
    code = (f"import sys, {', '.join('bench.' + name for name in RENDERING)}; "
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(), cwd=REPO)
    assert proc.returncode == 0, proc.stderr


def test_rendering_modules_do_not_import_torch_or_a_measuring_module_even_lazily():
    measuring = {"train", "models", "speed", "attention", "tune", "rerank", "run", "baseline"}
    for name in RENDERING:
        for module, names in _imports(BENCH / f"{name}.py"):
            assert module.split(".")[0] != "torch", f"bench/{name}.py imports {module}"
            used = {module.split(".")[1]} if module.startswith("bench.") else set(names) if module == "bench" else set()
            assert not used & measuring, f"bench/{name}.py imports {used & measuring}"


def test_no_module_imports_another_modules_private_names():
    for path in BENCH.glob("*.py"):
        for module, names in _imports(path):
            if module.startswith("bench"):
                private = [n for n in names if n.startswith("_")]
                assert not private, f"bench/{path.name} imports private {private} from {module}"


def test_the_import_graph_is_acyclic():
    graph = _bench_graph()
    state: dict[str, str] = {}

    def visit(node: str, trail: list[str]) -> None:
        if state.get(node) == "done":
            return
        assert state.get(node) != "open", "import cycle: " + " → ".join(trail + [node])
        state[node] = "open"
        for dep in sorted(graph.get(node, ())):
            visit(dep, trail + [node])
        state[node] = "done"

    for node in sorted(graph):
        visit(node, [])
    # the base layer imports nothing above it
    assert graph["config"] == set() and graph["results"] <= {"config"} and graph["cli"] <= {"config"}
