"""`run_judge`: the readability rubric per keep fraction through an OpenAI-compatible endpoint (App. E)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chainprune.data.jsonl import JsonlAppender, RecordError
from chainprune.pipelines.analyze.common import (
    Track,
    no_track,
    read_records,
    read_trace_records,
    write_csv,
)
from chainprune.run import open_output, require_input


@dataclass
class JudgeResult:
    rows: list[dict[str, Any]]  # Table 3: per (dimension, level) the share at each keep fraction
    files: list[Path]
    judged: int  # traces judged in this run (cached ones included)
    skipped: int  # already in the output
    failures: list[RecordError] = field(default_factory=list)


def run_judge(
    traces: Path, out: Path, keeps: Sequence[float], llm: Any, chains: Path | None = None,
    limit: int | None = None, resume: bool = False, overwrite: bool = False, track: Track = no_track,
) -> JudgeResult:
    """Judge every trace (the first `limit`) at every keep fraction with the App. E rubric. Appends
    `{"id", "judgments": {"<keep>": {dimension: level}}}` per trace to `out` and writes the summary table to
    `out` with suffix .summary.csv. `chains` (the prune input) supplies questions when given."""
    from chainprune.analysis.judge import judge_messages, judge_schema, parse_judgment, summarize
    from chainprune.data.jsonl import read_chains
    from chainprune.keep import normalize_keep_fractions

    keeps = normalize_keep_fractions(keeps)
    traces, out = Path(traces), Path(out)
    require_input(traces, "traces file")
    output = open_output(out, resume, overwrite)
    questions = {c.id: c.question for _, c in read_chains(chains)[0]} if chains else {}
    records, failures = read_trace_records(traces, ("id", "tokens", "deletion_order"))
    records = records[:limit] if limit is not None else records
    todo = [(line, trace) for line, trace in records if str(trace.id) not in output.done]
    judged = 0
    with JsonlAppender(out) as writer:
        for line, trace in track(todo, len(todo), "judging"):
            trace_id = str(trace.id)
            too_far = [r for r in keeps if r < trace.smallest_keep - 1e-12]
            if too_far:
                failures.append(RecordError(line, trace_id, f"pruned only down to keep {trace.smallest_keep}"))
                continue
            try:
                judgments = {}
                for r in keeps:
                    messages = judge_messages(trace.kept_text(r), questions.get(trace_id))
                    judgments[f"{r:g}"] = llm.ask(messages, judge_schema(), parse_judgment, "judgment")
            except RuntimeError as e:
                failures.append(RecordError(line, trace_id, str(e)))
                continue
            writer.write({"id": trace_id, "judgments": judgments})
            judged += 1
    every = [(float(k), labels) for row in read_records(out, ("id", "judgments"))[0] for k, labels in row[1]["judgments"].items()]
    rows = summarize(every)
    summary_path = out.with_name(out.name + ".summary.csv")
    write_csv(summary_path, rows)
    return JudgeResult(rows, [out, summary_path], judged, len(records) - len(todo), failures)
