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


def module_imports() -> dict[str, set[str]]:
    """Per module of the package (dotted name; a package is its `__init__`), the package's modules it imports:
    `from chainprune.a import b` names module `chainprune.a.b` when that is a module, else `chainprune.a`."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ("chainprune",) + path.relative_to(PACKAGE).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names if alias.name in modules}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in modules:
                subs = {f"{node.module}.{alias.name}" for alias in node.names} & set(modules)
                found |= subs or {node.module}
                if len(subs) < len(node.names):
                    found.add(node.module)
        graph[name] = found - {name}
    return graph


def test_no_module_imports_one_that_imports_it_back():
    """No import loops, through package `__init__`s included (re-exports go down, never back up)."""
    graph = module_imports()
    state: dict[str, int] = {}
    loops = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for other in sorted(graph[module]):
            if state.get(other) == 1:
                loops.append(path[path.index(other):] + [other] if other in path else [module, other])
            elif other not in state:
                visit(other, path + [other])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert loops == []
