"""MMLU-Pro: multiple choice with up to ten options A-J over 14 subjects (`TIGER-Lab/MMLU-Pro`).

Rows have `question`, `options` (a list), `answer` (the letter), `question_id`, `category`. The original has
no train split; the paper (App. B.1, released as `iamjanvijay/MMLU-Pro`) carves its 12,032 test questions
into 800 dev, 1,232 test and 10,000 train. The user message lists the options as "A. ...".
"""

from __future__ import annotations

import re
from typing import Any

from chainprune.tasks.base import ANSWER_MARKER, Carve, Example, Task, boxed_contents, require_str, split_at_last

LETTERS = "ABCDEFGHIJ"
SYSTEM_PROMPT = (
    "Answer the multiple-choice question. Think step by step and write out your reasoning, then give the "
    "final answer on its own last line in exactly this form:\nThe answer is (X).\n"
    "where X is the letter of the correct option."
)
LETTER = re.compile(r"\(([A-J])\)|\b([A-J])\b")


def format_question(question: str, options: list[str]) -> str:
    lines = [f"{LETTERS[i]}. {option}" for i, option in enumerate(options)]
    return f"{question.strip()}\n\nOptions:\n" + "\n".join(lines)


def extract(answer: str) -> str | None:
    """The option letter after the final-answer marker: "(B)", "B.", "**B**", "\\boxed{B}"."""
    markers = list(ANSWER_MARKER.finditer(answer))
    tail = answer[markers[-1].end() :] if markers else answer
    boxed = boxed_contents(tail)
    match = LETTER.search(boxed[-1] if boxed else tail)
    return None if match is None else (match.group(1) or match.group(2))


def equivalent(prediction: str, gold: str) -> bool:
    return prediction.strip().upper() == gold.strip().upper()


def split_response(response: str) -> tuple[str, str] | None:
    return split_at_last(response, ANSWER_MARKER)


def to_example(record: dict[str, Any], origin: str, index: int) -> Example:
    question = require_str(record, "question")
    options = record["options"]
    if isinstance(options, str) or not hasattr(options, "__len__"):
        raise ValueError(f"field 'options' must be a list, got {type(options).__name__}")
    options = [str(o) for o in options]
    if not 2 <= len(options) <= len(LETTERS):
        raise ValueError(f"field 'options' has {len(options)} options; expected 2 to {len(LETTERS)}")
    gold = record["answer"]
    if isinstance(gold, int) and not isinstance(gold, bool):
        gold = LETTERS[gold] if 0 <= gold < len(options) else "?"
    if not isinstance(gold, str) or gold.strip().upper() not in LETTERS[: len(options)]:
        raise ValueError(f"field 'answer' must be an option letter A-{LETTERS[len(options) - 1]}, got {gold!r}")
    qid = record.get("question_id", record.get("id"))
    example_id = f"mmlu-pro-{qid}" if qid is not None else f"mmlu-pro-{origin}-{index}"
    return Example(example_id, format_question(question, options), gold.strip().upper())


TASK = Task(
    name="mmlu-pro",
    hub_path="TIGER-Lab/MMLU-Pro",
    hub_config=None,
    paper_hub_path="iamjanvijay/MMLU-Pro",
    splits={
        name: ("test", Carve({"dev": 800, "test": 1232}, "train")) for name in ("train", "dev", "test")
    },
    system_prompt=SYSTEM_PROMPT,
    fields=("question", "options", "answer"),
    to_example=to_example,
    split_response=split_response,
    extract=extract,
    equivalent=equivalent,
    answer_format="The answer is (X).",
)
