"""Studies: one question each, mostly replays of recorded runs (exact traces, their `--save-scores` sidecars)."""
