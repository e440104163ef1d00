"""`run_annotate`: a functional category on every trace token (appended per record, resumable)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from chainprune.analysis.categories import Annotator, check_categories, rule_annotator
from chainprune.data.jsonl import JsonlAppender, RecordError
from chainprune.pipelines.analyze.common import (
    Track,
    no_track,
    read_records,
)
from chainprune.run import RunSummary, open_output, require_input

AnnotateSummary = RunSummary  # what `run_annotate` returns


def make_annotator(name: str, **llm_options: Any) -> Annotator:
    """`rules` (offline) or `llm` (an OpenAI-compatible endpoint; options go to `LLMAnnotator`)."""
    if name == "rules":
        return rule_annotator
    if name == "llm":
        from chainprune.analysis.llm import LLMAnnotator

        return LLMAnnotator(**llm_options)
    raise ValueError(f"unknown annotator {name!r}; choose one of rules, llm")


def run_annotate(
    traces: Path, out: Path, annotator: Annotator, resume: bool = False, overwrite: bool = False,
    track: Track = no_track,
) -> AnnotateSummary:
    """Copy every trace of `traces` to `out` with a `category` on each token."""
    traces, out = Path(traces), Path(out)
    require_input(traces)
    output = open_output(out, resume, overwrite)
    summary = AnnotateSummary(warnings=output.warnings)
    records, summary.failures = read_records(traces)
    todo = [(line, r) for line, r in records if str(r["id"]) not in output.done]
    summary.skipped = len(records) - len(todo)
    # Records are copied as they are, every field in its place (traces, matched records): only `category` is added.
    with JsonlAppender(out) as writer:
        for line, record in track(todo, len(todo), "annotating"):
            try:
                texts = [t["text"] for t in record["tokens"]]
                categories = check_categories(annotator(texts), len(texts))
            except (ValueError, KeyError, TypeError, RuntimeError) as e:
                summary.failures.append(RecordError(line, str(record["id"]), f"{type(e).__name__}: {e}"))
                continue
            record = dict(record, tokens=[dict(t, category=c) for t, c in zip(record["tokens"], categories)])
            writer.write(record)
            summary.done += 1
    return summary
