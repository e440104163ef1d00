"""The `chainprune` command line: parse, call a pipeline, print. No logic lives here."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from chainprune.scoring import DEFAULT_MAX_BATCH_TOKENS, ENGINES

app = typer.Typer(
    help="Greedy pruning of LLM reasoning chains: delete, one at a time, the reasoning token whose removal "
    "lowers the pruner's likelihood of the remaining chain and answer the least.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
out_console = Console()

Objective = Enum("Objective", {"joint": "joint", "answer": "answer"}, type=str)
EngineName = Enum("EngineName", {name: name for name in ENGINES}, type=str)
Dtype = Enum("Dtype", {d: d for d in ("auto", "float32", "float64", "bfloat16", "float16")}, type=str)
Device = Enum("Device", {d: d for d in ("auto", "cpu", "cuda")}, type=str)


def _keep_fractions(values: list[float] | None) -> list[float]:
    for r in values or []:
        if not 0.0 < r <= 1.0:
            raise typer.BadParameter(f"{r} is outside (0, 1]", param_hint="--keep")
    return values


@app.command()
def prune(
    input: Annotated[Path, typer.Argument(help="JSONL of chains: {id, question, reasoning, answer[, system]} per line.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Traces JSONL to write (one record per chain, appended as each finishes).")],
    model: Annotated[str, typer.Option(help="Pruner: 'smollm2-135m' (bundled, offline), a local HF folder or a hub id.")] = "smollm2-135m",
    objective: Annotated[Objective, typer.Option(help="joint: log p(remaining reasoning + answer); answer: log p(answer).")] = "joint",
    keep: Annotated[list[float] | None, typer.Option("--keep", "-k", callback=_keep_fractions, help="Keep fraction in (0, 1]; repeat for several. One run down to the smallest gives them all.")] = None,
    engine: Annotated[EngineName, typer.Option(help="prefix: shares the KV prefix, candidates in batched chunks. packed: all suffixes packed in one sequence with a 4D mask, no redundant work. naive: full recompute (the reference). All exact.")] = "prefix",
    dtype: Annotated[Dtype, typer.Option(help="auto = bfloat16 on CUDA, float32 on CPU.")] = "auto",
    device: Annotated[Device, typer.Option(help="auto = cuda when available.")] = "auto",
    max_batch_tokens: Annotated[int, typer.Option(min=1, help="Bound on rows x tokens held in one forward (memory).")] = DEFAULT_MAX_BATCH_TOKENS,
    per_step: Annotated[int, typer.Option(min=1, help="APPROXIMATE: delete the K best candidates per scoring pass (1 = exact).")] = 1,
    screen: Annotated[int | None, typer.Option(min=1, help="APPROXIMATE: between full scorings re-score only the M best candidates by stale scores, plus deletion neighbours.")] = None,
    refresh: Annotated[int, typer.Option(min=1, help="With --screen: a full exact scoring every R passes.")] = 10,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run: skip ids already in --out.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out.")] = False,
) -> None:
    """Greedy-prune every chain in INPUT and write one trace per chain to --out.

    Bad records (invalid JSON, missing fields, duplicate ids, chains longer than the model's context) are
    reported with their line and id and skipped; the others complete and the exit code is 1.
    """
    from chainprune.pipelines.prune import PruneConfig, errors_path, run_prune
    from chainprune.report.progress import ProgressReporter, console, summary_table

    config = PruneConfig(
        model=model,
        objective=objective.value,
        keep=keep or [0.5],
        engine=engine.value,
        dtype=dtype.value,
        device=device.value,
        max_batch_tokens=max_batch_tokens,
        per_step=per_step,
        screen=screen,
        refresh=refresh,
    )
    reporter = ProgressReporter()
    try:
        summary = run_prune(input, out, config, resume=resume, overwrite=overwrite, reporter=reporter)
    except ValueError as e:
        reporter.stop()
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None
    reporter.stop()
    for warning in summary.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}")
    console.print(summary_table(summary))
    console.print(f"traces: {out}")
    if summary.failures:
        for failure in summary.failures:
            console.print(f"[red]failed[/red] {failure}")
        console.print(f"[red]{len(summary.failures)} record(s) failed[/red]; details in {errors_path(out)}")
        raise typer.Exit(1)


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Option("--out-dir", help="Where to write traces.jsonl.")] = Path("demo-output"),
    engine: Annotated[EngineName, typer.Option(help="Scoring engine.")] = "prefix",
) -> None:
    """Prune a few example chains with the bundled SmolLM2-135M-Instruct, offline, and show them."""
    from chainprune.data.jsonl import read_traces
    from chainprune.pipelines.demo import DEMO_KEEPS, run_demo
    from chainprune.report.console import trace_table
    from chainprune.report.progress import ProgressReporter, console, summary_table
    from chainprune.types import Trace

    reporter = ProgressReporter()
    out, summary = run_demo(out_dir, engine=engine.value, reporter=reporter)
    reporter.stop()
    for record in read_traces(out):
        out_console.print(trace_table(Trace.from_json(record), [1.0, *DEMO_KEEPS], plain=out_console.no_color or not out_console.is_terminal))
    console.print(summary_table(summary))
    console.print(f"traces: {out}")
    if summary.failures:
        raise typer.Exit(1)


@app.command()
def show(
    traces: Annotated[Path, typer.Argument(help="Traces JSONL written by `chainprune prune`.")],
    keep: Annotated[list[float] | None, typer.Option("--keep", "-k", callback=_keep_fractions, help="Keep fractions to show (default: those in the trace).")] = None,
    id: Annotated[list[str] | None, typer.Option("--id", help="Only these ids (repeatable).")] = None,
) -> None:
    """Print traces with the tokens deleted at each keep fraction struck through."""
    from chainprune.data.jsonl import read_traces
    from chainprune.report.console import trace_table
    from chainprune.types import Trace

    for record in read_traces(traces):
        if id and str(record["id"]) not in id:
            continue
        trace = Trace.from_json(record)
        fractions = keep or sorted((float(k) for k in trace.pruned), reverse=True)
        smallest = min(float(k) for k in trace.pruned)
        if any(r < smallest for r in fractions):
            raise typer.BadParameter(f"trace {trace.id!r} was pruned only down to keep {smallest}", param_hint="--keep")
        out_console.print(trace_table(trace, fractions, plain=out_console.no_color or not out_console.is_terminal))


@app.command()
def compare(
    exact: Annotated[Path, typer.Argument(help="Traces from an exact run (the reference).")],
    approx: Annotated[Path, typer.Argument(help="Traces of the same chains from an approximate run.")],
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the numbers as JSON here.")] = None,
) -> None:
    """Fidelity of APPROX against EXACT per keep fraction: kept-set overlap, Kendall's tau of deletion ranks,
    and the objective gap (approximate minus exact; negative = likelihood lost)."""
    import json

    from rich.table import Table

    from chainprune.pipelines.compare import compare_traces

    try:
        result = compare_traces(exact, approx)
    except (ValueError, OSError) as e:
        Console(stderr=True).print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None
    table = Table(title=f"{approx} vs {exact} (mode {result.approx_mode or 'exact'})")
    for column in ("keep", "examples", "overlap mean", "overlap min", "Kendall tau", "gap mean", "gap min"):
        table.add_column(column, justify="right")
    for k in result.per_keep:
        table.add_row(f"{k.keep:g}", str(k.examples), f"{k.overlap_mean:.3f}", f"{k.overlap_min:.3f}",
                      f"{k.kendall_tau_mean:.3f}", f"{k.objective_gap_mean:.3f}", f"{k.objective_gap_min:.3f}")
    out_console.print(table)
    if result.missing:
        out_console.print(f"{len(result.missing)} id(s) of {exact} have no trace in {approx}")
    if json_out is not None:
        json_out.write_text(json.dumps(result.to_json(), indent=2) + "\n")



# ---- teacher chains, datasets, evaluation (issue 4) ----


# ---- baselines at matched lengths (issue 5) ----


# ---- viewer (issue 8) ----


if __name__ == "__main__":
    app()
