"""How close an approximate prune is to exact greedy, per keep fraction.

All functions take deletion orders (original positions, first deleted first) and objective trajectories. By
default a keep fraction r means n - floor(n r) deletions of each order (token traces); `deleted` (tokens deleted
from each order) and `steps` (the index of each objective value) override that, for unit traces, whose states
fall only where a word or sentence ends (`Trace.deletions_at`, `chainprune.trace_steps.steps_at`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from chainprune.keep import deletions_for


def kept_overlap(
    exact_order: Sequence[int], approx_order: Sequence[int], n: int, keep: float, deleted: tuple[int, int] | None = None
) -> float:
    """|kept_exact ∩ kept_approx| / |kept_exact| at keep fraction `keep` (1.0 when nothing is kept)."""
    d_exact, d_approx = deleted or (deletions_for(n, keep),) * 2
    kept_a = set(range(n)) - set(exact_order[:d_exact])
    kept_b = set(range(n)) - set(approx_order[:d_approx])
    return len(kept_a & kept_b) / len(kept_a) if kept_a else 1.0


def deletion_ranks(order: Sequence[int], n: int, deletions: int) -> list[int]:
    """Rank of every token: its deletion step (1-based) if among the first `deletions`, else deletions + 1."""
    ranks = [deletions + 1] * n
    for step, position in enumerate(order[:deletions], start=1):
        ranks[position] = step
    return ranks


def kendall_tau(
    exact_order: Sequence[int], approx_order: Sequence[int], n: int, keep: float, deleted: tuple[int, int] | None = None
) -> float:
    """Kendall's tau-b between the two deletion-rank vectors at keep fraction `keep` (kept tokens tie). The ranks
    are token ranks even for a unit trace (its order lists a unit's tokens left to right)."""
    from scipy.stats import kendalltau

    d_exact, d_approx = deleted or (deletions_for(n, keep),) * 2
    a, b = deletion_ranks(exact_order, n, d_exact), deletion_ranks(approx_order, n, d_approx)
    if a == b:
        return 1.0
    tau = kendalltau(a, b).statistic
    return float(tau) if not math.isnan(tau) else 0.0


def objective_gap(
    exact_values: Sequence[float], approx_values: Sequence[float], n: int, keep: float, steps: tuple[int, int] | None = None
) -> float:
    """Approximate minus exact objective at keep fraction `keep` (negative: the approximation lost likelihood)."""
    s_exact, s_approx = steps or (deletions_for(n, keep),) * 2
    return approx_values[s_approx] - exact_values[s_exact]
