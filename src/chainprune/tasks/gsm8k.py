"""GSM8K: grade-school word problems with a numeric answer (`openai/gsm8k`, config `main`).

Rows have `question` and `answer`, the answer being a worked solution with `<<...>>` calculator notes and a
final `#### N` line. The paper's splits (App. B.1, released as `iamjanvijay/gsm8k`): 500 dev examples carved
from the 7,473 train examples (6,973 train left), the original 1,319 test examples as test.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from chainprune.tasks.base import (
    ANSWER_MARKER,
    Carve,
    Example,
    Task,
    boxed_contents,
    record_id,
    require_str,
    split_at_boxed_line,
    split_at_last,
)

SYSTEM_PROMPT = (
    "Solve the math word problem step by step. Write out your reasoning, then give the final answer on its "
    "own last line in exactly this form:\nThe answer is N.\nwhere N is the final number only, without units."
)

# A number as people write it: optional sign and currency, thousands commas, decimals ("-$1,234.50").
NUMBER = re.compile(r"[-\u2212]?\s*\$?\s*(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-\u2212]?\s*\$?\s*\.\d+")


def to_number(text: str) -> Decimal | None:
    """The numeric value of a written number ("$1,234.50" -> 1234.50); None when it is not one."""
    cleaned = text.replace("\u2212", "-").replace("$", "").replace(",", "").replace(" ", "")
    try:
        return Decimal(cleaned)
    except InvalidOperation:
        return None


def gold_answer(solution: str) -> str:
    """The number after `#### ` in a GSM8K worked solution, commas removed."""
    if "####" not in solution:
        raise ValueError("field 'answer' has no final '#### N' line")
    gold = solution.rsplit("####", 1)[1].strip()
    if to_number(gold) is None:
        raise ValueError(f"the '#### N' answer {gold!r} is not a number")
    return gold.replace(",", "")


def extract(answer: str) -> str | None:
    """The predicted number in a final-answer line: the \\boxed{} number if any, else the first number after
    the marker; when that sentence is an equation ("15 - 7 = 8") the number after its last "="."""
    markers = list(ANSWER_MARKER.finditer(answer))
    tail = answer[markers[-1].end() :] if markers else answer
    boxed = boxed_contents(tail)
    if boxed:
        tail = boxed[-1]
    sentence = re.split(r"\n|\.(?:\s|$)", tail.strip(" :*\t"), maxsplit=1)[0]
    if "=" in sentence:
        sentence = sentence.rsplit("=", 1)[1]
    match = NUMBER.search(sentence) or NUMBER.search(tail)
    if match is None:
        return None
    value = to_number(match.group())
    return None if value is None else format(value.normalize(), "f")


def equivalent(prediction: str, gold: str) -> bool:
    a, b = to_number(prediction), to_number(gold)
    return a is not None and b is not None and a == b


def split_response(response: str) -> tuple[str, str] | None:
    """Cut at the last final-answer line; a response with none that boxes its result (as Qwen2.5 models do
    whatever the prompt asks) is cut at the line holding its last \\boxed{}."""
    return split_at_last(response, ANSWER_MARKER) or split_at_boxed_line(response)


def solution_reasoning(record: dict[str, Any]) -> str | None:
    """The worked solution's text before `####`, the `<<...>>` calculator notes stripped."""
    solution = record.get("answer")
    if not isinstance(solution, str):
        return None
    return re.sub(r"<<[^>]*>>", "", solution.rsplit("####", 1)[0]).strip()


def to_example(record: dict[str, Any], origin: str, index: int) -> Example:
    question = require_str(record, "question")
    gold = gold_answer(require_str(record, "answer"))
    return Example(record_id(record, f"gsm8k-{origin}-{index}"), question, gold)


TASK = Task(
    name="gsm8k",
    hub_path="openai/gsm8k",
    hub_config="main",
    paper_hub_path="iamjanvijay/gsm8k",
    splits={"train": ("train", Carve({"dev": 500}, "train")), "dev": ("train", Carve({"dev": 500}, "train")), "test": ("test", None)},
    system_prompt=SYSTEM_PROMPT,
    fields=("question", "answer"),
    to_example=to_example,
    split_response=split_response,
    extract=extract,
    equivalent=equivalent,
    answer_format="The answer is N.",
    solution_reasoning=solution_reasoning,
)
