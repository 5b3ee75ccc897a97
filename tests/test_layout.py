"""The house rule of DESIGN §2: imports flow one way between the four packages; none imports the toy world."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# What each library package may import of the project's own top-level packages.
ALLOWED = {
    "pair_datasets": set(),
    "stylegan_bridge": {"pair_datasets"},
    "sliders": {"pair_datasets"},
    "transfer": {"pair_datasets", "stylegan_bridge", "sliders"},
}
PROJECT = {*ALLOWED, "toyworld", "benchmarks"}
# The command line's front door resolves the `toy` names and registers the toy world's commands.
FRONT_DOOR = {"transfer/cli.py", "transfer/commands/aliases.py"}


def imported_packages(path: Path) -> set[str]:
    """Top-level project packages that a file imports, anywhere in it (lazy imports included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names & PROJECT


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_flow_one_way(package):
    wrong = []
    for path in sorted((ROOT / package).rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        allowed = ALLOWED[package] | {package} | ({"toyworld"} if relative in FRONT_DOOR else set())
        wrong += [f"{relative} imports {name}" for name in sorted(imported_packages(path) - allowed)]
    assert not wrong, "\n".join(wrong)


def test_the_front_door_lists_toy_world_commands_by_name_only():
    # The CLI registers the toy world's commands through importlib, so importing transfer stays toy-free.
    assert "toyworld" not in imported_packages(ROOT / "transfer/cli.py")


def _module_imports() -> dict[str, set[str]]:
    """Each project module and the project modules it imports, anywhere in it (lazy imports included)."""
    files = {}
    for package in PROJECT:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            files[name] = path
    graph = {}
    for name, path in files.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets.add(node.module)
                targets.update(f"{node.module}.{alias.name}" for alias in node.names)
        graph[name] = (targets & set(files)) - {name}
    return graph


def test_no_import_cycles():
    graph = _module_imports()
    done: set[str] = set()

    def cycle_from(start: str, path: list[str]) -> list[str] | None:
        for target in sorted(graph[start]):
            if target in path:
                return path[path.index(target) :] + [target]
            if target not in done:
                found = cycle_from(target, path + [target])
                if found:
                    return found
        done.add(start)
        return None

    for module in sorted(graph):
        cycle = None if module in done else cycle_from(module, [module])
        assert cycle is None, "import cycle: " + " -> ".join(cycle)
