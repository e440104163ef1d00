"""The `chainprune` command line: parse, call a pipeline, print. No logic lives here.

One module per group of commands; this one builds the app and lists the commands in the order `--help` shows
them. Importing it loads neither torch nor transformers: the choices come from `chainprune.choices`, and each
command imports its pipeline when it runs.
"""

from __future__ import annotations

import typer

from chainprune.cli import analyze, baselines, distill, prune
from chainprune.cli.common import add_commands
from chainprune.cli.models import models_app

app = typer.Typer(
    help="Greedy pruning of LLM reasoning chains: delete, one at a time, the reasoning token whose removal "
    "lowers the pruner's likelihood of the remaining chain and answer the least.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
add_commands(
    app,
    prune.prune, prune.demo, prune.show, prune.compare,
    distill.teacher, distill.evaluate,
    baselines.baseline, baselines.match, baselines.lengths,
    prune.view,
    analyze.annotate,
    distill.distill, distill.experiment,
)
app.add_typer(analyze.analyze_app, name="analyze")
app.add_typer(models_app, name="models")

__all__ = ["app"]
