"""Where chainprune keeps what it converts and fetches (models, tokenizers, downloads). Knows no models."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Where converted models live: $CHAINPRUNE_CACHE, else ~/.cache/chainprune."""
    root = os.environ.get("CHAINPRUNE_CACHE") or Path.home() / ".cache" / "chainprune"
    return Path(root)
