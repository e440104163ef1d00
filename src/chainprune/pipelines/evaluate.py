"""`chainprune evaluate`: zero-shot accuracy and reasoning length under greedy decoding (paper Table 2).

`evaluate_examples` is the reusable core: a generator, a task and examples in, one graded record per example
out (through a callback), no files. `run_evaluate` adds the dataset loading, the per-example JSONL output
(appended, resumable) and the summary over the whole output file.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from chainprune.choices import DEFAULT_DEVICE, DEFAULT_DTYPE, DEFAULT_MODEL
from chainprune.data.jsonl import JsonlAppender, RecordError, read_lines, refuse_existing
from chainprune.generation import Generator, Sampling, derive_seed, make_generator
from chainprune.run import open_output
from chainprune.tasks import Example, Task, get_task, load_examples


@dataclass
class EvalConfig:
    model: str = DEFAULT_MODEL
    dataset: str = "gsm8k"
    split: str = "test"
    max_new_tokens: int = 1024
    backend: str = "transformers"
    dtype: str = DEFAULT_DTYPE
    device: str = DEFAULT_DEVICE
    batch_size: int = 8
    data_file: str | None = None
    hub_dataset: str | None = None
    split_seed: int = 0
    limit: int | None = None

    RESULT_FIELDS = ("model", "dataset", "split", "max_new_tokens", "backend", "data_file", "hub_dataset", "split_seed")


@dataclass
class EvalSummary:
    model: str
    dataset: str
    examples: int = 0  # graded records in the output (this run and earlier ones)
    correct: int = 0
    unparsable: int = 0
    truncated: int = 0
    mean_reasoning_tokens: float = 0.0
    mean_generated_tokens: float = 0.0
    evaluated: int = 0  # in this run
    skipped: int = 0  # already in the output (resume)
    seconds: float = 0.0
    failures: list[RecordError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return self.correct / self.examples if self.examples else 0.0

    def to_json(self) -> dict[str, Any]:
        record = asdict(self)
        record["accuracy"] = self.accuracy
        record["failures"] = [f.to_json() for f in self.failures]
        return record


def evaluate_examples(
    generator: Generator,
    task: Task,
    examples: Sequence[Example],
    max_new_tokens: int = 1024,
    batch_size: int = 8,
    on_record: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Greedy-decode one response per example and grade it. Returns (and passes to `on_record` as each
    batch finishes) one record per example: response, reasoning/answer split, prediction, correctness,
    `problem` when unparsable, and lengths in the generator's tokenizer. `reasoning_tokens` counts the
    reasoning part; for an unparsable response, the whole response."""
    sampling = Sampling(n=1, temperature=0.0, max_new_tokens=max_new_tokens)
    records = []
    for start in range(0, len(examples), batch_size):
        batch = examples[start : start + batch_size]
        outputs = generator.generate([task.messages(e.question) for e in batch], sampling,
                                     [derive_seed(0, e.id) for e in batch])
        for example, (sample,) in zip(batch, outputs, strict=True):
            graded = task.grade(sample.text, example.gold)
            record = {
                "id": example.id,
                "question": example.question,
                "gold": example.gold,
                "response": sample.text,
                "reasoning": graded.reasoning,
                "answer": graded.answer,
                "prediction": graded.prediction,
                "correct": graded.correct,
                "problem": graded.problem,
                "reasoning_tokens": len(generator.tokenizer(graded.reasoning, add_special_tokens=False)["input_ids"]),
                "generated_tokens": sample.num_tokens,
                "finished": sample.finished,
            }
            records.append(record)
            if on_record:
                on_record(record)
    return records


def summarize(records: Iterable[dict[str, Any]], model: str, dataset: str) -> EvalSummary:
    summary = EvalSummary(model=model, dataset=dataset)
    reasoning = generated = 0
    for r in records:
        summary.examples += 1
        summary.correct += bool(r["correct"])
        summary.unparsable += r["problem"] is not None
        summary.truncated += not r["finished"]
        reasoning += r["reasoning_tokens"]
        generated += r["generated_tokens"]
    if summary.examples:
        summary.mean_reasoning_tokens = reasoning / summary.examples
        summary.mean_generated_tokens = generated / summary.examples
    return summary


def output_path(out_dir: Path, model: str, dataset: str, split: str) -> Path:
    """OUT_DIR/<model>/<dataset>-<split>.jsonl; <model> is a local folder's name or the hub id with / -> __."""
    folder = Path(model).name if Path(model).exists() else model.replace("/", "__")
    return Path(out_dir) / folder / f"{dataset}-{split}.jsonl"


def run_evaluate(
    out: Path,
    config: EvalConfig,
    resume: bool = False,
    overwrite: bool = False,
    generator: Generator | None = None,
    progress: Callable[[int, int], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> EvalSummary:
    """Evaluate `config.model` on a dataset split, appending one record per example to `out`.

    The summary covers every record in `out` that belongs to the split (earlier runs included when
    resuming). `log(message)` is called for each unparsable response. Raises ValueError for unusable
    settings or files.
    """
    out = Path(out)
    task = get_task(config.dataset)
    output = open_output(out, resume, overwrite, asdict(config), EvalConfig.RESULT_FIELDS)
    examples, failures = load_examples(
        task, config.split, Path(config.data_file) if config.data_file else None, config.hub_dataset,
        seed=config.split_seed, limit=config.limit,
    )
    todo = [e for e in examples if e.id not in output.done]
    output.save_settings()
    started = time.perf_counter()
    if todo:
        generator = generator or make_generator(config.model, config.backend, config.dtype, config.device, config.batch_size)
        count = 0
        with JsonlAppender(out) as writer:

            def on_record(record: dict[str, Any]) -> None:
                nonlocal count
                writer.write(record)
                count += 1
                if record["problem"] and log:
                    log(f"{record['id']}: unparsable ({record['problem']}), counted as incorrect")
                if progress:
                    progress(count, len(todo))

            evaluate_examples(generator, task, todo, config.max_new_tokens, config.batch_size, on_record)
    wanted = {e.id for e in examples}
    records = (json.loads(line) for _, line in read_lines(out)) if out.exists() else iter(())
    summary = summarize((r for r in records if r["id"] in wanted), config.model, task.name)
    summary.evaluated, summary.skipped = len(todo), len(examples) - len(todo)
    summary.seconds = time.perf_counter() - started
    summary.failures, summary.warnings = failures, output.warnings
    return summary


@dataclass
class EvalGrid:
    """Every model x dataset of one `chainprune evaluate`: outputs under `out_dir`, one model load per model for
    all its datasets, the summaries as cells finish. `config` holds the settings every cell shares; its model,
    dataset and data file are set per cell."""

    out_dir: Path
    models: Sequence[str]
    datasets: Sequence[str]
    config: EvalConfig
    data_files: dict[str, Path] = field(default_factory=dict)  # dataset -> its local file
    summaries: dict[tuple[str, str], EvalSummary] = field(default_factory=dict)
    # the current model's generator, dropped for the next model
    _loaded: tuple[str, Generator] | None = field(default=None, init=False, repr=False)

    def cells(self) -> list[tuple[str, str]]:
        return [(model, dataset) for model in self.models for dataset in self.datasets]

    def output(self, model: str, dataset: str) -> Path:
        return output_path(self.out_dir, model, dataset, self.config.split)

    def run(self, model: str, dataset: str, resume: bool = False, overwrite: bool = False,
            progress: Callable[[int, int], None] | None = None, log: Callable[[str], None] | None = None) -> EvalSummary:
        """Evaluate one cell. Raises ValueError naming the cell for unusable settings, files or models."""
        file = self.data_files.get(dataset)
        config = replace(self.config, model=model, dataset=dataset, data_file=str(file) if file else None)
        out = self.output(model, dataset)
        try:
            refuse_existing(out, resume, overwrite)  # before the model loads
            if self._loaded is None or self._loaded[0] != model:
                self._loaded = None
                self._loaded = (model, make_generator(model, config.backend, config.dtype, config.device,
                                                      config.batch_size))
            summary = run_evaluate(out, config, resume=resume, overwrite=overwrite, generator=self._loaded[1],
                                   progress=progress, log=log)
        except (ValueError, RuntimeError, OSError) as e:
            raise ValueError(f"{model} on {dataset}: {e}") from e
        self.summaries[(model, dataset)] = summary
        return summary

    @property
    def failed(self) -> bool:
        return any(summary.failures for summary in self.summaries.values())

    def write_summary(self) -> Path:
        """OUT_DIR/summary.json: every cell's summary."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / "summary.json"
        path.write_text(json.dumps([s.to_json() for s in self.summaries.values()], indent=2) + "\n")
        return path
