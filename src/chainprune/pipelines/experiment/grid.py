"""Walking the grid: teachers x pruners x students x methods x keep fractions, each cell's stages in order.

`run_experiment` is one loop over the grid; `Grid` holds what the loop shares (the stage cache, the loaded
models, the data stage's files) and has one method per stage, each building that stage's pipeline config
and running it through the cache. What a key holds is `stages`' business; what a row holds is `results`'.
"""

from __future__ import annotations

import functools
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chainprune.pipelines.baselines import BaselineConfig, MatchConfig, Resources, run_baseline, run_match
from chainprune.pipelines.distill import DistillConfig, LazyGenerator, run_distill, student_generator
from chainprune.pipelines.evaluate import EvalConfig, run_evaluate
from chainprune.pipelines.experiment import stages as keys
from chainprune.pipelines.experiment.config import (
    SOLUTIONS,
    ExperimentConfig,
    PrunerSpec,
    StudentSpec,
    TeacherSpec,
    label,
    prune_config,
    teacher_config,
)
from chainprune.pipelines.experiment.data import make_data, solution_chains
from chainprune.pipelines.experiment.results import (
    ExperimentResult,
    evaluated_row,
    training_columns,
    write_resolved,
    write_results,
)
from chainprune.pipelines.experiment.stages import StageCallback, Stages
from chainprune.pipelines.prune import run_prune
from chainprune.pipelines.teacher import run_teacher
from chainprune.ranking import RANKER_NEEDS


class ModelCache:
    """Pruner / zero-shot models loaded once per run (used read-only; students are loaded fresh to train)."""

    def __init__(self, dtype: str, device: str):
        self.dtype, self.device, self.models = dtype, device, {}

    def get(self, name: str) -> Any:
        from chainprune.models import load_model

        if name not in self.models:
            self.models[name] = load_model(name, dtype=self.dtype, device=self.device)
        return self.models[name]

    def tokenizer(self, name: str) -> Any:
        """A loaded model's tokenizer, else the tokenizer alone."""
        if name in self.models:
            return self.models[name].tokenizer
        from chainprune.models.auxiliary import load_tokenizer

        return load_tokenizer(name)


class _ReadyGenerator:
    """A transformers generator over an already loaded model (the zero-shot student, from the cache)."""

    def __init__(self, loaded: Any, batch_size: int):
        from chainprune.generation import TransformersGenerator

        self._generator = TransformersGenerator(loaded, batch_size)
        self.tokenizer = loaded.tokenizer

    def generate(self, *args: Any) -> Any:
        return self._generator.generate(*args)


@dataclass
class Cell:
    """One distilled row of the grid: the stages it reads and the method and keep it trains on."""

    teacher: TeacherSpec
    pruner: PrunerSpec
    student: StudentSpec
    method: str
    keep: float
    chains: Path  # the chains stage's folder
    traces: Path | None  # the traces stage's folder (None without greedy)


class Grid:
    """The stages of one experiment run, each run once through the stage cache."""

    def __init__(self, config: ExperimentConfig, stages: Stages, data: Path, say: Callable[[str], None],
                 reporter_factory: Callable[[], Any], progress_bar: bool):
        self.config, self.stages, self.say = config, stages, say
        self.data = data  # the data stage's folder: train.jsonl, dev.jsonl, test.jsonl
        self.reporter_factory, self.progress_bar = reporter_factory, progress_bar
        self.models = ModelCache(config.dtype, config.device)

    def fail(self, where: str, failures: list[Any]) -> None:
        for failure in failures:
            self.say(f"{where}: failed {failure}")

    def reported(self, work: Callable[[Any], Any]) -> Any:
        """Run `work(reporter)` with a fresh progress reporter, stopped afterwards (the CLI's draw bars)."""
        reporter = self.reporter_factory()
        try:
            return work(reporter)
        finally:
            if hasattr(reporter, "stop"):
                reporter.stop()

    # ---- stages ----

    def chains(self, teacher: TeacherSpec) -> Path:
        return self.stages.run("chains", keys.chains_inputs(self.data.name, teacher, self.config),
                               functools.partial(self._make_chains, teacher))

    def _make_chains(self, teacher: TeacherSpec, folder: Path) -> None:
        out, config = folder / "chains.jsonl", self.config
        if teacher.model == SOLUTIONS:
            solution_chains(config.dataset, self.data / "train.jsonl", out)
            return
        summary = run_teacher(out, teacher_config(teacher, config, self.data / "train.jsonl"), resume=True)
        self.fail(f"teacher {label(teacher)}", summary.failures)
        self.say(f"teacher {label(teacher)}: kept {summary.kept} of {summary.questions} questions")

    def traces(self, chains: Path, pruner: PrunerSpec) -> Path:
        return self.stages.run("traces", keys.traces_inputs(chains.name, pruner, self.config),
                               functools.partial(self._make_traces, chains, pruner))

    def _make_traces(self, chains: Path, pruner: PrunerSpec, folder: Path) -> None:
        settings = prune_config(pruner, self.config)
        summary = self.reported(lambda r: run_prune(chains / "chains.jsonl", folder / "traces.jsonl", settings,
                                                    resume=True, reporter=r, loader=lambda c: self.models.get(c.model)))
        self.fail("prune", summary.failures)

    def pruned(self, cell: Cell) -> Path:
        inputs = keys.pruned_inputs(cell.chains.name, cell.traces.name if cell.traces else None, cell.pruner,
                                    cell.student, cell.method, cell.keep, self.config)
        return self.stages.run("pruned", inputs, functools.partial(self._make_pruned, cell))

    def _make_pruned(self, cell: Cell, folder: Path) -> None:
        out, config = folder / "pruned.jsonl", self.config
        if cell.method == "greedy":
            match = MatchConfig(student_tokenizer=cell.student.model, keep=[cell.keep])
            summary = self.reported(lambda r: run_match(cell.traces / "traces.jsonl", out, match, resume=True,
                                                        reporter=r, tokenizers=self.models.tokenizer))
        else:
            baseline = BaselineConfig(method=cell.method, student_tokenizer=cell.student.model, model=cell.pruner.model,
                                      keep=[cell.keep], seed=config.seed, dtype=config.dtype, device=config.device)
            resources = None
            if RANKER_NEEDS[cell.method] in (None, "causal_lm"):
                pruner_model = self.models.get(cell.pruner.model)
                resources = Resources(pruner=pruner_model, student=self.models.tokenizer(cell.student.model),
                                      ranker_model=pruner_model.model)
            summary = self.reported(lambda r: run_baseline(cell.chains / "chains.jsonl", out, baseline, resume=True,
                                                           reporter=r, resources=resources))
        self.fail(f"{cell.method} @ {cell.keep}", summary.failures)

    def distill_config(self, cell: Cell) -> DistillConfig:
        config = self.config
        return DistillConfig(
            student=cell.student.model, keep=cell.keep, method=cell.method, dataset=config.dataset,
            sft=cell.student.sft, dtype=config.dtype, device=config.device, dev_split="all",
            dev_data_file=str(self.data / "dev.jsonl"), dev_limit=config.eval.dev_limit,
            max_new_tokens=config.eval.max_new_tokens, eval_batch_size=config.eval.batch_size,
        )

    def student(self, cell: Cell, pruned: Path) -> Path:
        inputs = keys.student_inputs(pruned.name, cell.student, self.data.name, self.config)
        return self.stages.run("student", inputs, functools.partial(self._make_student, cell, pruned))

    def _make_student(self, cell: Cell, pruned: Path, folder: Path) -> None:
        summary = run_distill(pruned / "pruned.jsonl", cell.chains / "chains.jsonl", folder, self.distill_config(cell),
                              resume=True, log=self.say, progress_bar=self.progress_bar)
        self.fail("distill", summary.failures)

    def evaluate(self, kind: str, inputs: dict[str, Any], generator: Callable[[], Any], name: str) -> dict[str, Any]:
        """An `evaluate` stage on the test questions; its summary."""
        folder = self.stages.run(kind, inputs, functools.partial(self._make_evaluation, generator, name))
        return json.loads((folder / "summary.json").read_text())

    def _make_evaluation(self, generator: Callable[[], Any], name: str, folder: Path) -> None:
        config = self.config
        eval_config = EvalConfig(model=name, dataset=config.dataset, split="all", max_new_tokens=config.eval.max_new_tokens,
                                 dtype=config.dtype, device=config.device, batch_size=config.eval.batch_size,
                                 data_file=str(self.data / "test.jsonl"))
        summary = run_evaluate(folder / "test.jsonl", eval_config, resume=True, generator=LazyGenerator(generator))
        (folder / "summary.json").write_text(json.dumps(summary.to_json(), indent=2) + "\n")
        self.say(f"{name}: test accuracy {100 * summary.accuracy:.1f}% ({summary.correct}/{summary.examples}), "
                 f"mean reasoning {summary.mean_reasoning_tokens:.0f} tokens")

    # ---- rows ----

    def zero_shot_row(self, teacher: TeacherSpec, pruner: PrunerSpec, student: StudentSpec) -> dict[str, Any]:
        summary = self.evaluate("zeroshot", keys.zeroshot_inputs(student, self.data.name, self.config),
                                lambda: _ReadyGenerator(self.models.get(student.model), self.config.eval.batch_size),
                                label(student))
        return evaluated_row(label(teacher), label(pruner), label(student), "zero-shot", None, summary)

    def distilled_row(self, cell: Cell) -> dict[str, Any]:
        pruned = self.pruned(cell)
        student = self.student(cell, pruned)
        distill_config = self.distill_config(cell)
        summary = self.evaluate("eval", keys.eval_inputs(student.name, self.data.name, self.config),
                                lambda: student_generator(student / "best", distill_config),
                                f"{label(cell.student)} {cell.method} {cell.keep}")
        row = evaluated_row(label(cell.teacher), label(cell.pruner), label(cell.student), cell.method, cell.keep, summary)
        distilled = json.loads((student / "summary.json").read_text())
        return row | training_columns(pruned / "pruned.jsonl", cell.keep, distilled)


def run_experiment(
    config: ExperimentConfig,
    out_dir: Path | None = None,
    results_dir: Path | None = None,
    on_stage: StageCallback | None = None,
    log: Callable[[str], None] | None = None,
    reporter_factory: Callable[[], Any] | None = None,
    progress_bar: bool = True,
) -> ExperimentResult:
    """Run (or resume) the whole grid and write the results. Raises ValueError for an unusable config."""
    import torch

    config.validate()
    started = time.perf_counter()
    out_dir = Path(out_dir or config.out_dir)
    results_dir = Path(results_dir or config.results_dir or out_dir)
    say = log or (lambda message: None)
    counts = {"run": 0, "resume": 0, "skip": 0}

    def count(kind: str, key: str, status: str) -> None:
        counts[status] += 1
        say(f"{'skip' if status == 'skip' else status:>6} {kind}-{key}")
        if on_stage:
            on_stage(kind, key, status)

    if config.threads:
        torch.set_num_threads(config.threads)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_resolved(config, [out_dir, results_dir])
    stages = Stages(out_dir, count)
    data = stages.run("data", keys.data_inputs(config), functools.partial(make_data, config, log=say))
    grid = Grid(config, stages, data, say, reporter_factory or (lambda: None), progress_bar)

    rows: list[dict[str, Any]] = []
    for teacher in config.teachers:
        chains = grid.chains(teacher)
        for pruner in config.pruners:
            traces = grid.traces(chains, pruner) if "greedy" in config.methods else None
            for student in config.students:
                rows.append(grid.zero_shot_row(teacher, pruner, student))
                for method, keep in itertools.product(config.methods, config.keep):
                    rows.append(grid.distilled_row(Cell(teacher, pruner, student, method, keep, chains, traces)))

    files = write_results(config, rows, results_dir)
    return ExperimentResult(rows, files, counts["run"] + counts["resume"], counts["skip"], time.perf_counter() - started)
