"""The grid's results: one row per (teacher, pruner, student, method, keep) and the files made from them.

Rows are built from the summaries the stages leave behind (`summary.json` of an evaluation or a student,
a pruned set's records); the files are results.csv, results.md, an accuracy-vs-keep plot per (teacher,
pruner, student) and the resolved config. This module runs nothing.
"""

from __future__ import annotations

import csv
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chainprune.keep import keep_key
from chainprune.pipelines.experiment.config import ExperimentConfig, resolved
from chainprune.pipelines.experiment.data import read_jsonl

COLUMNS = ("teacher", "pruner", "student", "method", "keep", "accuracy", "accuracy_low", "accuracy_high", "correct",
           "examples", "unparsable", "truncated", "output_reasoning_tokens", "train_reasoning_tokens",
           "student_keep_achieved", "train_examples", "chosen_step", "dev_accuracy")
COMPARISON_COLUMNS = ("teacher", "pruner", "student", "keep", "method", "versus", "examples", "difference", "low",
                      "high", "only_method", "only_versus", "p_mcnemar")
ZERO_SHOT, FULL = "zero-shot", "full"  # the rows that are no pruning method: the untrained student, the full chains
COMPARED = "greedy"  # the method every other one is compared with, question by question


@dataclass
class ExperimentResult:
    rows: list[dict[str, Any]]
    files: list[Path]
    stages_run: int = 0
    stages_skipped: int = 0
    seconds: float = 0.0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (job, reason) of what could not run
    tunings: list[dict[str, Any]] = field(default_factory=list)  # each tuned student's trials and choice


def percent(value: float | None) -> float | None:
    return None if value is None else round(100 * value, 2)


def evaluated_row(teacher: str, pruner: str, student: str, method: str, keep: float | None,
                  summary: dict[str, Any], outputs: Path | None = None) -> dict[str, Any]:
    """A row from an evaluation's summary (the zero-shot row is this alone, with keep None); `outputs`, the
    evaluation's per-question records, is kept beside the row (not a column) for the paired statistics."""
    from chainprune.analysis.paired import wilson_interval

    low, high = wilson_interval(summary["correct"], summary["examples"])
    return {"teacher": teacher, "pruner": pruner, "student": student, "method": method, "keep": keep,
            "accuracy": percent(summary["accuracy"]), "accuracy_low": percent(low), "accuracy_high": percent(high),
            "correct": summary["correct"], "examples": summary["examples"],
            "unparsable": summary["unparsable"], "truncated": summary["truncated"],
            "output_reasoning_tokens": round(summary["mean_reasoning_tokens"], 1), "outputs": outputs}


def training_columns(distilled: dict[str, Any]) -> dict[str, Any]:
    """A trained student's columns, from its `run_distill` summary."""
    return {"train_reasoning_tokens": round(distilled["mean_train_reasoning_tokens"], 1),
            "train_examples": distilled["examples"], "chosen_step": distilled["chosen"]["step"],
            "dev_accuracy": percent(distilled["chosen"].get("dev_accuracy"))}


def pruned_stats(path: Path, keep: float) -> dict[str, Any]:
    """Mean achieved student-token keep fraction of a pruned set."""
    fractions = [r["pruned"][keep_key(keep)]["student_fraction"] for r in read_jsonl(path) if keep_key(keep) in r["pruned"]]
    return {"student_keep_achieved": round(sum(fractions) / len(fractions), 3) if fractions else None}


def write_results(config: ExperimentConfig, rows: list[dict[str, Any]], results_dir: Path,
                  tunings: list[dict[str, Any]] | None = None, failed: list[tuple[str, str]] | None = None) -> list[Path]:
    """results.csv, comparisons.csv, results.md, the plots, every student's test outputs (`outputs/`) and the
    resolved config in `results_dir`; the files written."""
    results_dir.mkdir(parents=True, exist_ok=True)
    comparisons = compare_rows(rows)
    files = [results_dir / "results.csv", results_dir / "comparisons.csv", results_dir / "results.md",
             results_dir / "resolved-config.yaml"]
    _write_csv(files[0], COLUMNS, rows)
    _write_csv(files[1], COMPARISON_COLUMNS, comparisons)
    files[2].write_text(results_markdown(rows, comparisons, tunings or [], failed or []))
    return files + write_outputs(rows, results_dir / "outputs") + write_plots(config, rows, results_dir)


def _write_csv(path: Path, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c) for c in columns})


def _combo(row: dict[str, Any]) -> tuple[str, str, str]:
    return row["teacher"], row["pruner"], row["student"]


def output_name(row: dict[str, Any], several: bool) -> str:
    """`greedy-0.5.jsonl`, `full-1.0.jsonl`, `zeroshot.jsonl`; prefixed by teacher, pruner and student when the
    grid has several of them."""
    if row["method"] == ZERO_SHOT:
        stem = "zeroshot"
    else:
        keep = "1.0" if row["keep"] == 1.0 else f"{row['keep']:g}"
        stem = f"{row['method']}-{keep}"
    if several:
        stem = re.sub(r"[^A-Za-z0-9.]+", "_", "-".join(_combo(row))) + "-" + stem
    return stem + ".jsonl"


def write_outputs(rows: list[dict[str, Any]], folder: Path) -> list[Path]:
    """Every row's per-question test outputs, copied from its evaluation stage."""
    folder.mkdir(parents=True, exist_ok=True)
    several = len({_combo(r) for r in rows}) > 1
    written = []
    for row in rows:
        if row.get("outputs") is None:
            continue
        target = folder / output_name(row, several)
        shutil.copyfile(row["outputs"], target)
        written.append(target)
    return written


def correctness(path: Path) -> dict[str, bool]:
    """Question id -> whether the student's answer was right, from an evaluation's outputs."""
    return {r["id"]: bool(r["correct"]) for r in read_jsonl(path)}


def compare_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Greedy against every other row of its keep fraction (and against the full-chain and zero-shot
    students), question by question: one comparison per pair, for each (teacher, pruner, student)."""
    from chainprune.analysis.paired import paired_difference

    out = []
    for combo in dict.fromkeys(_combo(r) for r in rows):
        mine = [r for r in rows if _combo(r) == combo and r.get("outputs") is not None]
        references = [r for r in mine if r["method"] in (FULL, ZERO_SHOT)]
        for greedy in (r for r in mine if r["method"] == COMPARED):
            others = [r for r in mine if r["keep"] == greedy["keep"] and r["method"] != COMPARED] + references
            a = correctness(greedy["outputs"])
            for other in others:
                d = paired_difference(a, correctness(other["outputs"]))
                out.append({"teacher": combo[0], "pruner": combo[1], "student": combo[2], "keep": greedy["keep"],
                            "method": COMPARED, "versus": other["method"], "examples": d.n,
                            "difference": percent(d.difference), "low": percent(d.low), "high": percent(d.high),
                            "only_method": d.only_a, "only_versus": d.only_b, "p_mcnemar": round(d.p_mcnemar, 4)})
    return out


def write_plots(config: ExperimentConfig, rows: list[dict[str, Any]], results_dir: Path) -> list[Path]:
    """accuracy-vs-keep per (teacher, pruner, student): a curve per method with 95% intervals, the full-chain
    and zero-shot students as lines."""
    from chainprune.report.accuracy import accuracy_figure

    files = []
    combos = list(dict.fromkeys(_combo(r) for r in rows))
    for teacher, pruner, student in combos:
        mine = [r for r in rows if _combo(r) == (teacher, pruner, student)]
        curves: dict[str, list[tuple[float, float, float, float]]] = {}
        lines = {}
        for r in mine:
            point = (r["accuracy"], r.get("accuracy_low"), r.get("accuracy_high"))
            if r["method"] == ZERO_SHOT:
                lines["zero-shot student"] = point
            elif r["method"] == FULL:
                lines["full chains (keep 1.0)"] = point
            else:
                curves.setdefault(r["method"], []).append((r["keep"], *point))
        suffix = "" if len(combos) == 1 else "-" + re.sub(r"[^A-Za-z0-9.]+", "_", f"{teacher}-{pruner}-{student}")
        n = mine[0]["examples"] if mine else 0
        files += accuracy_figure(curves, lines, results_dir / f"accuracy-vs-keep{suffix}",
                                 f"{config.name}: teacher {teacher}, pruner {pruner}, student {student} (n={n})")
    return files


def results_markdown(rows: list[dict[str, Any]], comparisons: list[dict[str, Any]] | None = None,
                     tunings: list[dict[str, Any]] | None = None, failed: list[tuple[str, str]] | None = None) -> str:
    headers = ["teacher", "pruner", "student", "method", "keep", "accuracy % (95% CI)", "correct / n", "unparsable",
               "output reasoning tokens", "train reasoning tokens", "student keep achieved", "chosen step",
               "dev accuracy %"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for r in rows:
        interval = f" ({r['accuracy_low']:.1f}-{r['accuracy_high']:.1f})" if r.get("accuracy_low") is not None else ""
        cells = [r["teacher"], r["pruner"], r["student"], r["method"], "" if r["keep"] is None else f"{r['keep']:g}",
                 f"{r['accuracy']:.1f}{interval}", f"{r['correct']} / {r['examples']}", _cell(r.get("unparsable")),
                 f"{r['output_reasoning_tokens']:.1f}",
                 _cell(r.get("train_reasoning_tokens")), _cell(r.get("student_keep_achieved")),
                 _cell(r.get("chosen_step")), _cell(r.get("dev_accuracy"))]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    if comparisons:
        lines += ["", "Greedy against each other student on the same test questions (difference in accuracy points, "
                  "paired bootstrap 95% interval, 10,000 resamples; McNemar's exact p on the discordant questions):",
                  "", "| student | keep | greedy vs | n | difference | 95% CI | only greedy right | only other right "
                  "| McNemar p |", "|---|---|---|---|---|---|---|---|---|"]
        for c in comparisons:
            lines.append(f"| {c['student']} | {c['keep']:g} | {c['versus']} | {c['examples']} | {c['difference']:+.1f} | "
                         f"{c['low']:+.1f} to {c['high']:+.1f} | {c['only_method']} | {c['only_versus']} | "
                         f"{c['p_mcnemar']:.3g} |")
    for tuning in tunings or []:
        trials = "; ".join(", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in t.items())
                           for t in tuning["trials"])
        lines += ["", f"Training settings of {tuning['student']} chosen on the dev set with the full-chain student "
                  f"only, then used for every student: {tuning['chosen']} (trials: {trials})."]
    if failed:
        lines += ["", "Not run:"] + [f"- {what}: {reason}" for what, reason in failed]
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
