"""Pipelines: read JSONL, call the core, write JSONL. One module per command."""
