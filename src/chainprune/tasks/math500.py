"""MATH: competition problems with free-form LaTeX answers (`simplescaling/openaimath`; test = MATH-500).

Rows have `problem`, `answer` (and `solution`, `subject`, `level`, `unique_id`). Answers are compared with
`math-verify`, so equivalent forms agree (`\\frac{1}{2}` = `0.5`, `\\dfrac12`, `x=3` vs `3`, intervals, sets).
The paper's splits (App. B.1, released as `iamjanvijay/openaimath`): 800 dev examples carved from the 12,000
train examples (11,200 train left), MATH-500 as test.
"""

from __future__ import annotations

import re
from typing import Any

from chainprune.tasks.base import ANSWER_MARKER, Carve, Example, Task, boxed_contents, record_id, require_str, split_at_last

SYSTEM_PROMPT = (
    "Solve the math problem step by step. Write out your reasoning, then give the final answer on its own "
    "last line in exactly this form:\nThe final answer is $\\boxed{ANSWER}$.\n"
    "where ANSWER is the final answer in simplest form."
)


def _math_verify():
    try:
        import math_verify
    except ImportError as e:  # pragma: no cover - math-verify is a core dependency
        raise RuntimeError("grading MATH answers needs math-verify: pip install math-verify") from e
    return math_verify


def split_response(response: str) -> tuple[str, str] | None:
    """Cut at the last final-answer marker; failing that, at the line holding the last \\boxed{}."""
    parts = split_at_last(response, ANSWER_MARKER)
    if parts is None and boxed_contents(response):
        parts = split_at_last(response, re.compile(r"\\(?:boxed|fbox)\s*\{"))
    return parts


def extract(answer: str) -> str | None:
    """The LaTeX of the last \\boxed{} in the answer part, else what math-verify reads from it."""
    boxed = boxed_contents(answer)
    if boxed:
        return boxed[-1].strip() or None
    markers = list(ANSWER_MARKER.finditer(answer))
    tail = answer[markers[-1].end() :] if markers else answer
    parsed = _math_verify().parse(tail)
    return str(parsed[-1]) if parsed else None


def _parse(latex: str) -> list:
    mv = _math_verify()
    return mv.parse(f"${latex}$", extraction_config=[mv.LatexExtractionConfig(), mv.ExprExtractionConfig()])


def equivalent(prediction: str, gold: str) -> bool:
    gold_parsed, pred_parsed = _parse(gold), _parse(prediction)
    if gold_parsed and pred_parsed and _math_verify().verify(gold_parsed, pred_parsed):
        return True
    # Answers math-verify cannot read (text, odd LaTeX) still match when written identically.
    squash = lambda s: re.sub(r"\s+|\\[,;! ]|\\text\{\s*\}|^\$|\$$", "", s)  # noqa: E731
    return squash(prediction) == squash(gold)


def solution_reasoning(record: dict[str, Any]) -> str | None:
    """The whole worked solution (`solution`), its final \\boxed{} answer included: MATH solutions end
    inside their last sentence, with no separate final-answer line to cut off."""
    solution = record.get("solution")
    return solution.strip() if isinstance(solution, str) and solution.strip() else None


def to_example(record: dict[str, Any], origin: str, index: int) -> Example:
    problem = require_str(record, "problem")
    if record.get("answer") is not None:
        gold = require_str(record, "answer")
    else:
        boxed = boxed_contents(record.get("solution") or "")
        if not boxed:
            raise ValueError("missing field 'answer' (and no \\boxed{} answer in 'solution')")
        gold = boxed[-1]
    default = f"math-{origin}-{index}"
    return Example(str(record.get("unique_id") or record_id(record, default)), problem, gold.strip())


TASK = Task(
    name="math500",
    hub_path="simplescaling/openaimath",
    hub_config=None,
    paper_hub_path="iamjanvijay/openaimath",
    splits={"train": ("train", Carve({"dev": 800}, "train")), "dev": ("train", Carve({"dev": 800}, "train")), "test": ("test", None)},
    system_prompt=SYSTEM_PROMPT,
    fields=("problem",),
    to_example=to_example,
    split_response=split_response,
    extract=extract,
    equivalent=equivalent,
    answer_format="The final answer is $\\boxed{ANSWER}$.",
    solution_reasoning=solution_reasoning,
)
