"""The readability rubric of the paper's App. E: five dimensions, each on a three-level scale, judged by an
LLM under a fixed JSON schema, and the per-keep-fraction summary of Table 3. Prompt, schema, validation and
summary are here; the endpoint is `chainprune.analysis.llm.JsonLLM`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

RUBRIC: dict[str, tuple[str, dict[str, str]]] = {
    "corruption": ("Corruption: surface-level degradation of the text", {
        "OK": "fully readable text",
        "Minor": "surface artifacts such as missing punctuation, dropped function words or formatting noise; meaning remains recoverable",
        "Severe": "fragmented or malformed text that is difficult to parse",
    }),
    "structural_integrity": ("Structural integrity: preservation of a stepwise reasoning structure", {
        "Intact": "step structure preserved",
        "Mildly broken": "minor step merging or header loss; order remains recoverable",
        "Broken": "reasoning flow is difficult to reconstruct",
    }),
    "semantic_coherence": ("Semantic coherence: logical consistency and readability", {
        "OK": "logically understandable",
        "Minor": "connective or phrasing gaps, but reasoning remains clear",
        "Severe": "logical flow is disrupted",
    }),
    "math_state": ("Mathematical state preservation: key variables, intermediate quantities and final answers present and consistent", {
        "Yes": "key quantities and equations are present and numerically consistent",
        "Borderline": "minor omissions such as units; state remains inferable",
        "No": "critical quantities are missing or inconsistent",
    }),
    "sft_suitability": ("Suitability for SFT: usable as supervision for fine-tuning", {
        "Yes": "directly usable supervision",
        "Borderline": "usable with minor cleanup",
        "No": "too degraded for training",
    }),
}

JUDGE_SYSTEM = (
    "You evaluate compressed (token-pruned) reasoning traces for math word problems. Tokens were deleted from "
    "the original reasoning; judge the trace as given, following the rubric exactly, and answer with JSON only."
)


def judge_schema() -> dict:
    return {
        "type": "object",
        "properties": {dim: {"type": "string", "enum": list(levels)} for dim, (_, levels) in RUBRIC.items()},
        "required": list(RUBRIC),
        "additionalProperties": False,
    }


def judge_prompt(reasoning: str, question: str | None = None) -> str:
    rubric = "\n".join(
        f"{dim} — {title}:\n" + "\n".join(f"  - {level}: {meaning}" for level, meaning in levels.items())
        for dim, (title, levels) in RUBRIC.items()
    )
    context = f"Question:\n{question}\n\n" if question else ""
    return (
        f"{context}Pruned reasoning trace:\n<<<\n{reasoning}\n>>>\n\n"
        f"Rate the trace on each dimension with one of its levels.\n{rubric}\n\n"
        f"Answer as a JSON object with the keys {', '.join(RUBRIC)}."
    )


def parse_judgment(reply: Any) -> dict[str, str]:
    """The five labels of a reply; ValueError when a key is missing or a level is not on the scale."""
    if not isinstance(reply, dict):
        raise ValueError("expected a JSON object")
    out = {}
    for dim, (_, levels) in RUBRIC.items():
        if dim not in reply:
            raise ValueError(f"missing {dim!r}")
        if reply[dim] not in levels:
            raise ValueError(f"{dim}={reply[dim]!r} is not one of {', '.join(levels)}")
        out[dim] = reply[dim]
    return out


def judge_messages(reasoning: str, question: str | None = None) -> list[dict]:
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": judge_prompt(reasoning, question)}]


def summarize(judgments: Sequence[tuple[float, dict[str, str]]]) -> list[dict[str, Any]]:
    """Table 3: for every (dimension, level) the share of traces per keep fraction.
    Rows: {"dimension", "level", "<keep>": fraction, ...}, keeps in increasing order, plus "n@<keep>" counts."""
    keeps = sorted({k for k, _ in judgments})
    counts = {k: Counter() for k in keeps}
    totals = Counter(k for k, _ in judgments)
    for keep, labels in judgments:
        for dim, level in labels.items():
            counts[keep][(dim, level)] += 1
    rows = []
    for dim, (_, levels) in RUBRIC.items():
        for level in levels:
            row: dict[str, Any] = {"dimension": dim, "level": level}
            for k in keeps:
                row[f"{k:g}"] = round(counts[k][(dim, level)] / totals[k], 4)
            rows.append(row)
    return rows
