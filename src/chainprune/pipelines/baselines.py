"""`chainprune baseline`, `chainprune match` and `chainprune lengths`: token-importance baselines and greedy
traces cut at matched lengths in the student's tokenizer, and the table of lengths achieved.

Every method goes through `matched_record`: the same pruner tokenization, the same decoding of kept tokens,
the same student-token count and the same matching rule (`chainprune.ranking.matching`). Output records are
`MatchedRecord`s: like traces (ids, `deletion_order`, `tokens`, `pruned`) plus `method`, the student-token
numbers and, for scored methods, each reasoning token's importance score. Appended per record, resumable like
`prune`.
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import mean
from typing import Any

from chainprune.chains import check_fits, tokenize_chain
from chainprune.choices import DEFAULT_DEVICE, DEFAULT_DTYPE, DEFAULT_ENGINE, DEFAULT_MAX_BATCH_TOKENS, DEFAULT_MODEL
from chainprune.data.jsonl import JsonlAppender, RecordError, read_chains, read_lines, read_traces
from chainprune.keep import keep_key, normalize_keep_fractions
from chainprune.models import LoadedModel, load_model
from chainprune.ranking import (
    DEFAULT_CLASSIFIER,
    RANKER_NEEDS,
    Ranking,
    SurrogateModel,
    TokenClassifier,
    get_ranker,
    greedy_from_trace,
)
from chainprune.ranking.matching import match_lengths
from chainprune.run import Reporter, RunSummary, open_output, require_input, write_errors
from chainprune.types import Chain, ChainIds, MatchedCut, MatchedRecord, Trace, TraceToken


@dataclass
class BaselineConfig:
    method: str
    student_tokenizer: str
    model: str = DEFAULT_MODEL
    keep: list[float] = field(default_factory=lambda: [0.5])
    seed: int = 0
    classifier: str = DEFAULT_CLASSIFIER
    dtype: str = DEFAULT_DTYPE
    device: str = DEFAULT_DEVICE
    surrogate: str | None = None  # a trained attention surrogate, for method "surrogate"
    # how a ranker that scores with the pruner runs (greedy): speed and memory only, the order is the same
    engine: str = DEFAULT_ENGINE
    max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS

    RESULT_FIELDS = ("method", "student_tokenizer", "model", "keep", "seed", "classifier", "dtype", "surrogate")

    def validate(self) -> None:
        get_ranker(self.method)
        self.keep = normalize_keep_fractions(self.keep)
        if (self.method == "surrogate") != (self.surrogate is not None):
            raise ValueError("method surrogate needs --surrogate S.pt (from `chainprune analyze surrogate`), "
                             "and --surrogate goes with method surrogate only")


@dataclass
class MatchConfig:
    student_tokenizer: str
    keep: list[float] | None = None  # None: the keep fractions each trace was pruned to
    pruner_tokenizer: str | None = None  # None: each trace's `pruner`

    RESULT_FIELDS = ("student_tokenizer", "keep", "pruner_tokenizer")

    def validate(self) -> None:
        if self.keep is not None:
            self.keep = normalize_keep_fractions(self.keep)


@dataclass
class Resources:
    """What a run needs, loaded once; tests pass their own tiny ones."""

    pruner: LoadedModel  # `model` may be None for methods that need only the tokenizer
    student: Any  # the student's tokenizer
    ranker_model: Any = None  # what the ranker's `model` argument is (RANKER_NEEDS)


# ---- one record ----


def student_counter(student: Any) -> Callable[[str], int]:
    return lambda text: len(student(text, add_special_tokens=False)["input_ids"])


def matched_record(
    method: str,
    chain_id: str,
    ids: ChainIds,
    ranking: Ranking,
    pruner_tokenizer: Any,
    student: Any,
    keep: Sequence[float],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A `MatchedRecord` (as JSON) of `ranking` cut at matched student lengths for every keep fraction; `extra`:
    its settings (what made the order)."""
    n = len(ids.reasoning_ids)
    count = student_counter(student)

    def text_of(kept: list[int]) -> str:
        # The same decoding as a trace's `pruned` text (chainprune.pruning.build_trace).
        return pruner_tokenizer.decode([ids.reasoning_ids[i] for i in kept], clean_up_tokenization_spaces=False)

    matches = match_lengths(ranking.deletion_order, n, lambda kept: count(text_of(kept)), keep, ranking.boundaries)
    # the step that deleted each position: one per position, or a step's tokens share it (a unit trace's order)
    ends = ranking.boundaries or range(len(ranking.deletion_order) + 1)
    step = {pos: s for s in range(1, len(ends)) for pos in ranking.deletion_order[ends[s - 1]:ends[s]]}
    return MatchedRecord(
        id=chain_id,
        method=method,
        settings=dict(extra or {}),
        prompt_ids=ids.prompt_ids,
        reasoning_ids=ids.reasoning_ids,
        answer_ids=ids.answer_ids,
        deletion_order=ranking.deletion_order,
        tokens=[TraceToken(position=i, text=t, deleted_step=step.get(i)) for i, t in enumerate(ids.reasoning_texts)],
        student_tokens=matches[0].student_total if matches else count(text_of(list(range(n)))),
        pruned={
            keep_key(m.keep): MatchedCut(
                text=text_of(m.kept),
                num_tokens=len(m.kept),
                student_tokens=m.student_tokens,
                student_fraction=m.student_fraction,
                target_student_tokens=m.target,
                deletions=m.deletions,
                order_exhausted=m.deletions == len(ranking.deletion_order) < n and m.student_tokens > m.target,
            )
            for m in matches
        },
        scores=ranking.scores,
    ).to_json()


def chain_seed(seed: int, chain_id: str) -> int:
    """A per-chain seed, stable across runs and machines, so chains of equal length get different orders."""
    return zlib.crc32(f"{seed}:{chain_id}".encode())


# ---- shared run plumbing ----


def _prepare_output(out: Path, config: Any, resume: bool, overwrite: bool, summary: RunSummary) -> set[str]:
    output = open_output(out, resume, overwrite, asdict(config), type(config).RESULT_FIELDS)
    summary.warnings = output.warnings
    output.save_settings()
    return output.done


# ---- chainprune baseline ----


def load_resources(config: BaselineConfig) -> Resources:
    from chainprune.models.auxiliary import load_token_classifier, load_tokenizer

    need = RANKER_NEEDS[config.method]
    if need in ("causal_lm", "surrogate"):
        pruner = load_model(config.model, dtype=config.dtype, device=config.device)
    else:  # the pruner's tokenizer alone defines the reasoning tokens
        pruner = LoadedModel(model=None, tokenizer=load_tokenizer(config.model), name=config.model)
    ranker_model: Any = pruner.model
    if need == "token_classifier":
        model, tokenizer = load_token_classifier(config.classifier, dtype=config.dtype, device=config.device)
        ranker_model = TokenClassifier(model=model, tokenizer=tokenizer, name=config.classifier)
    if need == "surrogate":
        from chainprune.analysis.surrogate import Surrogate

        try:
            trained = Surrogate.load(Path(config.surrogate))
        except (OSError, KeyError, RuntimeError) as e:
            raise ValueError(f"cannot load the surrogate {config.surrogate}: {e}") from None
        ranker_model = SurrogateModel(model=pruner.model, surrogate=trained, name=config.surrogate)
    return Resources(pruner=pruner, student=load_tokenizer(config.student_tokenizer), ranker_model=ranker_model)


def run_baseline(
    input_path: Path,
    out: Path,
    config: BaselineConfig,
    resume: bool = False,
    overwrite: bool = False,
    reporter: Reporter | None = None,
    resources: Resources | None = None,
) -> RunSummary:
    """Rank every chain of `input_path` with `config.method` and write matched-length records to `out`."""
    config.validate()
    input_path, out = Path(input_path), Path(out)
    require_input(input_path)
    reporter = reporter or Reporter()
    summary = RunSummary()
    done = _prepare_output(out, config, resume, overwrite, summary)
    chains, summary.failures = read_chains(input_path)
    todo = [(line, chain) for line, chain in chains if chain.id not in done]
    summary.skipped = len(chains) - len(todo)
    started = time.perf_counter()
    res = resources or (load_resources(config) if todo else None)
    ranker = get_ranker(config.method)
    reporter.start(len(todo))
    with JsonlAppender(out) as writer:
        for line, chain in todo:
            reporter.example(chain, 0)
            try:
                record = baseline_record(chain, config, ranker, res)
            except (ValueError, RuntimeError, NotImplementedError) as e:  # one bad chain must not end the run
                error = RecordError(line, chain.id, f"{type(e).__name__}: {e}")
                summary.failures.append(error)
                reporter.finished(chain, None, error)
                continue
            writer.write(record)
            summary.done += 1
            reporter.finished(chain, None, None)
    summary.seconds = time.perf_counter() - started
    write_errors(out, summary.failures)
    return summary


# BaselineConfig fields a ranker takes when its signature names them (greedy's engine and batch bound).
RANKER_OPTIONS = ("engine", "max_batch_tokens")


def ranker_options(ranker: Any, config: BaselineConfig) -> dict[str, Any]:
    """The run's settings this ranker takes, by the names of its parameters."""
    import inspect

    parameters = inspect.signature(ranker).parameters
    return {name: getattr(config, name) for name in RANKER_OPTIONS if name in parameters}


def baseline_record(chain: Chain, config: BaselineConfig, ranker: Any, res: Resources) -> dict[str, Any]:
    ids = tokenize_chain(res.pruner.tokenizer, chain)
    check_fits(ids, res.pruner.max_length if res.pruner.model is not None else None)
    ranking = ranker(ids, res.ranker_model, seed=chain_seed(config.seed, chain.id), **ranker_options(ranker, config))
    extra = {"pruner": res.pruner.name, "student_tokenizer": config.student_tokenizer}
    if config.method == "uniform":
        extra["seed"] = config.seed
    if config.method == "tokenskip":
        extra["classifier"] = getattr(res.ranker_model, "name", config.classifier)
    if config.method == "surrogate":
        extra["surrogate"] = config.surrogate
    return matched_record(config.method, chain.id, ids, ranking, res.pruner.tokenizer, res.student, config.keep, extra)


# ---- chainprune match (greedy traces) ----


def run_match(
    traces_path: Path,
    out: Path,
    config: MatchConfig,
    resume: bool = False,
    overwrite: bool = False,
    reporter: Reporter | None = None,
    tokenizers: Callable[[str], Any] | None = None,
) -> RunSummary:
    """Cut every greedy trace of `traces_path` at matched student lengths, exactly as `run_baseline` does.

    `tokenizers(name)` loads a tokenizer by name (default: `load_tokenizer`, cached per name)."""
    config.validate()
    traces_path, out = Path(traces_path), Path(out)
    require_input(traces_path, "traces file")
    reporter = reporter or Reporter()
    summary = RunSummary()
    done = _prepare_output(out, config, resume, overwrite, summary)
    cache: dict[str, Any] = {}

    def tokenizer(name: str) -> Any:
        if name not in cache:
            if tokenizers is not None:
                cache[name] = tokenizers(name)
            else:
                from chainprune.models.auxiliary import load_tokenizer

                cache[name] = load_tokenizer(name)
        return cache[name]

    lines = list(read_lines(traces_path))
    first_seen: dict[str, int] = {}
    started = time.perf_counter()
    reporter.start(len(lines))
    with JsonlAppender(out) as writer:
        for line, text in lines:
            record_id = None
            try:
                trace = json.loads(text)
                record_id = str(trace["id"]) if isinstance(trace, dict) and "id" in trace else None
                if record_id in first_seen:
                    raise ValueError(f"duplicate id (first seen on line {first_seen[record_id]})")
                if record_id is not None:
                    first_seen[record_id] = line
                if record_id in done:
                    summary.skipped += 1
                    reporter.finished(Chain(record_id, "", "", ""), None, None)
                    continue
                reporter.example(Chain(record_id or f"line {line}", "", "", ""), 0)
                matched = match_trace(trace, config, tokenizer)
            except (ValueError, KeyError, TypeError) as e:
                message = f"missing field {e}" if isinstance(e, KeyError) else f"{type(e).__name__}: {e}"
                error = RecordError(line, record_id, message)
                summary.failures.append(error)
                reporter.finished(Chain(record_id or "", "", "", ""), None, error)
                continue
            writer.write(matched)
            done.add(record_id)
            summary.done += 1
            reporter.finished(Chain(record_id, "", "", ""), None, None)
    summary.seconds = time.perf_counter() - started
    write_errors(out, summary.failures)
    return summary


def match_trace(record: dict[str, Any], config: MatchConfig, tokenizer: Callable[[str], Any]) -> dict[str, Any]:
    """The `MatchedRecord` (as JSON) of a greedy trace record. KeyError names the first field it lacks.

    A unit trace (`prune --unit word|sentence`) is cut only where a unit ends (a state its greedy run reached);
    the record keeps its `unit` and `units`, and its tokens their unit steps, so it reads like the trace."""
    # in the order they are needed: the pruner's tokenizer (unless given), the keep fractions (unless given), ...
    needed = ["pruner", "pruned"] if config.pruner_tokenizer is None else ["pruned", "pruner"]
    needed = [k for k in needed if k != "pruned" or not config.keep]
    needed += ["tokens", "prompt_ids", "reasoning_ids", "answer_ids", "deletion_order"]
    missing = [k for k in needed if k not in record]
    if missing:
        raise KeyError(missing[0])
    trace = Trace.from_json(record, partial=True)
    keep = config.keep or normalize_keep_fractions(float(k) for k in trace.pruned)
    settings = {"pruner": trace.pruner, "student_tokenizer": config.student_tokenizer, "objective": trace.objective}
    if trace.mode:
        settings["mode"] = trace.mode  # an approximate greedy run stays labelled as one
    if trace.unit != "token":
        settings.update(unit=trace.unit, units=trace.units)
    return matched_record("greedy", str(record["id"]), trace.ids, greedy_from_trace(record),
                          tokenizer(config.pruner_tokenizer or trace.pruner), tokenizer(config.student_tokenizer), keep,
                          settings)


# ---- chainprune lengths ----


@dataclass
class LengthRow:
    method: str
    keep: float
    examples: int
    student_fraction_mean: float
    student_fraction_min: float
    student_fraction_max: float
    pruner_fraction_mean: float  # kept pruner tokens / all pruner tokens, for contrast
    exhausted: int = 0  # records whose deletion order ran out above the target


def length_table(paths: Sequence[Path], ids: set[str] | None = None) -> list[LengthRow]:
    """Per method and keep fraction: achieved student-token keep fractions (mean, min, max) over records
    (only those whose id is in `ids`, when given)."""
    groups: dict[tuple[str, float], list[tuple[float, float, bool]]] = {}
    for path in paths:
        require_input(path)
        for record in read_traces(Path(path), ("id", "reasoning_ids", "pruned")):
            if ids is not None and str(record["id"]) not in ids:
                continue
            n = len(record["reasoning_ids"])
            for key, pruned in record["pruned"].items():
                if "student_fraction" not in pruned:
                    raise ValueError(f"{path}: record {record.get('id')!r} has no student lengths (run `match` on traces)")
                pruner_fraction = pruned["num_tokens"] / n if n else 1.0
                groups.setdefault((record.get("method", "greedy"), float(key)), []).append(
                    (pruned["student_fraction"], pruner_fraction, bool(pruned.get("order_exhausted")))
                )
    if not groups and ids is None:
        raise ValueError(f"no records in {', '.join(map(str, paths))}")
    rows = []
    for (method, keep), values in sorted(groups.items(), key=lambda g: (-g[0][1], g[0][0])):
        fractions = [v[0] for v in values]
        rows.append(LengthRow(method, keep, len(values), mean(fractions), min(fractions), max(fractions),
                              mean(v[1] for v in values), sum(v[2] for v in values)))
    return rows
