"""The analyses of what greedy pruning keeps (the paper's §5, App. D-E): read traces, call the pure analysis
code, write JSONL / CSV / figures.

- `run_annotate`: a functional category on every trace token (appended per record, resumable);
- `run_retention`: category retention curves for annotated trace files and for baseline rankers;
- `run_dynamics`: Hit@|S| of dynamic vs frozen vs random rankings, from a `--save-scores` sidecar;
- `run_surrogate`: attention features -> MLP predicting the post-deletion objective;
- `run_judge`: the readability rubric per keep fraction through an OpenAI-compatible endpoint.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chainprune.analysis.categories import CATEGORIES, Annotator, check_categories, rule_annotator
from chainprune.analysis.retention import overall_kept_fraction, retention_curve
from chainprune.choices import DEFAULT_ENGINE
from chainprune.data.jsonl import JsonlAppender, RecordError, decode_lines
from chainprune.run import RunSummary, open_output, require_input
from chainprune.trace_steps import check_trace_steps
from chainprune.types import Trace

Track = Callable[[Iterable, int, str], Iterable]  # (items, total, description) -> items, e.g. a progress bar


def no_track(items: Iterable, total: int, description: str) -> Iterable:
    return items


def read_records(path: Path, required: Sequence[str] = ("id", "tokens")) -> tuple[list[tuple[int, dict]], list[RecordError]]:
    """Every JSON object of a JSONL file having `required` fields, with its line; errors for the others."""
    records = []
    decoded, errors = decode_lines(path)
    for number, record in decoded:
        if not isinstance(record, dict):
            errors.append(RecordError(number, None, "expected a JSON object"))
            continue
        missing = [k for k in required if k not in record]
        if missing:
            errors.append(RecordError(number, str(record.get("id")) if "id" in record else None,
                                      f"missing field(s) {', '.join(map(repr, missing))}"))
            continue
        records.append((number, record))
    return records, sorted(errors, key=lambda e: e.line)


def read_trace_records(path: Path, required: Sequence[str]) -> tuple[list[tuple[int, Trace]], list[RecordError]]:
    """Every trace-like record (a trace, annotated or not, or a matched record) of a JSONL file having
    `required` fields, read as a `Trace` (`Trace.from_json(partial=True)`: only those fields are read), with
    its line; errors for the others."""
    records, errors = read_records(path, required)
    traces = []
    for number, record in records:
        try:
            traces.append((number, Trace.from_json(record, partial=True)))
        except (TypeError, ValueError) as e:
            errors.append(RecordError(number, str(record["id"]), f"{type(e).__name__}: {e}"))
    return traces, sorted(errors, key=lambda e: e.line)


# ---- annotate ----

AnnotateSummary = RunSummary  # what `run_annotate` returns


def make_annotator(name: str, **llm_options: Any) -> Annotator:
    """`rules` (offline) or `llm` (an OpenAI-compatible endpoint; options go to `LLMAnnotator`)."""
    if name == "rules":
        return rule_annotator
    if name == "llm":
        from chainprune.analysis.llm import LLMAnnotator

        return LLMAnnotator(**llm_options)
    raise ValueError(f"unknown annotator {name!r}; choose one of rules, llm")


def run_annotate(
    traces: Path, out: Path, annotator: Annotator, resume: bool = False, overwrite: bool = False,
    track: Track = no_track,
) -> AnnotateSummary:
    """Copy every trace of `traces` to `out` with a `category` on each token."""
    traces, out = Path(traces), Path(out)
    require_input(traces)
    output = open_output(out, resume, overwrite)
    summary = AnnotateSummary(warnings=output.warnings)
    records, summary.failures = read_records(traces)
    todo = [(line, r) for line, r in records if str(r["id"]) not in output.done]
    summary.skipped = len(records) - len(todo)
    # Records are copied as they are, every field in its place (traces, matched records): only `category` is added.
    with JsonlAppender(out) as writer:
        for line, record in track(todo, len(todo), "annotating"):
            try:
                texts = [t["text"] for t in record["tokens"]]
                categories = check_categories(annotator(texts), len(texts))
            except (ValueError, KeyError, TypeError, RuntimeError) as e:
                summary.failures.append(RecordError(line, str(record["id"]), f"{type(e).__name__}: {e}"))
                continue
            record = dict(record, tokens=[dict(t, category=c) for t, c in zip(record["tokens"], categories)])
            writer.write(record)
            summary.done += 1
    return summary


# ---- retention ----

DEFAULT_FRACTIONS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1)


def fractions_reached(fractions: Sequence[float] | None, smallest: float) -> list[float]:
    """The keep fractions asked for (default `DEFAULT_FRACTIONS`) down to `smallest`, the lowest one reached."""
    return [r for r in (fractions or DEFAULT_FRACTIONS) if r >= smallest - 1e-12]


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


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    with Path(path).open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else [])
        writer.writeheader()
        writer.writerows(rows)


# ---- dynamics ----

# Rank dynamics asks whether an early ranking of single-token deletions predicts the tokens greedy deletes later;
# a unit trace's passes rank whole words or sentences, never single tokens, so Hit@|S| over tokens has no meaning.
UNIT_DYNAMICS = ("a {unit} trace: rank dynamics compares rankings of single-token deletions, and a {unit} prune "
                 "never ranks single tokens (prune with --unit token for this analysis)")


def _reasons(failures: Sequence[RecordError]) -> str:
    """The first failures, to say why nothing could be analysed."""
    return "".join(f"; {f}" for f in failures[:3]) + ("; ..." if len(failures) > 3 else "")


@dataclass
class DynamicsResult:
    rows: list[dict[str, Any]]  # per transition: mean Hit@|S| over chains
    files: list[Path]
    chains: int
    failures: list[RecordError] = field(default_factory=list)


def dynamics_scores_path(out: Path) -> Path:
    """Where `run_dynamics` keeps the passes it scores itself (with a pruner): OUT.scores.jsonl."""
    return Path(out).with_suffix(".scores.jsonl")


def grid_passes(pruner: Any, trace: Trace, grid: Sequence[float]) -> list:
    """Exact candidate scores of `trace`'s chain in the state after each keep fraction's deletions (and at
    keep 1.0): all `chain_dynamics` reads, for a trace pruned without `--save-scores` or in an approximate
    mode. One exact `packed` pass per fraction. `pruner` must be the trace's own (`run_dynamics` refuses the
    others before loading a model)."""
    import numpy as np

    from chainprune.data.scores import ScorePass
    from chainprune.keep import deletions_for
    from chainprune.pruning import ChainScorer
    from chainprune.scoring import DEFAULT_MAX_BATCH_TOKENS

    n = len(trace.reasoning_ids)
    scorer = ChainScorer(pruner.model, trace.ids, trace.objective, DEFAULT_ENGINE, DEFAULT_MAX_BATCH_TOKENS)
    passes = []
    for deleted in sorted({0} | {deletions_for(n, r) for r in grid}):
        gone = set(trace.deletion_order[:deleted])
        _, scores = scorer.candidates([i for i in range(n) if i not in gone])
        passes.append(ScorePass(deleted, np.asarray([float(x) for x in scores], dtype=np.float32)))
    return passes


def run_dynamics(
    traces: Path, out: Path, scores: Path | None = None, fractions: Sequence[float] | None = None,
    pruner: str | None = None, loader: Callable[[str], Any] | None = None, track: Track = no_track,
) -> DynamicsResult:
    """Hit@|S| of dynamic vs frozen@1.0 vs random rankings, averaged over the chains of `traces` that have
    saved scores (`chainprune prune --save-scores`). Writes `out`.csv, `out`.png and `out`.svg. Unit traces
    (`prune --unit word|sentence`) are refused one by one (`UNIT_DYNAMICS` says why).

    With `pruner` (the traces' pruner, by name), a chain with no saved scores is scored here, one exact pass at
    each keep fraction (`grid_passes`), and those passes are appended to OUT.scores.jsonl, which a later run
    reads again instead of scoring. The model is loaded (`loader`, default `load_model`) only when a chain
    pruned by it is left to score: a trace of another pruner is refused without loading anything. For a trace
    of an approximate mode, the dynamic ranking at r is then exact greedy's local ranking at the state the
    trace reached, and S the trace's own next deletions."""
    from chainprune.analysis.dynamics import chain_dynamics
    from chainprune.data.scores import encode_pass, load_scores, scores_path

    traces = Path(traces)
    scoring = ("prompt_ids", "answer_ids", "objective", "pruner") if pruner is not None else ()
    records, failures = read_trace_records(traces, ("id", "reasoning_ids", "deletion_order", *scoring))
    failures += [RecordError(line, str(t.id), UNIT_DYNAMICS.format(unit=t.unit)) for line, t in records if t.unit != "token"]
    records = [(line, t) for line, t in records if t.unit == "token"]
    if not records:  # refused before asking for scores: unit traces have none to give
        raise ValueError(f"no chain of {traces} could be analysed{_reasons(failures)}")
    scores = Path(scores) if scores else scores_path(traces)
    if not scores.exists() and pruner is None:
        raise ValueError(f"no scores file {scores}: prune with --save-scores (or pass --scores, or --pruner to "
                         "score the keep fractions' states here)")
    saved, score_errors = load_scores(scores) if scores.exists() else ({}, [])
    failures += score_errors
    own = dynamics_scores_path(out)
    if pruner is not None:
        if own.exists():
            scored, own_errors = load_scores(own)
            failures += own_errors
            saved = {**scored, **saved}
        todo = [(line, t) for line, t in records if str(t.id) not in saved]
        failures += [RecordError(line, str(t.id), f"pruned by {t.pruner}, not by {pruner}: its rankings must be "
                                 "its pruner's") for line, t in todo if t.pruner != pruner]
        todo = [(line, t) for line, t in todo if t.pruner == pruner]
        if todo:
            if loader is None:
                from chainprune.models import load_model

                loader = load_model
            model = loader(pruner)
        with JsonlAppender(own) if todo else nullcontext() as writer:  # nothing to score: no file
            for line, trace in track(todo, len(todo), "scoring keep fractions"):
                try:
                    passes = grid_passes(model, trace, fractions_reached(fractions, trace.smallest_keep))
                except ValueError as e:
                    failures.append(RecordError(line, str(trace.id), str(e)))
                    continue
                n = len(trace.reasoning_ids)
                writer.write({"id": str(trace.id), "n": n, "passes": [encode_pass(p) for p in passes]})
                saved[str(trace.id)] = (n, passes)
    per_keep: dict[tuple[float, float], list] = {}
    chains = 0
    for line, trace in records:
        trace_id, n = str(trace.id), len(trace.reasoning_ids)
        if trace_id not in saved:
            if pruner is None:
                failures.append(RecordError(line, trace_id, f"no saved scores in {scores}"))
            continue
        saved_n, passes = saved[trace_id]
        grid = fractions_reached(fractions, trace.smallest_keep)
        try:
            if saved_n != n:
                raise ValueError(f"saved scores are for {saved_n} tokens, the trace has {n}")
            transitions = chain_dynamics(n, trace.deletion_order, [(p.deleted, p.scores) for p in passes], grid)
        except ValueError as e:
            failures.append(RecordError(line, trace_id, str(e)))
            continue
        chains += 1
        for t in transitions:
            per_keep.setdefault((t.keep, t.next_keep), []).append(t)
    rows = []
    for (r, r_next), ts in sorted(per_keep.items(), reverse=True):
        mean = lambda xs: round(sum(xs) / len(xs), 6)  # noqa: E731
        rows.append({"keep": r, "next_keep": r_next, "chains": len(ts), "mean_pruned": mean([t.pruned for t in ts]),
                     "dynamic": mean([t.dynamic for t in ts]), "frozen@1.0": mean([t.frozen for t in ts]),
                     "random": mean([t.random for t in ts])})
    if not rows:
        raise ValueError(f"no chain of {traces} could be analysed{_reasons(failures)}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_csv(out.with_suffix(".csv"), rows)
    from chainprune.report.plots import dynamics_figure

    series = {name: [row[name] for row in rows] for name in ("dynamic", "frozen@1.0", "random")}
    figure = dynamics_figure([row["keep"] for row in rows], series, out, f"rank dynamics ({chains} chains)")
    return DynamicsResult(rows, [out.with_suffix(".csv"), *figure], chains, failures)


# ---- judge ----

@dataclass
class JudgeResult:
    rows: list[dict[str, Any]]  # Table 3: per (dimension, level) the share at each keep fraction
    files: list[Path]
    judged: int  # traces judged in this run (cached ones included)
    skipped: int  # already in the output
    failures: list[RecordError] = field(default_factory=list)


def run_judge(
    traces: Path, out: Path, keeps: Sequence[float], llm: Any, chains: Path | None = None,
    limit: int | None = None, resume: bool = False, overwrite: bool = False, track: Track = no_track,
) -> JudgeResult:
    """Judge every trace (the first `limit`) at every keep fraction with the App. E rubric. Appends
    `{"id", "judgments": {"<keep>": {dimension: level}}}` per trace to `out` and writes the summary table to
    `out` with suffix .summary.csv. `chains` (the prune input) supplies questions when given."""
    from chainprune.analysis.judge import judge_messages, judge_schema, parse_judgment, summarize
    from chainprune.data.jsonl import read_chains
    from chainprune.keep import normalize_keep_fractions

    keeps = normalize_keep_fractions(keeps)
    traces, out = Path(traces), Path(out)
    require_input(traces, "traces file")
    output = open_output(out, resume, overwrite)
    questions = {c.id: c.question for _, c in read_chains(chains)[0]} if chains else {}
    records, failures = read_trace_records(traces, ("id", "tokens", "deletion_order"))
    records = records[:limit] if limit is not None else records
    todo = [(line, trace) for line, trace in records if str(trace.id) not in output.done]
    judged = 0
    with JsonlAppender(out) as writer:
        for line, trace in track(todo, len(todo), "judging"):
            trace_id = str(trace.id)
            too_far = [r for r in keeps if r < trace.smallest_keep - 1e-12]
            if too_far:
                failures.append(RecordError(line, trace_id, f"pruned only down to keep {trace.smallest_keep}"))
                continue
            try:
                judgments = {}
                for r in keeps:
                    messages = judge_messages(trace.kept_text(r), questions.get(trace_id))
                    judgments[f"{r:g}"] = llm.ask(messages, judge_schema(), parse_judgment, "judgment")
            except RuntimeError as e:
                failures.append(RecordError(line, trace_id, str(e)))
                continue
            writer.write({"id": trace_id, "judgments": judgments})
            judged += 1
    every = [(float(k), labels) for row in read_records(out, ("id", "judgments"))[0] for k, labels in row[1]["judgments"].items()]
    rows = summarize(every)
    summary_path = out.with_name(out.name + ".summary.csv")
    write_csv(summary_path, rows)
    return JudgeResult(rows, [out, summary_path], judged, len(records) - len(todo), failures)


# ---- surrogate ----

@dataclass
class SurrogateData:
    ids: list[str]
    features: list[Any]  # per chain (m, layers * heads)
    targets: list[Any]  # per chain (m,): objective after deleting each reasoning token of the full chain


@dataclass
class SurrogateResult:
    train_chains: int
    test_chains: int
    test_pearson_mean: float
    test_pearson_median: float
    train_pearson_mean: float
    per_chain: list[dict[str, Any]]
    files: list[Path]
    failures: list[RecordError] = field(default_factory=list)


def surrogate_data(path: Path, attention_model: Any, pruner: Any, objective: str, engine: str = "prefix",
                   track: Track = no_track, feature_kind: str = "attention") -> tuple[SurrogateData, list[RecordError]]:
    """Features (of `feature_kind`) and targets for every chain of `path`: traces (targets from a
    `--save-scores` sidecar when there is one, else scored here) or plain chains (tokenized and scored with
    `pruner`)."""
    import torch

    from chainprune.analysis.surrogate import attention_features
    from chainprune.chains import ChainError, tokenize_chain
    from chainprune.data.jsonl import parse_chain
    from chainprune.data.scores import load_scores, scores_path
    from chainprune.pruning import ChainScorer
    from chainprune.scoring import DEFAULT_MAX_BATCH_TOKENS

    path = Path(path)
    records, failures = read_records(path, ("id",))
    saved = load_scores(scores_path(path))[0] if scores_path(path).exists() else {}
    data = SurrogateData([], [], [])
    for line, record in track(records, len(records), f"features {path.name}"):
        trace_id = str(record["id"])
        try:
            if "reasoning_ids" in record:
                trace = Trace.from_json(record, partial=True)
                ids = trace.ids
                if "objective" in record and trace.objective != objective:
                    raise ValueError(f"trace has objective {trace.objective!r}, not {objective!r}")
            else:
                ids = tokenize_chain(pruner.tokenizer, parse_chain(record))
            n = len(ids.reasoning_ids)
            if n < 2:
                raise ValueError("fewer than 2 reasoning tokens")
            if trace_id in saved and saved[trace_id][0] == n and saved[trace_id][1][:1] and saved[trace_id][1][0].deleted == 0:
                target = torch.tensor(saved[trace_id][1][0].scores, dtype=torch.float32)
            else:
                scorer = ChainScorer(pruner.model, ids, objective, engine, DEFAULT_MAX_BATCH_TOKENS)
                target = scorer.candidates(list(range(n)))[1].float().cpu()
            features = attention_features(attention_model, ids.input_ids, len(ids.prompt_ids), n, feature_kind)
        except (ValueError, KeyError, TypeError, RuntimeError, ChainError) as e:
            failures.append(RecordError(line, trace_id, f"{type(e).__name__}: {e}"))
            continue
        data.ids.append(trace_id)
        data.features.append(features)
        data.targets.append(target)
    return data, failures


def run_surrogate(
    train: Path, test: Path, out: Path, attention_model: Any, pruner: Any, objective: str = "joint",
    hidden: int = 64, epochs: int = 300, seed: int = 0, info: dict[str, Any] | None = None, track: Track = no_track,
    feature_kind: str = "attention",
) -> SurrogateResult:
    """Train the attention surrogate on `train` (features of `feature_kind`, recorded in the saved file), report
    held-out Pearson on `test`. Writes the surrogate to `out` (torch file), per-chain Pearson to `out`.csv and a
    scatter plot to `out`.png/.svg."""
    import statistics

    import torch

    from chainprune.analysis.surrogate import check_feature_kind, evaluate, train_surrogate

    check_feature_kind(feature_kind)  # before any chain is read: every one would fail alike
    train_data, failures = surrogate_data(train, attention_model, pruner, objective, track=track, feature_kind=feature_kind)
    test_data, test_failures = surrogate_data(test, attention_model, pruner, objective, track=track,
                                              feature_kind=feature_kind)
    failures += test_failures
    overlap = set(train_data.ids) & set(test_data.ids)
    if overlap:
        raise ValueError(f"{len(overlap)} id(s) are in both the train and the test file, e.g. {sorted(overlap)[0]!r}")
    if not train_data.ids or not test_data.ids:
        raise ValueError("need at least one usable chain in both --train and --test")
    surrogate = train_surrogate(train_data.features, train_data.targets, hidden=hidden, epochs=epochs, seed=seed,
                                info=dict(info or {}, objective=objective, train_chains=len(train_data.ids),
                                          feature_kind=feature_kind))
    test_r = evaluate(surrogate, test_data.features, test_data.targets)
    train_r = evaluate(surrogate, train_data.features, train_data.targets)
    surrogate.info["test_pearson_mean"] = statistics.fmean(test_r)
    out = Path(out)
    surrogate.save(out)
    rows = [{"split": split, "id": i, "tokens": len(t), "pearson": round(r, 6)}
            for split, data, rs in (("train", train_data, train_r), ("test", test_data, test_r))
            for i, t, r in zip(data.ids, data.targets, rs)]
    csv_path = out.with_suffix(".csv")
    write_csv(csv_path, rows)
    from chainprune.report.plots import scatter_figure

    z = lambda v: (v - v.mean()) / v.std().clamp(min=1e-9)  # noqa: E731
    predicted = torch.cat([z(surrogate.predict(f)) for f in test_data.features]).tolist()
    target = torch.cat([z(t.float()) for t in test_data.targets]).tolist()
    title = f"surrogate: held-out mean Pearson {statistics.fmean(test_r):.3f} ({len(test_r)} chains)"
    figure = scatter_figure(predicted, target, out.with_suffix(""), title)
    return SurrogateResult(len(train_data.ids), len(test_data.ids), statistics.fmean(test_r), statistics.median(test_r),
                           statistics.fmean(train_r), rows, [out, csv_path, *figure], failures)
