"""`run_retention`: category retention curves for annotated trace files and for baseline rankers (Fig. 3, Fig. 7)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chainprune.analysis.categories import CATEGORIES, check_categories
from chainprune.analysis.retention import overall_kept_fraction, retention_curve
from chainprune.data.jsonl import RecordError
from chainprune.pipelines.analyze.common import (
    fractions_reached,
    read_trace_records,
    write_csv,
)
from chainprune.trace_steps import check_trace_steps
from chainprune.types import Trace


@dataclass
class RetentionResult:
    rows: list[dict[str, Any]]  # one per (label, keep, category), as in the CSV
    files: list[Path]
    failures: list[RecordError] = field(default_factory=list)


def annotated_chains(path: Path) -> tuple[list[tuple[int, Trace]], list[RecordError]]:
    records, errors = read_trace_records(path, ("id", "tokens", "deletion_order"))
    good = []
    for line, trace in records:
        try:
            check_categories([t.category for t in trace.tokens], len(trace.tokens))
        except ValueError as e:
            errors.append(RecordError(line, str(trace.id), f"not annotated ({e}); run `chainprune annotate` first"))
            continue
        try:
            check_trace_steps(trace)
        except ValueError as e:
            errors.append(RecordError(line, str(trace.id), f"inconsistent {trace.unit} trace: {e}"))
            continue
        good.append((line, trace))
    return good, errors


def ranker_orders(traces: Sequence[Trace], ranker: str, model: Any, seed: int) -> list[list[int]]:
    """Full deletion orders from a baseline ranker (`chainprune.ranking`) for the traces' chains."""
    from chainprune.ranking import RANKER_NEEDS, get_ranker

    rank = get_ranker(ranker)
    if RANKER_NEEDS[ranker] not in (None, "causal_lm"):
        raise ValueError(f"ranker {ranker!r} needs a {RANKER_NEEDS[ranker]}; here only rankers that need nothing "
                         "or the causal LM (--model) can run")
    return [list(rank(trace.ids, model, seed=seed).deletion_order) for trace in traces]


def run_retention(
    inputs: Sequence[tuple[str, Path]],
    out: Path,
    fractions: Sequence[float] | None = None,
    rankers: Sequence[str] = (),
    model: Any = None,
    seed: int = 0,
) -> RetentionResult:
    """Retention curves of every (label, annotated traces file), plus every baseline ranker applied to the
    chains of the first file. Writes `out`.csv, `out`.png and `out`.svg."""
    panels: list[tuple[str, list[tuple[Sequence[str], Sequence[int]]], float]] = []
    failures: list[RecordError] = []
    first: list[Trace] = []
    for label, path in inputs:
        records, errors = annotated_chains(Path(path))
        failures += errors
        if not records:
            raise ValueError(f"{path} has no annotated traces")
        chains = [([t.category for t in trace.tokens], trace.deletion_order,
                   None if trace.unit == "token" else trace.step_sizes()) for _, trace in records]
        panels.append((label, chains, max(trace.smallest_keep for _, trace in records)))
        first = first or [trace for _, trace in records]
    for ranker in rankers:
        orders = ranker_orders(first, ranker, model, seed)
        chains = [([t.category for t in trace.tokens], order) for trace, order in zip(first, orders)]
        panels.append((ranker, chains, 0.0))

    rows: list[dict[str, Any]] = []
    figure_panels = []
    for label, chains, floor in panels:
        grid = fractions_reached(fractions, floor)
        lengths = [len(chain[0]) for chain in chains]
        curves: dict[str, list[tuple[float, float]]] = {c: [] for c in CATEGORIES}
        points = retention_curve(chains, grid)
        kept_share = {r: overall_kept_fraction(lengths, r) for r in grid}
        if sum(lengths) and any(len(chain) > 2 and chain[2] is not None for chain in chains):  # unit traces: whole units
            kept_share = {r: sum(p.kept for p in points if p.keep == r) / sum(lengths) for r in grid}
        for point in points:
            rows.append({"label": label, "keep": point.keep, "overall_kept": round(kept_share[point.keep], 6),
                         "category": point.category, "tokens": point.tokens, "kept": point.kept,
                         "retention": round(point.retention, 6) if point.tokens else ""})
            if point.tokens:
                curves[point.category].append((point.keep, point.retention))
        figure_panels.append((f"{label} ({len(chains)} chains, {sum(lengths)} tokens)", {c: p for c, p in curves.items() if p}))

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    csv_path = out.with_suffix(".csv")
    write_csv(csv_path, rows)
    from chainprune.report.plots import retention_figure

    files = [csv_path, *retention_figure(figure_panels, out)]
    return RetentionResult(rows, files, failures)


def ranker_model(rankers: Sequence[str], model: str) -> Any:
    """The causal LM that `run_retention`'s rankers run (float32), or None when only `uniform` is asked for."""
    if all(ranker == "uniform" for ranker in rankers):
        return None
    from chainprune.models import load_model

    return load_model(model, dtype="float32", device="auto").model


def retention_pivot(rows: Sequence[dict[str, Any]]) -> tuple[list[float], list[tuple[str, str, list[float | None]]]]:
    """`RetentionResult.rows` as a table: the keep fractions (largest first) and, per (label, category) with any
    tokens, its retention at each of them (None where it has none)."""
    keeps = sorted({r["keep"] for r in rows}, reverse=True)
    by = {(r["label"], r["category"], r["keep"]): r["retention"] for r in rows}
    table = []
    for label in dict.fromkeys(r["label"] for r in rows):
        for category in dict.fromkeys(r["category"] for r in rows):
            values = [by.get((label, category, k), "") for k in keeps]
            if any(v != "" for v in values):
                table.append((label, category, [None if v == "" else v for v in values]))
    return keeps, table
