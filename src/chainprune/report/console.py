"""Rich renderings of traces for the terminal: a chain at a keep fraction, deleted tokens struck through.

A unit trace (`Trace.unit` word or sentence) is cut where a whole unit ends (`Trace.deletions_at`), so a
struck-through run is always whole words or sentences, and its objective is the one after that many unit steps.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table
from rich.text import Text

from chainprune.trace_steps import steps_at
from chainprune.types import Trace

DELETED_STYLE = "strike dim red"


def chain_at_keep(trace: Trace, keep: float, plain: bool = False) -> Text:
    """The reasoning with the tokens deleted by keep fraction `keep` struck through.

    `plain` (for output without styles, e.g. a pipe) marks each run of deleted tokens as ~~run~~ instead.
    """
    gone = set(trace.deletion_order[: trace.deletions_at(keep)])
    text = Text()
    run: list[str] = []
    for token in trace.tokens:
        if token.position in gone:
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
    n = len(trace.reasoning_ids)
    unit = trace.unit != "token"
    size = f"{n} reasoning tokens" + (f" in {len(trace.units)} {trace.unit}s, deleted by {trace.unit}" if unit else "")
    table = Table(title=f"{trace.id} ({size})", show_lines=True, expand=True)
    table.add_column("keep", justify="right", no_wrap=True)
    if unit:  # the keep asked for is in tokens; a unit trace keeps at most that many, cut at a unit's end
        table.add_column("tokens kept", justify="right", no_wrap=True)
    table.add_column(f"reasoning (deleted {trace.unit}s struck through)")
    table.add_column("objective", justify="right", no_wrap=True)
    for keep in keeps:
        kept = [str(n - trace.deletions_at(keep))] if unit else []
        value = trace.objective_values[steps_at(trace, keep)]
        table.add_row(f"{keep:g}", *kept, chain_at_keep(trace, keep, plain), f"{value:.2f}")
    return table
