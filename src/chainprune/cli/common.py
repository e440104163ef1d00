"""What the command modules share: the consoles, the choices of enum options (taken from the layers that define
them, without importing torch), option declarations used by several commands, and the way errors are printed.

Nothing here runs a pipeline; imports of the ML stack happen inside the commands, when one runs.
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from chainprune import choices
from chainprune.tasks import TASKS
from chainprune.types import OBJECTIVES

# Results go to stdout. Piped into a file, rich would lay a table out in 80 columns and cut its numbers to "0.…":
# there, lines as wide as a results table needs.
out_console = Console(width=None if sys.stdout.isatty() else 200)
# Messages name files and records: soft wrap keeps each on one line (greppable, never split mid-path).
err_console = Console(stderr=True, soft_wrap=True)


def choice(name: str, values) -> type[Enum]:
    return Enum(name, {value: value for value in values}, type=str)


Config = TypeVar("Config")


def config_from(cls: type[Config], parameters: dict[str, Any], **given: Any) -> Config:
    """The settings dataclass `cls` from a command's parameters named as its fields (`locals()` at the top of
    the command): an enum choice as its value, a path as a string; `given` for fields whose value is not the
    parameter's as it stands. Fields the command has no parameter for keep their defaults, so a field's default
    is written once, on the dataclass, and a command cannot forget to pass one it offers."""
    names = {f.name for f in dataclasses.fields(cls)}
    values = {name: _plain(value) for name, value in parameters.items() if name in names}
    return cls(**(values | given))


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    return value


Objective = choice("Objective", OBJECTIVES)
EngineName = choice("EngineName", choices.ENGINES)
Dtype = choice("Dtype", ("auto", *choices.DTYPES))
Device = choice("Device", choices.DEVICES)
DatasetName = choice("DatasetName", TASKS)
Backend = choice("Backend", choices.BACKENDS)
BaselineMethod = choice("BaselineMethod", choices.RANKERS)
StoreDtype = choice("StoreDtype", choices.STORE_DTYPES)
SurrogateFeatures = choice("SurrogateFeatures", choices.SURROGATE_FEATURES)


def keep_fractions(values: list[float] | None) -> list[float]:
    for r in values or []:
        if not 0.0 < r <= 1.0:
            raise typer.BadParameter(f"{r} is outside (0, 1]", param_hint="--keep")
    return values


def keep_option(help: str):
    """`--keep/-k`, repeatable, each in (0, 1]."""
    return typer.Option("--keep", "-k", callback=keep_fractions, help=help)


def out_option(help: str):
    return typer.Option("--out", "-o", help=help)


def resume_option(help: str = "Continue an interrupted run: skip ids already in --out."):
    return typer.Option("--resume", help=help)


MODEL_NAMES_HELP = ("'smollm2-135m' (bundled, offline), 'qwen2.5-coder-0.5b'/'-1.5b' (offline after `make models`), "
                    "a .gguf file, a local HF folder or a hub id.")
DATA_FILE_HELP = (
    "Local JSONL/Parquet copy of the ORIGINAL split the --split derives from (GSM8K/MATH: the train file for "
    "train or dev, the test file for test; MMLU-Pro: its test file for all three). Offline; no hub access."
)
HUB_DATASET_HELP = ("Take --split as it is from this hub repo instead; 'paper' = the paper's released splits "
                    "(iamjanvijay/gsm8k, iamjanvijay/openaimath, iamjanvijay/MMLU-Pro).")
SPLIT_HELP = "train, dev or test: the paper's splits (App. B.1), carved from the original with --split-seed; 'all' = the whole --data-file."

DtypeOption = Annotated[Dtype, typer.Option(help="auto = bfloat16 on CUDA, float32 on CPU.")]
DeviceOption = Annotated[Device, typer.Option(help="auto = cuda when available.")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out.")]
Resume = Annotated[bool, resume_option()]
Traces = Annotated[Path, typer.Argument(help="Traces JSONL (from `chainprune prune`).")]
Chains = Annotated[Path, typer.Argument(help="JSONL of chains: {id, question, reasoning, answer[, system]} per line.")]


def written(doc: str) -> str:
    """A docstring as the help text it stands for: the lines of each paragraph joined into one (the source's
    wrapping is not the reader's), blank lines between paragraphs kept, so that rich wraps it to the terminal."""
    paragraphs = inspect.cleandoc(doc).split("\n\n")
    return "\n\n".join(" ".join(line.strip() for line in paragraph.splitlines()) for paragraph in paragraphs)


def add_commands(app: typer.Typer, *commands) -> None:
    """Register commands in this order, each a function (named as typer names it) or a (name, function) pair,
    with its docstring as written help."""
    for command in commands:
        name, function = command if isinstance(command, tuple) else (None, command)
        app.command(name, help=written(function.__doc__))(function)


def fail(message: str, code: int = 2) -> NoReturn:
    """One error line on stderr, then exit (2: unusable input or settings)."""
    err_console.print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(code)


def report_failures(failures, what: str = "record") -> None:
    for failure in failures:
        err_console.print(f"[red]failed[/red] {failure}")
    if failures:
        err_console.print(f"[red]{len(failures)} {what}(s) failed[/red]")


def log_to(console: Console, verbose: bool):
    return (lambda message: console.print(f"[yellow]{message}[/yellow]")) if verbose else None


def bar(console: Console, label: str):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    progress = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TimeRemainingColumn(), console=console)
    task = progress.add_task(label, total=None)
    return progress, lambda done, total: progress.update(task, completed=done, total=total)


def track(items, total, description):
    from rich.progress import track as rich_track

    return rich_track(items, total=total, description=description, console=err_console, transient=True)
