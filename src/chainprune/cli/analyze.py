"""`chainprune annotate` and `chainprune analyze ...`: what greedy pruning keeps."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from chainprune.choices import DEFAULT_DEVICE, DEFAULT_DTYPE, DEFAULT_MODEL
from chainprune.cli.common import (
    DeviceOption,
    DtypeOption,
    Objective,
    Overwrite,
    SurrogateFeatures,
    Traces,
    add_commands,
    choice,
    err_console,
    fail,
    keep_option,
    out_console,
    out_option,
    report_failures,
    resume_option,
    track,
)

AnnotatorName = choice("AnnotatorName", ("rules", "llm"))
LLM_HELP = "With --annotator llm / the judge: "
SkipDone = Annotated[bool, resume_option("Skip ids already in --out.")]
Output = Annotated[Path, out_option("Output prefix: writes OUT.csv, OUT.png, OUT.svg.")]


def annotate(
    traces: Traces,
    out: Annotated[Path, out_option("Traces JSONL to write, with a `category` on every token.")],
    annotator: Annotated[AnnotatorName, typer.Option(help="rules: offline word-level heuristics (deterministic). llm: the App. D.1 definitions as a prompt to an OpenAI-compatible endpoint (JSON schema, validated, retried, cached).")] = "rules",
    base_url: Annotated[str | None, typer.Option(help=LLM_HELP + "endpoint, e.g. http://localhost:8000/v1 (default: the openai package's, or OPENAI_BASE_URL).")] = None,
    llm_model: Annotated[str, typer.Option(help=LLM_HELP + "model name.")] = "gpt-5-mini",
    api_key_env: Annotated[str, typer.Option(help=LLM_HELP + "environment variable holding the API key.")] = "OPENAI_API_KEY",
    cache: Annotated[Path | None, typer.Option(help=LLM_HELP + "on-disk cache of replies keyed by the request (default OUT.llm-cache).")] = None,
    retries: Annotated[int, typer.Option(min=0, help=LLM_HELP + "retries per chain on errors or invalid replies.")] = 3,
    resume: SkipDone = False,
    overwrite: Overwrite = False,
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
                               overwrite=overwrite, track=track)
    except (ValueError, ImportError, OSError) as e:
        fail(str(e))
    for warning in summary.warnings:
        err_console.print(f"[yellow]warning:[/yellow] {warning}")
    out_console.print(f"annotated {summary.done}, skipped {summary.skipped} (already in output), "
                      f"failed {len(summary.failures)}: {out}")
    report_failures(summary.failures)
    if summary.failures:
        raise typer.Exit(1)


def _labelled(inputs: list[str]) -> list[tuple[str, Path]]:
    """'LABEL=PATH' or 'PATH' (labelled by its file name)."""
    out = []
    for item in inputs:
        label, sep, path = item.partition("=")
        out.append((label, Path(path)) if sep and not Path(item).exists() else (Path(item).stem, Path(item)))
    return out


def retention(
    inputs: Annotated[list[str], typer.Argument(help="Annotated traces, as PATH or LABEL=PATH (one panel each).")],
    out: Output,
    keep: Annotated[list[float] | None, keep_option("Keep fractions (default 1.0, 0.9, ..., 0.1, down to what the traces reach).")] = None,
    ranker: Annotated[list[str] | None, typer.Option(help="Also a panel for this baseline ranker (uniform, surprisal, h2o, ...) applied to the first file's chains; repeatable.")] = None,
    model: Annotated[str, typer.Option(help="Causal LM for rankers that need one (surprisal, h2o).")] = DEFAULT_MODEL,
    seed: Annotated[int, typer.Option(help="Seed for the uniform ranker.")] = 0,
) -> None:
    """Category retention curves (the paper's Fig. 3): per category, the fraction of its tokens kept at each
    keep fraction; the dashed diagonal is uniform deletion. The numbers go to OUT.csv."""
    from rich.table import Table

    from chainprune.pipelines.analyze import ranker_model, retention_pivot, run_retention

    try:
        result = run_retention(_labelled(inputs), out, keep, ranker or [], ranker_model(ranker or [], model), seed)
    except (ValueError, OSError) as e:
        fail(str(e))
    keeps, rows = retention_pivot(result.rows)
    table = Table(title="category retention")
    table.add_column("label")
    table.add_column("category")
    for k in keeps:
        table.add_column(f"{k:g}", justify="right")
    for label, category, values in rows:
        table.add_row(label, category, *("" if v is None else f"{v:.2f}" for v in values))
    out_console.print(table)
    out_console.print("wrote " + ", ".join(map(str, result.files)))
    report_failures(result.failures)
    if result.failures:
        raise typer.Exit(1)


def dynamics(
    traces: Annotated[Path, typer.Argument(help="Traces JSONL pruned with `chainprune prune --save-scores`.")],
    out: Output,
    scores: Annotated[Path | None, typer.Option(help="Scores sidecar (default: TRACES with .scores.jsonl appended, e.g. traces.jsonl.scores.jsonl, as `prune --save-scores` writes it).")] = None,
    keep: Annotated[list[float] | None, keep_option("Keep fractions delimiting the transitions (default 1.0, 0.9, ..., 0.1, down to what the traces reach).")] = None,
    pruner: Annotated[str | None, typer.Option(help="The traces' pruner: score each chain that has no saved scores here, one exact pass at each keep fraction's state (for traces pruned without --save-scores, or in an approximate mode); the passes are kept in OUT.scores.jsonl and reused by a re-run.")] = None,
    dtype: DtypeOption = DEFAULT_DTYPE,
    device: DeviceOption = DEFAULT_DEVICE,
) -> None:
    """Rank dynamics (the paper's Fig. 5): at each transition r -> r', Hit@|S| of the local ranking at r
    (dynamic), of the ranking at keep 1.0 (frozen), and of a random ranking (expected value), against the
    set S of tokens greedy actually deletes; mean over chains."""
    from rich.table import Table

    from chainprune.pipelines.analyze import run_dynamics
    from chainprune.run import require_input

    try:
        require_input(traces)

        def loader(name: str):
            from chainprune.models import load_model

            return load_model(name, dtype=dtype.value, device=device.value)

        result = run_dynamics(traces, out, scores, keep, pruner, loader, track)
    except (ValueError, OSError) as e:
        fail(str(e))
    table = Table(title=f"Hit@|S| ({result.chains} chains)")
    for column in ("keep", "next", "chains", "mean |S|", "dynamic", "frozen@1.0", "random"):
        table.add_column(column, justify="right")
    for row in result.rows:
        table.add_row(f"{row['keep']:g}", f"{row['next_keep']:g}", str(row["chains"]), f"{row['mean_pruned']:.1f}",
                      f"{row['dynamic']:.3f}", f"{row['frozen@1.0']:.3f}", f"{row['random']:.3f}")
    out_console.print(table)
    out_console.print("wrote " + ", ".join(map(str, result.files)))
    report_failures(result.failures)
    if result.failures:
        raise typer.Exit(1)


def surrogate(
    train: Annotated[Path, typer.Option(help="Training chains: traces JSONL (targets from its --save-scores sidecar when present) or prune-input chains JSONL.")],
    test: Annotated[Path, typer.Option(help="Held-out chains, same formats.")],
    out: Annotated[Path, out_option("Trained surrogate (torch file); also OUT.csv (per-chain Pearson) and OUT.png/.svg.")],
    model: Annotated[str, typer.Option(help="Model whose attention gives the features (the paper: the teacher).")] = DEFAULT_MODEL,
    pruner: Annotated[str | None, typer.Option(help="Pruner that scores the targets when no sidecar has them (default: --model).")] = None,
    objective: Annotated[Objective, typer.Option(help="Objective of the targets.")] = "joint",
    dtype: DtypeOption = DEFAULT_DTYPE,
    device: DeviceOption = DEFAULT_DEVICE,
    hidden: Annotated[int, typer.Option(min=1, help="Hidden units of the 2-layer MLP.")] = 64,
    epochs: Annotated[int, typer.Option(min=1, help="Full-batch Adam steps.")] = 300,
    seed: Annotated[int, typer.Option(help="Seed for the MLP's initialization.")] = 0,
    features: Annotated[SurrogateFeatures, typer.Option(help="attention: the paper's (attention each token receives). attention-split+given: that attention split by distance (from the next token, 2-8 after, the rest) plus the attention it gives (weight on the previous token, row entropy), per head; held-out Pearson 0.72 -> 0.76 (mean of 5 seeds) in benchmarks/results/surrogate-features-seeds-cpu.json. Recorded in the saved surrogate.")] = "attention",
) -> None:
    """Attention surrogate (the paper's §5.3): features = mean attention each reasoning token receives from
    later tokens, per (layer, head) (with --features attention-split+given, split by distance, and the attention
    it gives); a 2-layer MLP trained with a Pearson loss predicts the objective after deleting the token; reports
    held-out Pearson per chain. Use the saved file with `prune --surrogate`."""
    from chainprune.models import load_model
    from chainprune.pipelines.analyze import run_surrogate
    from chainprune.run import require_input

    try:
        for path in (train, test):  # before the models load
            require_input(path)
        attention_model = load_model(model, dtype=dtype.value, device=device.value)
        scorer = attention_model if pruner in (None, model) else load_model(pruner, dtype=dtype.value, device=device.value)
        result = run_surrogate(train, test, out, attention_model.model, scorer, objective.value, hidden, epochs, seed,
                               info={"attention_model": model, "pruner": scorer.name}, track=track,
                               feature_kind=features.value)
    except (ValueError, OSError) as e:
        fail(str(e))
    out_console.print(f"train chains {result.train_chains} (mean Pearson {result.train_pearson_mean:.3f}); "
                      f"test chains {result.test_chains}: held-out Pearson mean {result.test_pearson_mean:.3f}, "
                      f"median {result.test_pearson_median:.3f}")
    out_console.print("wrote " + ", ".join(map(str, result.files)))
    report_failures(result.failures)


def judge(
    traces: Annotated[Path, typer.Argument(help="Traces JSONL.")],
    out: Annotated[Path, out_option("Judgments JSONL (one record per trace); the summary goes to OUT.summary.csv.")],
    keep: Annotated[list[float] | None, keep_option("Keep fractions to judge (default 0.9, 0.7, 0.5).")] = None,
    chains: Annotated[Path | None, typer.Option(help="The prune input JSONL, to show the judge each question.")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Judge only the first N traces.")] = None,
    base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1.")] = None,
    llm_model: Annotated[str, typer.Option(help="Judge model name.")] = "gpt-5-mini",
    api_key_env: Annotated[str, typer.Option(help="Environment variable holding the API key.")] = "OPENAI_API_KEY",
    temperature: Annotated[float | None, typer.Option(help="Sampling temperature (the paper: 0; leave unset for models that reject it).")] = None,
    cache: Annotated[Path | None, typer.Option(help="On-disk cache of replies (default OUT.llm-cache).")] = None,
    retries: Annotated[int, typer.Option(min=0, help="Retries per request on errors or invalid replies.")] = 3,
    resume: SkipDone = False,
    overwrite: Overwrite = False,
) -> None:
    """Readability of pruned traces (the paper's App. E): corruption, structural integrity, semantic
    coherence, mathematical state, SFT suitability, each judged by an LLM under a JSON schema; prints the
    share of every level per keep fraction (Table 3)."""
    from rich.table import Table

    from chainprune.analysis.llm import JsonLLM
    from chainprune.pipelines.analyze import run_judge

    try:
        llm = JsonLLM(llm_model, base_url, api_key_env, retries, cache or out.with_name(out.name + ".llm-cache"), temperature)
        result = run_judge(traces, out, keep or [0.9, 0.7, 0.5], llm, chains, limit, resume, overwrite, track)
    except (ValueError, ImportError, OSError) as e:
        fail(str(e))
    table = Table(title=f"readability ({result.judged} judged now, {result.skipped} from before)")
    columns = list(result.rows[0]) if result.rows else []
    for column in columns:
        table.add_column(column, justify="left" if column in ("dimension", "level") else "right")
    for row in result.rows:
        table.add_row(*(f"{v:.1%}" if isinstance(v, float) else str(v) for v in row.values()))
    out_console.print(table)
    out_console.print("wrote " + ", ".join(map(str, result.files)))
    report_failures(result.failures)
    if result.failures:
        raise typer.Exit(1)


analyze_app = typer.Typer(
    help="Analyses of what greedy pruning keeps: category retention, rank dynamics, attention surrogate, "
    "readability judge.",
    no_args_is_help=True,
)
add_commands(analyze_app, retention, dynamics, surrogate, judge)
