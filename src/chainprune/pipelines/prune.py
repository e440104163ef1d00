"""`chainprune prune`: greedy-prune every chain of a JSONL file into a traces JSONL file, resumably.

Each finished example is appended at once; a bad record is reported (line, id, problem) and skipped while the
others complete; `resume` skips ids already in the output. The run's settings are saved beside the output
(`<out>.config.json`) and a resumed run must use the same ones, so one file never mixes two settings.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from chainprune.data.jsonl import JsonlAppender, RecordError, read_chains, repair_and_read_ids
from chainprune.keep import normalize_keep_fractions
from chainprune.models import LoadedModel, load_model
from chainprune.pruning import Approximation, prune_chain
from chainprune.scoring import DEFAULT_MAX_BATCH_TOKENS, get_engine
from chainprune.types import Chain, Trace


@dataclass
class PruneConfig:
    model: str = "smollm2-135m"
    objective: str = "joint"
    keep: list[float] = field(default_factory=lambda: [0.5])
    engine: str = "prefix"
    dtype: str = "auto"
    device: str = "auto"
    max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS
    per_step: int = 1
    screen: int | None = None
    refresh: int = 10

    # Settings that change the traces: a resumed run must agree on these.
    RESULT_FIELDS = ("model", "objective", "keep", "engine", "dtype", "per_step", "screen", "refresh")

    @property
    def approximation(self) -> Approximation:
        return Approximation(per_step=self.per_step, screen=self.screen, refresh=self.refresh)

    def validate(self) -> None:
        self.keep = normalize_keep_fractions(self.keep)
        get_engine(self.engine)
        if self.objective not in ("joint", "answer"):
            raise ValueError(f"unknown objective {self.objective!r}; choose one of joint, answer")
        if self.max_batch_tokens < 1:
            raise ValueError("max_batch_tokens must be at least 1")
        self.approximation  # validates per_step, screen and refresh


@dataclass
class PruneSummary:
    done: int = 0
    skipped: int = 0  # already in the output (resume)
    failures: list[RecordError] = field(default_factory=list)
    deletions: int = 0
    token_forwards: int = 0
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)


class Reporter:
    """What a pipeline tells the outside world; the CLI passes one with progress bars, tests pass none."""

    def start(self, total: int) -> None: ...
    def example(self, chain: Chain, steps: int) -> None: ...
    def step(self, done: int, total: int) -> None: ...
    def finished(self, chain: Chain, trace: Trace | None, error: RecordError | None) -> None: ...


def config_path(out: Path) -> Path:
    return out.with_name(out.name + ".config.json")


def errors_path(out: Path) -> Path:
    return out.with_name(out.name + ".errors.jsonl")


def check_resume_config(out: Path, config: PruneConfig) -> None:
    path = config_path(out)
    if not path.exists():
        return
    saved = json.loads(path.read_text())
    current = asdict(config)
    differ = [k for k in PruneConfig.RESULT_FIELDS if k in saved and saved[k] != current[k]]
    if differ:
        detail = ", ".join(f"{k}: {saved[k]!r} -> {current[k]!r}" for k in differ)
        raise ValueError(f"{out} was written with other settings ({detail}); use another --out or the same settings")


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
    config.validate()
    input_path, out = Path(input_path), Path(out)
    reporter = reporter or Reporter()
    if not input_path.exists():
        raise ValueError(f"input file {input_path} does not exist")
    if out.exists() and out.stat().st_size > 0 and not (resume or overwrite):
        raise ValueError(f"{out} already exists: pass --resume to continue it or --overwrite to replace it")
    if overwrite and not resume:
        out.unlink(missing_ok=True)
    summary = PruneSummary()
    done_ids: set[str] = set()
    if resume:
        check_resume_config(out, config)
        done_ids, summary.warnings = repair_and_read_ids(out)

    chains, summary.failures = read_chains(input_path)
    todo = [(line, chain) for line, chain in chains if chain.id not in done_ids]
    summary.skipped = len(chains) - len(todo)
    out.parent.mkdir(parents=True, exist_ok=True)
    config_path(out).write_text(json.dumps(asdict(config), indent=2) + "\n")

    started = time.perf_counter()
    pruner = (loader or default_loader)(config) if todo else None
    reporter.start(len(todo))
    if todo:
        with JsonlAppender(out) as writer:
            for line, chain in todo:
                trace, error = prune_one(pruner, chain, line, config, reporter)
                if trace is not None:
                    writer.write(trace.to_json())
                    summary.done += 1
                    summary.deletions += len(trace.deletion_order)
                    summary.token_forwards += trace.token_forwards
                else:
                    summary.failures.append(error)
                reporter.finished(chain, trace, error)
    summary.seconds = time.perf_counter() - started
    write_errors(out, summary.failures)
    return summary


def prune_one(
    pruner: LoadedModel, chain: Chain, line: int, config: PruneConfig, reporter: Reporter
) -> tuple[Trace | None, RecordError | None]:
    reporter.example(chain, 0)
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
        )
    except (ValueError, RuntimeError, NotImplementedError) as e:  # one bad example must not end the run
        return None, RecordError(line, chain.id, f"{type(e).__name__}: {e}")
    return trace, None


def default_loader(config: PruneConfig) -> LoadedModel:
    return load_model(config.model, dtype=config.dtype, device=config.device)


def write_errors(out: Path, failures: Sequence[RecordError]) -> None:
    path = errors_path(out)
    if not failures:
        path.unlink(missing_ok=True)
        return
    path.write_text("".join(json.dumps(e.to_json(), ensure_ascii=False) + "\n" for e in failures))
