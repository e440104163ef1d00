"""Accuracy statistics for students evaluated on the same questions: a 95% interval per student, and paired
comparisons (difference, paired bootstrap interval, exact McNemar p).

Takes per-question correctness (booleans keyed by question id); knows nothing about files, models or runs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

Z95 = 1.959963984540054  # the standard normal's 97.5% quantile


def wilson_interval(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95% by default), as fractions; (0, 1) for n = 0."""
    if n == 0:
        return 0.0, 1.0
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p: the binomial test of the discordant pairs (a right, b wrong: `only_a`; the
    reverse: `only_b`) against an even split. 1.0 when there are none."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    k = min(only_a, only_b)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


@dataclass(frozen=True)
class PairedDifference:
    """Accuracy of A minus accuracy of B on the questions both answered, in fractions."""

    n: int  # questions both were evaluated on
    accuracy_a: float
    accuracy_b: float
    difference: float  # accuracy_a - accuracy_b
    low: float  # paired bootstrap 95% interval of the difference
    high: float
    only_a: int  # questions A got right and B wrong
    only_b: int
    p_mcnemar: float


def paired_difference(a: Mapping[str, bool], b: Mapping[str, bool], resamples: int = 10_000,
                      seed: int = 0) -> PairedDifference:
    """A against B on the questions both have: the difference of accuracies, its paired bootstrap interval
    (questions resampled with replacement, the percentile interval; seeded) and McNemar's exact p."""
    ids = sorted(set(a) & set(b))
    if not ids:
        raise ValueError("no question was evaluated for both")
    import numpy as np

    deltas = np.array([int(bool(a[i])) - int(bool(b[i])) for i in ids])
    n = len(ids)
    rng = np.random.default_rng(seed)
    means = np.concatenate([deltas[rng.integers(0, n, (size, n))].mean(axis=1)  # (size,) resampled differences
                            for size in _blocks(resamples, max(1, 2_000_000 // n))])
    low, high = (float(v) for v in np.quantile(means, [0.025, 0.975]))
    only_a, only_b = int((deltas == 1).sum()), int((deltas == -1).sum())
    acc_a = sum(bool(a[i]) for i in ids) / n
    acc_b = sum(bool(b[i]) for i in ids) / n
    return PairedDifference(n, acc_a, acc_b, acc_a - acc_b, low, high, only_a, only_b, mcnemar_exact(only_a, only_b))


def _blocks(total: int, size: int) -> list[int]:
    """`total` split into blocks of at most `size` (bounds the memory of one resampling draw)."""
    return [min(size, total - start) for start in range(0, total, size)]
