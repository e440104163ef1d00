"""Reading and writing JSONL: chain inputs with per-line validation, append-per-record outputs that resume."""
