"""The experiment's YAML: parsed into an `ExperimentConfig` and checked before any stage runs.

A teacher spec holds a `TeacherConfig` and a pruner spec a `PruneConfig`: the YAML's teacher and pruner
settings are those configs' own fields, less the ones the grid sets itself (dataset, data files, keep
fractions, dtype, device). A student spec holds the `SFTSettings` it trains with. This module knows nothing
about stages or files beyond reading the YAML.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from chainprune.choices import DEFAULT_DEVICE, DEFAULT_DTYPE, DEFAULT_MODEL
from chainprune.keep import normalize_keep_fractions
from chainprune.pipelines.prune import PruneConfig
from chainprune.pipelines.teacher import TeacherConfig
from chainprune.training.sft import SFTSettings

SOLUTIONS = "solutions"  # a teacher that is the dataset's own worked solutions

# TeacherConfig / PruneConfig fields the grid sets for every teacher / pruner: not settings of a spec.
TEACHER_GRID_FIELDS = ("dataset", "split", "dtype", "device", "data_file", "hub_dataset", "split_seed", "limit")
PRUNER_GRID_FIELDS = ("keep", "dtype", "device")
TEACHER_SETTINGS = tuple(f.name for f in dataclasses.fields(TeacherConfig) if f.name not in TEACHER_GRID_FIELDS)
PRUNER_SETTINGS = tuple(f.name for f in dataclasses.fields(PruneConfig) if f.name not in PRUNER_GRID_FIELDS)
_SFT_FIELDS = {f.name for f in dataclasses.fields(SFTSettings)}


@dataclass
class DataSpec:
    data_file: str | None = None  # local JSONL/Parquet of the original train split; None: from the hub
    # a local file of the original test split: test questions come from it (seeded, `test` of them; None: all),
    # and train / dev are carved from `data_file` alone
    test_file: str | None = None
    hub_dataset: str | None = None  # use this hub repo's train/dev/test splits as they are ('paper': the paper's)
    train: int | None = 200  # training questions (None: all that are left)
    dev: int = 50  # dev questions (choose the checkpoint)
    test: int | None = 200  # test questions (None: all that are left; with hub_dataset or test_file: all of it)
    seed: int = 0
    # only training questions whose worked solution's reasoning (the task's `solution_reasoning`) is this short
    max_solution_chars: int | None = None


@dataclass
class TeacherSpec:
    """One teacher: `config.model` is 'solutions' (the dataset's worked solutions) or a model."""

    name: str | None = None
    config: TeacherConfig = field(default_factory=lambda: TeacherConfig(model=SOLUTIONS))

    @property
    def model(self) -> str:
        return self.config.model


@dataclass
class PrunerSpec:
    """One pruner: its `prune` settings and the keep fraction its greedy traces go down to."""

    name: str | None = None
    floor: float | None = None  # greedy traces go down to this keep (default: the smallest keep - 0.05)
    config: PruneConfig = field(default_factory=PruneConfig)

    @property
    def model(self) -> str:
        return self.config.model


@dataclass
class StudentSpec:
    model: str = DEFAULT_MODEL
    name: str | None = None
    sft: SFTSettings = field(default_factory=SFTSettings)
    # training settings to choose among, each a list of values (e.g. {learning_rate: [1e-4, 3e-4]}): every
    # combination trains a student on the full chains, and the one with the best dev accuracy (ties: the first
    # listed) is then used, frozen, for every student of this spec
    tune: dict[str, list[Any]] | None = None

    def candidates(self) -> list[SFTSettings]:
        """The training settings `tune` tries, in the order listed (the spec's own settings without `tune`)."""
        if not self.tune:
            return [self.sft]
        names = list(self.tune)
        return [dataclasses.replace(self.sft, **dict(zip(names, values)))
                for values in itertools.product(*(self.tune[n] for n in names))]

    def validate(self) -> None:
        self.sft.validate()
        for name, values in (self.tune or {}).items():
            if name not in _SFT_FIELDS:
                raise ValueError(f"tune: {name!r} is not a training setting; known: {', '.join(sorted(_SFT_FIELDS))}")
            if not isinstance(values, list) or not values:
                raise ValueError(f"tune.{name}: give a list of values to try, got {values!r}")
        for candidate in self.candidates():
            candidate.validate()


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
    full_chains: bool = False  # also a student trained on the unpruned chains (keep 1.0); on with `tune`
    seed: int = 0  # the uniform ranker's seed
    eval: EvalSpec = field(default_factory=EvalSpec)
    dtype: str = DEFAULT_DTYPE
    device: str = DEFAULT_DEVICE
    threads: int | None = None  # torch CPU threads (None: torch's default)

    def validate(self) -> None:
        from chainprune.ranking import get_ranker
        from chainprune.tasks import get_task

        task = get_task(self.dataset)
        if not self.methods:
            raise ValueError("methods: name at least one pruning method")
        for method in self.methods:
            get_ranker(method)
        self.keep = normalize_keep_fractions(self.keep)
        for student in self.students:
            try:
                student.validate()
            except ValueError as error:
                raise ValueError(f"student {label(student)}: {error}") from None
        for pruner in self.pruners:
            if pruner.floor is not None and pruner.floor > min(self.keep):
                raise ValueError(f"pruner {label(pruner)}: floor {pruner.floor} is above the smallest keep {min(self.keep)}")
            try:
                prune_config(pruner, self).validate()
            except ValueError as error:
                raise ValueError(f"pruner {label(pruner)}: {error}") from None
        if self.data.hub_dataset is None and self.data.dev < 1:
            raise ValueError("data.dev must be at least 1 (the dev set chooses each student's checkpoint)")
        if self.data.test_file is not None and self.data.hub_dataset is not None:
            raise ValueError("data.test_file and data.hub_dataset both give test questions: name one")
        if self.data.max_solution_chars is not None and task.solution_reasoning is None:
            raise ValueError(f"data.max_solution_chars: {task.name} rows have no worked solution to measure")
        for kind, specs in (("teacher", self.teachers), ("pruner", self.pruners), ("student", self.students)):
            names = [label(s) for s in specs]
            if len(set(names)) != len(names):
                raise ValueError(f"two {kind}s are both called {sorted(n for n in names if names.count(n) > 1)[0]!r}: give them a `name`")


def label(spec: TeacherSpec | PrunerSpec | StudentSpec) -> str:
    return spec.name or spec.model


def pruner_floor(pruner: PrunerSpec, keep: list[float]) -> float:
    """The keep fraction greedy traces go down to: the pruner's floor, or the smallest keep - 0.05."""
    return pruner.floor if pruner.floor is not None else round(max(0.01, min(keep) - 0.05), 4)


def prune_config(pruner: PrunerSpec, config: ExperimentConfig) -> PruneConfig:
    """The `chainprune prune` settings of one pruner of the grid: its own, with the grid's keep, dtype, device."""
    return dataclasses.replace(pruner.config, keep=[pruner_floor(pruner, config.keep)], dtype=config.dtype,
                               device=config.device)


def teacher_config(teacher: TeacherSpec, config: ExperimentConfig, train_file: Path) -> TeacherConfig:
    """The `chainprune teacher` settings of one teacher of the grid: its own, on the data stage's questions."""
    return dataclasses.replace(teacher.config, dataset=config.dataset, split="all", dtype=config.dtype,
                               device=config.device, data_file=str(train_file))


# ---- YAML ----


def _mapping(values: Any, where: str) -> dict[str, Any]:
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(values).__name__}")
    return values


def _check_known(values: dict[str, Any], known: set[str], where: str) -> None:
    unknown = [k for k in values if k not in known]
    if unknown:
        raise ValueError(f"{where}: unknown setting {unknown[0]!r}; known: {', '.join(sorted(known))}")


def _construct(cls: type, kwargs: dict[str, Any], where: str) -> Any:
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ValueError(f"{where}: {e}") from None


def _build(cls: type, values: Any, where: str) -> Any:
    """A plain dataclass from a YAML mapping; unknown keys fail with the known ones."""
    values = _mapping(values, where)
    _check_known(values, {f.name for f in dataclasses.fields(cls)}, where)
    return _construct(cls, values, where)


def _teacher(values: Any, where: str) -> TeacherSpec:
    """`teacher: solutions`, `teacher: MODEL`, or a mapping of `name` and TeacherConfig settings."""
    values = _mapping({"model": values} if isinstance(values, str) else values, where)
    _check_known(values, {"name", *TEACHER_SETTINGS}, where)
    settings = {"model": SOLUTIONS, **{k: v for k, v in values.items() if k != "name"}}
    return TeacherSpec(name=values.get("name"), config=_construct(TeacherConfig, settings, where))


def _pruner(values: Any, where: str) -> PrunerSpec:
    """A mapping of `name`, `floor` and PruneConfig settings."""
    values = _mapping(values, where)
    _check_known(values, {"name", "floor", *PRUNER_SETTINGS}, where)
    settings = {k: v for k, v in values.items() if k not in ("name", "floor")}
    return PrunerSpec(name=values.get("name"), floor=values.get("floor"), config=_construct(PruneConfig, settings, where))


def _student(values: Any, where: str) -> StudentSpec:
    """`model`, `name`, and training settings beside them (flat) or under `sft`."""
    values = _mapping(values, where)
    own = {f.name for f in dataclasses.fields(StudentSpec)}
    _check_known(values, own | _SFT_FIELDS, where)
    sft = {**(values.get("sft") or {}), **{k: v for k, v in values.items() if k in _SFT_FIELDS}}
    kwargs = {k: v for k, v in values.items() if k in own and k != "sft"}
    return _construct(StudentSpec, {**kwargs, "sft": _build(SFTSettings, sft, f"{where}.sft")}, where)


_SPECS = {"teacher": ("teachers", _teacher), "pruner": ("pruners", _pruner), "student": ("students", _student)}


def _many(build: Any, values: Any, where: str) -> list[Any]:
    if not isinstance(values, list):
        return [build(values, where)]
    return [build(v, f"{where}[{i}]") for i, v in enumerate(values)]


def parse_config(raw: dict[str, Any]) -> ExperimentConfig:
    """The experiment from a YAML mapping: `teacher`/`teachers`, `pruner`/`pruners`, `student`/`students`
    take one mapping or a list (the grid is their product)."""
    if not isinstance(raw, dict):
        raise ValueError(f"the experiment config must be a mapping, got {type(raw).__name__}")
    top = {f.name for f in dataclasses.fields(ExperimentConfig)}
    for key in raw:
        if key not in top and key not in _SPECS:
            raise ValueError(f"unknown setting {key!r}; known: {', '.join(sorted(top | set(_SPECS)))}")
    plural = [many for many, _ in _SPECS.values()]
    kwargs: dict[str, Any] = {k: v for k, v in raw.items() if k in top and k not in ("data", "eval", *plural)}
    kwargs["data"] = _build(DataSpec, raw.get("data"), "data")
    kwargs["eval"] = _build(EvalSpec, raw.get("eval"), "eval")
    for one, (many, build) in _SPECS.items():
        if one in raw and many in raw:
            raise ValueError(f"give either {one!r} or {many!r}, not both")
        if one in raw or many in raw:
            kwargs[many] = _many(build, raw.get(one, raw.get(many)), one if one in raw else many)
    if "keep" in kwargs and not isinstance(kwargs["keep"], list):
        kwargs["keep"] = [kwargs["keep"]]
    config = ExperimentConfig(**kwargs)
    config.validate()
    return config


def load_config(path: Path, overrides: dict[str, Any] | None = None) -> ExperimentConfig:
    """The experiment in a YAML file (an empty file: every default), `overrides` replacing its settings.
    ValueError naming the file when it is not YAML or its top level is not a mapping of settings."""
    import yaml

    try:
        raw = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML ({e})") from None
    if raw is not None and not isinstance(raw, dict):
        raise ValueError(f"{path}: not an experiment config (its top level is a {type(raw).__name__}, "
                         "not a mapping of settings)")
    return parse_config({**(raw or {}), **(overrides or {})})


def teacher_settings(teacher: TeacherSpec) -> dict[str, Any]:
    """The teacher's own settings, as the YAML gives them (without `name`)."""
    return {k: getattr(teacher.config, k) for k in TEACHER_SETTINGS}


def pruner_settings(pruner: PrunerSpec) -> dict[str, Any]:
    """The pruner's `prune` settings, as the YAML gives them (without `name` and `floor`)."""
    return {k: getattr(pruner.config, k) for k in PRUNER_SETTINGS}


def resolved(config: ExperimentConfig) -> dict[str, Any]:
    """The config as YAML would give it, every default filled in (`parse_config` reads it back)."""
    mapping = asdict(config)
    mapping["teachers"] = [{"model": t.model, "name": t.name, **teacher_settings(t)} for t in config.teachers]
    mapping["pruners"] = [{"model": p.model, "name": p.name, **pruner_settings(p), "floor": p.floor}
                          for p in config.pruners]
    return mapping
