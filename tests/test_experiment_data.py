"""The experiment's data stage: `max_solution_chars` measures each dataset's worked solution as its task
reads it, and the `solutions` teacher's chain reasoning is that same text."""

from __future__ import annotations

import json

import pytest

from chainprune.pipelines.experiment import gsm8k_solution_chain, make_data, parse_config
from chainprune.tasks import get_task
from conftest import GSM8K


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_math_solutions_are_measured_whole(tmp_path):
    """A MATH row's short final answer does not make its long solution short."""
    rows = []
    for i in range(12):
        steps = "Add the two numbers. " * (1 if i % 2 else 10)  # even rows: about 210 characters of solution
        rows.append({"problem": f"What is {i} + {i}?", "answer": str(2 * i), "unique_id": f"m{i}",
                     "solution": f"{steps}So the sum is $\\boxed{{{2 * i}}}$."})
    data_file = tmp_path / "math.jsonl"
    data_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = parse_config({"dataset": "math500", "teacher": "solutions",
                           "data": {"data_file": str(data_file), "train": None, "dev": 2, "test": 2,
                                    "max_solution_chars": 80}})
    make_data(config, tmp_path, lambda message: None)
    train = read(tmp_path / "train.jsonl")
    assert train and all(len(r["solution"]) <= 80 for r in train)
    pool = {r["unique_id"] for r in rows} - {r["id"] for r in read(tmp_path / "test.jsonl") + read(tmp_path / "dev.jsonl")}
    assert {r["id"] for r in train} == {i for i in pool if int(i[1:]) % 2}


def test_gsm8k_solutions_are_measured_on_the_chain_reasoning(tmp_path):
    config = parse_config({"teacher": "solutions", "data": {"data_file": str(GSM8K), "train": None, "dev": 5,
                                                             "test": 5, "max_solution_chars": 120}})
    make_data(config, tmp_path, lambda message: None)
    task = get_task("gsm8k")
    train = read(tmp_path / "train.jsonl")
    chains = [gsm8k_solution_chain(r, task.to_example(r, "train", 0), "") for r in train]
    assert 0 < len(train) < 490 and all(len(c["reasoning"]) <= 120 for c in chains)


def test_a_dataset_without_worked_solutions_refuses_max_solution_chars():
    with pytest.raises(ValueError, match="max_solution_chars: mmlu-pro rows have no worked solution"):
        parse_config({"dataset": "mmlu-pro", "teacher": "m", "data": {"max_solution_chars": 100}})
