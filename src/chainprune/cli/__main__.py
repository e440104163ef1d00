"""`python -m chainprune.cli`: the same app as the `chainprune` command."""

from chainprune.cli import app

app()
