"""`run_dynamics`: Hit@|S| of dynamic vs frozen vs random rankings (Fig. 5), from a `--save-scores` sidecar or
passes scored here with the traces' pruner."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chainprune.choices import DEFAULT_ENGINE
from chainprune.data.jsonl import JsonlAppender, RecordError
from chainprune.pipelines.analyze.common import (
    Track,
    fractions_reached,
    no_track,
    read_trace_records,
    reasons,
    write_csv,
)
from chainprune.types import Trace

# Rank dynamics asks whether an early ranking of single-token deletions predicts the tokens greedy deletes later;
# a unit trace's passes rank whole words or sentences, never single tokens, so Hit@|S| over tokens has no meaning.
UNIT_DYNAMICS = ("a {unit} trace: rank dynamics compares rankings of single-token deletions, and a {unit} prune "
                 "never ranks single tokens (prune with --unit token for this analysis)")


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
    traces, out = Path(traces), Path(out)
    records, failures = token_traces(traces, pruner is not None)
    scores = Path(scores) if scores else _sidecar(traces)
    if not scores.exists() and pruner is None:
        raise ValueError(f"no scores file {scores}: prune with --save-scores (or pass --scores, or --pruner to "
                         "score the keep fractions' states here)")
    saved = _load(scores, failures)
    if pruner is not None:
        saved = {**_load(dynamics_scores_path(out), failures), **saved}
        score_missing(records, saved, pruner, loader, fractions, dynamics_scores_path(out), track, failures)
    rows, chains = mean_transitions(records, saved, fractions, failures,
                                    missing=None if pruner is not None else f"no saved scores in {scores}")
    if not rows:
        raise ValueError(f"no chain of {traces} could be analysed{reasons(failures)}")
    return DynamicsResult(rows, write_dynamics(out, rows, chains), chains, failures)


def _sidecar(traces: Path) -> Path:
    from chainprune.data.scores import scores_path

    return scores_path(traces)


def _load(path: Path, failures: list[RecordError]) -> dict[str, Any]:
    """A scores file's passes by chain id ({} when there is none); its bad records join `failures`."""
    from chainprune.data.scores import load_scores

    if not path.exists():
        return {}
    saved, errors = load_scores(path)
    failures += errors
    return saved


def token_traces(traces: Path, scoring: bool) -> tuple[list[tuple[int, Trace]], list[RecordError]]:
    """The token traces of `traces` (unit traces refused one by one); with `scoring`, each must carry what
    scoring its chain needs. ValueError when none is left."""
    needed = ("prompt_ids", "answer_ids", "objective", "pruner") if scoring else ()
    records, failures = read_trace_records(traces, ("id", "reasoning_ids", "deletion_order", *needed))
    failures += [RecordError(line, str(t.id), UNIT_DYNAMICS.format(unit=t.unit)) for line, t in records if t.unit != "token"]
    records = [(line, t) for line, t in records if t.unit == "token"]
    if not records:  # refused before asking for scores: unit traces have none to give
        raise ValueError(f"no chain of {traces} could be analysed{reasons(failures)}")
    return records, failures


def score_missing(records: list[tuple[int, Trace]], saved: dict[str, Any], pruner: str,
                  loader: Callable[[str], Any] | None, fractions: Sequence[float] | None, own: Path, track: Track,
                  failures: list[RecordError]) -> None:
    """Score the chains `saved` lacks (`grid_passes`), appending them to `own` and to `saved`. A trace of
    another pruner is refused, and the model is loaded only when a chain is left to score."""
    from chainprune.data.scores import encode_pass

    todo = [(line, t) for line, t in records if str(t.id) not in saved]
    failures += [RecordError(line, str(t.id), f"pruned by {t.pruner}, not by {pruner}: its rankings must be "
                             "its pruner's") for line, t in todo if t.pruner != pruner]
    todo = [(line, t) for line, t in todo if t.pruner == pruner]
    if not todo:
        return  # nothing to score: no model, no file
    if loader is None:
        from chainprune.models import load_model

        loader = load_model
    model = loader(pruner)
    with JsonlAppender(own) as writer:
        for line, trace in track(todo, len(todo), "scoring keep fractions"):
            try:
                passes = grid_passes(model, trace, fractions_reached(fractions, trace.smallest_keep))
            except ValueError as e:
                failures.append(RecordError(line, str(trace.id), str(e)))
                continue
            n = len(trace.reasoning_ids)
            writer.write({"id": str(trace.id), "n": n, "passes": [encode_pass(p) for p in passes]})
            saved[str(trace.id)] = (n, passes)


def mean_transitions(records: list[tuple[int, Trace]], saved: dict[str, Any], fractions: Sequence[float] | None,
                     failures: list[RecordError], missing: str | None) -> tuple[list[dict[str, Any]], int]:
    """Per transition between keep fractions, the mean Hit@|S| over the chains with passes; and how many
    chains that was. A chain without passes is a failure saying `missing` (None: skipped silently)."""
    from chainprune.analysis.dynamics import chain_dynamics

    per_keep: dict[tuple[float, float], list] = {}
    chains = 0
    for line, trace in records:
        trace_id, n = str(trace.id), len(trace.reasoning_ids)
        if trace_id not in saved:
            if missing is not None:
                failures.append(RecordError(line, trace_id, missing))
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
    return rows, chains


def write_dynamics(out: Path, rows: list[dict[str, Any]], chains: int) -> list[Path]:
    """OUT.csv and the plot (OUT.png, OUT.svg); the files written."""
    from chainprune.report.plots import dynamics_figure

    out.parent.mkdir(parents=True, exist_ok=True)
    write_csv(out.with_suffix(".csv"), rows)
    series = {name: [row[name] for row in rows] for name in ("dynamic", "frozen@1.0", "random")}
    figure = dynamics_figure([row["keep"] for row in rows], series, out, f"rank dynamics ({chains} chains)")
    return [out.with_suffix(".csv"), *figure]
