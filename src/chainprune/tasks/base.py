"""What every dataset shares: the example record, the task record, splitting a response, grading, data files.

A task is a plain record of a dataset's hub location, how its paper splits are carved, its prompt, and
four functions (read a raw row, cut a response into reasoning and answer, read the prediction from the
answer, compare a prediction with the gold), plus, for datasets whose rows carry a worked solution, a fifth
that reads the solution's reasoning. This module knows nothing about models or generation: it turns rows into
`Example`s and response text into a `Graded` verdict.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chainprune.data.jsonl import RecordError


@dataclass(frozen=True)
class Example:
    """One question with its gold final answer. `question` is the user message exactly as the model sees it."""

    id: str
    question: str
    gold: str
    where: str = ""  # "line 12 of train.jsonl", "row 40 of openai/gsm8k[train]": for messages


@dataclass(frozen=True)
class Graded:
    """A response cut into reasoning and answer, and judged against the gold answer.

    `problem` is set when the response is unparsable (no final-answer line, or no answer in it); such a
    response is never correct. When no final-answer line is found, `reasoning` is the whole response and
    `answer` is empty.
    """

    reasoning: str
    answer: str
    prediction: str | None
    correct: bool
    problem: str | None = None


@dataclass(frozen=True)
class Carve:
    """How a paper split is cut from an original (hub) split: a seeded shuffle of the original's row
    indices, the first `sizes` taken in order, the rest to `rest`; each part keeps the original row order."""

    sizes: dict[str, int]  # e.g. {"dev": 500}: parts taken first, in this order
    rest: str  # e.g. "train": everything left


@dataclass(frozen=True)
class Task:
    """A dataset: where it lives, how the paper's splits derive from it, its prompt and its grader."""

    name: str
    hub_path: str  # the original dataset on the Hugging Face hub
    hub_config: str | None
    paper_hub_path: str  # the paper's released splits (App. B.1)
    # paper split -> (original split, carve or None for the whole original split)
    splits: dict[str, tuple[str, Carve | None]]
    system_prompt: str
    fields: tuple[str, ...]  # fields a raw row must have
    to_example: Callable[[dict[str, Any], str, int], Example]  # (row, original split, row index) -> Example
    split_response: Callable[[str], tuple[str, str] | None]  # response -> (reasoning, answer) or None
    extract: Callable[[str], str | None]  # answer part -> prediction, or None when there is none
    equivalent: Callable[[str, str], bool]  # (prediction, gold) -> same answer?
    answer_format: str = ""  # the final-answer line the prompt asks for (for docs and messages)
    # raw row -> the reasoning of its worked solution (None when the row has none); None: rows carry no solutions
    solution_reasoning: Callable[[dict[str, Any]], str | None] | None = None

    def grade(self, response: str, gold: str) -> Graded:
        """Cut `response` into reasoning and answer and judge it; unparsable responses are incorrect."""
        parts = self.split_response(response)
        if parts is None:
            return Graded(response.strip(), "", None, False, "no final-answer line")
        reasoning, answer = parts
        prediction = self.extract(answer)
        if prediction is None:
            return Graded(reasoning, answer, None, False, "no answer found in the final-answer line")
        return Graded(reasoning, answer, prediction, self.equivalent(prediction, gold))

    def messages(self, question: str) -> list[dict[str, str]]:
        return [{"role": "system", "content": self.system_prompt}, {"role": "user", "content": question}]


# ---- responses ----

# Words that open the final-answer line. The last occurrence in a response starts its answer part.
ANSWER_MARKER = re.compile(
    r"####|\b(?:the\s+)?final\s+answer\b|\b(?:the\s+)?(?:correct\s+)?answer\s*(?:is\b|:)", re.IGNORECASE
)
# Markup that may open a line before the marker ("**The answer is**", "## Final Answer", "- Answer:").
_LINE_LEAD = " \t*#>-_"


def _opens_line(response: str, match: re.Match[str]) -> int | None:
    """The start of the match's line when only markup precedes the match on it, else None."""
    line_start = response.rfind("\n", 0, match.start()) + 1
    return line_start if not response[line_start : match.start()].strip(_LINE_LEAD) else None


def split_at_last(response: str, marker: re.Pattern[str]) -> tuple[str, str] | None:
    """(reasoning, answer) cut where the last `marker` match starts (at its line's start when only markup
    precedes it on that line); None when there is no match. Final-answer lines written just before it
    ("The answer is 10.\\n#### 10") go with the answer too. Both parts are stripped."""
    matches = list(marker.finditer(response))
    if not matches:
        return None
    start = _opens_line(response, matches[-1])
    if start is None:
        start = matches[-1].start()
    for match in reversed(matches[:-1]):
        line_start = _opens_line(response, match)
        between = response[match.end() : start]
        # The earlier marker opens its own line and only its line (and blank lines) lie between the two.
        if line_start is None or between.strip().count("\n") > 0:
            break
        start = line_start
    return response[:start].strip(), response[start:].strip()


BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")


def split_at_boxed_line(response: str) -> tuple[str, str] | None:
    """(reasoning, answer) cut at the start of the line holding the last \\boxed{...}, for responses that end
    with a boxed result instead of a final-answer line ("So, she sold \\(\\boxed{72}\\) clips."); None when
    nothing is boxed. Both parts are stripped."""
    matches = list(BOXED.finditer(response))
    if not matches:
        return None
    start = response.rfind("\n", 0, matches[-1].start()) + 1
    return response[:start].strip(), response[start:].strip()


def boxed_contents(text: str) -> list[str]:
    """The contents of every \\boxed{...} / \\fbox{...} in `text`, braces balanced, in order."""
    found = []
    for match in re.finditer(r"\\(?:boxed|fbox)\s*\{", text):
        depth, i = 1, match.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            found.append(text[match.end() : i - 1])
    return found


# ---- raw rows: local files and the hub ----


@dataclass
class Row:
    index: int  # 0-based position in the original split
    where: str
    record: dict[str, Any] | None
    error: str | None = None


def read_rows(path: Path) -> Iterator[Row]:
    """Rows of a local JSONL (.jsonl/.json lines) or Parquet file, each with where it came from."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"data file {path} does not exist")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        for i, record in enumerate(pq.read_table(path).to_pylist()):
            yield Row(i, f"row {i + 1} of {path.name}", record)
        return
    index = 0
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"line {number} of {path.name}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                yield Row(index, where, None, f"not valid JSON ({e.msg} at column {e.colno})")
            else:
                if isinstance(record, dict):
                    yield Row(index, where, record)
                else:
                    yield Row(index, where, None, f"expected a JSON object, got {type(record).__name__}")
            index += 1


def hub_rows(path: str, config: str | None, split: str) -> Iterator[Row]:
    """Rows of a Hugging Face hub dataset split (needs network or a warm `datasets` cache)."""
    try:
        import datasets
    except ImportError as e:  # pragma: no cover - datasets is a core dependency
        raise RuntimeError("loading from the hub needs the `datasets` package: pip install datasets") from e
    try:
        data = datasets.load_dataset(path, config, split=split)
    except Exception as e:  # network, missing split, ...: say which and how to go offline
        raise ValueError(
            f"could not load {path}[{split}] from the hub ({type(e).__name__}: {e}); "
            "offline, pass the split's file with --data-file"
        ) from e
    for i, record in enumerate(data):
        yield Row(i, f"row {i + 1} of {path}[{split}]", dict(record))


def carve_indices(n: int, carve: Carve, seed: int) -> dict[str, list[int]]:
    """Split row indices 0..n-1 into the carve's parts by a seeded shuffle; each part sorted."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    parts, taken = {}, 0
    for name, size in carve.sizes.items():
        if taken + size > n:
            raise ValueError(f"cannot carve {size} rows for {name!r}: the original split has only {n - taken} left")
        parts[name] = sorted(order[taken : taken + size])
        taken += size
    parts[carve.rest] = sorted(order[taken:])
    return parts


def load_examples(
    task: Task,
    split: str,
    data_file: Path | None = None,
    hub_dataset: str | None = None,
    seed: int = 0,
    limit: int | None = None,
) -> tuple[list[Example], list[RecordError]]:
    """The examples of a paper split, and an error per bad row (naming its line) that was skipped.

    - `data_file`: a local JSONL/Parquet copy of the *original* split the paper split derives from (e.g.
      GSM8K's train file for `train` or `dev`); `split="all"` takes the whole file as it is.
    - `hub_dataset`: a hub repo whose split `split` is used as it is; "paper" = the paper's released splits
      (`task.paper_hub_path`, e.g. `iamjanvijay/gsm8k`).
    - neither: the original dataset from the hub, carved with `seed`.
    `limit` keeps the first N examples of the split (after carving).
    """
    if hub_dataset is not None:
        hub_dataset = task.paper_hub_path if hub_dataset == "paper" else hub_dataset
        rows = list(hub_rows(hub_dataset, None, split))
        origin, carve = split, None
    else:
        if split == "all":
            if data_file is None:
                raise ValueError("--split all takes a whole --data-file; name the file")
            origin, carve = "all", None
        elif split in task.splits:
            origin, carve = task.splits[split]
        else:
            known = ", ".join([*task.splits, "all"])
            raise ValueError(f"unknown split {split!r} for {task.name}; choose one of {known}")
        rows = list(read_rows(data_file) if data_file is not None else hub_rows(task.hub_path, task.hub_config, origin))
        if data_file is not None and not rows:
            raise ValueError(f"data file {data_file} holds no records")
    if carve is not None:
        keep = set(carve_indices(len(rows), carve, seed)[split])
        rows = [row for row in rows if row.index in keep]
    examples, errors = [], []
    seen: dict[str, str] = {}
    for row in rows:
        if limit is not None and len(examples) >= limit:
            break
        try:
            if row.error:
                raise ValueError(row.error)
            missing = [k for k in task.fields if k not in row.record]
            if missing:
                raise ValueError(f"missing field{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}")
            example = task.to_example(row.record, origin, row.index)
        except (ValueError, TypeError, KeyError) as e:
            errors.append(RecordError(None, None, f"{row.where}: {e}"))
            continue
        if example.id in seen:
            errors.append(RecordError(None, example.id, f"{row.where}: duplicate id (first at {seen[example.id]})"))
            continue
        seen[example.id] = row.where
        examples.append(Example(example.id, example.question, example.gold, row.where))
    return examples, errors


def require_str(record: dict[str, Any], key: str) -> str:
    value = record[key]
    if not isinstance(value, str):
        raise ValueError(f"field {key!r} must be a string, got {type(value).__name__}")
    return value


def record_id(record: dict[str, Any], default: str) -> str:
    value = record.get("id")
    return default if value is None else str(value)
