"""`chainprune prune`, `demo`, `show`, `compare`, `view`: prune chains and look at the traces."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from chainprune.choices import (
    DEFAULT_DEVICE,
    DEFAULT_DTYPE,
    DEFAULT_ENGINE,
    DEFAULT_MAX_BATCH_TOKENS,
    DEFAULT_MODEL,
)
from chainprune.cli.common import (
    MODEL_NAMES_HELP,
    Chains,
    DeviceOption,
    DtypeOption,
    EngineName,
    Objective,
    Overwrite,
    Resume,
    choice,
    config_from,
    err_console,
    fail,
    keep_option,
    out_console,
    out_option,
)
from chainprune.units import UNITS

UnitName = choice("UnitName", UNITS)


def prune(
    input: Chains,
    out: Annotated[Path, out_option("Traces JSONL to write (one record per chain, appended as each finishes).")],
    model: Annotated[str, typer.Option(help="Pruner: " + MODEL_NAMES_HELP)] = DEFAULT_MODEL,
    objective: Annotated[Objective, typer.Option(help="joint: log p(remaining reasoning + answer); answer: log p(answer).")] = "joint",
    keep: Annotated[list[float] | None, keep_option("Keep fraction in (0, 1]; repeat for several (default 0.5). One run down to the smallest gives them all.")] = None,
    engine: Annotated[EngineName, typer.Option(help="All exact. packed (default, the fastest measured): every candidate's suffix in one packed forward, attending to the chain's cached keys and its own earlier suffix tokens; no redundant work, and what a deletion leaves unchanged is kept for the next pass. prefix: shares the KV prefix, candidates in batched chunks. naive: full recompute (the reference).")] = DEFAULT_ENGINE,
    dtype: DtypeOption = DEFAULT_DTYPE,
    device: DeviceOption = DEFAULT_DEVICE,
    max_batch_tokens: Annotated[int, typer.Option(min=1, help="Bound on rows x tokens held in one forward (memory).")] = DEFAULT_MAX_BATCH_TOKENS,
    per_step: Annotated[int, typer.Option(min=1, help="APPROXIMATE: delete the K best candidates per scoring pass (1 = exact).")] = 1,
    screen: Annotated[int | None, typer.Option(min=1, help="APPROXIMATE: between full scorings re-score only the M best candidates by stale scores, plus deletion neighbours.")] = None,
    refresh: Annotated[int, typer.Option(min=1, help="With --screen: a full exact scoring every R passes.")] = 10,
    lookahead: Annotated[int | None, typer.Option(min=1, help="APPROXIMATE, with --screen M: every pass, estimate all candidates from the W tokens after each deletion and re-score exactly the M best estimates (replaces stale scores and --refresh).")] = None,
    margin: Annotated[list[float] | None, typer.Option(min=0, help="APPROXIMATE, with --screen M --lookahead W: also re-score the last pass's two runners-up; then, while other candidates' estimates are within MARGIN nats of the best exact score found, widen their windows fourfold (resuming what was computed) until they span the chain and are scored exactly. Repeat for one margin per window (--margin 8 --margin 5 --margin 2: 8 nats at W, 5 at 4W, 2 at 16W and wider). README, Which mode: the measured trade-offs.")] = None,
    batch_chains: Annotated[int, typer.Option(min=1, help="With --engine packed (the default): prune K chains at once, their packed forwards run as one (larger forwards use the CPU/GPU better; same results to rounding). Memory for kept suffixes is shared among them. Not with --ray.")] = 1,
    unit: Annotated[UnitName, typer.Option(help="What one greedy step deletes: token (the paper's), word (whitespace-delimited, punctuation attached; numbers and equation operators stand alone, a number is never split) sentence (ends at . ? ! or a newline, not inside 3.5) or step (a paragraph when the reasoning has blank lines, else a line; exact greedy only). Exact with every engine; --keep still counts tokens: the first unit state at or below floor(n r) tokens (README, Units).")] = "token",
    resume: Resume = False,
    overwrite: Overwrite = False,
    save_scores: Annotated[bool, typer.Option("--save-scores", help="Also save every scoring pass's candidate objectives beside --out, in its name + .scores.jsonl (traces.jsonl -> traces.jsonl.scores.jsonl; for `chainprune analyze dynamics`). Traces are unchanged.")] = False,
    surrogate: Annotated[Path | None, typer.Option(help="APPROXIMATE, with --screen (not with --lookahead): pick the candidates to re-score by an attention surrogate's predictions (from `chainprune analyze surrogate`) instead of stale scores.")] = None,
    ray: Annotated[bool, typer.Option("--ray", help="Spread the chains over Ray workers (one pruner per GPU, or one per CPU); same traces as a single process. Needs the `ray` extra.")] = False,
    ray_address: Annotated[str | None, typer.Option(help="With --ray: the cluster to join ('auto' = the one started here with `ray start`, or HOST:PORT). Default: start a local Ray instance.")] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="With --ray: number of pruners (default: one per GPU of the cluster, or one per CPU).")] = None,
    estimate: Annotated[bool, typer.Option("--estimate", help="Prune nothing: print what this run would cost, per chain and in all: the token-forwards of exact greedy (expected, and the range by where its deletions fall; an upper bound for an approximate mode) and their time here (at the pruner's throughput, measured now) and on an H100 (from FLOPs per token-forward at 30% of peak). --out is not written.")] = False,
) -> None:
    """Greedy-prune every chain in INPUT and write one trace per chain to --out.

    Bad records (invalid JSON, missing fields, duplicate ids, chains longer than the model's context) are
    reported with their line and id and skipped; the others complete and the exit code is 1.
    """
    from chainprune.pipelines.prune import PruneConfig, run_prune
    from chainprune.report.progress import ProgressReporter, summary_table

    config = config_from(PruneConfig, locals(), keep=keep or [0.5])
    if estimate:
        _estimate(input, config)
        return
    if ray or ray_address is not None or workers is not None:
        if batch_chains > 1:
            raise typer.BadParameter("with --ray each worker prunes one chain at a time", param_hint="--batch-chains")
        _prune_on_ray(input, out, config, resume, overwrite, ray, ray_address, workers)
        return
    reporter = ProgressReporter()
    _run_and_report(lambda: run_prune(input, out, config, resume=resume, overwrite=overwrite, reporter=reporter),
                    reporter, summary_table, out)


def _prune_on_ray(input: Path, out: Path, config, resume: bool, overwrite: bool, ray: bool,
                  ray_address: str | None, workers: int | None) -> None:
    """`prune --ray`: the distributed pipeline, with cluster progress and summary."""
    from chainprune.pipelines.distributed import RayOptions, run_prune_distributed
    from chainprune.report.cluster_progress import (
        ClusterProgress,
        distributed_summary_table,
    )

    if not ray:
        raise typer.BadParameter("--workers and --ray-address need --ray", param_hint="--ray")
    reporter = ClusterProgress()
    options = RayOptions(address=ray_address, workers=workers)
    _run_and_report(lambda: run_prune_distributed(input, out, config, options, resume=resume, overwrite=overwrite,
                                                  reporter=reporter), reporter, distributed_summary_table, out)


def _estimate(input: Path, config) -> None:
    from chainprune.pipelines.estimate import run_estimate
    from chainprune.report.progress import estimate_table

    try:
        report = run_estimate(input, config)
    except (ValueError, ImportError, RuntimeError, OSError) as e:
        fail(str(e))
    out_console.print(estimate_table(report))
    for failure in report.failures:
        err_console.print(f"[red]bad record[/red] {escape(str(failure))}")
    if report.failures:
        raise typer.Exit(1)


def _run_and_report(run, reporter, table, out: Path) -> None:
    """Run a prune pipeline and say how it went: usage errors exit 2 (1 for a missing extra or no workers),
    then warnings, the summary table, and each failed record (exit 1 when any failed)."""
    from chainprune.pipelines.prune import errors_path

    try:
        summary = run()
    except (ValueError, ImportError, RuntimeError, OSError) as e:
        reporter.stop()
        fail(str(e), 1 if isinstance(e, (ImportError, RuntimeError)) else 2)
    reporter.stop()
    for warning in summary.warnings:
        err_console.print(f"[yellow]warning:[/yellow] {escape(str(warning))}")
    err_console.print(table(summary))
    err_console.print(f"traces: {escape(str(out))}")
    if summary.failures:
        for failure in summary.failures:
            err_console.print(f"[red]failed[/red] {escape(str(failure))}")
        err_console.print(f"[red]{len(summary.failures)} record(s) failed[/red]; details in {errors_path(out)}")
        raise typer.Exit(1)


def demo(
    out_dir: Annotated[Path, typer.Option("--out-dir", help="Where to write traces.jsonl and viewer.html (the HTML viewer).")] = Path("demo-output"),
    engine: Annotated[EngineName, typer.Option(help="Scoring engine (all exact; see `chainprune prune --help`).")] = DEFAULT_ENGINE,
) -> None:
    """Prune a few example chains with the bundled SmolLM2-135M-Instruct, offline, and show them."""
    from chainprune.data.jsonl import read_traces
    from chainprune.pipelines.demo import DEMO_KEEPS, demo_viewer_path, run_demo
    from chainprune.report.console import trace_table
    from chainprune.report.progress import ProgressReporter, console, summary_table
    from chainprune.types import Trace

    reporter = ProgressReporter()
    try:
        out, summary = run_demo(out_dir, engine=engine.value, reporter=reporter)
    except (ValueError, OSError) as e:
        reporter.stop()
        fail(str(e))
    reporter.stop()
    for record in read_traces(out):
        out_console.print(trace_table(Trace.from_json(record), [1.0, *DEMO_KEEPS], plain=_plain()))
    console.print(summary_table(summary))
    console.print(f"traces: {out}")
    if summary.done:
        console.print(f"viewer: {demo_viewer_path(out_dir)} (open it in a browser)")
    if summary.failures:
        raise typer.Exit(1)


def _plain() -> bool:
    return out_console.no_color or not out_console.is_terminal


def show(
    traces: Annotated[Path, typer.Argument(help="Traces JSONL written by `chainprune prune`.")],
    keep: Annotated[list[float] | None, keep_option("Keep fractions to show (default: those in the trace).")] = None,
    id: Annotated[list[str] | None, typer.Option("--id", help="Only these ids (repeatable).")] = None,
) -> None:
    """Print traces with the tokens deleted at each keep fraction struck through."""
    from chainprune.data.jsonl import TRACE_FIELDS, read_traces
    from chainprune.report.console import trace_table
    from chainprune.types import Trace

    try:
        records = list(read_traces(traces, TRACE_FIELDS))
    except (ValueError, OSError) as e:
        fail(str(e))
    if not records:
        fail(f"{traces} holds no traces")
    for record in records:
        if id and str(record["id"]) not in id:
            continue
        trace = Trace.from_json(record)
        fractions = keep or sorted((float(k) for k in trace.pruned), reverse=True)
        if any(r < trace.smallest_keep for r in fractions):
            raise typer.BadParameter(f"trace {trace.id!r} was pruned only down to keep {trace.smallest_keep}",
                                     param_hint="--keep")
        try:
            table = trace_table(trace, fractions, plain=_plain())
        except ValueError as e:
            fail(f"{traces}: trace {trace.id!r}: {e}")
        out_console.print(table)


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
        fail(str(e))
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


def view(
    traces: Annotated[list[Path], typer.Argument(metavar="TRACES.jsonl", help="Traces JSONL file(s). Two or more are shown side by side, matched by id, under one keep-fraction slider.")],
    out: Annotated[Path, out_option("HTML file to write (self-contained: opens offline in any browser).")] = Path("viewer.html"),
    title: Annotated[str | None, typer.Option(help="Page title (default: the file names).")] = None,
) -> None:
    """Write an interactive HTML page to watch chains being pruned: pick an example (search by id or text),
    move a slider over the deletions (or arrow keys), deleted tokens struck through, tokens coloured by
    category when the traces carry one, and the objective after each deletion as a small chart.

    Bad records are reported with their file, line and id and left out; the exit code is then 1.
    """
    from chainprune.pipelines.view import run_view

    try:
        summary = run_view(traces, out, title)
    except (ValueError, OSError) as e:
        fail(str(e))
    for path, failure in summary.failures:
        err_console.print(f"[red]skipped[/red] {path}: {failure}")
    shown = ", ".join(f"{label}: {count}" for label, count in summary.per_source.items())
    err_console.print(f"{summary.examples} example(s) ({shown})")
    out_console.print(f"viewer: {summary.out}")
    if summary.failures:
        raise typer.Exit(1)
