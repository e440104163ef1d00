"""`chainprune experiment CONFIG.yaml`: the paper's distillation grid, from questions to an accuracy table.

teachers x pruners x students x methods x keep fractions, in stages:

    data      questions carved into train / dev / test (disjoint, seeded) from the dataset's train split
    chains    per teacher: rejection-sampled teacher chains (`run_teacher`), or the dataset's own worked solutions
    traces    per (chains, pruner): greedy traces down to a floor below the smallest keep (`run_prune`)
    pruned    per (chains, pruner, method, keep, student tokenizer): chains cut at matched student lengths
              (`run_match` for greedy, `run_baseline` for the others)
    student   per (pruned set, student): SFT and the best checkpoint by dev accuracy (`run_distill`)
    eval      per student: test accuracy and output reasoning length (`run_evaluate`); also the zero-shot student
    report    results.csv / results.md, accuracy-vs-keep.png / .svg, resolved-config.yaml

Every stage lives in `OUT/stages/KIND-KEY/`, KEY a hash of the stage's resolved inputs (its config slice and
the keys of the stages it reads), and writes a `done` marker last. A rerun skips finished stages and resumes
unfinished ones (each pipeline appends per record); changing one setting reruns only the stages it reaches.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import random
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from chainprune.data.jsonl import read_lines
from chainprune.keep import keep_key, normalize_keep_fractions
from chainprune.scoring import DEFAULT_MAX_BATCH_TOKENS
from chainprune.training.sft import SFTSettings

SOLUTIONS = "solutions"  # a teacher that is the dataset's own worked solutions


# ---- configuration ----


@dataclass
class DataSpec:
    data_file: str | None = None  # local JSONL/Parquet of the original train split; None: from the hub
    hub_dataset: str | None = None  # use this hub repo's train/dev/test splits as they are ('paper': the paper's)
    train: int | None = 200  # training questions (None: all that are left)
    dev: int = 50  # dev questions (choose the checkpoint)
    test: int | None = 200  # test questions (None: all that are left; with hub_dataset: the whole test split)
    seed: int = 0
    max_solution_chars: int | None = None  # only training questions whose worked solution is this short (CPU)


@dataclass
class TeacherSpec:
    model: str = SOLUTIONS  # 'solutions' (the dataset's worked solutions), or a model: bundled, folder or hub id
    name: str | None = None
    samples: int = 10
    temperature: float = 0.7
    top_p: float = 1.0
    max_new_tokens: int = 1024
    seed: int = 0
    backend: str = "transformers"
    batch_size: int = 8


@dataclass
class PrunerSpec:
    model: str = "smollm2-135m"
    name: str | None = None
    objective: str = "joint"
    engine: str = "packed"
    per_step: int = 1
    screen: int | None = None
    refresh: int = 10
    lookahead: int | None = None
    margin: float | None = None
    surrogate: str | None = None  # with screen: an attention surrogate file picks the re-scored candidates
    save_scores: bool = False  # also write every scoring pass's candidate scores beside the traces
    max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS  # memory bound of one forward (speed only)
    batch_chains: int = 1  # with engine packed: prune this many chains at once (speed only)
    floor: float | None = None  # greedy traces go down to this keep (default: the smallest keep - 0.05)


# Pruner settings that change only speed and memory, not the traces: left out of the traces stage's key.
_SPEED_ONLY = ("max_batch_tokens", "batch_chains")
# Pruner settings added after runs were cached: left out of the key at their default, so those stages stay valid.
_LATER = {"margin": None, "surrogate": None, "save_scores": False}


@dataclass
class StudentSpec:
    model: str = "smollm2-135m"
    name: str | None = None
    sft: SFTSettings = field(default_factory=SFTSettings)


@dataclass
class EvalSpec:
    max_new_tokens: int = 512
    batch_size: int = 8
    dev_limit: int | None = None  # None: every dev question


@dataclass
class ExperimentConfig:
    name: str = "experiment"
    dataset: str = "gsm8k"
    out_dir: str = "runs/experiment"  # stages (checkpoints included)
    results_dir: str | None = None  # table, plot and resolved config (default: out_dir)
    data: DataSpec = field(default_factory=DataSpec)
    teachers: list[TeacherSpec] = field(default_factory=lambda: [TeacherSpec()])
    pruners: list[PrunerSpec] = field(default_factory=lambda: [PrunerSpec()])
    students: list[StudentSpec] = field(default_factory=lambda: [StudentSpec()])
    methods: list[str] = field(default_factory=lambda: ["greedy", "uniform"])
    keep: list[float] = field(default_factory=lambda: [0.7, 0.5])
    seed: int = 0  # the uniform ranker's seed
    eval: EvalSpec = field(default_factory=EvalSpec)
    dtype: str = "auto"
    device: str = "auto"
    threads: int | None = None  # torch CPU threads (None: torch's default)

    def validate(self) -> None:
        from chainprune.ranking import get_ranker
        from chainprune.tasks import get_task

        get_task(self.dataset)
        if not self.methods:
            raise ValueError("methods: name at least one pruning method")
        for method in self.methods:
            get_ranker(method)
        self.keep = normalize_keep_fractions(self.keep)
        for student in self.students:
            student.sft.validate()
        for pruner in self.pruners:
            if pruner.floor is not None and pruner.floor > min(self.keep):
                raise ValueError(f"pruner {label(pruner)}: floor {pruner.floor} is above the smallest keep {min(self.keep)}")
            try:
                prune_config(pruner, self).validate()
            except ValueError as error:
                raise ValueError(f"pruner {label(pruner)}: {error}") from None
        if self.data.hub_dataset is None and self.data.dev < 1:
            raise ValueError("data.dev must be at least 1 (the dev set chooses each student's checkpoint)")
        for kind, specs in (("teacher", self.teachers), ("pruner", self.pruners), ("student", self.students)):
            names = [label(s) for s in specs]
            if len(set(names)) != len(names):
                raise ValueError(f"two {kind}s are both called {sorted(n for n in names if names.count(n) > 1)[0]!r}: give them a `name`")


def label(spec: Any) -> str:
    return spec.name or spec.model


def traces_key(pruner: PrunerSpec) -> dict[str, Any]:
    """The pruner settings that key its traces stage: those that change traces (the floor is keyed apart)."""
    return {k: v for k, v in asdict(pruner).items()
            if k not in ("name", "floor", *_SPEED_ONLY) and not (k in _LATER and v == _LATER[k])}


def pruner_floor(pruner: PrunerSpec, keep: list[float]) -> float:
    """The keep fraction greedy traces go down to: the pruner's floor, or the smallest keep - 0.05."""
    return pruner.floor if pruner.floor is not None else round(max(0.01, min(keep) - 0.05), 4)


def prune_config(pruner: PrunerSpec, config: ExperimentConfig) -> Any:
    """The `chainprune prune` settings of one pruner of the grid (a PruneConfig)."""
    from chainprune.pipelines.prune import PruneConfig

    return PruneConfig(model=pruner.model, objective=pruner.objective, keep=[pruner_floor(pruner, config.keep)],
                       engine=pruner.engine, dtype=config.dtype, device=config.device, per_step=pruner.per_step,
                       screen=pruner.screen, refresh=pruner.refresh, lookahead=pruner.lookahead,
                       margin=pruner.margin, surrogate=pruner.surrogate, save_scores=pruner.save_scores,
                       max_batch_tokens=pruner.max_batch_tokens, batch_chains=pruner.batch_chains)


def _build(cls: type, values: Any, where: str) -> Any:
    """A dataclass from a YAML mapping; unknown keys fail with the known ones."""
    if values is None:
        return cls()
    if isinstance(values, str) and cls is TeacherSpec:
        values = {"model": values}
    if not isinstance(values, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(values).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in values if k not in known and not (cls is StudentSpec and k in _SFT_FIELDS)]
    if unknown:
        names = sorted(set(known) | (_SFT_FIELDS if cls is StudentSpec else set()))
        raise ValueError(f"{where}: unknown setting {unknown[0]!r}; known: {', '.join(names)}")
    kwargs = {k: v for k, v in values.items() if k in known and k != "sft"}
    if cls is StudentSpec:  # training settings sit beside `model` (flat) or under `sft`
        sft = {**values.get("sft", {}), **{k: v for k, v in values.items() if k in _SFT_FIELDS}}
        kwargs["sft"] = _build(SFTSettings, sft, f"{where}.sft")
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ValueError(f"{where}: {e}") from None


_SFT_FIELDS = {f.name for f in dataclasses.fields(SFTSettings)}


def _many(cls: type, values: Any, where: str) -> list[Any]:
    items = values if isinstance(values, list) else [values]
    return [_build(cls, v, f"{where}[{i}]" if isinstance(values, list) else where) for i, v in enumerate(items)]


def parse_config(raw: dict[str, Any]) -> ExperimentConfig:
    """The experiment from a YAML mapping: `teacher`/`teachers`, `pruner`/`pruners`, `student`/`students`
    take one mapping or a list (the grid is their product)."""
    if not isinstance(raw, dict):
        raise ValueError(f"the experiment config must be a mapping, got {type(raw).__name__}")
    plural = {"teacher": "teachers", "pruner": "pruners", "student": "students"}
    top = {f.name for f in dataclasses.fields(ExperimentConfig)}
    for key in raw:
        if key not in top and key not in plural:
            raise ValueError(f"unknown setting {key!r}; known: {', '.join(sorted(top | set(plural)))}")
    kwargs: dict[str, Any] = {k: v for k, v in raw.items() if k in top and k not in ("data", "eval", *plural.values())}
    kwargs["data"] = _build(DataSpec, raw.get("data"), "data")
    kwargs["eval"] = _build(EvalSpec, raw.get("eval"), "eval")
    for one, many in plural.items():
        if one in raw and many in raw:
            raise ValueError(f"give either {one!r} or {many!r}, not both")
        if one in raw or many in raw:
            cls = {"teacher": TeacherSpec, "pruner": PrunerSpec, "student": StudentSpec}[one]
            kwargs[many] = _many(cls, raw.get(one, raw.get(many)), one if one in raw else many)
    if "keep" in kwargs and not isinstance(kwargs["keep"], list):
        kwargs["keep"] = [kwargs["keep"]]
    config = ExperimentConfig(**kwargs)
    config.validate()
    return config


def load_config(path: Path, overrides: dict[str, Any] | None = None) -> ExperimentConfig:
    import yaml

    try:
        raw = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML ({e})") from None
    return parse_config({**(raw or {}), **(overrides or {})})


# ---- stages ----


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:12]


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


StageCallback = Callable[[str, str, str], None]  # (kind, key, status: run | resume | skip)


class Stages:
    """Runs a stage once: `OUT/stages/KIND-KEY/` with `stage.json` (its inputs) and `done` written last."""

    def __init__(self, root: Path, on_stage: StageCallback | None = None):
        self.root = Path(root) / "stages"
        self.on_stage = on_stage or (lambda kind, key, status: None)
        self.log = Path(root) / "stages.log"

    def run(self, kind: str, inputs: dict[str, Any], work: Callable[[Path], None]) -> Path:
        key = digest({"kind": kind, **inputs})
        folder = self.root / f"{kind}-{key}"
        if (folder / "done").exists():
            self._report(kind, key, "skip")
            return folder
        status = "resume" if folder.exists() else "run"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "stage.json").write_text(json.dumps({"kind": kind, "inputs": inputs}, indent=2, default=str) + "\n")
        self._report(kind, key, status)
        work(folder)
        (folder / "done").write_text(time.strftime("%Y-%m-%dT%H:%M:%S%z") + "\n")
        return folder

    def _report(self, kind: str, key: str, status: str) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("a") as f:
            f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {status} {kind}-{key}\n")
        self.on_stage(kind, key, status)


class ModelCache:
    """Pruner / zero-shot models loaded once per run (used read-only; students are loaded fresh to train)."""

    def __init__(self, dtype: str, device: str):
        self.dtype, self.device, self.models = dtype, device, {}

    def get(self, name: str) -> Any:
        from chainprune.models import load_model

        if name not in self.models:
            self.models[name] = load_model(name, dtype=self.dtype, device=self.device)
        return self.models[name]


# ---- data ----


def _rows(config: ExperimentConfig, split: str) -> list[Any]:
    from chainprune.tasks import get_task
    from chainprune.tasks.base import hub_rows, read_rows

    task = get_task(config.dataset)
    if config.data.hub_dataset is not None:
        hub = task.paper_hub_path if config.data.hub_dataset == "paper" else config.data.hub_dataset
        return list(hub_rows(hub, None, split))
    if config.data.data_file is not None:
        return list(read_rows(Path(config.data.data_file)))
    return list(hub_rows(task.hub_path, task.hub_config, "train"))


def gsm8k_solution_chain(record: dict[str, Any], example: Any, system: str) -> dict[str, Any]:
    """A GSM8K worked solution as a chain: the text before `####` with the `<<...>>` calculator notes
    stripped is the reasoning, "The answer is N." (the line the grader reads) the answer."""
    solution = record["answer"].rsplit("####", 1)[0]
    reasoning = re.sub(r"<<[^>]*>>", "", solution).strip()
    return {"id": example.id, "question": example.question, "reasoning": reasoning,
            "answer": f"The answer is {example.gold}.", "system": system, "gold": example.gold}


SOLUTION_CHAINS = {"gsm8k": gsm8k_solution_chain}


def _solution_length(record: dict[str, Any]) -> int:
    return len(re.sub(r"<<[^>]*>>", "", str(record.get("answer", "")).rsplit("####", 1)[0]).strip())


def make_data(config: ExperimentConfig, folder: Path, log: Callable[[str], None]) -> None:
    """train.jsonl / dev.jsonl / test.jsonl: raw dataset rows with an `id`, disjoint, in a seeded order."""
    from chainprune.tasks import get_task

    task = get_task(config.dataset)
    spec = config.data

    def valid(rows: Iterable[Any], origin: str) -> list[dict[str, Any]]:
        out = []
        for row in rows:
            try:
                if row.error:
                    raise ValueError(row.error)
                example = task.to_example(row.record, origin, row.index)
            except (ValueError, TypeError, KeyError) as e:
                log(f"skipped {row.where}: {e}")
                continue
            out.append({**row.record, "id": example.id})
        return out

    if spec.hub_dataset is not None:  # the repo's own splits, each shuffled; dev and test cut to size
        parts = {}
        for split, size in (("dev", spec.dev), ("test", spec.test)):
            rows = valid(_rows(config, split), split)
            random.Random(spec.seed).shuffle(rows)
            parts[split] = rows if size is None else rows[:size]
        train_pool = valid(_rows(config, "train"), "train")
        random.Random(spec.seed).shuffle(train_pool)
    else:  # one original split, carved: test first, then dev, the rest is the training pool
        rows = valid(_rows(config, "train"), "train")
        random.Random(spec.seed).shuffle(rows)
        test_size = len(rows) // 2 if spec.test is None else spec.test
        if test_size + spec.dev >= len(rows):
            raise ValueError(f"{len(rows)} rows cannot give {test_size} test + {spec.dev} dev questions and a training set")
        parts = {"test": rows[:test_size], "dev": rows[test_size : test_size + spec.dev]}
        train_pool = rows[test_size + spec.dev :]
    if spec.max_solution_chars is not None:
        train_pool = [r for r in train_pool if _solution_length(r) <= spec.max_solution_chars]
    parts["train"] = train_pool if spec.train is None else train_pool[: spec.train]
    for split, rows in parts.items():
        _write_jsonl(folder / f"{split}.jsonl", rows)
    log(f"data: {', '.join(f'{k} {len(v)}' for k, v in parts.items())}")


def _write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    tmp.replace(path)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for _, line in read_lines(path)]


# ---- the runner ----


@dataclass
class ExperimentResult:
    rows: list[dict[str, Any]]
    files: list[Path]
    stages_run: int = 0
    stages_skipped: int = 0
    seconds: float = 0.0


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

    from chainprune.pipelines.baselines import BaselineConfig, MatchConfig, Resources, run_baseline, run_match
    from chainprune.pipelines.distill import DistillConfig, run_distill, student_generator
    from chainprune.pipelines.evaluate import EvalConfig, run_evaluate
    from chainprune.pipelines.prune import PruneConfig, run_prune
    from chainprune.pipelines.teacher import TeacherConfig, run_teacher
    from chainprune.ranking import RANKER_NEEDS
    from chainprune.tasks import get_task

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

    stages = Stages(out_dir, count)
    reporter = reporter_factory or (lambda: None)
    if config.threads:
        torch.set_num_threads(config.threads)
    task = get_task(config.dataset)
    models = ModelCache(config.dtype, config.device)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_resolved(config, [out_dir, results_dir])
    fail = _failures(say)

    # data
    source = {"data_file": config.data.data_file, "data_file_sha": file_digest(Path(config.data.data_file))
              if config.data.data_file else None}
    data_inputs = {"dataset": config.dataset, "data": asdict(config.data), **source}
    data_dir = stages.run("data", data_inputs, lambda d: make_data(config, d, say))
    data_key = data_dir.name
    test_file, dev_file = data_dir / "test.jsonl", data_dir / "dev.jsonl"

    rows: list[dict[str, Any]] = []
    eval_spec = asdict(config.eval)
    for teacher in config.teachers:
        chains_inputs = {"data": data_key, "teacher": {k: v for k, v in asdict(teacher).items() if k != "name"},
                         "dtype": config.dtype}

        def make_chains(d: Path, teacher: TeacherSpec = teacher) -> None:
            out = d / "chains.jsonl"
            if teacher.model == SOLUTIONS:
                if config.dataset not in SOLUTION_CHAINS:
                    raise ValueError(f"only {', '.join(SOLUTION_CHAINS)} has worked solutions usable as chains; "
                                     f"name a teacher model for {config.dataset}")
                to_chain = SOLUTION_CHAINS[config.dataset]
                chains = []
                for record in _read_jsonl(data_dir / "train.jsonl"):  # rows carry their id
                    chains.append(to_chain(record, task.to_example(record, "train", 0), task.system_prompt))
                _write_jsonl(out, chains)
                return
            summary = run_teacher(out, TeacherConfig(
                dataset=config.dataset, split="all", model=teacher.model, samples=teacher.samples,
                temperature=teacher.temperature, top_p=teacher.top_p, max_new_tokens=teacher.max_new_tokens,
                seed=teacher.seed, backend=teacher.backend, dtype=config.dtype, device=config.device,
                batch_size=teacher.batch_size, data_file=str(data_dir / "train.jsonl"),
            ), resume=True)
            fail(f"teacher {label(teacher)}", summary.failures)
            say(f"teacher {label(teacher)}: kept {summary.kept} of {summary.questions} questions")

        chains_dir = stages.run("chains", chains_inputs, make_chains)
        chains_file = chains_dir / "chains.jsonl"

        for pruner in config.pruners:
            pruner_inputs = traces_key(pruner)
            floor = pruner_floor(pruner, config.keep)
            traces_file = None
            if "greedy" in config.methods:
                def make_traces(d: Path, settings: PruneConfig = prune_config(pruner, config)) -> None:
                    summary = _reported(reporter, lambda r: run_prune(
                        chains_file, d / "traces.jsonl", settings, resume=True, reporter=r,
                        loader=lambda c: models.get(c.model)))
                    fail("prune", summary.failures)

                traces_dir = stages.run("traces", {"chains": chains_dir.name, "pruner": pruner_inputs, "floor": floor,
                                                   "dtype": config.dtype}, make_traces)
                traces_file = traces_dir / "traces.jsonl"

            for student in config.students:
                zero_shot = _evaluate_stage(stages, "zeroshot", {"student": student.model, "test": data_key,
                                                                   "eval": eval_spec, "dtype": config.dtype},
                                            lambda: _ReadyGenerator(models.get(student.model), config.eval.batch_size),
                                            test_file, config, label(student), EvalConfig, run_evaluate, say)
                rows.append(_row(label(teacher), label(pruner), label(student), "zero-shot", None, zero_shot))
                for method in config.methods:
                    for keep in config.keep:
                        pruned_inputs = {"chains": chains_dir.name, "pruner": pruner_inputs, "method": method,
                                         "keep": keep, "student_tokenizer": student.model, "dtype": config.dtype}
                        if method == "greedy":
                            pruned_inputs["traces"] = traces_file.parent.name
                        elif method == "uniform":
                            pruned_inputs["seed"] = config.seed

                        def make_pruned(d: Path, method: str = method, keep: float = keep,
                                        student: StudentSpec = student) -> None:
                            out = d / "pruned.jsonl"
                            if method == "greedy":
                                match = MatchConfig(student_tokenizer=student.model, keep=[keep])
                                summary = _reported(reporter, lambda r: run_match(
                                    traces_file, out, match, resume=True, reporter=r, tokenizers=_tokenizer_loader(models)))
                            else:
                                baseline = BaselineConfig(method=method, student_tokenizer=student.model, model=pruner.model,
                                                          keep=[keep], seed=config.seed, dtype=config.dtype, device=config.device)
                                resources = None
                                if RANKER_NEEDS[method] in (None, "causal_lm"):
                                    pruner_model = models.get(pruner.model)
                                    resources = Resources(pruner=pruner_model, student=_tokenizer_loader(models)(student.model),
                                                          ranker_model=pruner_model.model)
                                summary = _reported(reporter, lambda r: run_baseline(
                                    chains_file, out, baseline, resume=True, reporter=r, resources=resources))
                            fail(f"{method} @ {keep}", summary.failures)

                        pruned_dir = stages.run("pruned", pruned_inputs, make_pruned)
                        distill_config = DistillConfig(
                            student=student.model, keep=keep, method=method, dataset=config.dataset, sft=student.sft,
                            dtype=config.dtype, device=config.device, dev_split="all", dev_data_file=str(dev_file),
                            dev_limit=config.eval.dev_limit, max_new_tokens=config.eval.max_new_tokens,
                            eval_batch_size=config.eval.batch_size,
                        )

                        def make_student(d: Path, distill_config: DistillConfig = distill_config) -> None:
                            summary = run_distill(pruned_dir / "pruned.jsonl", chains_file, d, distill_config, resume=True,
                                                  log=say, progress_bar=progress_bar)
                            fail("distill", summary.failures)

                        student_dir = stages.run("student", {"pruned": pruned_dir.name, "student": student.model,
                                                             "sft": asdict(student.sft), "dev": data_key, "eval": eval_spec,
                                                             "dtype": config.dtype}, make_student)
                        distilled = json.loads((student_dir / "summary.json").read_text())
                        evaluated = _evaluate_stage(
                            stages, "eval", {"student": student_dir.name, "test": data_key, "eval": eval_spec},
                            lambda d=distill_config, s=student_dir: student_generator(s / "best", d),
                            test_file, config, f"{label(student)} {method} {keep}", EvalConfig, run_evaluate, say)
                        row = _row(label(teacher), label(pruner), label(student), method, keep, evaluated)
                        row.update(_pruned_stats(pruned_dir / "pruned.jsonl", keep),
                                   train_reasoning_tokens=round(distilled["mean_train_reasoning_tokens"], 1),
                                   train_examples=distilled["examples"], chosen_step=distilled["chosen"]["step"],
                                   dev_accuracy=_percent(distilled["chosen"].get("dev_accuracy")))
                        rows.append(row)

    files = write_results(config, rows, results_dir)
    return ExperimentResult(rows, files, counts["run"] + counts["resume"], counts["skip"], time.perf_counter() - started)


class _ReadyGenerator:
    """A transformers generator over an already loaded model (the zero-shot student, from the cache)."""

    def __init__(self, loaded: Any, batch_size: int):
        from chainprune.generation import TransformersGenerator

        self._generator = TransformersGenerator(loaded, batch_size)
        self.tokenizer = loaded.tokenizer

    def generate(self, *args: Any) -> Any:
        return self._generator.generate(*args)


def _evaluate_stage(stages: Stages, kind: str, inputs: dict[str, Any], generator: Callable[[], Any], test_file: Path,
                    config: ExperimentConfig, name: str, EvalConfig: type, run_evaluate: Callable, say: Callable) -> dict[str, Any]:
    def work(d: Path) -> None:
        from chainprune.pipelines.distill import LazyGenerator

        eval_config = EvalConfig(model=name, dataset=config.dataset, split="all", max_new_tokens=config.eval.max_new_tokens,
                                 dtype=config.dtype, device=config.device, batch_size=config.eval.batch_size,
                                 data_file=str(test_file))
        summary = run_evaluate(d / "test.jsonl", eval_config, resume=True, generator=LazyGenerator(generator))
        (d / "summary.json").write_text(json.dumps(summary.to_json(), indent=2) + "\n")
        say(f"{name}: test accuracy {100 * summary.accuracy:.1f}% ({summary.correct}/{summary.examples}), "
            f"mean reasoning {summary.mean_reasoning_tokens:.0f} tokens")

    folder = stages.run(kind, inputs, work)
    return json.loads((folder / "summary.json").read_text())


def _tokenizer_loader(models: ModelCache) -> Callable[[str], Any]:
    def load(name: str) -> Any:
        if name in models.models:
            return models.models[name].tokenizer
        from chainprune.models.auxiliary import load_tokenizer

        return load_tokenizer(name)

    return load


def _reported(reporter_factory: Callable[[], Any], work: Callable[[Any], Any]) -> Any:
    """Run `work(reporter)` with a fresh progress reporter, stopped afterwards (the CLI's draw bars)."""
    reporter = reporter_factory()
    try:
        return work(reporter)
    finally:
        if hasattr(reporter, "stop"):
            reporter.stop()


def _failures(say: Callable[[str], None]) -> Callable[[str, list[Any]], None]:
    def report(where: str, failures: list[Any]) -> None:
        for failure in failures:
            say(f"{where}: failed {failure}")

    return report


def _percent(value: float | None) -> float | None:
    return None if value is None else round(100 * value, 2)


def _row(teacher: str, pruner: str, student: str, method: str, keep: float | None, summary: dict[str, Any]) -> dict[str, Any]:
    return {"teacher": teacher, "pruner": pruner, "student": student, "method": method, "keep": keep,
            "accuracy": _percent(summary["accuracy"]), "correct": summary["correct"], "examples": summary["examples"],
            "unparsable": summary["unparsable"], "truncated": summary["truncated"],
            "output_reasoning_tokens": round(summary["mean_reasoning_tokens"], 1)}


def _pruned_stats(path: Path, keep: float) -> dict[str, Any]:
    """Mean achieved student-token keep fraction of a pruned set."""
    fractions = [r["pruned"][keep_key(keep)]["student_fraction"] for r in _read_jsonl(path) if keep_key(keep) in r["pruned"]]
    return {"student_keep_achieved": round(sum(fractions) / len(fractions), 3) if fractions else None}


# ---- results ----

COLUMNS = ("teacher", "pruner", "student", "method", "keep", "accuracy", "correct", "examples", "unparsable",
           "truncated", "output_reasoning_tokens", "train_reasoning_tokens", "student_keep_achieved",
           "train_examples", "chosen_step", "dev_accuracy")


def write_results(config: ExperimentConfig, rows: list[dict[str, Any]], results_dir: Path) -> list[Path]:
    from chainprune.report.accuracy import accuracy_figure

    results_dir.mkdir(parents=True, exist_ok=True)
    files = [results_dir / "results.csv", results_dir / "results.md", results_dir / "resolved-config.yaml"]
    with files[0].open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c) for c in COLUMNS})
    files[1].write_text(results_markdown(rows))
    combos = list(dict.fromkeys((r["teacher"], r["pruner"], r["student"]) for r in rows))
    for teacher, pruner, student in combos:
        mine = [r for r in rows if (r["teacher"], r["pruner"], r["student"]) == (teacher, pruner, student)]
        curves: dict[str, list[tuple[float, float]]] = {}
        for r in mine:
            if r["keep"] is not None:
                curves.setdefault(r["method"], []).append((r["keep"], r["accuracy"]))
        zero = next((r["accuracy"] for r in mine if r["method"] == "zero-shot"), None)
        suffix = "" if len(combos) == 1 else "-" + re.sub(r"[^A-Za-z0-9.]+", "_", f"{teacher}-{pruner}-{student}")
        n = mine[0]["examples"] if mine else 0
        files += accuracy_figure(curves, zero, results_dir / f"accuracy-vs-keep{suffix}",
                                 f"{config.name}: teacher {teacher}, pruner {pruner}, student {student} (n={n})")
    return files


def results_markdown(rows: list[dict[str, Any]]) -> str:
    headers = ["teacher", "pruner", "student", "method", "keep", "accuracy %", "correct / n", "output reasoning tokens",
               "train reasoning tokens", "student keep achieved", "chosen step", "dev accuracy %"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for r in rows:
        cells = [r["teacher"], r["pruner"], r["student"], r["method"], "" if r["keep"] is None else f"{r['keep']:g}",
                 f"{r['accuracy']:.1f}", f"{r['correct']} / {r['examples']}", f"{r['output_reasoning_tokens']:.1f}",
                 _cell(r.get("train_reasoning_tokens")), _cell(r.get("student_keep_achieved")),
                 _cell(r.get("chosen_step")), _cell(r.get("dev_accuracy"))]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    return "" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def _write_resolved(config: ExperimentConfig, folders: list[Path]) -> None:
    import yaml

    text = yaml.safe_dump(asdict(config), sort_keys=False)
    for folder in dict.fromkeys(folders):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "resolved-config.yaml").write_text(text)
