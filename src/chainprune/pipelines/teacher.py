"""`chainprune teacher`: teacher chains by rejection sampling (paper App. B.4), resumably.

For every question: sample `samples` responses (temperature 0.7, top-p 1.0 in the paper), grade each (a
response cut off at `max_new_tokens` is not kept), pick one correct response at random (seeded by the question id) and append it as a pruner input record
`{id, question, reasoning, answer, system, gold, sample_index, ...}`; a question with no correct sample is
dropped. Every attempted question, kept or dropped, is also appended to `<out>.samples.jsonl` with all its
samples and their grades (unparsable ones say why), so a resumed run neither repeats nor loses a question.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from chainprune.choices import DEFAULT_DEVICE, DEFAULT_DTYPE, DEFAULT_MODEL
from chainprune.data.jsonl import JsonlAppender, RecordError
from chainprune.generation import Generator, Sample, Sampling, derive_seed, make_generator
from chainprune.run import open_output
from chainprune.tasks import Example, Task, get_task, load_examples


@dataclass
class TeacherConfig:
    dataset: str = "gsm8k"
    split: str = "train"
    model: str = DEFAULT_MODEL
    samples: int = 10
    temperature: float = 0.7
    top_p: float = 1.0
    max_new_tokens: int = 1024
    seed: int = 0
    backend: str = "transformers"
    dtype: str = DEFAULT_DTYPE
    device: str = DEFAULT_DEVICE
    batch_size: int = 8  # questions per generate call (each with `samples` samples)
    data_file: str | None = None
    hub_dataset: str | None = None
    split_seed: int = 0  # seed of the carve that makes the paper's splits from the original ones
    limit: int | None = None

    # Settings that change the chains: a resumed run must agree on these.
    RESULT_FIELDS = ("dataset", "split", "model", "samples", "temperature", "top_p", "max_new_tokens", "seed",
                     "backend", "data_file", "hub_dataset", "split_seed")

    @property
    def sampling(self) -> Sampling:
        return Sampling(n=self.samples, temperature=self.temperature, top_p=self.top_p,
                        max_new_tokens=self.max_new_tokens)


@dataclass
class TeacherSummary:
    questions: int = 0  # attempted in this run
    kept: int = 0
    dropped: int = 0  # no correct sample
    skipped: int = 0  # already done (resume)
    samples: int = 0
    correct_samples: int = 0
    unparsable_samples: int = 0
    truncated_samples: int = 0
    seconds: float = 0.0
    failures: list[RecordError] = field(default_factory=list)  # bad dataset rows
    warnings: list[str] = field(default_factory=list)

    @property
    def acceptance_rate(self) -> float:
        return self.kept / self.questions if self.questions else 0.0

    @property
    def sample_accuracy(self) -> float:
        return self.correct_samples / self.samples if self.samples else 0.0


def samples_path(out: Path) -> Path:
    return out.with_name(out.name + ".samples.jsonl")


def select_chain(task: Task, example: Example, samples: list[Sample], seed: int) -> tuple[dict | None, dict]:
    """Grade `samples`; return (the chain record of one correct sample picked at random, or None; the
    samples record of the question)."""
    graded = [task.grade(s.text, example.gold) for s in samples]
    # A sample cut off at max_new_tokens is never kept, even when a correct answer came before the cut:
    # its end is missing, so it is no finished chain to prune or distil.
    correct = [i for i, (s, g) in enumerate(zip(samples, graded)) if g.correct and s.finished]
    chosen = random.Random(derive_seed(seed, example.id)).choice(correct) if correct else None
    attempt = {
        "id": example.id,
        "gold": example.gold,
        "chosen": chosen,
        "samples": [
            {"text": s.text, "prediction": g.prediction, "correct": g.correct and s.finished,
             "problem": g.problem, "num_tokens": s.num_tokens, "finished": s.finished}
            for s, g in zip(samples, graded)
        ],
    }
    if chosen is None:
        return None, attempt
    g = graded[chosen]
    chain = {
        "id": example.id,
        "question": example.question,
        "reasoning": g.reasoning,
        "answer": g.answer,
        "system": task.system_prompt,
        "gold": example.gold,
        "prediction": g.prediction,
        "sample_index": chosen,
        "num_correct": len(correct),
        "num_samples": len(samples),
    }
    return chain, attempt


def run_teacher(
    out: Path,
    config: TeacherConfig,
    resume: bool = False,
    overwrite: bool = False,
    generator: Generator | None = None,
    progress: Callable[[int, int], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> TeacherSummary:
    """Rejection-sample teacher chains for every question of the split into `out`.

    `progress(done, total)` is called after each batch of questions; `log(message)` for each dropped
    question and each unparsable sample. Raises ValueError for unusable settings or files.
    """
    out = Path(out)
    task = get_task(config.dataset)
    config.sampling  # validates the sampling settings before anything is loaded
    output = open_output(out, resume, overwrite, asdict(config), TeacherConfig.RESULT_FIELDS, sidecars=[samples_path(out)])
    # A chain is written before its samples record: an id in either file was finished.
    done = output.done | output.resume_sidecar(samples_path(out))
    summary = TeacherSummary(warnings=output.warnings)
    examples, summary.failures = load_examples(
        task, config.split, Path(config.data_file) if config.data_file else None, config.hub_dataset,
        seed=config.split_seed, limit=config.limit,
    )
    todo = [e for e in examples if e.id not in done]
    summary.skipped = len(examples) - len(todo)
    output.save_settings()
    started = time.perf_counter()
    if todo:
        generator = generator or make_generator(config.model, config.backend, config.dtype, config.device, config.batch_size)
        with JsonlAppender(out) as chains, JsonlAppender(samples_path(out)) as attempts:
            for start in range(0, len(todo), config.batch_size):
                batch = todo[start : start + config.batch_size]
                outputs = generator.generate(
                    [task.messages(e.question) for e in batch], config.sampling,
                    [derive_seed(config.seed, e.id) for e in batch],
                )
                for example, samples in zip(batch, outputs, strict=True):
                    chain, attempt = select_chain(task, example, samples, config.seed)
                    if chain is not None:
                        chains.write(chain)
                    attempts.write(attempt)
                    tally(summary, example, chain, attempt, log)
                if progress:
                    progress(start + len(batch), len(todo))
    summary.seconds = time.perf_counter() - started
    return summary


def tally(summary: TeacherSummary, example: Example, chain: dict | None, attempt: dict,
          log: Callable[[str], None] | None) -> None:
    summary.questions += 1
    summary.kept += chain is not None
    summary.dropped += chain is None
    for i, sample in enumerate(attempt["samples"]):
        summary.samples += 1
        summary.correct_samples += sample["correct"]
        summary.truncated_samples += not sample["finished"]
        if sample["problem"]:
            summary.unparsable_samples += 1
            if log:
                log(f"{example.id} sample {i}: unparsable ({sample['problem']}), counted as incorrect")
    if chain is None and log:
        log(f"{example.id}: no correct sample of {len(attempt['samples'])}; question dropped")
