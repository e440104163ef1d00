"""Imports go one way: cli > pipelines > report, core > the lower floor. Read from the source, imports inside
functions included."""

import ast
from pathlib import Path

import chainprune

PACKAGE = Path(chainprune.__file__).parent
FLOORS = {
    "cli": 4,
    "pipelines": 3,
    "report": 2,
    **dict.fromkeys(["chains", "scoring", "pruning", "ranking", "analysis", "generation", "training", "tasks", "units"], 2),
    **dict.fromkeys(["models", "data", "types", "keep", "run", "choices", "trace_steps"], 1),
}
CORE = {name for name, floor in FLOORS.items() if floor == 2 and name != "report"}


def imports_by_part() -> dict[str, set[str]]:
    """Per top-level part of the package (its module or folder), the parts its modules import."""
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts == ("__init__",):
            continue  # the package's own front door re-exports from every floor
        names = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module)
        found.setdefault(parts[0], set()).update(n.split(".")[1] for n in names if n.startswith("chainprune."))
    return found


def test_every_part_has_a_floor():
    assert set(imports_by_part()) <= set(FLOORS)


def test_no_part_imports_a_higher_floor():
    upward = {
        (part, other)
        for part, imported in imports_by_part().items()
        for other in imported
        if FLOORS.get(other, 0) > FLOORS[part]
    }
    assert upward == set()


def test_report_and_core_import_nothing_from_pipelines_or_cli_and_not_each_other():
    found = imports_by_part()
    assert found["report"] & ({"pipelines", "cli"} | CORE) == set()
    for part in CORE:
        assert found.get(part, set()) & {"pipelines", "cli", "report"} == set(), part
