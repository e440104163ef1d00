"""Keep-fraction arithmetic, in one place so every tool agrees on it.

Pruning a reasoning of n tokens to keep fraction r keeps floor(n*r) tokens, i.e. makes n - floor(n*r)
deletions. The product is taken in exact decimal arithmetic (r as written, e.g. "0.29"), so binary
floating point never turns 100 * 0.29 = 28.999... into 28.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from fractions import Fraction


def check_keep_fraction(r: float) -> float:
    r = float(r)
    if not 0.0 < r <= 1.0:
        raise ValueError(f"keep fraction must be in (0, 1], got {r}")
    return r


def kept_count(n: int, r: float) -> int:
    """Number of reasoning tokens kept at keep fraction r: floor(n*r), exactly."""
    return math.floor(n * Fraction(repr(check_keep_fraction(r))))


def deletions_for(n: int, r: float) -> int:
    return n - kept_count(n, r)


def keep_key(r: float) -> str:
    """The key of keep fraction r in a trace's `pruned` map: "0.5", "0.9", "1.0"."""
    return repr(float(r))


def normalize_keep_fractions(fractions: Iterable[float]) -> list[float]:
    """Validated, de-duplicated, sorted from largest to smallest."""
    out = sorted({check_keep_fraction(r) for r in fractions}, reverse=True)
    if not out:
        raise ValueError("at least one keep fraction is needed")
    return out
