"""`chainprune baseline`, `match`, `lengths`: deletion orders cut at matched student lengths."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from chainprune.choices import DEFAULT_CLASSIFIER, DEFAULT_DEVICE, DEFAULT_DTYPE, DEFAULT_ENGINE, DEFAULT_MAX_BATCH_TOKENS, DEFAULT_MODEL
from chainprune.cli.common import (
    BaselineMethod,
    Chains,
    DeviceOption,
    DtypeOption,
    EngineName,
    Overwrite,
    Resume,
    config_from,
    fail,
    keep_option,
    out_console,
    out_option,
)

STUDENT_HELP = ("Student tokenizer: 'llama-2', 'mistral-7b-v0.3', 'llama-3.1', 'qwen2.5' (the paper's, offline after "
                "`make tokenizers`), a model name, a local folder, a tokenizer.json or a hub id; lengths are matched in its tokens.")
StudentTokenizer = Annotated[str, typer.Option("--student-tokenizer", help=STUDENT_HELP)]


def baseline(
    method: Annotated[BaselineMethod, typer.Argument(help="uniform: seeded random order. surprisal: lowest -log p under --model first. h2o: least attention received from later tokens first. tokenskip: lowest LLMLingua-2 keep probability first. greedy: exact greedy (slow; prefer prune + match). surrogate: an attention surrogate's predictions (--surrogate), one forward.")],
    input: Chains,
    student_tokenizer: StudentTokenizer,
    out: Annotated[Path, out_option("JSONL to write: one trace-like record per chain, pruned at matched student lengths.")],
    keep: Annotated[list[float] | None, keep_option("Keep fraction of the student's tokens, in (0, 1]; repeatable (default 0.5).")] = None,
    model: Annotated[str, typer.Option(help="Pruner: its tokenizer defines the reasoning tokens; surprisal/h2o/greedy also run it.")] = DEFAULT_MODEL,
    seed: Annotated[int, typer.Option(help="uniform: seed (mixed with each chain's id).")] = 0,
    classifier: Annotated[str, typer.Option(help="tokenskip: LLMLingua-2 token classifier (hub id or local folder).")] = DEFAULT_CLASSIFIER,
    surrogate: Annotated[Path | None, typer.Option(help="surrogate: a trained attention surrogate (`chainprune analyze surrogate`) of the same --model.")] = None,
    engine: Annotated[EngineName, typer.Option(help="greedy: scoring engine (all exact; see `chainprune prune --help`).")] = DEFAULT_ENGINE,
    max_batch_tokens: Annotated[int, typer.Option(min=1, help="greedy: bound on rows x tokens held in one forward (memory).")] = DEFAULT_MAX_BATCH_TOKENS,
    dtype: DtypeOption = DEFAULT_DTYPE,
    device: DeviceOption = DEFAULT_DEVICE,
    resume: Resume = False,
    overwrite: Overwrite = False,
) -> None:
    """Rank the reasoning tokens of every chain in INPUT with a baseline METHOD and prune each chain to the
    kept set whose text, re-tokenized by the student's tokenizer, is closest to round(keep x its full length)."""
    from chainprune.pipelines.baselines import BaselineConfig, run_baseline
    from chainprune.report.progress import ProgressReporter

    config = config_from(BaselineConfig, locals(), keep=keep or [0.5])
    reporter = ProgressReporter()
    _finish_matched_run(lambda: run_baseline(input, out, config, resume=resume, overwrite=overwrite, reporter=reporter),
                        out, reporter)


def match(
    traces: Annotated[Path, typer.Argument(help="Greedy traces JSONL written by `chainprune prune`.")],
    student_tokenizer: StudentTokenizer,
    out: Annotated[Path, out_option("JSONL to write, in the same format as `chainprune baseline`.")],
    keep: Annotated[list[float] | None, keep_option("Keep fractions (default: those each trace was pruned to). A trace pruned only to r cannot go shorter: prune a little below the smallest keep you match.")] = None,
    pruner_tokenizer: Annotated[str | None, typer.Option(help="Tokenizer that decodes the traces' ids (default: each trace's pruner).")] = None,
    resume: Resume = False,
    overwrite: Overwrite = False,
) -> None:
    """Cut greedy traces at matched student lengths, exactly as `chainprune baseline` cuts the baselines."""
    from chainprune.pipelines.baselines import MatchConfig, run_match
    from chainprune.report.progress import ProgressReporter

    config = MatchConfig(student_tokenizer=student_tokenizer, keep=keep or None, pruner_tokenizer=pruner_tokenizer)
    reporter = ProgressReporter()
    _finish_matched_run(lambda: run_match(traces, out, config, resume=resume, overwrite=overwrite, reporter=reporter),
                        out, reporter)


def _finish_matched_run(run, out: Path, reporter) -> None:
    """Run `baseline` or `match` and say how it went: unusable input exits 2; each failed record is listed and
    makes the exit code 1."""
    from rich.table import Table

    from chainprune.pipelines.prune import errors_path
    from chainprune.report.progress import console

    try:
        summary = run()
    except (ValueError, OSError) as e:
        reporter.stop()
        fail(str(e))
    reporter.stop()
    for warning in summary.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}")
    table = Table(show_header=False)
    for key, value in (("written", summary.done), ("skipped (already in output)", summary.skipped),
                       ("failed", len(summary.failures)), ("wall time", f"{summary.seconds:.1f} s")):
        table.add_row(key, str(value))
    console.print(table)
    console.print(f"output: {out}")
    if summary.failures:
        for failure in summary.failures:
            console.print(f"[red]failed[/red] {failure}")
        console.print(f"[red]{len(summary.failures)} record(s) failed[/red]; details in {errors_path(out)}")
        raise typer.Exit(1)


def lengths(
    files: Annotated[list[Path], typer.Argument(help="Outputs of `chainprune baseline` / `chainprune match`.")],
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the table as JSON here.")] = None,
) -> None:
    """Achieved student-token keep fractions per method and keep fraction (mean, min, max over chains)."""
    import json
    from dataclasses import asdict

    from rich.table import Table

    from chainprune.pipelines.baselines import length_table

    try:
        rows = length_table(files)
    except (ValueError, OSError, KeyError) as e:
        fail(str(e))
    table = Table(title="achieved student-token keep fraction")
    for column in ("keep", "method", "chains", "mean", "min", "max", "pruner-token mean", "order ran out"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(f"{row.keep:g}", row.method, str(row.examples), f"{row.student_fraction_mean:.4f}",
                      f"{row.student_fraction_min:.4f}", f"{row.student_fraction_max:.4f}",
                      f"{row.pruner_fraction_mean:.4f}", str(row.exhausted))
    out_console.print(table)
    if any(row.exhausted for row in rows):
        out_console.print("'order ran out': traces pruned too little to reach the target; prune them further.")
    if json_out is not None:
        json_out.write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
