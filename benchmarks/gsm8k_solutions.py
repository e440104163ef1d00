"""GSM8K's human worked solutions as chains: the one conversion the benchmarks share.

A record becomes {"id": "gsm8k-train-I", "question", "reasoning", "answer"}: the reasoning is the solution's text
before `####` with its `<<...>>` calculator notes stripped (`chainprune.tasks.gsm8k.solution_reasoning`), the
answer "The answer is N." with N as the record writes it after `####` (not normalized: the recorded benchmarks'
chains were built this way). GSM8K's train split is read from the shared data folder, never at run time by the
library itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from chainprune.tasks.gsm8k import solution_reasoning

GSM8K = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k" / "train.jsonl"


def gsm8k_records() -> list[dict[str, Any]]:
    """GSM8K train, one dict per line, in file order (line i is `gsm8k-train-i`)."""
    with GSM8K.open() as f:
        return [json.loads(line) for line in f]


def solution_chain(record: dict[str, Any], index: int) -> dict[str, Any]:
    """The chain of GSM8K train record number `index`."""
    answer = record["answer"].rsplit("####", 1)[1].strip()
    return {"id": f"gsm8k-train-{index}", "question": record["question"], "reasoning": solution_reasoning(record),
            "answer": f"The answer is {answer}."}
