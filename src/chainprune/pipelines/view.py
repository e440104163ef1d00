"""`chainprune view`: read trace files and write the self-contained HTML viewer.

Bad records are reported with their file, line and id and left out of the page; the others are shown.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from chainprune.data.jsonl import RecordError, read_valid
from chainprune.report.viewer import ViewerSource, render_viewer, viewer_example


@dataclass
class ViewSummary:
    out: Path
    examples: int  # distinct ids on the page
    per_source: dict[str, int]  # label -> traces shown from that file
    failures: list[tuple[Path, RecordError]] = field(default_factory=list)


def read_viewer_source(path: Path, label: str) -> tuple[ViewerSource, list[RecordError]]:
    """Every valid trace of `path` in compact form, and an error for every bad line (duplicates included)."""
    source = ViewerSource(label)
    valid, errors = read_valid(path, viewer_example)
    source.examples.update((record_id, example) for _, record_id, example in valid)
    return source, errors


def source_labels(paths: list[Path]) -> list[str]:
    """File names, or whole paths where two files share a name."""
    names = [Path(p).name for p in paths]
    return [name if names.count(name) == 1 else str(p) for name, p in zip(names, paths)]


def run_view(paths: list[Path], out: Path, title: str | None = None) -> ViewSummary:
    """Write the viewer for the traces in `paths` (one column per file) to `out`.

    Raises ValueError when no file holds a single valid trace (nothing to show); OSError for unreadable files.
    """
    if not paths:
        raise ValueError("give at least one traces file")
    sources, failures = [], []
    for path, label in zip(paths, source_labels(paths)):
        source, errors = read_viewer_source(path, label)
        sources.append(source)
        failures.extend((Path(path), e) for e in errors)
    if not any(s.examples for s in sources):
        raise ValueError(f"no valid trace in {', '.join(map(str, paths))}")
    page = render_viewer(sources, title or f"chainprune viewer: {' vs '.join(s.label for s in sources)}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)  # never leave a half-written page behind
    examples = len({i for s in sources for i in s.examples})
    return ViewSummary(out, examples, {s.label: len(s.examples) for s in sources}, failures)
