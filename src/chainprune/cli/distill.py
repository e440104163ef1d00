"""`chainprune teacher`, `evaluate`, `distill`, `experiment`: teacher chains, zero-shot accuracy, students
trained on pruned chains, and the grid that runs them all."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from chainprune.choices import DEFAULT_DEVICE, DEFAULT_DTYPE, DEFAULT_MODEL
from chainprune.cli.common import (
    DATA_FILE_HELP,
    HUB_DATASET_HELP,
    MODEL_NAMES_HELP,
    SPLIT_HELP,
    Backend,
    DatasetName,
    DeviceOption,
    DtypeOption,
    Overwrite,
    bar,
    config_from,
    err_console,
    fail,
    log_to,
    out_console,
    out_option,
    report_failures,
    resume_option,
)


def teacher(
    out: Annotated[Path, out_option("Chains JSONL to write (pruner input records, appended per question).")],
    dataset: Annotated[DatasetName, typer.Option(help="Dataset.")] = "gsm8k",
    split: Annotated[str, typer.Option(help=SPLIT_HELP)] = "train",
    model: Annotated[str, typer.Option(help="Teacher: " + MODEL_NAMES_HELP)] = DEFAULT_MODEL,
    samples: Annotated[int, typer.Option(min=1, help="Responses sampled per question (paper: 10).")] = 10,
    temperature: Annotated[float, typer.Option(min=0.0, help="Sampling temperature (paper: 0.7).")] = 0.7,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling top-p in (0, 1] (paper: 1.0). No top-k is applied.")] = 1.0,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Longest response; a sample cut off here is never kept (its end is missing).")] = 1024,
    seed: Annotated[int, typer.Option(help="Sampling seed; also picks which correct response is kept.")] = 0,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N questions of the split.")] = None,
    data_file: Annotated[Path | None, typer.Option(help=DATA_FILE_HELP)] = None,
    hub_dataset: Annotated[str | None, typer.Option(help=HUB_DATASET_HELP)] = None,
    split_seed: Annotated[int, typer.Option(help="Seed of the carve making the paper's train/dev/test from the original splits.")] = 0,
    backend: Annotated[Backend, typer.Option(help="transformers (CPU/GPU) or vllm (GPU, optional extra chainprune[vllm]).")] = "transformers",
    batch_size: Annotated[int, typer.Option(min=1, help="Questions per generate call (each with --samples samples).")] = 8,
    dtype: DtypeOption = DEFAULT_DTYPE,
    device: DeviceOption = DEFAULT_DEVICE,
    resume: Annotated[bool, resume_option("Continue an interrupted run: questions already attempted are skipped.")] = False,
    overwrite: Overwrite = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Print every unparsable sample and dropped question.")] = False,
) -> None:
    """Teacher chains by rejection sampling (paper App. B.4): sample --samples responses per question, keep
    one correct response picked at random, drop questions with none.

    Writes pruner input records {id, question, reasoning, answer, system, gold, sample_index, ...} to --out
    and every sample with its grade to OUT.samples.jsonl. Unparsable responses count as incorrect.
    """
    from chainprune.pipelines.teacher import TeacherConfig, run_teacher, samples_path

    console = err_console
    config = config_from(TeacherConfig, locals())
    progress, advance = bar(console, "questions")
    try:
        with progress:
            summary = run_teacher(out, config, resume=resume, overwrite=overwrite, progress=advance,
                                  log=log_to(progress.console, verbose))
    except (ValueError, RuntimeError, OSError) as e:  # bad settings or files, a model that cannot be loaded
        fail(str(e))
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


def evaluate(
    model: Annotated[list[str] | None, typer.Option("--model", "-m", help="Model(s) to evaluate (repeatable; default smollm2-135m): 'smollm2-135m', a local HF folder or a hub id.")] = None,
    dataset: Annotated[list[DatasetName] | None, typer.Option("--dataset", "-d", help="Dataset(s) (repeatable; default gsm8k).")] = None,
    split: Annotated[str, typer.Option(help=SPLIT_HELP)] = "test",
    out_dir: Annotated[Path, typer.Option("--out-dir", help="Per-example outputs go to OUT_DIR/<model>/<dataset>-<split>.jsonl; the table to OUT_DIR/summary.json.")] = Path("eval-output"),
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Longest response; one cut off before its final-answer line is unparsable, so incorrect.")] = 1024,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N questions of the split.")] = None,
    data_file: Annotated[list[Path] | None, typer.Option(help=DATA_FILE_HELP + " One per --dataset, in the same order.")] = None,
    hub_dataset: Annotated[str | None, typer.Option(help=HUB_DATASET_HELP)] = None,
    split_seed: Annotated[int, typer.Option(help="Seed of the carve making the paper's splits.")] = 0,
    backend: Annotated[Backend, typer.Option(help="transformers (CPU/GPU) or vllm (GPU).")] = "transformers",
    batch_size: Annotated[int, typer.Option(min=1, help="Questions per generate call.")] = 8,
    dtype: DtypeOption = DEFAULT_DTYPE,
    device: DeviceOption = DEFAULT_DEVICE,
    resume: Annotated[bool, resume_option("Skip questions already in the outputs.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Print every unparsable response.")] = False,
) -> None:
    """Zero-shot accuracy with greedy decoding (temperature 0), and mean generated reasoning length, for
    every model x dataset; prints a table like the paper's Table 2."""
    from rich.table import Table

    from chainprune.pipelines.evaluate import EvalConfig, EvalGrid

    models, datasets = model or [DEFAULT_MODEL], [d.value for d in dataset] if dataset else ["gsm8k"]
    if data_file and len(data_file) != len(datasets):
        raise typer.BadParameter(f"{len(data_file)} file(s) for {len(datasets)} dataset(s)", param_hint="--data-file")
    settings = EvalConfig(split=split, max_new_tokens=max_new_tokens, backend=backend.value, dtype=dtype.value,
                          device=device.value, batch_size=batch_size, hub_dataset=hub_dataset,
                          split_seed=split_seed, limit=limit)
    grid = EvalGrid(out_dir, models, datasets, settings, dict(zip(datasets, data_file)) if data_file else {})
    for name, ds in grid.cells():
        progress, advance = bar(err_console, f"{name} {ds}")
        try:
            with progress:
                summary = grid.run(name, ds, resume, overwrite, advance, log_to(progress.console, verbose))
        except ValueError as e:
            fail(str(e))
        for failure in summary.failures:
            err_console.print(f"[red]bad record[/red] {failure}")
        err_console.print(f"{name} on {ds}: {grid.output(name, ds)}")
    table = Table(title=f"zero-shot accuracy % (greedy), {split} split; mean reasoning tokens in brackets")
    table.add_column("model")
    for ds in datasets:
        table.add_column(ds, justify="right")
    for name in models:
        table.add_row(name, *(_accuracy_cell(grid.summaries[(name, ds)]) for ds in datasets))
    out_console.print(table)
    grid.write_summary()
    if grid.failed:
        raise typer.Exit(1)


def _accuracy_cell(s) -> str:
    return (f"{100 * s.accuracy:.2f} ({s.mean_reasoning_tokens:.0f}) n={s.examples}"
            + (f", {s.unparsable} unparsable" if s.unparsable else ""))


DEV_HELP = "Dev set that picks the best checkpoint: "


def distill(
    chains: Annotated[Path, typer.Option(help="The chains the pruned records came from (prune input: id, question, reasoning, answer[, system]).")],
    out: Annotated[Path, out_option("Folder for checkpoints, dev evaluations, best/ and summary.json.")],
    train: Annotated[Path | None, typer.Option(help="Pruned records: `chainprune match` / `baseline` output (or traces from `prune`). Not needed with --keep 1.0 (the full chains).")] = None,
    keep: Annotated[float, typer.Option(help="Train on the reasoning kept at this keep fraction (a key of each record's `pruned`).")] = 0.7,
    method: Annotated[str, typer.Option(help="Pruning method the records must come from (greedy, uniform, surprisal, h2o, tokenskip); a mismatch is reported per record.")] = "greedy",
    student: Annotated[str, typer.Option(help="Student: " + MODEL_NAMES_HELP)] = DEFAULT_MODEL,
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
    dev_split: Annotated[str, typer.Option(help=DEV_HELP + "train, dev, test, all (with --dev-data-file) or 'none' (keep the last checkpoint).")] = "dev",
    dev_data_file: Annotated[Path | None, typer.Option(help=DEV_HELP + DATA_FILE_HELP)] = None,
    dev_hub_dataset: Annotated[str | None, typer.Option(help=DEV_HELP + HUB_DATASET_HELP)] = None,
    dev_limit: Annotated[int | None, typer.Option(min=1, help=DEV_HELP + "only the first N questions.")] = 100,
    split_seed: Annotated[int, typer.Option(help="Seed of the carve making the paper's splits.")] = 0,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Longest dev response.")] = 512,
    eval_batch_size: Annotated[int, typer.Option(min=1, help="Dev questions per generate call.")] = 8,
    dtype: DtypeOption = DEFAULT_DTYPE,
    device: DeviceOption = DEFAULT_DEVICE,
    resume: Annotated[bool, resume_option("Continue: training from the last checkpoint, dev evaluations where they stopped; a finished run is kept.")] = False,
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

    sft = config_from(SFTSettings, locals())
    config = config_from(DistillConfig, locals(), dev_split=None if dev_split == "none" else dev_split)
    try:
        summary = run_distill(train, chains, out, config, resume=resume, overwrite=overwrite,
                              log=lambda message: err_console.print(message))
    except (ValueError, ImportError, OSError) as e:
        fail(str(e))
    _print_checkpoints(summary, student, method, keep, out)
    report_failures(summary.failures)
    if summary.failures:
        raise typer.Exit(1)


def _print_checkpoints(summary, student: str, method: str, keep: float, out: Path) -> None:
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
    after an interruption; change a setting and only the stages it reaches run again. Run the same command in
    a second shell to share the work: each process takes the stages the other is not running (a running stage
    is locked) and waits for the ones it needs. A job that cannot run (a method whose model cannot be loaded)
    is reported beside the results and the others go on; the exit code is then 1.
    """
    from chainprune.pipelines.experiment import load_config, results_markdown, run_experiment
    from chainprune.report.progress import ProgressReporter

    try:
        config = load_config(config_file, {"threads": threads} if threads else None)
    except (ValueError, ImportError, OSError) as e:
        fail(str(e))
    try:
        result = run_experiment(config, out_dir, results_dir, log=lambda message: err_console.print(message),
                                reporter_factory=ProgressReporter)
    except (ValueError, ImportError, OSError) as e:
        fail(str(e))
    out_console.print(results_markdown(result.rows, failed=result.failed), markup=False, highlight=False)
    out_console.print(f"{result.stages_run} stage(s) run, {result.stages_skipped} cached, {result.seconds:.0f} s")
    out_console.print("wrote " + ", ".join(map(str, result.files)))
    if result.failed:
        raise typer.Exit(1)
