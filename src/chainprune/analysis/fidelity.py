"""How close an approximate prune is to exact greedy, per keep fraction.

All functions take deletion orders (original positions, first deleted first) and objective trajectories.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from chainprune.keep import deletions_for


def kept_overlap(exact_order: Sequence[int], approx_order: Sequence[int], n: int, keep: float) -> float:
    """|kept_exact ∩ kept_approx| / |kept| at keep fraction `keep` (1.0 when nothing is kept)."""
    d = deletions_for(n, keep)
    kept_a = set(range(n)) - set(exact_order[:d])
    kept_b = set(range(n)) - set(approx_order[:d])
    return len(kept_a & kept_b) / len(kept_a) if kept_a else 1.0


def deletion_ranks(order: Sequence[int], n: int, deletions: int) -> list[int]:
    """Rank of every token: its deletion step (1-based) if among the first `deletions`, else deletions + 1."""
    ranks = [deletions + 1] * n
    for step, position in enumerate(order[:deletions], start=1):
        ranks[position] = step
    return ranks


def kendall_tau(exact_order: Sequence[int], approx_order: Sequence[int], n: int, keep: float) -> float:
    """Kendall's tau-b between the two deletion-rank vectors at keep fraction `keep` (kept tokens tie)."""
    from scipy.stats import kendalltau

    d = deletions_for(n, keep)
    a, b = deletion_ranks(exact_order, n, d), deletion_ranks(approx_order, n, d)
    if a == b:
        return 1.0
    tau = kendalltau(a, b).statistic
    return float(tau) if not math.isnan(tau) else 0.0


def objective_gap(exact_values: Sequence[float], approx_values: Sequence[float], n: int, keep: float) -> float:
    """Approximate minus exact objective at keep fraction `keep` (negative: the approximation lost likelihood)."""
    d = deletions_for(n, keep)
    return approx_values[d] - exact_values[d]
