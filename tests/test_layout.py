"""The package layout a maintainer relies on: stages import downwards only, no import circles,
no component found by testing its name, tests laid out like the packages."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from conftest import ROOT

PACKAGES = ("featurize", "heads", "bench", "annotate")
# A stage may import the stages before it, never one after it.
ORDER = {"featurize": 0, "heads": 1, "bench": 2, "annotate": 2}


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def _imports(path: Path, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def test_stages_import_downwards_only() -> None:
    """heads never imports bench or annotate (at any depth, lazy imports included); featurize
    imports no later stage."""
    for name, path in _modules().items():
        stage = name.split(".")[0]
        for imported in _imports(path, top_level_only=False):
            other = imported.split(".")[0]
            if other in ORDER and other != stage:
                assert ORDER[other] < ORDER[stage] or (stage, other) == ("annotate", "bench"), (
                    f"{path.relative_to(ROOT)} imports {imported}: {stage} must not depend on {other}"
                )


def test_no_import_circles() -> None:
    """No circle between modules, counting every import (lazy ones inside functions too) except
    the plugin dispatch of heads.families, whose whole job is to reach the implementations."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        if name == "heads.families":
            continue
        targets = {i for i in _imports(path, top_level_only=False) if i in modules and i != name}
        graph[name] = {t for t in targets if t != "heads.families"}

    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt.startswith(node + ".") or node.startswith(nxt + "."):
                continue  # a package and its own submodules
            if state.get(nxt) == 1:
                circle = stack[stack.index(nxt) :] + [nxt]
                raise AssertionError("import circle: " + " -> ".join(circle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_no_component_is_found_by_testing_its_name() -> None:
    """Traits live in the registries: no module tests an encoder's or a head's name."""
    names = r"(llama|minilm|mpnet|e5|bert|crf|cwi|msb|t15|t17)"
    pattern = re.compile(rf"""(startswith\(["']{names}|==\s*["']{names}["']|["']{names}["']\s*==)""")
    offenders = []
    for path in _modules().values():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if pattern.search(line) and not line.lstrip().startswith("#"):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_tests_follow_the_package_layout() -> None:
    """A test module sits in tests/<package>/ for the package it pins (or at tests/ when it
    spans the packages); helpers stay at tests/."""
    seen: dict[str, Path] = {}
    for path in (ROOT / "tests").rglob("test_*.py"):
        parent = path.parent.relative_to(ROOT / "tests")
        assert str(parent) in (".", *PACKAGES), f"{path}: tests live in tests/<package>/"
        assert path.name not in seen, f"{path} and {seen[path.name]}: test file names must be unique"
        seen[path.name] = path
