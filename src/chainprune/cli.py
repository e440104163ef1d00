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
# Messages name files and records: soft wrap keeps each on one line (greppable, never split mid-path).
err_console = Console(stderr=True, soft_wrap=True)

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
    model: Annotated[str, typer.Option(help="Pruner: 'smollm2-135m' (bundled, offline), 'qwen2.5-coder-0.5b'/'-1.5b' (offline after `make models`), a .gguf file, a local HF folder or a hub id.")] = "smollm2-135m",
    objective: Annotated[Objective, typer.Option(help="joint: log p(remaining reasoning + answer); answer: log p(answer).")] = "joint",
    keep: Annotated[list[float] | None, typer.Option("--keep", "-k", callback=_keep_fractions, help="Keep fraction in (0, 1]; repeat for several (default 0.5). One run down to the smallest gives them all.")] = None,
    engine: Annotated[EngineName, typer.Option(help="All exact. packed (default, the fastest measured): every candidate's suffix in one packed forward, attending to the chain's cached keys and its own earlier suffix tokens; no redundant work, and what a deletion leaves unchanged is kept for the next pass. prefix: shares the KV prefix, candidates in batched chunks. naive: full recompute (the reference).")] = "packed",
    dtype: Annotated[Dtype, typer.Option(help="auto = bfloat16 on CUDA, float32 on CPU.")] = "auto",
    device: Annotated[Device, typer.Option(help="auto = cuda when available.")] = "auto",
    max_batch_tokens: Annotated[int, typer.Option(min=1, help="Bound on rows x tokens held in one forward (memory).")] = DEFAULT_MAX_BATCH_TOKENS,
    per_step: Annotated[int, typer.Option(min=1, help="APPROXIMATE: delete the K best candidates per scoring pass (1 = exact).")] = 1,
    screen: Annotated[int | None, typer.Option(min=1, help="APPROXIMATE: between full scorings re-score only the M best candidates by stale scores, plus deletion neighbours.")] = None,
    refresh: Annotated[int, typer.Option(min=1, help="With --screen: a full exact scoring every R passes.")] = 10,
    lookahead: Annotated[int | None, typer.Option(min=1, help="APPROXIMATE, with --screen M: every pass, estimate all candidates from the W tokens after each deletion and re-score exactly the M best estimates (replaces stale scores and --refresh).")] = None,
    margin: Annotated[float | None, typer.Option(min=0, help="APPROXIMATE, with --screen M --lookahead W: also re-score the last pass's two runners-up; then, while other candidates' estimates are within MARGIN nats of the best exact score found, widen their windows fourfold (resuming what was computed) until they span the chain and are scored exactly (README, Which mode: the measured trade-off).")] = None,
    batch_chains: Annotated[int, typer.Option(min=1, help="With --engine packed (the default): prune K chains at once, their packed forwards run as one (larger forwards use the CPU/GPU better; same results to rounding). Memory for kept suffixes is shared among them. Not with --ray.")] = 1,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run: skip ids already in --out.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out.")] = False,
    save_scores: Annotated[bool, typer.Option("--save-scores", help="Also save every scoring pass's candidate objectives beside --out, in its name + .scores.jsonl (traces.jsonl -> traces.jsonl.scores.jsonl; for `chainprune analyze dynamics`). Traces are unchanged.")] = False,
    surrogate: Annotated[Path | None, typer.Option(help="APPROXIMATE, with --screen (not with --lookahead): pick the candidates to re-score by an attention surrogate's predictions (from `chainprune analyze surrogate`) instead of stale scores.")] = None,
    ray: Annotated[bool, typer.Option("--ray", help="Spread the chains over Ray workers (one pruner per GPU, or one per CPU); same traces as a single process. Needs the `ray` extra.")] = False,
    ray_address: Annotated[str | None, typer.Option(help="With --ray: the cluster to join ('auto' = the one started here with `ray start`, or HOST:PORT). Default: start a local Ray instance.")] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="With --ray: number of pruners (default: one per GPU of the cluster, or one per CPU).")] = None,
) -> None:
    """Greedy-prune every chain in INPUT and write one trace per chain to --out.

    Bad records (invalid JSON, missing fields, duplicate ids, chains longer than the model's context) are
    reported with their line and id and skipped; the others complete and the exit code is 1.
    """
    from chainprune.pipelines.prune import PruneConfig, run_prune
    from chainprune.report.progress import ProgressReporter, summary_table

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
        lookahead=lookahead,
        margin=margin,
        save_scores=save_scores,
        surrogate=str(surrogate) if surrogate else None,
        batch_chains=batch_chains,
    )
    if ray or ray_address is not None or workers is not None:
        if batch_chains > 1:
            raise typer.BadParameter("with --ray each worker prunes one chain at a time", param_hint="--batch-chains")
        _prune_on_ray(input, out, config, resume, overwrite, ray, ray_address, workers)
        return
    reporter = ProgressReporter()
    _run_and_report(lambda: run_prune(input, out, config, resume=resume, overwrite=overwrite, reporter=reporter),
                    reporter, summary_table, out)


def _run_and_report(run, reporter, table, out: Path) -> None:
    """Run a prune pipeline and say how it went: usage errors exit 2 (1 for a missing extra or no workers),
    then warnings, the summary table, and each failed record (exit 1 when any failed)."""
    from rich.markup import escape

    from chainprune.pipelines.prune import errors_path

    try:
        summary = run()
    except (ValueError, ImportError, RuntimeError) as e:
        reporter.stop()
        err_console.print(f"[red]error:[/red] {escape(str(e))}")
        raise typer.Exit(2 if isinstance(e, ValueError) else 1) from None
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


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Option("--out-dir", help="Where to write traces.jsonl and viewer.html (the HTML viewer).")] = Path("demo-output"),
    engine: Annotated[EngineName, typer.Option(help="Scoring engine (all exact; see `chainprune prune --help`).")] = "packed",
) -> None:
    """Prune a few example chains with the bundled SmolLM2-135M-Instruct, offline, and show them."""
    from chainprune.data.jsonl import read_traces
    from chainprune.pipelines.demo import DEMO_KEEPS, demo_viewer_path, run_demo
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
    if summary.done:
        console.print(f"viewer: {demo_viewer_path(out_dir)} (open it in a browser)")
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
        err_console.print(f"[red]error:[/red] {e}")
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

from chainprune.generation import BACKENDS  # noqa: E402
from chainprune.tasks import TASKS  # noqa: E402

DatasetName = Enum("DatasetName", {name: name for name in TASKS}, type=str)
Backend = Enum("Backend", {name: name for name in BACKENDS}, type=str)
_DATA_FILE_HELP = (
    "Local JSONL/Parquet copy of the ORIGINAL split the --split derives from (GSM8K/MATH: the train file for "
    "train or dev, the test file for test; MMLU-Pro: its test file for all three). Offline; no hub access."
)
_HUB_DATASET_HELP = "Take --split as it is from this hub repo instead; 'paper' = the paper's released splits (iamjanvijay/gsm8k, iamjanvijay/openaimath, iamjanvijay/MMLU-Pro)."
_SPLIT_HELP = "train, dev or test: the paper's splits (App. B.1), carved from the original with --split-seed; 'all' = the whole --data-file."


def _log_to(console: Console, verbose: bool):
    return (lambda message: console.print(f"[yellow]{message}[/yellow]")) if verbose else None


def _bar(console: Console, label: str):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    progress = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TimeRemainingColumn(), console=console)
    task = progress.add_task(label, total=None)
    return progress, lambda done, total: progress.update(task, completed=done, total=total)


@app.command()
def teacher(
    out: Annotated[Path, typer.Option("--out", "-o", help="Chains JSONL to write (pruner input records, appended per question).")],
    dataset: Annotated[DatasetName, typer.Option(help="Dataset.")] = "gsm8k",
    split: Annotated[str, typer.Option(help=_SPLIT_HELP)] = "train",
    model: Annotated[str, typer.Option(help="Teacher: 'smollm2-135m' (bundled, offline), 'qwen2.5-coder-0.5b'/'-1.5b' (offline after `make models`), a .gguf file, a local HF folder or a hub id.")] = "smollm2-135m",
    samples: Annotated[int, typer.Option(min=1, help="Responses sampled per question (paper: 10).")] = 10,
    temperature: Annotated[float, typer.Option(min=0.0, help="Sampling temperature (paper: 0.7).")] = 0.7,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling top-p in (0, 1] (paper: 1.0). No top-k is applied.")] = 1.0,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Longest response; a sample cut off here is never kept (its end is missing).")] = 1024,
    seed: Annotated[int, typer.Option(help="Sampling seed; also picks which correct response is kept.")] = 0,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N questions of the split.")] = None,
    data_file: Annotated[Path | None, typer.Option(help=_DATA_FILE_HELP)] = None,
    hub_dataset: Annotated[str | None, typer.Option(help=_HUB_DATASET_HELP)] = None,
    split_seed: Annotated[int, typer.Option(help="Seed of the carve making the paper's train/dev/test from the original splits.")] = 0,
    backend: Annotated[Backend, typer.Option(help="transformers (CPU/GPU) or vllm (GPU, optional extra chainprune[vllm]).")] = "transformers",
    batch_size: Annotated[int, typer.Option(min=1, help="Questions per generate call (each with --samples samples).")] = 8,
    dtype: Annotated[Dtype, typer.Option(help="auto = bfloat16 on CUDA, float32 on CPU.")] = "auto",
    device: Annotated[Device, typer.Option(help="auto = cuda when available.")] = "auto",
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run: questions already attempted are skipped.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Print every unparsable sample and dropped question.")] = False,
) -> None:
    """Teacher chains by rejection sampling (paper App. B.4): sample --samples responses per question, keep
    one correct response picked at random, drop questions with none.

    Writes pruner input records {id, question, reasoning, answer, system, gold, sample_index, ...} to --out
    and every sample with its grade to OUT.samples.jsonl. Unparsable responses count as incorrect.
    """
    from chainprune.pipelines.teacher import TeacherConfig, run_teacher, samples_path

    console = err_console
    config = TeacherConfig(
        dataset=dataset.value, split=split, model=model, samples=samples, temperature=temperature, top_p=top_p,
        max_new_tokens=max_new_tokens, seed=seed, backend=backend.value, dtype=dtype.value, device=device.value,
        batch_size=batch_size, data_file=str(data_file) if data_file else None, hub_dataset=hub_dataset,
        split_seed=split_seed, limit=limit,
    )
    progress, advance = _bar(console, "questions")
    try:
        with progress:
            summary = run_teacher(out, config, resume=resume, overwrite=overwrite, progress=advance,
                                  log=_log_to(progress.console, verbose))
    except (ValueError, RuntimeError, OSError) as e:  # bad settings or files, a model that cannot be loaded
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None
    for warning in summary.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}")
    for failure in summary.failures:
        console.print(f"[red]bad record[/red] {failure}")
    console.print(
        f"questions {summary.questions} (skipped {summary.skipped} already done): kept {summary.kept}, "
        f"dropped {summary.dropped}; acceptance rate {summary.acceptance_rate:.1%}\n"
        f"samples {summary.samples}: correct {summary.correct_samples} ({summary.sample_accuracy:.1%}), "
        f"unparsable {summary.unparsable_samples}, cut off at max-new-tokens {summary.truncated_samples}; "
        f"{summary.seconds:.1f} s"
    )
    console.print(f"chains: {out}\nsamples: {samples_path(out)}")
    if summary.failures:
        raise typer.Exit(1)


@app.command()
def evaluate(
    model: Annotated[list[str] | None, typer.Option("--model", "-m", help="Model(s) to evaluate (repeatable; default smollm2-135m): 'smollm2-135m', a local HF folder or a hub id.")] = None,
    dataset: Annotated[list[DatasetName] | None, typer.Option("--dataset", "-d", help="Dataset(s) (repeatable; default gsm8k).")] = None,
    split: Annotated[str, typer.Option(help=_SPLIT_HELP)] = "test",
    out_dir: Annotated[Path, typer.Option("--out-dir", help="Per-example outputs go to OUT_DIR/<model>/<dataset>-<split>.jsonl; the table to OUT_DIR/summary.json.")] = Path("eval-output"),
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Longest response; one cut off before its final-answer line is unparsable, so incorrect.")] = 1024,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N questions of the split.")] = None,
    data_file: Annotated[list[Path] | None, typer.Option(help=_DATA_FILE_HELP + " One per --dataset, in the same order.")] = None,
    hub_dataset: Annotated[str | None, typer.Option(help=_HUB_DATASET_HELP)] = None,
    split_seed: Annotated[int, typer.Option(help="Seed of the carve making the paper's splits.")] = 0,
    backend: Annotated[Backend, typer.Option(help="transformers (CPU/GPU) or vllm (GPU).")] = "transformers",
    batch_size: Annotated[int, typer.Option(min=1, help="Questions per generate call.")] = 8,
    dtype: Annotated[Dtype, typer.Option(help="auto = bfloat16 on CUDA, float32 on CPU.")] = "auto",
    device: Annotated[Device, typer.Option(help="auto = cuda when available.")] = "auto",
    resume: Annotated[bool, typer.Option("--resume", help="Skip questions already in the outputs.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Print every unparsable response.")] = False,
) -> None:
    """Zero-shot accuracy with greedy decoding (temperature 0), and mean generated reasoning length, for
    every model x dataset; prints a table like the paper's Table 2."""
    import json

    from rich.table import Table

    from chainprune.data.jsonl import refuse_existing
    from chainprune.pipelines.evaluate import EvalConfig, output_path, run_evaluate

    console = err_console
    models, datasets = model or ["smollm2-135m"], [d.value for d in dataset] if dataset else ["gsm8k"]
    if data_file and len(data_file) != len(datasets):
        raise typer.BadParameter(f"{len(data_file)} file(s) for {len(datasets)} dataset(s)", param_hint="--data-file")
    files = dict(zip(datasets, data_file)) if data_file else {}
    results, failed = {}, False
    for name in models:
        generator = None
        for ds in datasets:
            config = EvalConfig(
                model=name, dataset=ds, split=split, max_new_tokens=max_new_tokens, backend=backend.value,
                dtype=dtype.value, device=device.value, batch_size=batch_size,
                data_file=str(files[ds]) if ds in files else None, hub_dataset=hub_dataset,
                split_seed=split_seed, limit=limit,
            )
            out = output_path(out_dir, name, ds, split)
            progress, advance = _bar(console, f"{name} {ds}")
            try:
                refuse_existing(out, resume, overwrite)  # before the model loads
                if generator is None:  # one model load for all datasets
                    from chainprune.generation import make_generator

                    generator = make_generator(name, backend.value, dtype.value, device.value, batch_size)
                with progress:
                    summary = run_evaluate(out, config, resume=resume, overwrite=overwrite, generator=generator,
                                           progress=advance, log=_log_to(progress.console, verbose))
            except (ValueError, RuntimeError, OSError) as e:
                console.print(f"[red]error:[/red] {name} on {ds}: {e}")
                raise typer.Exit(2) from None
            for failure in summary.failures:
                console.print(f"[red]bad record[/red] {failure}")
            failed |= bool(summary.failures)
            results[(name, ds)] = summary
            console.print(f"{name} on {ds}: {out}")
    table = Table(title=f"zero-shot accuracy % (greedy), {split} split; mean reasoning tokens in brackets")
    table.add_column("model")
    for ds in datasets:
        table.add_column(ds, justify="right")
    for name in models:
        cells = []
        for ds in datasets:
            s = results[(name, ds)]
            cells.append(f"{100 * s.accuracy:.2f} ({s.mean_reasoning_tokens:.0f}) n={s.examples}"
                         + (f", {s.unparsable} unparsable" if s.unparsable else ""))
        table.add_row(name, *cells)
    out_console.print(table)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "summary.json").write_text(
        json.dumps([s.to_json() for s in results.values()], indent=2) + "\n"
    )
    if failed:
        raise typer.Exit(1)


# ---- baselines at matched lengths (issue 5) ----

from chainprune.ranking import DEFAULT_CLASSIFIER as _DEFAULT_CLASSIFIER  # noqa: E402
from chainprune.ranking import RANKERS as _RANKERS  # noqa: E402

BaselineMethod = Enum("BaselineMethod", {name: name for name in _RANKERS}, type=str)
_STUDENT_HELP = ("Student tokenizer: 'llama-2', 'mistral-7b-v0.3', 'llama-3.1', 'qwen2.5' (the paper's, offline after "
                 "`make tokenizers`), a model name, a local folder, a tokenizer.json or a hub id; lengths are matched in its tokens.")


def _finish_matched_run(summary, out: Path, reporter) -> None:
    from rich.table import Table

    from chainprune.pipelines.prune import errors_path
    from chainprune.report.progress import console

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


@app.command()
def baseline(
    method: Annotated[BaselineMethod, typer.Argument(help="uniform: seeded random order. surprisal: lowest -log p under --model first. h2o: least attention received from later tokens first. tokenskip: lowest LLMLingua-2 keep probability first. greedy: exact greedy (slow; prefer prune + match).")],
    input: Annotated[Path, typer.Argument(help="JSONL of chains: {id, question, reasoning, answer[, system]} per line.")],
    student_tokenizer: Annotated[str, typer.Option("--student-tokenizer", help=_STUDENT_HELP)],
    out: Annotated[Path, typer.Option("--out", "-o", help="JSONL to write: one trace-like record per chain, pruned at matched student lengths.")],
    keep: Annotated[list[float] | None, typer.Option("--keep", "-k", callback=_keep_fractions, help="Keep fraction of the student's tokens, in (0, 1]; repeatable (default 0.5).")] = None,
    model: Annotated[str, typer.Option(help="Pruner: its tokenizer defines the reasoning tokens; surprisal/h2o/greedy also run it.")] = "smollm2-135m",
    seed: Annotated[int, typer.Option(help="uniform: seed (mixed with each chain's id).")] = 0,
    classifier: Annotated[str, typer.Option(help="tokenskip: LLMLingua-2 token classifier (hub id or local folder).")] = _DEFAULT_CLASSIFIER,
    dtype: Annotated[Dtype, typer.Option(help="auto = bfloat16 on CUDA, float32 on CPU.")] = "auto",
    device: Annotated[Device, typer.Option(help="auto = cuda when available.")] = "auto",
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run: skip ids already in --out.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out.")] = False,
) -> None:
    """Rank the reasoning tokens of every chain in INPUT with a baseline METHOD and prune each chain to the
    kept set whose text, re-tokenized by the student's tokenizer, is closest to round(keep x its full length)."""
    from chainprune.pipelines.baselines import BaselineConfig, run_baseline
    from chainprune.report.progress import ProgressReporter, console

    config = BaselineConfig(method=method.value, student_tokenizer=student_tokenizer, model=model, keep=keep or [0.5],
                            seed=seed, classifier=classifier, dtype=dtype.value, device=device.value)
    reporter = ProgressReporter()
    try:
        summary = run_baseline(input, out, config, resume=resume, overwrite=overwrite, reporter=reporter)
    except ValueError as e:
        reporter.stop()
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None
    _finish_matched_run(summary, out, reporter)


@app.command()
def match(
    traces: Annotated[Path, typer.Argument(help="Greedy traces JSONL written by `chainprune prune`.")],
    student_tokenizer: Annotated[str, typer.Option("--student-tokenizer", help=_STUDENT_HELP)],
    out: Annotated[Path, typer.Option("--out", "-o", help="JSONL to write, in the same format as `chainprune baseline`.")],
    keep: Annotated[list[float] | None, typer.Option("--keep", "-k", callback=_keep_fractions, help="Keep fractions (default: those each trace was pruned to). A trace pruned only to r cannot go shorter: prune a little below the smallest keep you match.")] = None,
    pruner_tokenizer: Annotated[str | None, typer.Option(help="Tokenizer that decodes the traces' ids (default: each trace's pruner).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run: skip ids already in --out.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out.")] = False,
) -> None:
    """Cut greedy traces at matched student lengths, exactly as `chainprune baseline` cuts the baselines."""
    from chainprune.pipelines.baselines import MatchConfig, run_match
    from chainprune.report.progress import ProgressReporter, console

    config = MatchConfig(student_tokenizer=student_tokenizer, keep=keep or None, pruner_tokenizer=pruner_tokenizer)
    reporter = ProgressReporter()
    try:
        summary = run_match(traces, out, config, resume=resume, overwrite=overwrite, reporter=reporter)
    except ValueError as e:
        reporter.stop()
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None
    _finish_matched_run(summary, out, reporter)


@app.command()
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
        err_console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None
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


# ---- viewer (issue 8) ----


@app.command()
def view(
    traces: Annotated[list[Path], typer.Argument(metavar="TRACES.jsonl", help="Traces JSONL file(s). Two or more are shown side by side, matched by id, under one keep-fraction slider.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="HTML file to write (self-contained: opens offline in any browser).")] = Path("viewer.html"),
    title: Annotated[str | None, typer.Option(help="Page title (default: the file names).")] = None,
) -> None:
    """Write an interactive HTML page to watch chains being pruned: pick an example (search by id or text),
    move a slider over the deletions (or arrow keys), deleted tokens struck through, tokens coloured by
    category when the traces carry one, and the objective after each deletion as a small chart.

    Bad records are reported with their file, line and id and left out; the exit code is then 1.
    """
    from chainprune.pipelines.view import run_view

    console = err_console
    try:
        summary = run_view(traces, out, title)
    except (ValueError, OSError) as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None
    for path, failure in summary.failures:
        console.print(f"[red]skipped[/red] {path}: {failure}")
    shown = ", ".join(f"{label}: {count}" for label, count in summary.per_source.items())
    console.print(f"{summary.examples} example(s) ({shown})")
    out_console.print(f"viewer: {summary.out}")
    if summary.failures:
        raise typer.Exit(1)


# ---- analyses (issue 7) ----

analyze_app = typer.Typer(
    help="Analyses of what greedy pruning keeps: category retention, rank dynamics, attention surrogate, "
    "readability judge.",
    no_args_is_help=True,
)
app.add_typer(analyze_app, name="analyze")
AnnotatorName = Enum("AnnotatorName", {"rules": "rules", "llm": "llm"}, type=str)


def _track(items, total, description):
    from rich.progress import track

    return track(items, total=total, description=description, console=err_console, transient=True)


def _fail(message: str) -> None:
    err_console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(2)


def _report_failures(failures, what: str = "record") -> None:
    console = err_console
    for failure in failures:
        console.print(f"[red]failed[/red] {failure}")
    if failures:
        console.print(f"[red]{len(failures)} {what}(s) failed[/red]")


def _labelled(inputs: list[str]) -> list[tuple[str, Path]]:
    """'LABEL=PATH' or 'PATH' (labelled by its file name)."""
    out = []
    for item in inputs:
        label, sep, path = item.partition("=")
        out.append((label, Path(path)) if sep and not Path(item).exists() else (Path(item).stem, Path(item)))
    return out


LLM_HELP = "With --annotator llm / the judge: "


@app.command()
def annotate(
    traces: Annotated[Path, typer.Argument(help="Traces JSONL (from `chainprune prune`).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Traces JSONL to write, with a `category` on every token.")],
    annotator: Annotated[AnnotatorName, typer.Option(help="rules: offline word-level heuristics (deterministic). llm: the App. D.1 definitions as a prompt to an OpenAI-compatible endpoint (JSON schema, validated, retried, cached).")] = "rules",
    base_url: Annotated[str | None, typer.Option(help=LLM_HELP + "endpoint, e.g. http://localhost:8000/v1 (default: the openai package's, or OPENAI_BASE_URL).")] = None,
    llm_model: Annotated[str, typer.Option(help=LLM_HELP + "model name.")] = "gpt-5-mini",
    api_key_env: Annotated[str, typer.Option(help=LLM_HELP + "environment variable holding the API key.")] = "OPENAI_API_KEY",
    cache: Annotated[Path | None, typer.Option(help=LLM_HELP + "on-disk cache of replies keyed by the request (default OUT.llm-cache).")] = None,
    retries: Annotated[int, typer.Option(min=0, help=LLM_HELP + "retries per chain on errors or invalid replies.")] = 3,
    resume: Annotated[bool, typer.Option("--resume", help="Skip ids already in --out.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out.")] = False,
) -> None:
    """Label every reasoning token with one functional category (SymbMath, MetaDisc, CoRef, EntName,
    VerbalMath, Grammar; the paper's App. D.1). Pieces of one word share a category; ties follow that order."""
    from chainprune.pipelines.analyze import make_annotator, run_annotate

    options = {}
    if annotator.value == "llm":
        options = dict(base_url=base_url, model=llm_model, api_key_env=api_key_env, retries=retries,
                       cache=cache or out.with_name(out.name + ".llm-cache"))
    try:
        summary = run_annotate(traces, out, make_annotator(annotator.value, **options), resume=resume,
                               overwrite=overwrite, track=_track)
    except (ValueError, ImportError) as e:
        _fail(str(e))
    for warning in summary.warnings:
        err_console.print(f"[yellow]warning:[/yellow] {warning}")
    out_console.print(f"annotated {summary.done}, skipped {summary.skipped} (already in output), "
                      f"failed {len(summary.failures)}: {out}")
    _report_failures(summary.failures)
    if summary.failures:
        raise typer.Exit(1)


@analyze_app.command()
def retention(
    inputs: Annotated[list[str], typer.Argument(help="Annotated traces, as PATH or LABEL=PATH (one panel each).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output prefix: writes OUT.csv, OUT.png, OUT.svg.")],
    keep: Annotated[list[float] | None, typer.Option("--keep", "-k", callback=_keep_fractions, help="Keep fractions (default 1.0, 0.9, ..., 0.1, down to what the traces reach).")] = None,
    ranker: Annotated[list[str] | None, typer.Option(help="Also a panel for this baseline ranker (uniform, surprisal, h2o, ...) applied to the first file's chains; repeatable.")] = None,
    model: Annotated[str, typer.Option(help="Causal LM for rankers that need one (surprisal, h2o).")] = "smollm2-135m",
    seed: Annotated[int, typer.Option(help="Seed for the uniform ranker.")] = 0,
) -> None:
    """Category retention curves (the paper's Fig. 3): per category, the fraction of its tokens kept at each
    keep fraction; the dashed diagonal is uniform deletion. The numbers go to OUT.csv."""
    from chainprune.pipelines.analyze import run_retention

    loaded = None
    if any(r not in ("uniform",) for r in ranker or []):
        from chainprune.models import load_model

        loaded = load_model(model, dtype="float32", device="auto").model
    try:
        result = run_retention(_labelled(inputs), out, keep, ranker or [], loaded, seed)
    except (ValueError, OSError) as e:
        _fail(str(e))
    from rich.table import Table

    table = Table(title="category retention")
    labels = list(dict.fromkeys(r["label"] for r in result.rows))
    keeps = sorted({r["keep"] for r in result.rows}, reverse=True)
    table.add_column("label")
    table.add_column("category")
    for k in keeps:
        table.add_column(f"{k:g}", justify="right")
    by = {(r["label"], r["category"], r["keep"]): r["retention"] for r in result.rows}
    for label in labels:
        for category in dict.fromkeys(r["category"] for r in result.rows):
            values = [by.get((label, category, k), "") for k in keeps]
            if any(v != "" for v in values):
                table.add_row(label, category, *(f"{v:.2f}" if v != "" else "" for v in values))
    out_console.print(table)
    out_console.print("wrote " + ", ".join(map(str, result.files)))
    _report_failures(result.failures)


@analyze_app.command()
def dynamics(
    traces: Annotated[Path, typer.Argument(help="Traces JSONL pruned with `chainprune prune --save-scores`.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output prefix: writes OUT.csv, OUT.png, OUT.svg.")],
    scores: Annotated[Path | None, typer.Option(help="Scores sidecar (default: TRACES with .scores.jsonl appended, e.g. traces.jsonl.scores.jsonl, as `prune --save-scores` writes it).")] = None,
    keep: Annotated[list[float] | None, typer.Option("--keep", "-k", callback=_keep_fractions, help="Keep fractions delimiting the transitions (default 1.0, 0.9, ..., 0.1, down to what the traces reach).")] = None,
) -> None:
    """Rank dynamics (the paper's Fig. 5): at each transition r -> r', Hit@|S| of the local ranking at r
    (dynamic), of the ranking at keep 1.0 (frozen), and of a random ranking (expected value), against the
    set S of tokens greedy actually deletes; mean over chains."""
    from rich.table import Table

    from chainprune.pipelines.analyze import run_dynamics

    try:
        result = run_dynamics(traces, out, scores, keep)
    except (ValueError, OSError) as e:
        _fail(str(e))
    table = Table(title=f"Hit@|S| ({result.chains} chains)")
    for column in ("keep", "next", "chains", "mean |S|", "dynamic", "frozen@1.0", "random"):
        table.add_column(column, justify="right")
    for row in result.rows:
        table.add_row(f"{row['keep']:g}", f"{row['next_keep']:g}", str(row["chains"]), f"{row['mean_pruned']:.1f}",
                      f"{row['dynamic']:.3f}", f"{row['frozen@1.0']:.3f}", f"{row['random']:.3f}")
    out_console.print(table)
    out_console.print("wrote " + ", ".join(map(str, result.files)))
    _report_failures(result.failures)


@analyze_app.command()
def surrogate(
    train: Annotated[Path, typer.Option(help="Training chains: traces JSONL (targets from its --save-scores sidecar when present) or prune-input chains JSONL.")],
    test: Annotated[Path, typer.Option(help="Held-out chains, same formats.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Trained surrogate (torch file); also OUT.csv (per-chain Pearson) and OUT.png/.svg.")],
    model: Annotated[str, typer.Option(help="Model whose attention gives the features (the paper: the teacher).")] = "smollm2-135m",
    pruner: Annotated[str | None, typer.Option(help="Pruner that scores the targets when no sidecar has them (default: --model).")] = None,
    objective: Annotated[Objective, typer.Option(help="Objective of the targets.")] = "joint",
    dtype: Annotated[Dtype, typer.Option(help="auto = bfloat16 on CUDA, float32 on CPU.")] = "auto",
    device: Annotated[Device, typer.Option(help="auto = cuda when available.")] = "auto",
    hidden: Annotated[int, typer.Option(min=1, help="Hidden units of the 2-layer MLP.")] = 64,
    epochs: Annotated[int, typer.Option(min=1, help="Full-batch Adam steps.")] = 300,
    seed: Annotated[int, typer.Option(help="Seed for the MLP's initialization.")] = 0,
) -> None:
    """Attention surrogate (the paper's §5.3): features = mean attention each reasoning token receives from
    later tokens, per (layer, head); a 2-layer MLP trained with a Pearson loss predicts the objective after
    deleting the token; reports held-out Pearson per chain. Use the saved file with `prune --surrogate`."""
    from chainprune.models import load_model
    from chainprune.pipelines.analyze import run_surrogate

    try:
        attention_model = load_model(model, dtype=dtype.value, device=device.value)
        scorer = attention_model if pruner in (None, model) else load_model(pruner, dtype=dtype.value, device=device.value)
        result = run_surrogate(train, test, out, attention_model.model, scorer, objective.value, hidden, epochs, seed,
                               info={"attention_model": model, "pruner": scorer.name}, track=_track)
    except (ValueError, OSError) as e:
        _fail(str(e))
    out_console.print(f"train chains {result.train_chains} (mean Pearson {result.train_pearson_mean:.3f}); "
                      f"test chains {result.test_chains}: held-out Pearson mean {result.test_pearson_mean:.3f}, "
                      f"median {result.test_pearson_median:.3f}")
    out_console.print("wrote " + ", ".join(map(str, result.files)))
    _report_failures(result.failures)


@analyze_app.command()
def judge(
    traces: Annotated[Path, typer.Argument(help="Traces JSONL.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Judgments JSONL (one record per trace); the summary goes to OUT.summary.csv.")],
    keep: Annotated[list[float] | None, typer.Option("--keep", "-k", callback=_keep_fractions, help="Keep fractions to judge (default 0.9, 0.7, 0.5).")] = None,
    chains: Annotated[Path | None, typer.Option(help="The prune input JSONL, to show the judge each question.")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Judge only the first N traces.")] = None,
    base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1.")] = None,
    llm_model: Annotated[str, typer.Option(help="Judge model name.")] = "gpt-5-mini",
    api_key_env: Annotated[str, typer.Option(help="Environment variable holding the API key.")] = "OPENAI_API_KEY",
    temperature: Annotated[float | None, typer.Option(help="Sampling temperature (the paper: 0; leave unset for models that reject it).")] = None,
    cache: Annotated[Path | None, typer.Option(help="On-disk cache of replies (default OUT.llm-cache).")] = None,
    retries: Annotated[int, typer.Option(min=0, help="Retries per request on errors or invalid replies.")] = 3,
    resume: Annotated[bool, typer.Option("--resume", help="Skip ids already in --out.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out.")] = False,
) -> None:
    """Readability of pruned traces (the paper's App. E): corruption, structural integrity, semantic
    coherence, mathematical state, SFT suitability, each judged by an LLM under a JSON schema; prints the
    share of every level per keep fraction (Table 3)."""
    from rich.table import Table

    from chainprune.analysis.llm import JsonLLM
    from chainprune.pipelines.analyze import run_judge

    try:
        llm = JsonLLM(llm_model, base_url, api_key_env, retries, cache or out.with_name(out.name + ".llm-cache"), temperature)
        result = run_judge(traces, out, keep or [0.9, 0.7, 0.5], llm, chains, limit, resume, overwrite, _track)
    except (ValueError, ImportError, OSError) as e:
        _fail(str(e))
    table = Table(title=f"readability ({result.judged} judged now, {result.skipped} from before)")
    columns = list(result.rows[0]) if result.rows else []
    for column in columns:
        table.add_column(column, justify="left" if column in ("dimension", "level") else "right")
    for row in result.rows:
        table.add_row(*(f"{v:.1%}" if isinstance(v, float) else str(v) for v in row.values()))
    out_console.print(table)
    out_console.print("wrote " + ", ".join(map(str, result.files)))
    _report_failures(result.failures)
    if result.failures:
        raise typer.Exit(1)


# ---- distillation and experiments (issue 6) ----

_DEV_HELP = "Dev set that picks the best checkpoint: "


@app.command()
def distill(
    chains: Annotated[Path, typer.Option(help="The chains the pruned records came from (prune input: id, question, reasoning, answer[, system]).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for checkpoints, dev evaluations, best/ and summary.json.")],
    train: Annotated[Path | None, typer.Option(help="Pruned records: `chainprune match` / `baseline` output (or traces from `prune`). Not needed with --keep 1.0 (the full chains).")] = None,
    keep: Annotated[float, typer.Option(help="Train on the reasoning kept at this keep fraction (a key of each record's `pruned`).")] = 0.7,
    method: Annotated[str, typer.Option(help="Pruning method the records must come from (greedy, uniform, surprisal, h2o, tokenskip); a mismatch is reported per record.")] = "greedy",
    student: Annotated[str, typer.Option(help="Student: 'smollm2-135m' (bundled, offline), 'qwen2.5-coder-0.5b'/'-1.5b' (offline after `make models`), a .gguf file, a local HF folder or a hub id.")] = "smollm2-135m",
    dataset: Annotated[DatasetName, typer.Option(help="Task: its system prompt (for chains without one) and its grader (dev accuracy).")] = "gsm8k",
    lora: Annotated[bool, typer.Option("--lora/--full", help="LoRA adapters (PEFT) or full fine-tuning.")] = True,
    lora_r: Annotated[int, typer.Option(min=1, help="LoRA rank.")] = 16,
    lora_alpha: Annotated[int, typer.Option(min=1, help="LoRA alpha.")] = 32,
    lora_dropout: Annotated[float, typer.Option(min=0.0, max=0.99, help="LoRA dropout.")] = 0.05,
    learning_rate: Annotated[float, typer.Option(min=0.0, help="Peak learning rate (cosine decay).")] = 2e-4,
    steps: Annotated[int, typer.Option(min=1, help="Optimizer steps (paper: 1,200).")] = 1200,
    batch_size: Annotated[int, typer.Option(min=1, help="Examples per forward.")] = 4,
    grad_accum: Annotated[int, typer.Option(min=1, help="Forwards per optimizer step; effective batch = batch-size x grad-accum (paper: 28).")] = 7,
    warmup: Annotated[float, typer.Option(min=0.0, max=0.99, help="Fraction of the steps with linear warm-up.")] = 0.03,
    max_length: Annotated[int, typer.Option(min=1, help="Longest training sequence in the student's tokens (longer ones are cut).")] = 1024,
    save_steps: Annotated[int, typer.Option(min=1, help="A checkpoint every N steps (and at the end).")] = 200,
    seed: Annotated[int, typer.Option(help="Training seed (initialization of the adapters, data order).")] = 0,
    gradient_checkpointing: Annotated[bool, typer.Option("--gradient-checkpointing", help="Recompute activations in the backward pass (less GPU memory, slower).")] = False,
    dev_split: Annotated[str, typer.Option(help=_DEV_HELP + "train, dev, test, all (with --dev-data-file) or 'none' (keep the last checkpoint).")] = "dev",
    dev_data_file: Annotated[Path | None, typer.Option(help=_DEV_HELP + _DATA_FILE_HELP)] = None,
    dev_hub_dataset: Annotated[str | None, typer.Option(help=_DEV_HELP + _HUB_DATASET_HELP)] = None,
    dev_limit: Annotated[int | None, typer.Option(min=1, help=_DEV_HELP + "only the first N questions.")] = 100,
    split_seed: Annotated[int, typer.Option(help="Seed of the carve making the paper's splits.")] = 0,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Longest dev response.")] = 512,
    eval_batch_size: Annotated[int, typer.Option(min=1, help="Dev questions per generate call.")] = 8,
    dtype: Annotated[Dtype, typer.Option(help="auto = bfloat16 on CUDA, float32 on CPU.")] = "auto",
    device: Annotated[Device, typer.Option(help="auto = cuda when available.")] = "auto",
    resume: Annotated[bool, typer.Option("--resume", help="Continue: training from the last checkpoint, dev evaluations where they stopped; a finished run is kept.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing run in --out.")] = False,
) -> None:
    """Distil a student on pruned chains: SFT with TRL (loss on the response only, the student's chat
    template), LoRA or full fine-tuning, cosine schedule; every checkpoint is scored on a dev set and the best
    is copied to OUT/best (evaluate it with `chainprune evaluate --model OUT/best`).

    Bad records (no chain with that id, another method, no text at --keep) are reported and left out;
    the exit code is then 1.
    """
    from chainprune.pipelines.distill import DistillConfig, run_distill
    from chainprune.training import SFTSettings

    console = err_console
    sft = SFTSettings(lora=lora, lora_r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
                      learning_rate=learning_rate, steps=steps, batch_size=batch_size, grad_accum=grad_accum,
                      warmup=warmup, max_length=max_length, save_steps=save_steps, seed=seed,
                      gradient_checkpointing=gradient_checkpointing)
    config = DistillConfig(student=student, keep=keep, method=method, dataset=dataset.value, sft=sft,
                           dtype=dtype.value, device=device.value, dev_split=None if dev_split == "none" else dev_split,
                           dev_data_file=str(dev_data_file) if dev_data_file else None, dev_hub_dataset=dev_hub_dataset,
                           dev_limit=dev_limit, split_seed=split_seed, max_new_tokens=max_new_tokens,
                           eval_batch_size=eval_batch_size)
    try:
        summary = run_distill(train, chains, out, config, resume=resume, overwrite=overwrite,
                              log=lambda message: console.print(message))
    except (ValueError, ImportError, OSError) as e:
        _fail(str(e))
    from rich.table import Table

    table = Table(title=f"{student} on {summary.examples} chains ({method}, keep {keep:g}), {summary.steps} steps")
    for column in ("checkpoint", "dev accuracy", "dev n", "dev reasoning tokens", "chosen"):
        table.add_column(column, justify="right")
    for c in summary.checkpoints:
        accuracy = f"{100 * c['dev_accuracy']:.1f}%" if "dev_accuracy" in c else "-"
        reasoning = f"{c['dev_mean_reasoning_tokens']:.0f}" if "dev_mean_reasoning_tokens" in c else "-"
        table.add_row(str(c["step"]), accuracy, str(c.get("dev_examples", "-")), reasoning,
                      "*" if c["step"] == summary.chosen["step"] else "")
    out_console.print(table)
    out_console.print(f"best: {summary.best}  (summary: {out / 'summary.json'})")
    _report_failures(summary.failures)
    if summary.failures:
        raise typer.Exit(1)


@app.command()
def experiment(
    config_file: Annotated[Path, typer.Argument(metavar="CONFIG.yaml", help="The experiment: data, teacher(s), pruner(s), student(s), methods, keep fractions, evaluation (docs/distillation.md).")],
    out_dir: Annotated[Path | None, typer.Option(help="Where the stages live (default: the config's out_dir).")] = None,
    results_dir: Annotated[Path | None, typer.Option(help="Where the table, plot and resolved config go (default: the config's results_dir, else out_dir).")] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="torch CPU threads (overrides the config's `threads`).")] = None,
) -> None:
    """Run the distillation grid: teacher chains -> pruned sets (every method x keep fraction, matched
    student lengths) -> students (best checkpoint by dev accuracy) -> test accuracy and output reasoning
    length -> results.csv/.md and accuracy-vs-keep.png/.svg (zero-shot student as a line).

    Every stage is cached under OUT_DIR/stages by a hash of its inputs: rerun the same command to resume
    after an interruption; change a setting and only the stages it reaches run again.
    """
    from chainprune.pipelines.experiment import load_config, run_experiment, results_markdown
    from chainprune.report.progress import ProgressReporter

    console = err_console
    try:
        config = load_config(config_file, {"threads": threads} if threads else None)
        result = run_experiment(config, out_dir, results_dir, log=lambda message: console.print(message),
                                reporter_factory=ProgressReporter)
    except (ValueError, ImportError, OSError) as e:
        _fail(str(e))
    out_console.print(results_markdown(result.rows), markup=False, highlight=False)
    out_console.print(f"{result.stages_run} stage(s) run, {result.stages_skipped} cached, {result.seconds:.0f} s")
    out_console.print("wrote " + ", ".join(map(str, result.files)))


# ---- scale-out with Ray (issue 9) ----


def _prune_on_ray(input: Path, out: Path, config, resume: bool, overwrite: bool, ray: bool,
                  ray_address: str | None, workers: int | None) -> None:
    """`prune --ray`: the distributed pipeline, with cluster progress and summary."""
    from chainprune.pipelines.distributed import RayOptions, run_prune_distributed
    from chainprune.report.cluster_progress import ClusterProgress, distributed_summary_table

    if not ray:
        raise typer.BadParameter("--workers and --ray-address need --ray", param_hint="--ray")
    reporter = ClusterProgress()
    options = RayOptions(address=ray_address, workers=workers)
    _run_and_report(lambda: run_prune_distributed(input, out, config, options, resume=resume, overwrite=overwrite,
                                                  reporter=reporter), reporter, distributed_summary_table, out)


if __name__ == "__main__":
    app()


from chainprune.cli_models import models_app  # noqa: E402  (a sub-app of its own module)

app.add_typer(models_app, name="models")
