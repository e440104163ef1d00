"""The data stage's questions and the `solutions` teacher's chains.

The experiment carves its own train / dev / test from one original split rather than taking the paper
splits of `tasks.load_examples`: its sizes are the config's, test and dev are cut first from one seeded
shuffle of the valid rows, and every part keeps the shuffled order, so `train: N` takes a random N (a
`Carve` keeps each part in the original row order). Rows are read and turned into examples by the task.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from chainprune.data.jsonl import read_lines
from chainprune.pipelines.experiment.config import DataSpec, ExperimentConfig
from chainprune.tasks import Example, Task, get_task
from chainprune.tasks.base import Row, hub_rows, read_rows


def _rows(config: ExperimentConfig, task: Task, split: str) -> list[Row]:
    if config.data.hub_dataset is not None:
        hub = task.paper_hub_path if config.data.hub_dataset == "paper" else config.data.hub_dataset
        return list(hub_rows(hub, None, split))
    if config.data.data_file is not None:
        return list(read_rows(Path(config.data.data_file)))
    return list(hub_rows(task.hub_path, task.hub_config, "train"))


def _valid(task: Task, rows: Iterable[Row], origin: str, log: Callable[[str], None]) -> list[dict[str, Any]]:
    """The records the task reads as examples, each with its example's `id`; the others are logged."""
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


def _shuffled(rows: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    random.Random(seed).shuffle(rows)
    return rows


def short_solutions(task: Task, rows: list[dict[str, Any]], max_chars: int) -> list[dict[str, Any]]:
    """The rows whose worked solution's reasoning is at most `max_chars` long (rows without one are left out)."""
    lengths = ((row, task.solution_reasoning(row)) for row in rows)
    return [row for row, reasoning in lengths if reasoning is not None and len(reasoning) <= max_chars]


def carve(config: ExperimentConfig, task: Task, log: Callable[[str], None]) -> dict[str, list[dict[str, Any]]]:
    """test, dev and train records: the hub repo's own splits, each shuffled and cut to size; or the test file's
    rows shuffled and cut, and the original train split shuffled and carved into dev and the training pool; or
    one original split shuffled and carved (test first, then dev, the rest is the training pool)."""
    spec: DataSpec = config.data
    if spec.hub_dataset is not None:
        parts = {}
        for split, size in (("dev", spec.dev), ("test", spec.test)):
            rows = _shuffled(_valid(task, _rows(config, task, split), split, log), spec.seed)
            parts[split] = rows if size is None else rows[:size]
        train_pool = _shuffled(_valid(task, _rows(config, task, "train"), "train", log), spec.seed)
    elif spec.test_file is not None:
        tests = _shuffled(_valid(task, read_rows(Path(spec.test_file)), "test", log), spec.seed)
        parts = {"test": tests if spec.test is None else tests[: spec.test]}
        rows = _shuffled(_valid(task, _rows(config, task, "train"), "train", log), spec.seed)
        if spec.dev >= len(rows):
            raise ValueError(f"{len(rows)} rows cannot give {spec.dev} dev questions and a training set")
        parts["dev"], train_pool = rows[: spec.dev], rows[spec.dev :]
    else:
        rows = _shuffled(_valid(task, _rows(config, task, "train"), "train", log), spec.seed)
        test_size = len(rows) // 2 if spec.test is None else spec.test
        if test_size + spec.dev >= len(rows):
            raise ValueError(f"{len(rows)} rows cannot give {test_size} test + {spec.dev} dev questions and a training set")
        parts = {"test": rows[:test_size], "dev": rows[test_size : test_size + spec.dev]}
        train_pool = rows[test_size + spec.dev :]
    if spec.max_solution_chars is not None:
        train_pool = short_solutions(task, train_pool, spec.max_solution_chars)
    parts["train"] = train_pool if spec.train is None else train_pool[: spec.train]
    return parts


def make_data(config: ExperimentConfig, folder: Path, log: Callable[[str], None]) -> None:
    """train.jsonl / dev.jsonl / test.jsonl: raw dataset rows with an `id`, disjoint, in a seeded order."""
    parts = carve(config, get_task(config.dataset), log)
    for split, rows in parts.items():
        write_jsonl(folder / f"{split}.jsonl", rows)
    log(f"data: {', '.join(f'{k} {len(v)}' for k, v in parts.items())}")


def gsm8k_solution_chain(record: dict[str, Any], example: Example, system: str) -> dict[str, Any]:
    """A GSM8K worked solution as a chain: its reasoning (`solution_reasoning`: the text before `####`, the
    `<<...>>` calculator notes stripped), and "The answer is N." (the line the grader reads) as the answer."""
    reasoning = get_task("gsm8k").solution_reasoning(record)
    return {"id": example.id, "question": example.question, "reasoning": reasoning,
            "answer": f"The answer is {example.gold}.", "system": system, "gold": example.gold}


SOLUTION_CHAINS = {"gsm8k": gsm8k_solution_chain}


def solution_chains(dataset: str, train_file: Path, out: Path) -> None:
    """The `solutions` teacher: every training question's worked solution as its chain."""
    if dataset not in SOLUTION_CHAINS:
        raise ValueError(f"only {', '.join(SOLUTION_CHAINS)} has worked solutions usable as chains; "
                         f"name a teacher model for {dataset}")
    task, to_chain = get_task(dataset), SOLUTION_CHAINS[dataset]
    records = read_jsonl(train_file)  # rows carry their id
    write_jsonl(out, [to_chain(r, task.to_example(r, "train", 0), task.system_prompt) for r in records])


def write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    tmp.replace(path)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for _, line in read_lines(path)]
