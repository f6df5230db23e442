"""The layout's rules (docs/architecture.md), checked so they stay true as the code grows."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "miyabi_ctl"
MAX_LINES = 450  # "a module per idea, none over ~400 lines"


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """miyabi_ctl modules ``path`` imports, inside functions too: a lazy import hides a circle
    from the import graph, it does not remove it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("miyabi_ctl"):
            if node.module == "miyabi_ctl":
                found.update(f"miyabi_ctl.{a.name}" for a in node.names)
            else:
                found.add(node.module)
    return found


def test_no_import_cycles() -> None:
    graph = {_module(p): _imports(p) for p in PACKAGE.rglob("*.py")}
    modules = set(graph)
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        for nxt in sorted(graph.get(node, ())):
            if nxt not in modules:
                continue
            if nxt in path:
                cycles.append([*path[path.index(nxt):], nxt])
            elif len(path) < 30:
                visit(nxt, [*path, nxt])

    for start in sorted(modules):
        visit(start, [start])
    assert cycles == []


def test_modules_stay_small() -> None:
    sizes = {str(p.relative_to(PACKAGE)): len(p.read_text().splitlines())
             for p in PACKAGE.rglob("*.py")}
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}


def test_every_remote_script_is_a_file_read_by_a_module_beside_it() -> None:
    """No shell program hides in a Python string; each .sh is named by a module in its folder."""
    for script in PACKAGE.rglob("*.sh"):
        if script.name == "lib.sh":
            continue
        neighbours = "".join(p.read_text() for p in script.parent.glob("*.py"))
        assert f'"{script.name}"' in neighbours, f"{script} is not run by a module beside it"
    for module in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                lines = node.value.splitlines() if node.value.count("\n") >= 2 else []
                shell = sum(line.strip() in ("fi", "done", "esac", "then", "do") for line in lines)
                assert shell == 0, f"{module}:{node.lineno}: a shell program in a Python string"


def test_the_library_never_imports_the_cli() -> None:
    for path in PACKAGE.rglob("*.py"):
        if "cli" in path.relative_to(PACKAGE).parts or path.name == "__main__.py":
            continue
        text = path.read_text()
        assert "import typer" not in text and "miyabi_ctl.cli" not in text, path
