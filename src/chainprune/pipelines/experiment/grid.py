"""Walking the grid: teachers x pruners x students x methods x keep fractions, each cell's stages in order.

`run_experiment` is one loop over the grid; `Grid` holds what the loop shares (the stage cache, the loaded
models, the data stage's files) and has one method per stage, each building that stage's pipeline config
and running it through the cache. What a key holds is `stages`' business; what a row holds is `results`'.
"""

from __future__ import annotations

import dataclasses
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
    FULL,
    ZERO_SHOT,
    ExperimentResult,
    evaluated_row,
    pruned_stats,
    training_columns,
    write_resolved,
    write_results,
)
from chainprune.pipelines.experiment.stages import StageBusy, StageCallback, Stages
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
        self.tunings: dict[tuple[str, str], dict[str, Any]] = {}  # (teacher, student) -> choose_settings(...)

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

    def run(self, kind: str, inputs: dict[str, Any], work: Callable[[Path], None], wait: bool = False,
            complete: Callable[[Path], bool] | None = None) -> Path:
        """A stage through the cache; StageBusy (the caller's job waits its turn) while another process runs it."""
        return self.stages.run(kind, inputs, work, wait=wait, complete=complete)

    # ---- stages ----

    def chains(self, teacher: TeacherSpec) -> Path:
        return self.run("chains", keys.chains_inputs(self.data.name, teacher, self.config),
                        functools.partial(self._make_chains, teacher), wait=True)

    def _make_chains(self, teacher: TeacherSpec, folder: Path) -> None:
        out, config = folder / "chains.jsonl", self.config
        if teacher.model == SOLUTIONS:
            solution_chains(config.dataset, self.data / "train.jsonl", out)
            return
        summary = run_teacher(out, teacher_config(teacher, config, self.data / "train.jsonl"), resume=True)
        self.fail(f"teacher {label(teacher)}", summary.failures)
        self.say(f"teacher {label(teacher)}: kept {summary.kept} of {summary.questions} questions")

    def traces(self, chains: Path, pruner: PrunerSpec) -> Path:
        return self.run("traces", keys.traces_inputs(chains.name, pruner, self.config),
                        functools.partial(self._make_traces, chains, pruner))

    def _make_traces(self, chains: Path, pruner: PrunerSpec, folder: Path) -> None:
        settings = prune_config(pruner, self.config)
        summary = self.reported(lambda r: run_prune(chains / "chains.jsonl", folder / "traces.jsonl", settings,
                                                    resume=True, reporter=r, loader=lambda c: self.models.get(c.model)))
        self.fail("prune", summary.failures)

    def pruned(self, cell: Cell) -> Path:
        inputs = keys.pruned_inputs(cell.chains.name, cell.traces.name if cell.traces else None, cell.pruner,
                                    cell.student, cell.method, cell.keep, self.config)
        return self.run("pruned", inputs, functools.partial(self._make_pruned, cell))

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

    def distill_config(self, student: StudentSpec, keep: float, method: str) -> DistillConfig:
        config = self.config
        return DistillConfig(
            student=student.model, keep=keep, method=method, dataset=config.dataset,
            sft=student.sft, dtype=config.dtype, device=config.device, dev_split="all",
            dev_data_file=str(self.data / "dev.jsonl"), dev_limit=config.eval.dev_limit,
            max_new_tokens=config.eval.max_new_tokens, eval_batch_size=config.eval.batch_size,
        )

    def student(self, cell: Cell, pruned: Path) -> Path:
        inputs = keys.student_inputs(pruned.name, cell.student, self.data.name, self.config)
        return self.run("student", inputs, functools.partial(self._make_student, cell.student, cell.chains,
                                                             pruned / "pruned.jsonl", cell.keep, cell.method),
                        complete=self.evaluated_or_kept)

    def full_student(self, chains: Path, student: StudentSpec, to_evaluate: bool = True) -> Path:
        """A student trained on the unpruned chains (keep 1.0). A tuning candidate (`to_evaluate` False) is read
        for its dev accuracy alone, so it needs no adapter."""
        inputs = keys.full_student_inputs(chains.name, student, self.data.name, self.config)
        return self.run("student", inputs, functools.partial(self._make_student, student, chains, None, 1.0, FULL),
                        complete=self.evaluated_or_kept if to_evaluate else None)

    def evaluated_or_kept(self, folder: Path) -> bool:
        """Whether a trained student can be used for its test row: its evaluation is done, or its adapter is
        there to run it (a snapshot of the stage cache leaves students' adapters out; then it trains again)."""
        return (folder / "best").is_dir() or self.stages.is_done("eval", keys.eval_inputs(folder.name, self.data.name, self.config))

    def _make_student(self, student: StudentSpec, chains: Path, pruned: Path | None, keep: float, method: str,
                      folder: Path) -> None:
        summary = run_distill(pruned, chains / "chains.jsonl", folder, self.distill_config(student, keep, method),
                              resume=True, log=self.say, progress_bar=self.progress_bar)
        self.fail("distill", summary.failures)

    def tuned(self, teacher: TeacherSpec, chains: Path, student: StudentSpec) -> StudentSpec:
        """The student spec with the training settings its `tune` chose on the dev set (itself without `tune`).
        Each candidate trains on the full chains; StageBusy while another process trains one of them."""
        if not student.tune:
            return student
        key = (label(teacher), label(student))
        if key not in self.tunings:
            busy, trials = None, []
            for settings in student.candidates():
                candidate = dataclasses.replace(student, sft=settings)
                try:
                    folder = self.full_student(chains, candidate, to_evaluate=False)
                except StageBusy as e:
                    busy = e
                    continue
                trials.append((candidate, json.loads((folder / "summary.json").read_text())))
            if busy is not None:
                raise busy
            self.tunings[key] = choose_settings(student, trials)
            chosen = self.tunings[key]
            self.say(f"tuned {label(student)} on the dev set: {chosen['chosen']} "
                     f"(dev accuracy {chosen['trials'][chosen['index']]['dev_accuracy']})")
        return dataclasses.replace(student, sft=self.tunings[key]["settings"], tune=None)

    def evaluate(self, kind: str, inputs: dict[str, Any], generator: Callable[[], Any],
                 name: str) -> tuple[dict[str, Any], Path]:
        """An `evaluate` stage on the test questions; its summary and its per-question outputs."""
        folder = self.run(kind, inputs, functools.partial(self._make_evaluation, generator, name))
        return json.loads((folder / "summary.json").read_text()), folder / "test.jsonl"

    def _make_evaluation(self, generator: Callable[[], Any], name: str, folder: Path) -> None:
        config = self.config
        eval_config = EvalConfig(model=name, dataset=config.dataset, split="all", max_new_tokens=config.eval.max_new_tokens,
                                 dtype=config.dtype, device=config.device, batch_size=config.eval.batch_size,
                                 data_file=str(self.data / "test.jsonl"))
        summary = run_evaluate(folder / "test.jsonl", eval_config, resume=True, generator=LazyGenerator(generator),
                               progress=self.eval_progress(name, config.eval.batch_size))
        (folder / "summary.json").write_text(json.dumps(summary.to_json(), indent=2) + "\n")
        self.say(f"{name}: test accuracy {100 * summary.accuracy:.1f}% ({summary.correct}/{summary.examples}), "
                 f"mean reasoning {summary.mean_reasoning_tokens:.0f} tokens")

    def eval_progress(self, name: str, batch_size: int) -> Callable[[int, int], None]:
        """A log line per batch of test questions: how far, how long so far, how long is left at this pace."""
        started = time.perf_counter()

        def progress(done: int, total: int) -> None:
            if done % batch_size and done != total:
                return
            seconds = time.perf_counter() - started
            left = seconds / done * (total - done)
            self.say(f"  {name}: {done}/{total} test questions, {seconds / 60:.0f} min, about {left / 60:.0f} min left")

        return progress

    # ---- rows ----

    def zero_shot_row(self, teacher: TeacherSpec, pruner: PrunerSpec, student: StudentSpec) -> dict[str, Any]:
        summary, outputs = self.evaluate("zeroshot", keys.zeroshot_inputs(student, self.data.name, self.config),
                                lambda: _ReadyGenerator(self.models.get(student.model), self.config.eval.batch_size),
                                label(student))
        return evaluated_row(label(teacher), label(pruner), label(student), ZERO_SHOT, None, summary, outputs)

    def distilled_row(self, cell: Cell) -> dict[str, Any]:
        cell = dataclasses.replace(cell, student=self.tuned(cell.teacher, cell.chains, cell.student))
        pruned = self.pruned(cell)
        student = self.student(cell, pruned)
        row = self.student_row(cell.teacher, cell.pruner, cell.student, cell.method, cell.keep, student)
        return row | pruned_stats(pruned / "pruned.jsonl", cell.keep)

    def full_row(self, teacher: TeacherSpec, pruner: PrunerSpec, chains: Path, student: StudentSpec) -> dict[str, Any]:
        student = self.tuned(teacher, chains, student)
        row = self.student_row(teacher, pruner, student, FULL, 1.0, self.full_student(chains, student))
        return row | {"student_keep_achieved": 1.0}

    def student_row(self, teacher: TeacherSpec, pruner: PrunerSpec, student: StudentSpec, method: str, keep: float,
                    folder: Path) -> dict[str, Any]:
        """The row of a trained student: its test evaluation and its training columns."""
        distill_config = self.distill_config(student, keep, method)
        summary, outputs = self.evaluate("eval", keys.eval_inputs(folder.name, self.data.name, self.config),
                                         lambda: student_generator(folder / "best", distill_config),
                                         f"{label(student)} {method} {keep}")
        row = evaluated_row(label(teacher), label(pruner), label(student), method, keep, summary, outputs)
        return row | training_columns(json.loads((folder / "summary.json").read_text()))


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

    jobs: list[tuple[str, Callable[[], Any]]] = []  # (what, work): a row, or None for a stage alone
    for teacher in config.teachers:
        chains = grid.chains(teacher)
        for pruner in config.pruners:
            traces_inputs = keys.traces_inputs(chains.name, pruner, config)
            if "greedy" in config.methods:
                jobs.append((f"traces {label(pruner)}", functools.partial(grid.traces, chains, pruner)))
            for student in config.students:
                jobs.append((f"zero-shot {label(student)}", functools.partial(grid.zero_shot_row, teacher, pruner, student)))
                if config.full_chains or student.tune:
                    jobs.append((f"{label(student)} full chains",
                                 functools.partial(grid.full_row, teacher, pruner, chains, student)))
                for method, keep in itertools.product(config.methods, config.keep):
                    traces = stages.folder("traces", traces_inputs) if method == "greedy" else None
                    cell = Cell(teacher, pruner, student, method, keep, chains, traces)
                    jobs.append((f"{label(student)} {method} {keep}",
                                 functools.partial(_traced_row, grid, cell) if traces else
                                 functools.partial(grid.distilled_row, cell)))
    results, failed = run_jobs(jobs, say)
    rows = [row for row in results if isinstance(row, dict)]
    tunings = [{"teacher": t, "student": st, **chosen} for (t, st), chosen in grid.tunings.items()]
    files = write_results(config, rows, results_dir, tunings=tunings, failed=failed)
    return ExperimentResult(rows, files, counts["run"] + counts["resume"], counts["skip"], time.perf_counter() - started,
                            failed=failed, tunings=tunings)


def _traced_row(grid: Grid, cell: Cell) -> dict[str, Any]:
    """A greedy cell: its traces stage first, when its own job has not made it (StageBusy while another process
    prunes)."""
    if not (cell.traces / "done").exists():
        grid.traces(cell.chains, cell.pruner)
    return grid.distilled_row(cell)


# What a job that fails leaves the grid with: its name and the reason, reported beside the results.
JOB_ERRORS = (ValueError, RuntimeError, OSError, ImportError)


def run_jobs(jobs: list[tuple[str, Callable[[], Any]]], say: Callable[[str], None],
             poll_seconds: float = 30.0) -> tuple[list[Any], list[tuple[str, str]]]:
    """Run every job once, in order; a job that meets a stage another process is running waits its turn (the
    others go on), and the waiting ones are tried again until none is left. A job that fails is reported by
    name and reason and the others go on. Returns each job's result (None for a failed one) and the failures."""
    results: list[Any] = [None] * len(jobs)
    failed: list[tuple[str, str]] = []
    waiting = list(range(len(jobs)))
    while waiting:
        busy = []
        for index in waiting:
            what, work = jobs[index]
            try:
                results[index] = work()
            except StageBusy as e:
                busy.append(index)
                say(f"  wait {what}: {e}")
            except JOB_ERRORS as e:
                failed.append((what, f"{type(e).__name__}: {e}"))
                say(f"failed {what}: {e}")
        if busy and busy == waiting:
            time.sleep(poll_seconds)
        waiting = busy
    return results, failed


def choose_settings(student: StudentSpec, trials: list[tuple[StudentSpec, dict[str, Any]]]) -> dict[str, Any]:
    """The tuned training settings: the candidate whose chosen checkpoint has the best dev accuracy (ties: the
    first listed), with every candidate's dev accuracy, for the record."""
    names = list(student.tune or {})
    listed = []
    for candidate, summary in trials:
        chosen = summary.get("chosen") or {}
        listed.append({**{n: getattr(candidate.sft, n) for n in names}, "dev_accuracy": chosen.get("dev_accuracy"),
                       "chosen_step": chosen.get("step")})
    index = max(range(len(listed)), key=lambda i: (listed[i]["dev_accuracy"] or 0.0, -i))
    return {"trials": listed, "index": index, "chosen": {n: listed[index][n] for n in names},
            "settings": trials[index][0].sft}
