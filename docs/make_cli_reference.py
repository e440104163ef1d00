"""Write docs/cli.md, the per-command option reference, from the CLI itself (names, defaults, help texts).

    PYTHONPATH=src python docs/make_cli_reference.py > docs/cli.md

tests/test_option_tables.py checks every option table in README.md and docs/ against the CLI, so a changed
option fails the tests until this is rerun (or the README table is edited).
"""

from __future__ import annotations

import enum
from pathlib import PurePath

import typer.main

from chainprune.cli import app

HEADER = """# Command reference

Every option of every `chainprune` command, written from the CLI by `docs/make_cli_reference.py` and checked
against it by `tests/test_option_tables.py`. `--help` on any command says the same. A default of `—` means the
option is off unless given; its meaning says what happens then. What the commands do, step by step, is in the
other pages of [docs/](README.md).
"""


def default_cell(param) -> str:
    if param.required:
        return "required"
    if getattr(param, "is_flag", False) and param.secondary_opts:
        return f"`{param.opts[0] if param.default else param.secondary_opts[0]}`"
    if getattr(param, "is_flag", False):
        return "on" if param.default else "off"
    if param.default is None:
        return "—"
    value = param.default
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, PurePath):
        value = str(value)
    return f"`{value}`"


def option_cell(param) -> str:
    names = [*param.opts, *param.secondary_opts]
    return ", ".join(f"`{n}`" for n in names) + (" (repeatable)" if getattr(param, "multiple", False) else "")


def usage(path: list[str], command) -> str:
    parts = ["chainprune", *path]
    for param in command.params:
        if type(param).__name__.endswith("Argument"):
            name = (param.metavar or param.name.upper())
            parts.append(f"{name} ..." if param.nargs == -1 else name)
        elif param.required:
            parts.append(f"{param.opts[0]} {param.name.upper()}")
    return " ".join(parts) + " [options]"


def commands(group, path=()):
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from commands(command, (*path, name))
        else:
            yield [*path, name], command


def main() -> None:
    print(HEADER)
    for path, command in commands(typer.main.get_command(app)):
        name = " ".join(path)
        print(f"## `chainprune {name}`\n")
        print(f"```\n{usage(path, command)}\n```\n")
        doc = (command.help or "").strip().split("\n\n")[0].replace("\n", " ")
        if doc:
            print(doc + "\n")
        options = [p for p in command.params if type(p).__name__.endswith("Option")]
        if not options:
            continue
        print(f"Options of `chainprune {name}`:\n")
        print("| option | default | meaning |\n|---|---|---|")
        for param in options:
            meaning = " ".join((param.help or "").split()).replace("|", "\\|")
            print(f"| {option_cell(param)} | {default_cell(param)} | {meaning} |")
        print()


if __name__ == "__main__":
    main()
