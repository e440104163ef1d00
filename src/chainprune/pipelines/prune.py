"""`chainprune prune`: greedy-prune every chain of a JSONL file into a traces JSONL file, resumably.

Each finished example is appended at once; a bad record is reported (line, id, problem) and skipped while the
others complete; `resume` skips ids already in the output. The run's settings are saved beside the output
(`<out>.config.json`) and a resumed run must use the same ones, so one file never mixes two settings.
With `batch_chains` K > 1 (an engine that runs packs, `Engine.runs_packs`), K chains are pruned at once in
threads whose packed forwards run as one (`scoring.together`); traces are appended as each finishes, in the
order they finish. What every pipeline's run shares (opening the output, the reporter, the errors file) is in
`chainprune.run`.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from chainprune.choices import DEFAULT_DEVICE, DEFAULT_DTYPE, DEFAULT_ENGINE, DEFAULT_MODEL
from chainprune.data.jsonl import JsonlAppender, RecordError, read_chains
from chainprune.data.scores import ScoreRecorder, scores_path
from chainprune.keep import normalize_keep_fractions
from chainprune.models import LoadedModel, load_model, resolve_device, resolve_dtype
from chainprune.pruning import Approximation, ChainError, check_unit_mode, prune_chain
from chainprune.pruning.estimate import estimate_chain

# PruneSummary, Reporter and errors_path are also imported from here (by the CLI and the demo)
from chainprune.run import PruneSummary, Reporter, errors_path, open_output, require_input, write_errors  # noqa: F401
from chainprune.scoring import DEFAULT_MAX_BATCH_TOKENS, engines_that, get_engine, run_packs
from chainprune.scoring.together import run_together
from chainprune.types import OBJECTIVES, Chain, Trace
from chainprune.units import check_unit


@dataclass
class PruneConfig:
    model: str = DEFAULT_MODEL
    objective: str = "joint"
    keep: list[float] = field(default_factory=lambda: [0.5])
    engine: str = DEFAULT_ENGINE
    dtype: str = DEFAULT_DTYPE
    device: str = DEFAULT_DEVICE
    max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS
    per_step: int = 1
    screen: int | None = None
    refresh: int = 10
    lookahead: int | None = None
    margin: float | list[float] | None = None  # a list: one margin per window (Approximation)
    save_scores: bool = False  # also write every scoring pass's candidate scores to <out>.scores.jsonl
    surrogate: str | None = None  # with screen: an attention surrogate (analyze surrogate) picks the candidates
    batch_chains: int = 1  # with engine packed: prune this many chains at once, their packed forwards run as one
    unit: str = "token"  # what one greedy step deletes: a token, a word or a sentence (chainprune.units)

    # Settings that change the traces: a resumed run must agree on these.
    # The dtype is compared as resolved (`auto` is bfloat16 on CUDA, float32 on CPU), so a run started on a CPU
    # and resumed on a GPU cannot mix float32 and bfloat16 traces in one file.
    RESULT_FIELDS = ("model", "objective", "keep", "engine", "resolved_dtype", "per_step", "screen", "refresh",
                     "lookahead", "margin", "surrogate", "unit")

    def settings(self) -> dict:
        """What is saved beside the output: every field, plus `resolved_dtype` (what `dtype` means on `device`;
        `auto` resolves on this machine, `cuda` as CUDA even where only Ray workers have a GPU)."""
        device = torch.device("cuda") if self.device == "cuda" else resolve_device(self.device)
        return asdict(self) | {"resolved_dtype": str(resolve_dtype(self.dtype, device)).removeprefix("torch.")}

    @property
    def approximation(self) -> Approximation:
        return Approximation(
            per_step=self.per_step, screen=self.screen, refresh=self.refresh, lookahead=self.lookahead,
            margin=self.margin,
        )

    def validate(self) -> None:
        self.keep = normalize_keep_fractions(self.keep)
        engine = get_engine(self.engine)
        if self.objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {self.objective!r}; choose one of {', '.join(OBJECTIVES)}")
        if self.max_batch_tokens < 1:
            raise ValueError("max_batch_tokens must be at least 1")
        if self.batch_chains < 1:
            raise ValueError("batch_chains must be at least 1")
        if self.batch_chains > 1 and not engine.runs_packs:
            raise ValueError(f"batch_chains runs the packed forwards of several chains as one: it needs --engine "
                             f"{' or '.join(engines_that('runs_packs'))} (got {self.engine})")
        # validates per_step, screen, refresh, lookahead and margin; the margin as the approximation reads it (one
        # margin a number, as in runs saved before margins per window; several a list, for the settings file)
        margin = self.approximation.margin
        self.margin = list(margin) if isinstance(margin, tuple) else margin
        check_unit(self.unit)
        if self.unit != "token" and self.save_scores:
            raise ValueError(f"--unit {self.unit} deletes several tokens a step; --save-scores records the scores of "
                             "single tokens only (--unit token)")
        check_unit_mode(self.unit, self.approximation, self.surrogate is not None)
        if self.surrogate is not None:
            if self.screen is None:
                raise ValueError("a surrogate guides screening: pass --screen M with --surrogate")
            if self.lookahead is not None:
                raise ValueError("--surrogate and --lookahead are two ways to pick the screened candidates: use one")
            if not Path(self.surrogate).exists():
                raise ValueError(f"surrogate file {self.surrogate} does not exist")


class StepsTogether(Reporter):
    """A reporter for chains pruned at once (`batch_chains`): its step bar shows the deletions done and to do
    summed over the chains in progress. Called from their threads."""

    def __init__(self, reporter: Reporter):
        self.reporter, self.lock = reporter, threading.Lock()
        self.steps: dict[int, tuple[int, int]] = {}  # per thread: (done, total) of its chain

    def start(self, total: int) -> None:
        self.reporter.start(total)

    def estimate(self, token_forwards: int, exact: bool) -> None:
        self.reporter.estimate(token_forwards, exact)

    def example(self, chain: Chain, steps: int) -> None:
        with self.lock:
            self.steps[threading.get_ident()] = (0, steps)
            self.reporter.example(chain, steps)

    def step(self, done: int, total: int) -> None:
        with self.lock:
            self.steps[threading.get_ident()] = (done, total)
            self.reporter.step(sum(d for d, _ in self.steps.values()), sum(t for _, t in self.steps.values()))

    def finished(self, chain: Chain, trace: Trace | None, error: RecordError | None) -> None:
        with self.lock:
            self.steps.pop(threading.get_ident(), None)
            self.reporter.finished(chain, trace, error)


def run_prune(
    input_path: Path,
    out: Path,
    config: PruneConfig,
    resume: bool = False,
    overwrite: bool = False,
    reporter: Reporter | None = None,
    loader: Callable[[PruneConfig], LoadedModel] | None = None,
) -> PruneSummary:
    """Prune every chain in `input_path` into `out`. Raises ValueError for unusable settings or files."""
    input_path, out = Path(input_path), Path(out)
    reporter = reporter or Reporter()
    summary = PruneSummary()
    _, todo = open_run(input_path, out, config, resume, overwrite, summary)

    started = time.perf_counter()
    pruner = (loader or default_loader)(config) if todo else None
    screener = surrogate_screener(config.surrogate, pruner) if todo and config.surrogate else None
    together = config.batch_chains > 1 and len(todo) > 1
    if together:
        reporter = StepsTogether(reporter)
    reporter.start(len(todo))
    if todo:
        reporter.estimate(estimated_work(pruner, [chain for _, chain in todo], config), config.approximation.exact)
    if todo:
        with JsonlAppender(out) as writer, ScoresWriter(out if config.save_scores else None) as score_writer:
            lock = threading.Lock()  # one chain's results at a time into the files and the summary

            def prune_and_write(task: tuple[int, Chain]) -> None:
                line, chain = task
                trace, error = prune_one(pruner, chain, line, config, reporter, score_writer, screener)
                with lock:
                    if trace is not None:
                        writer.write(trace.to_json())
                        summary.done += 1
                        summary.deletions += len(trace.deletion_order)
                        summary.token_forwards += trace.token_forwards
                    else:
                        summary.failures.append(error)
                    reporter.finished(chain, trace, error)

            if together:
                # longest first, so the last chains to finish are short ones and few forwards run alone
                threads = min(config.batch_chains, len(todo))
                run_together(longest_first(todo), prune_and_write, threads, functools.partial(run_packs, pruner.model))
            else:
                for task in todo:
                    prune_and_write(task)
    summary.seconds = time.perf_counter() - started
    write_errors(out, summary.failures)
    return summary


ESTIMATE_SAMPLE = 1000  # a run's start-of-run estimate tokenizes at most this many chains, then scales


def estimated_work(pruner: LoadedModel, chains: list[Chain], config: PruneConfig) -> int:
    """The token-forwards exact greedy would compute on `chains` (`pruning.estimate`; chains that cannot be
    tokenized are left out: their errors come when they are pruned). Past `ESTIMATE_SAMPLE` chains, from the
    first ones, scaled to all (so a long input's first record is not kept waiting)."""
    sample, total = chains[:ESTIMATE_SAMPLE], 0
    for chain in sample:
        try:
            total += estimate_chain(pruner.tokenizer, chain, min(config.keep), config.engine, config.objective,
                                    config.unit, config.max_batch_tokens).token_forwards
        except (ChainError, ValueError):
            continue
    return round(total * len(chains) / len(sample)) if sample else 0


def open_run(
    input_path: Path, out: Path, config: PruneConfig, resume: bool, overwrite: bool, summary: PruneSummary
) -> tuple[list[tuple[int, Chain]], list[tuple[int, Chain]]]:
    """Everything before a prune run's first chain (`run.open_output`): check the settings and files, clear the
    output and its scores when overwriting, or on resume check the saved settings and repair the output; then
    save the settings. Returns the input's valid (line, chain) pairs and those still to prune; bad records and
    resume warnings go into `summary`."""
    config.validate()
    require_input(input_path)
    output = open_output(out, resume, overwrite, config.settings(), PruneConfig.RESULT_FIELDS, sidecars=[scores_path(out)])
    if config.save_scores:
        output.resume_sidecar(scores_path(out))
    summary.warnings = output.warnings
    chains, summary.failures = read_chains(input_path)
    todo = [(line, chain) for line, chain in chains if chain.id not in output.done]
    summary.skipped = len(chains) - len(todo)
    output.save_settings()
    return chains, todo


class ScoresWriter:
    """Appends a prune's score record to the sidecar before its trace is written (no-op without a path); safe
    to call from the threads of `--batch-chains`."""

    def __init__(self, out: Path | None):
        self.appender = JsonlAppender(scores_path(out)) if out is not None else None
        self.lock = threading.Lock()

    def recorder(self) -> ScoreRecorder | None:
        return ScoreRecorder() if self.appender is not None else None

    def write(self, trace: Trace, recorder: ScoreRecorder | None) -> None:
        if self.appender is not None and recorder is not None:
            record = recorder.to_json(trace.id, len(trace.reasoning_ids))
            with self.lock:
                self.appender.write(record)

    def __enter__(self) -> ScoresWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.appender is not None:
            self.appender.close()


def prune_one(
    pruner: LoadedModel,
    chain: Chain,
    line: int,
    config: PruneConfig,
    reporter: Reporter,
    score_writer: ScoresWriter | None = None,
    screener: Callable | None = None,
) -> tuple[Trace | None, RecordError | None]:
    reporter.example(chain, 0)
    recorder = score_writer.recorder() if score_writer is not None else None
    try:
        trace = prune_chain(
            pruner,
            chain,
            keep=config.keep,
            objective=config.objective,
            engine=config.engine,
            max_batch_tokens=config.max_batch_tokens,
            on_step=reporter.step,
            approximation=config.approximation,
            on_scores=recorder.observe if recorder is not None else None,
            screener=screener,
            unit=config.unit,
        )
        if config.surrogate is not None:
            trace.mode = dict(trace.mode or {}, surrogate=Path(config.surrogate).name)
    except (ValueError, RuntimeError, NotImplementedError) as e:  # one bad example must not end the run
        return None, RecordError(line, chain.id, f"{type(e).__name__}: {e}")
    if score_writer is not None:
        score_writer.write(trace, recorder)
    return trace, None


def longest_first(todo: Sequence[tuple[int, Chain]]) -> list[tuple[int, Chain]]:
    """Chains in the order to hand them out: longest reasoning first (a prune's cost grows with its square, so a
    long chain started last would finish alone), then longest prompt, then input order. Lengths in characters:
    the driver loads no tokenizer."""
    return sorted(todo, key=lambda item: (-len(item[1].reasoning), -len(item[1].question) - len(item[1].answer), item[0]))


def surrogate_screener(path: str, pruner: LoadedModel) -> Callable:
    """Predicted scores of a chain's reasoning tokens from a saved attention surrogate, with the pruner's own
    attention as features (the surrogate must have been trained on this model's attention)."""
    from chainprune.analysis.surrogate import Surrogate, attention_features, feature_count

    surrogate = Surrogate.load(Path(path))
    config = pruner.model.config
    kind = surrogate.feature_kind
    width = feature_count(config.num_hidden_layers, config.num_attention_heads, kind)
    if surrogate.info.get("features") != width:
        raise ValueError(f"surrogate {path} expects {surrogate.info.get('features')} {kind} features; "
                         f"{pruner.name} gives {width}: train it on this model")

    def screener(ids) -> list[float]:
        features = attention_features(pruner.model, ids.input_ids, len(ids.prompt_ids), len(ids.reasoning_ids), kind)
        return surrogate.predict(features).tolist()

    return screener


def default_loader(config: PruneConfig) -> LoadedModel:
    return load_model(config.model, dtype=config.dtype, device=config.device)
