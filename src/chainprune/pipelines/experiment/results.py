"""The grid's results: one row per (teacher, pruner, student, method, keep) and the files made from them.

Rows are built from the summaries the stages leave behind (`summary.json` of an evaluation or a student,
a pruned set's records); the files are results.csv, results.md, an accuracy-vs-keep plot per (teacher,
pruner, student) and the resolved config. This module runs nothing.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chainprune.keep import keep_key
from chainprune.pipelines.experiment.config import ExperimentConfig, resolved
from chainprune.pipelines.experiment.data import read_jsonl

COLUMNS = ("teacher", "pruner", "student", "method", "keep", "accuracy", "correct", "examples", "unparsable",
           "truncated", "output_reasoning_tokens", "train_reasoning_tokens", "student_keep_achieved",
           "train_examples", "chosen_step", "dev_accuracy")


@dataclass
class ExperimentResult:
    rows: list[dict[str, Any]]
    files: list[Path]
    stages_run: int = 0
    stages_skipped: int = 0
    seconds: float = 0.0


def percent(value: float | None) -> float | None:
    return None if value is None else round(100 * value, 2)


def evaluated_row(teacher: str, pruner: str, student: str, method: str, keep: float | None,
                  summary: dict[str, Any]) -> dict[str, Any]:
    """A row from an evaluation's summary (the zero-shot row is this alone, with keep None)."""
    return {"teacher": teacher, "pruner": pruner, "student": student, "method": method, "keep": keep,
            "accuracy": percent(summary["accuracy"]), "correct": summary["correct"], "examples": summary["examples"],
            "unparsable": summary["unparsable"], "truncated": summary["truncated"],
            "output_reasoning_tokens": round(summary["mean_reasoning_tokens"], 1)}


def training_columns(pruned: Path, keep: float, distilled: dict[str, Any]) -> dict[str, Any]:
    """A distilled row's training columns: from its pruned set and its student's `run_distill` summary."""
    return {**pruned_stats(pruned, keep),
            "train_reasoning_tokens": round(distilled["mean_train_reasoning_tokens"], 1),
            "train_examples": distilled["examples"], "chosen_step": distilled["chosen"]["step"],
            "dev_accuracy": percent(distilled["chosen"].get("dev_accuracy"))}


def pruned_stats(path: Path, keep: float) -> dict[str, Any]:
    """Mean achieved student-token keep fraction of a pruned set."""
    fractions = [r["pruned"][keep_key(keep)]["student_fraction"] for r in read_jsonl(path) if keep_key(keep) in r["pruned"]]
    return {"student_keep_achieved": round(sum(fractions) / len(fractions), 3) if fractions else None}


def write_results(config: ExperimentConfig, rows: list[dict[str, Any]], results_dir: Path) -> list[Path]:
    """results.csv, results.md, the plots and the resolved config in `results_dir`; the files written."""
    results_dir.mkdir(parents=True, exist_ok=True)
    files = [results_dir / "results.csv", results_dir / "results.md", results_dir / "resolved-config.yaml"]
    with files[0].open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c) for c in COLUMNS})
    files[1].write_text(results_markdown(rows))
    return files + write_plots(config, rows, results_dir)


def write_plots(config: ExperimentConfig, rows: list[dict[str, Any]], results_dir: Path) -> list[Path]:
    """accuracy-vs-keep per (teacher, pruner, student): a curve per method, the zero-shot accuracy as a line."""
    from chainprune.report.accuracy import accuracy_figure

    files = []
    combos = list(dict.fromkeys((r["teacher"], r["pruner"], r["student"]) for r in rows))
    for teacher, pruner, student in combos:
        mine = [r for r in rows if (r["teacher"], r["pruner"], r["student"]) == (teacher, pruner, student)]
        curves: dict[str, list[tuple[float, float]]] = {}
        for r in mine:
            if r["keep"] is not None:
                curves.setdefault(r["method"], []).append((r["keep"], r["accuracy"]))
        zero = next((r["accuracy"] for r in mine if r["method"] == "zero-shot"), None)
        suffix = "" if len(combos) == 1 else "-" + re.sub(r"[^A-Za-z0-9.]+", "_", f"{teacher}-{pruner}-{student}")
        n = mine[0]["examples"] if mine else 0
        files += accuracy_figure(curves, zero, results_dir / f"accuracy-vs-keep{suffix}",
                                 f"{config.name}: teacher {teacher}, pruner {pruner}, student {student} (n={n})")
    return files


def results_markdown(rows: list[dict[str, Any]]) -> str:
    headers = ["teacher", "pruner", "student", "method", "keep", "accuracy %", "correct / n", "output reasoning tokens",
               "train reasoning tokens", "student keep achieved", "chosen step", "dev accuracy %"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for r in rows:
        cells = [r["teacher"], r["pruner"], r["student"], r["method"], "" if r["keep"] is None else f"{r['keep']:g}",
                 f"{r['accuracy']:.1f}", f"{r['correct']} / {r['examples']}", f"{r['output_reasoning_tokens']:.1f}",
                 _cell(r.get("train_reasoning_tokens")), _cell(r.get("student_keep_achieved")),
                 _cell(r.get("chosen_step")), _cell(r.get("dev_accuracy"))]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    return "" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def write_resolved(config: ExperimentConfig, folders: list[Path]) -> None:
    """resolved-config.yaml (every default filled in) in each folder."""
    import yaml

    text = yaml.safe_dump(resolved(config), sort_keys=False)
    for folder in dict.fromkeys(folders):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "resolved-config.yaml").write_text(text)
