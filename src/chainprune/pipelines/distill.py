"""`chainprune distill`: train a student on pruned chains and choose its best checkpoint by dev accuracy.

Reads the pruned records (`chainprune match` / `chainprune baseline` output, or traces from `prune`) and the
chains they came from (for the question, the answer and the system prompt), builds one SFT example per chain
from the reasoning kept at `keep`, trains (`chainprune.training.distill`), evaluates every saved checkpoint on
a small dev set with `evaluate_examples` (greedy decoding, the task's grader) and copies the winner to
`OUT/best` (loadable alone: `chainprune evaluate --model OUT/best`). Writes `OUT/summary.json`: examples,
steps, loss curve, dev accuracy per checkpoint and the chosen one. Rerun with `resume` to continue: training
restarts from the last checkpoint, dev evaluations skip what they already graded, a finished run is kept.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from chainprune.choices import DEFAULT_DEVICE, DEFAULT_DTYPE, DEFAULT_MODEL
from chainprune.data.jsonl import (
    RecordError,
    check_resume_settings,
    config_path,
    read_chains,
    read_valid,
    save_settings,
)
from chainprune.keep import check_keep_fraction, keep_key
from chainprune.run import require_input
from chainprune.training.sft import SFTSettings

# Checkpoint files a chosen student does not need (the trainer's state for resuming).
TRAINER_STATE_FILES = ("optimizer.pt", "scheduler.pt", "rng_state.pth", "training_args.bin", "trainer_state.json")


@dataclass
class DistillConfig:
    student: str = DEFAULT_MODEL
    keep: float = 0.7  # 1.0: the full chains, no pruned file needed
    method: str = "greedy"  # the pruning method the records must come from (traces from `prune` count as greedy)
    dataset: str = "gsm8k"  # its grader scores the dev set; its system prompt is used when a chain has none
    sft: SFTSettings = field(default_factory=SFTSettings)
    dtype: str = DEFAULT_DTYPE
    device: str = DEFAULT_DEVICE
    # Dev set that picks the checkpoint (None: the last checkpoint, no dev evaluation).
    dev_split: str | None = "dev"
    dev_data_file: str | None = None
    dev_hub_dataset: str | None = None
    dev_limit: int | None = 100
    split_seed: int = 0
    max_new_tokens: int = 512
    eval_batch_size: int = 8

    RESULT_FIELDS = ("student", "keep", "method", "dataset", "sft", "dtype", "dev_split", "dev_data_file",
                     "dev_hub_dataset", "dev_limit", "split_seed", "max_new_tokens")

    def validate(self) -> None:
        from chainprune.tasks import get_task

        self.keep = check_keep_fraction(self.keep)
        get_task(self.dataset)
        self.sft.validate()


@dataclass
class DistillSummary:
    student: str
    method: str
    keep: float
    examples: int = 0
    steps: int = 0
    effective_batch_size: int = 0
    trainable_parameters: int = 0
    losses: list[tuple[int, float]] = field(default_factory=list)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)  # step, path, dev accuracy and lengths
    chosen: dict[str, Any] | None = None
    best: str | None = None  # folder of the chosen student
    mean_train_reasoning_tokens: float = 0.0  # in the student's tokenizer
    train_seconds: float = 0.0
    seconds: float = 0.0
    done: bool = False
    failures: list[RecordError] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        record = asdict(self)
        record["failures"] = [f.to_json() for f in self.failures]
        return record


def summary_path(out_dir: Path) -> Path:
    return Path(out_dir) / "summary.json"


def best_path(out_dir: Path) -> Path:
    return Path(out_dir) / "best"


def pruned_text(record: dict[str, Any], keep: float, method: str) -> str:
    """The reasoning a pruned record keeps at `keep`; ValueError naming the problem otherwise."""
    found = record.get("method", "greedy")
    if found != method:
        raise ValueError(f"record was pruned by {found!r}, not {method!r}")
    pruned = record.get("pruned")
    if not isinstance(pruned, dict):
        raise ValueError("missing field 'pruned'")
    entry = pruned.get(keep_key(keep))
    if entry is None:
        have = ", ".join(sorted(pruned)) or "none"
        raise ValueError(f"no reasoning pruned to keep {keep} (has {have})")
    if not isinstance(entry, dict) or not isinstance(entry.get("text"), str):
        raise ValueError(f"pruned[{keep_key(keep)!r}] has no text")
    return entry["text"]


def training_examples(train_path: Path | None, chains_path: Path, config: DistillConfig, tokenizer: Any,
                      system_prompt: str) -> tuple[list[dict[str, Any]], list[str], list[RecordError]]:
    """SFT examples (and their ids) for every chain with a usable pruned record; an error per bad record."""
    from chainprune.training.sft import sft_example

    chains, errors = read_chains(chains_path)
    by_id = {chain.id: chain for _, chain in chains}
    if config.keep == 1.0 and train_path is None:
        texts = {chain.id: chain.reasoning for _, chain in chains}
    else:
        if train_path is None:
            raise ValueError(f"keep {config.keep} needs the pruned records (--train)")
        records, bad = read_valid(train_path, lambda r: pruned_text(r, config.keep, config.method) if isinstance(r, dict) else _not_object(r))
        errors += [RecordError(e.line, e.id, f"{Path(train_path).name}: {e.message}") for e in bad]
        texts = {}
        for line, record_id, text in records:
            if record_id not in by_id:
                errors.append(RecordError(line, record_id, f"{Path(train_path).name}: no chain with this id in {Path(chains_path).name}"))
                continue
            texts[record_id] = text
    examples, ids = [], []
    for record_id, text in texts.items():
        chain = by_id[record_id]
        examples.append(sft_example(tokenizer, chain.system or system_prompt, chain.question, text, chain.answer))
        ids.append(record_id)
    return examples, ids, errors


def _not_object(value: Any) -> str:
    raise ValueError(f"expected a JSON object, got {type(value).__name__}")


class LazyGenerator:
    """Loads its model on first use, so a resumed evaluation with nothing left to do loads nothing."""

    def __init__(self, load: Callable[[], Any]):
        self._load, self._generator = load, None

    def _get(self) -> Any:
        if self._generator is None:
            self._generator = self._load()
        return self._generator

    @property
    def tokenizer(self) -> Any:
        return self._get().tokenizer

    def generate(self, *args: Any) -> Any:
        return self._get().generate(*args)


def student_generator(path: Path, config: DistillConfig) -> LazyGenerator:
    from chainprune.generation import TransformersGenerator
    from chainprune.models.adapters import load_student

    return LazyGenerator(lambda: TransformersGenerator(
        load_student(path, base=config.student, dtype=config.dtype, device=config.device), config.eval_batch_size))


def evaluate_checkpoint(path: Path, out: Path, config: DistillConfig,
                        progress: Callable[[int, int], None] | None = None) -> Any:
    """Dev accuracy of one checkpoint (resumable: graded examples in `out` are kept)."""
    from chainprune.pipelines.evaluate import EvalConfig, run_evaluate

    eval_config = EvalConfig(
        model=str(path), dataset=config.dataset, split=config.dev_split, max_new_tokens=config.max_new_tokens,
        dtype=config.dtype, device=config.device, batch_size=config.eval_batch_size,
        data_file=config.dev_data_file, hub_dataset=config.dev_hub_dataset, split_seed=config.split_seed,
        limit=config.dev_limit,
    )
    return run_evaluate(out, eval_config, resume=True, generator=student_generator(path, config), progress=progress)


def run_distill(
    train_path: Path | None,
    chains_path: Path,
    out_dir: Path,
    config: DistillConfig,
    resume: bool = False,
    overwrite: bool = False,
    log: Callable[[str], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
    progress_bar: bool = True,
) -> DistillSummary:
    """Train, evaluate every checkpoint on the dev set, keep the best. Raises ValueError for unusable
    settings or files; bad records are reported in the summary and left out."""
    from chainprune.training.sft import require_train_extra

    config.validate()
    require_train_extra()
    out_dir, chains_path = Path(out_dir), Path(chains_path)
    for path in (chains_path, train_path):
        if path is not None:
            require_input(path)
    say = log or (lambda message: None)
    started = time.perf_counter()
    finished = open_out_dir(out_dir, config, resume, overwrite)
    if finished is not None:
        say(f"{out_dir}: already trained and chosen ({finished.best}); nothing to do")
        return finished
    summary, checkpoints = train_student(train_path, chains_path, out_dir, config, resume, say, progress_bar)
    choose_checkpoint(summary, checkpoints, out_dir, config, say, progress)
    summary.seconds = time.perf_counter() - started
    summary.done = True
    summary_path(out_dir).write_text(json.dumps(summary.to_json(), indent=2) + "\n")
    return summary


def open_out_dir(out_dir: Path, config: DistillConfig, resume: bool, overwrite: bool) -> DistillSummary | None:
    """Everything before training, for an output that is a folder (checkpoints the trainer resumes, dev
    evaluations that resume themselves): refuse a folder that holds anything unless resuming or overwriting;
    when overwriting, clear what a run writes there; when resuming, refuse settings that differ from those saved
    and return the saved summary of a finished run. Then save the run's settings (`DIR/distill.config.json`)."""
    settings_file = out_dir / "distill"
    if out_dir.exists() and any(out_dir.iterdir()) and not (resume or overwrite):
        raise ValueError(f"{out_dir} is not empty: pass --resume to continue it or --overwrite to replace it")
    if overwrite and not resume:
        for item in [*out_dir.glob("checkpoint-*"), out_dir / "dev", best_path(out_dir)]:
            shutil.rmtree(item, ignore_errors=True)
        for item in (summary_path(out_dir), out_dir / "train.jsonl", config_path(settings_file)):
            item.unlink(missing_ok=True)
    if resume:
        check_resume_settings(settings_file, asdict(config), DistillConfig.RESULT_FIELDS)
        finished = finished_summary(out_dir)
        if finished is not None:
            return finished
    out_dir.mkdir(parents=True, exist_ok=True)
    save_settings(settings_file, asdict(config))
    return None


def finished_summary(out_dir: Path) -> DistillSummary | None:
    """The summary a finished run left in `out_dir`; None when there is none or the run did not finish."""
    if not summary_path(out_dir).exists():
        return None
    saved = json.loads(summary_path(out_dir).read_text())
    if not saved.get("done"):
        return None
    failures = [RecordError(f["line"], f["id"], f["error"]) for f in saved.pop("failures", [])]
    return DistillSummary(**{**saved, "failures": failures})


def train_student(train_path: Path | None, chains_path: Path, out_dir: Path, config: DistillConfig, resume: bool,
                  say: Callable[[str], None], progress_bar: bool) -> tuple[DistillSummary, list[tuple[int, Path]]]:
    """Build the SFT examples (written to `OUT/train.jsonl`) and train; the summary so far and the
    checkpoints saved, as (step, folder)."""
    from chainprune.models import load_model
    from chainprune.models.adapters import set_adapter_base
    from chainprune.tasks import get_task
    from chainprune.training.sft import distill

    task = get_task(config.dataset)
    student = load_model(config.student, dtype=config.dtype, device=config.device)
    examples, ids, failures = training_examples(train_path, chains_path, config, student.tokenizer, task.system_prompt)
    if not examples:
        raise ValueError(f"no usable training examples ({len(failures)} bad record(s): {'; '.join(map(str, failures[:3]))})")
    with (out_dir / "train.jsonl").open("w", encoding="utf-8") as f:
        for record_id, example in zip(ids, examples):
            f.write(json.dumps({"id": record_id, **example}, ensure_ascii=False) + "\n")
    summary = DistillSummary(student=config.student, method=config.method, keep=config.keep, examples=len(examples),
                             effective_batch_size=config.sft.effective_batch_size, failures=failures)
    summary.mean_train_reasoning_tokens = _mean_reasoning_tokens(student.tokenizer, examples)

    say(f"training {config.student} on {len(examples)} chains ({config.method}, keep {config.keep}) for {config.sft.steps} steps")
    result = distill(student.model, student.tokenizer, examples, config.sft, out_dir, resume=resume, progress_bar=progress_bar)
    del student
    summary.steps = result.checkpoints[-1][0] if result.checkpoints else 0
    summary.trainable_parameters, summary.losses, summary.train_seconds = result.trainable_parameters, result.losses, result.seconds
    for _, path in result.checkpoints:
        if config.sft.lora:
            set_adapter_base(path, config.student)
    return summary, result.checkpoints


def choose_checkpoint(summary: DistillSummary, checkpoints: list[tuple[int, Path]], out_dir: Path,
                      config: DistillConfig, say: Callable[[str], None],
                      progress: Callable[[int, int], None] | None) -> None:
    """Evaluate every checkpoint on the dev set (when there is one) into `summary.checkpoints`, choose one and
    copy it, without the trainer's state, to `OUT/best`."""
    for step, path in checkpoints:
        entry: dict[str, Any] = {"step": step, "path": str(path)}
        if config.dev_split is not None:
            say(f"dev evaluation of {path.name}")
            dev = evaluate_checkpoint(path, out_dir / "dev" / f"{path.name}.jsonl", config, progress)
            entry.update(dev_accuracy=dev.accuracy, dev_examples=dev.examples, dev_unparsable=dev.unparsable,
                         dev_mean_reasoning_tokens=dev.mean_reasoning_tokens)
        summary.checkpoints.append(entry)
    # Highest dev accuracy; ties go to the later checkpoint (trained longer). No dev set: the last one.
    summary.chosen = max(summary.checkpoints, key=lambda c: (c.get("dev_accuracy", 0.0), c["step"]))
    best = best_path(out_dir)
    shutil.rmtree(best, ignore_errors=True)
    shutil.copytree(summary.chosen["path"], best, ignore=shutil.ignore_patterns(*TRAINER_STATE_FILES))
    summary.best = str(best)


def _mean_reasoning_tokens(tokenizer: Any, examples: list[dict[str, Any]]) -> float:
    """Mean length, in the student's tokens, of the training completions' reasoning (answer line excluded)."""
    from chainprune.chains import ANSWER_JOINER

    lengths = []
    for example in examples:
        completion = example["completion"]
        text = completion[0]["content"] if isinstance(completion, list) else completion
        reasoning = text.rsplit(ANSWER_JOINER, 1)[0] if ANSWER_JOINER in text else ""
        lengths.append(len(tokenizer(reasoning, add_special_tokens=False)["input_ids"]))
    return sum(lengths) / len(lengths) if lengths else 0.0
