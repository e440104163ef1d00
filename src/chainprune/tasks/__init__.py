"""Datasets as tasks: loader, prompt and answer checker per dataset, in a plain registry.

`TASKS` maps a dataset name to its `Task`, from the modules named in `MODULES`; `get_task` fails with the
known names. Each module holds its
dataset's loader, prompt and grader (see `chainprune.tasks.base` for what they share).
"""

from __future__ import annotations

import difflib
from importlib import import_module

from chainprune.tasks.base import Example, Graded, Task, load_examples

MODULES = ("gsm8k", "math500", "mmlu_pro")  # the registry: modules of chainprune.tasks, each defining its TASK
TASKS: dict[str, Task] = {task.name: task for task in (import_module(f"chainprune.tasks.{m}").TASK for m in MODULES)}
ALIASES = {"math": "math500", "math-500": "math500", "mmlu_pro": "mmlu-pro", "mmlupro": "mmlu-pro"}


def get_task(name: str) -> Task:
    key = ALIASES.get(name.lower(), name.lower())
    if key in TASKS:
        return TASKS[key]
    close = difflib.get_close_matches(name, TASKS, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"unknown dataset {name!r}{hint}; known: {', '.join(TASKS)}")


__all__ = ["TASKS", "Example", "Graded", "Task", "get_task", "load_examples"]
