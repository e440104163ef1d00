"""`chainprune demo`: prune the bundled example chains with the bundled default model, offline."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from chainprune.choices import DEFAULT_ENGINE, DEFAULT_MODEL
from chainprune.pipelines.prune import PruneConfig, PruneSummary, Reporter, run_prune
from chainprune.pipelines.view import run_view

DEMO_KEEPS = [0.9, 0.7, 0.5]


def demo_chains_path() -> Path:
    return Path(str(files("chainprune") / "resources" / "demo_chains.jsonl"))


def demo_viewer_path(out_dir: Path) -> Path:
    return Path(out_dir) / "viewer.html"


def run_demo(out_dir: Path, engine: str = DEFAULT_ENGINE, reporter: Reporter | None = None) -> tuple[Path, PruneSummary]:
    """Prune the demo chains to keep 0.9/0.7/0.5 into `out_dir/traces.jsonl` (rewritten every run), and write
    the HTML viewer of those traces to `out_dir/viewer.html`."""
    out = Path(out_dir) / "traces.jsonl"
    config = PruneConfig(model=DEFAULT_MODEL, keep=DEMO_KEEPS, engine=engine, dtype="float32", device="cpu")
    summary = run_prune(demo_chains_path(), out, config, overwrite=True, reporter=reporter)
    if summary.done:
        run_view([out], demo_viewer_path(out_dir), title="chainprune demo: example chains pruned by SmolLM2-135M-Instruct")
    return out, summary
