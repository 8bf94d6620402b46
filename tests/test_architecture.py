"""The package's shape: no import cycles (type-only imports included), and the folder table of
docs/architecture.md matches the folders."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pyoco_server

PACKAGE_DIR = Path(pyoco_server.__file__).parent


def _module_names() -> dict[str, Path]:
    names = {}
    for path in PACKAGE_DIR.rglob("*.py"):
        parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package modules ``name`` imports, anywhere in the file (also under TYPE_CHECKING)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            candidates = [target, *(f"{target}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        found.update(c for c in candidates if c in modules and c != name)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return cycles


def test_no_module_imports_itself_back_through_others():
    modules = _module_names()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert graph["pyoco_server.gateway.app"] >= {"pyoco_server.gateway.reconciler"}
    assert _cycles(graph) == []


#: Folders listed one level deep only (their own sub-folders are theirs to organise).
SHALLOW = ("benchmarks", "docs", "examples", "plugins", "scripts", ".ci")


def _tracked_folders(root: Path) -> set[str]:
    """Every folder of the package and of the tests, and every top-level folder, that holds a
    file git tracks."""
    listed = subprocess.run(
        ["git", "ls-files"], cwd=root, capture_output=True, text=True, check=True
    ).stdout.split()
    folders = set()
    for name in listed:
        parts = Path(name).parts[:-1]
        if not parts:
            continue
        if parts[0] in SHALLOW:
            folders.add(parts[0])
        else:
            folders.update("/".join(parts[: depth + 1]) for depth in range(len(parts)))
    return {folder for folder in folders if (root / folder).is_dir()}


def test_gateway_and_worker_rooms_never_import_each_other():
    """What both need lives outside both (e.g. pyoco_server/children/): a gateway must start
    without the worker's modules and a worker without the gateway's."""
    modules = _module_names()
    crossings = [
        (name, target)
        for name, path in modules.items()
        for target in _imports(name, path, modules)
        for own, other in (("gateway", "worker"), ("worker", "gateway"))
        if name.startswith(f"pyoco_server.{own}") and target.startswith(f"pyoco_server.{other}")
    ]
    assert crossings == []


def test_the_where_things_are_table_lists_every_folder(repo_root: Path):
    text = (repo_root / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = text.split("## Where things are", 1)[1].split("\n## ", 1)[0]
    rows = set(re.findall(r"^\| `([^`]+)/` \|", section, flags=re.MULTILINE))
    folders = _tracked_folders(repo_root)
    assert not folders - rows, f"add a row to docs/architecture.md for {sorted(folders - rows)}"
    assert not rows - folders, f"docs/architecture.md lists folders that are gone: {rows - folders}"
