"""Rich renderings of traces for the terminal: a chain at a keep fraction, deleted tokens struck through."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table
from rich.text import Text

from chainprune.keep import deletions_for
from chainprune.types import Trace

DELETED_STYLE = "strike dim red"


def chain_at_keep(trace: Trace, keep: float, plain: bool = False) -> Text:
    """The reasoning with the tokens deleted by keep fraction `keep` struck through.

    `plain` (for output without styles, e.g. a pipe) marks each run of deleted tokens as ~~run~~ instead.
    """
    steps = deletions_for(len(trace.reasoning_ids), keep)
    text = Text()
    run: list[str] = []
    for token in trace.tokens:
        if token.deleted_step is not None and token.deleted_step <= steps:
            run.append(token.text)
            continue
        _flush(text, run, plain)
        text.append(token.text)
    _flush(text, run, plain)
    return text


def _flush(text: Text, run: list[str], plain: bool) -> None:
    if run:
        deleted = "".join(run)
        text.append(f"~~{deleted}~~" if plain else deleted, style=None if plain else DELETED_STYLE)
        run.clear()


def trace_table(trace: Trace, keeps: Sequence[float], plain: bool = False) -> Table:
    table = Table(title=f"{trace.id} ({len(trace.reasoning_ids)} reasoning tokens)", show_lines=True, expand=True)
    table.add_column("keep", justify="right", no_wrap=True)
    table.add_column("reasoning (deleted tokens struck through)")
    table.add_column("objective", justify="right", no_wrap=True)
    for keep in keeps:
        steps = deletions_for(len(trace.reasoning_ids), keep)
        table.add_row(f"{keep:g}", chain_at_keep(trace, keep, plain), f"{trace.objective_values[steps]:.2f}")
    return table
