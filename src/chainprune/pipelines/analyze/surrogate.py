"""`run_surrogate`: attention features -> an MLP predicting the post-deletion objective (§5.3)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chainprune.choices import DEFAULT_ENGINE
from chainprune.data.jsonl import RecordError
from chainprune.pipelines.analyze.common import (
    Track,
    no_track,
    read_records,
    write_csv,
)
from chainprune.types import Trace


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


def surrogate_data(path: Path, attention_model: Any, pruner: Any, objective: str, engine: str = DEFAULT_ENGINE,
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
