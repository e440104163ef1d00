"""chainprune's benchmarks: `speed/` times the engines and modes, `studies/` replays recorded runs to answer one
question each, `data/` holds what docs/FINDINGS.md was measured on. Run a script as a module from the repository
root: `.venv/bin/python -m benchmarks.speed.bench_engines --help`."""
