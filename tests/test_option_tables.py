"""The option tables of README.md and docs/*.md agree with the CLI: every option of the command is listed under
its own name, and every default written down is the CLI's. Also: README's command summary names every command
with its required options. (So the documentation cannot drift from `--help` again.)"""

from __future__ import annotations

import enum
import re
from pathlib import Path, PurePath

import pytest
import typer.main

from chainprune.cli import app

ROOT = Path(__file__).resolve().parents[1]
TABLE_INTRO = re.compile(r"options of `chainprune ([a-z][a-z ]*?)`", re.IGNORECASE)
OPTION_NAME = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*|-[a-zA-Z])(?![\w-])")
OFF = {"off", "—", "-", ""}


def cli_commands(group=None, path=()):
    group = group or typer.main.get_command(app)
    out = {}
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            out |= cli_commands(command, (*path, name))
        else:
            out[" ".join((*path, name))] = command
    return out


COMMANDS = cli_commands()


def option_tables(path: Path):
    """(command, line number, rows) for each `| option | default | ... |` table introduced by a line
    'Options of `chainprune CMD`'; rows are (line number, option cell, default cell)."""
    lines = path.read_text().splitlines()
    tables = []
    for i, line in enumerate(lines):
        if not re.match(r"\|\s*option\s*\|\s*default\s*\|", line):
            continue
        intro = next((lines[j] for j in range(i - 1, max(-1, i - 4), -1) if lines[j].strip()), "")
        found = TABLE_INTRO.search(intro)
        assert found, f"{path.name}:{i + 1}: an option table needs the line before it to say 'Options of `chainprune CMD`'"
        rows = []
        for k in range(i + 2, len(lines)):
            if not lines[k].startswith("|"):
                break
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", lines[k])[1:-1]]
            rows.append((k + 1, cells[0], cells[1]))
        tables.append((found.group(1), i + 1, rows))
    return tables


def documents():
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def literal(cell: str) -> str:
    ticked = re.findall(r"`([^`]*)`", cell)
    return (ticked[0] if ticked else cell).strip()


def same_value(written: str, value) -> bool:
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, PurePath):
        value = str(value)
    if isinstance(value, bool):
        return written.lower() in (("on", "true") if value else ("off", "false"))
    if isinstance(value, (int, float)):
        try:
            return float(written) == float(value)
        except ValueError:
            return False
    return written == str(value)


def check_default(param, cell: str) -> str | None:
    """What is wrong with the default cell for this click parameter, or None."""
    written = literal(cell)
    if param.required:
        return None if cell.lower().startswith("required") else f"it is required, the table says {cell!r}"
    if getattr(param, "is_flag", False) and param.secondary_opts:
        on = param.opts[0] if param.default else param.secondary_opts[0]
        return None if written == on else f"default is {on}, the table says {cell!r}"
    if getattr(param, "is_flag", False) and not param.default:
        return None if written.lower() in OFF else f"a flag that is off by default, the table says {cell!r}"
    if param.default is None:
        # The CLI fills the default in itself (or leaves the option off): a number written down must be the one
        # its help text gives, so `--help` and the table say the same.
        if re.fullmatch(r"-?[\d.]+", written) and written not in (param.help or ""):
            return f"the table says {written}, but `--help` gives no such default"
        return None
    return None if same_value(written, param.default) else f"default is {param.default!r}, the table says {cell!r}"


TABLES = [(doc, table) for doc in documents() for table in option_tables(doc)]


def test_the_readme_has_option_tables():
    assert any(doc.name == "README.md" for doc, _ in TABLES)
    with_options = {name for name, c in COMMANDS.items() if any(type(p).__name__.endswith("Option") for p in c.params)}
    assert {command for _, (command, _, _) in TABLES} == with_options, "docs/cli.md lists every command's options"


@pytest.mark.parametrize("doc, table", TABLES, ids=[f"{d.name}:{t[1]}:{t[0]}" for d, t in TABLES])
def test_option_table_matches_the_cli(doc, table):
    command_name, line, rows = table
    assert command_name in COMMANDS, f"{doc.name}:{line}: no command `chainprune {command_name}`"
    command = COMMANDS[command_name]
    params = {name: p for p in command.params if type(p).__name__.endswith("Option")
              for name in (*p.opts, *p.secondary_opts)}
    problems, listed = [], set()
    for row_line, option_cell, default_cell in rows:
        names = OPTION_NAME.findall(option_cell)
        known = [n for n in names if n in params]
        if not known:
            problems.append(f"{doc.name}:{row_line}: {option_cell!r} is no option of `chainprune {command_name}`")
            continue
        param = params[known[0]]
        unknown = [n for n in names if n not in params or params[n] is not param]
        if unknown:
            problems.append(f"{doc.name}:{row_line}: {', '.join(unknown)} is not a name of {param.opts[0]}")
        listed.add(param.name)
        wrong = check_default(param, default_cell)
        if wrong:
            problems.append(f"{doc.name}:{row_line}: {param.opts[0]}: {wrong}")
    missing = [p.opts[0] for p in command.params if type(p).__name__.endswith("Option") and p.name not in listed]
    if missing:
        problems.append(f"{doc.name}:{line}: `chainprune {command_name}` options missing from the table: {', '.join(missing)}")
    assert not problems, "\n".join(problems) + "\n(docs/cli.md is written by `PYTHONPATH=src python docs/make_cli_reference.py > docs/cli.md`)"


def test_readme_command_summary_names_every_command_and_its_required_options():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- commands -->\s*```\w*\n(.*?)```", text, re.S)
    assert block, "README.md: the command summary is a code block after '<!-- commands -->'"
    lines = [line for line in block.group(1).splitlines() if line.startswith("chainprune ")]
    problems = []
    for name, command in COMMANDS.items():
        mine = [line for line in lines if line.startswith(f"chainprune {name} ") or line == f"chainprune {name}"]
        if not mine:
            problems.append(f"`chainprune {name}` is not in the command summary")
            continue
        for param in command.params:
            if param.required and type(param).__name__.endswith("Option") and not any(param.opts[0] in l for l in mine):
                problems.append(f"`chainprune {name}`: the summary leaves out its required {param.opts[0]}")
    assert not problems, "\n".join(problems)
