"""Matched lengths: the pure rule that cuts a deletion order at a student-token target."""

from __future__ import annotations

import pytest

from chainprune.ranking.matching import closest, kept_after, match_lengths, target_tokens


@pytest.mark.parametrize(
    ("total", "r", "expected"),
    [(10, 0.5, 5), (7, 0.5, 4), (5, 0.5, 3), (100, 0.29, 29), (3, 0.5, 2), (9, 0.9, 8), (0, 0.5, 0), (11, 1.0, 11)],
)
def test_target_rounds_halves_up_in_exact_arithmetic(total, r, expected):
    assert target_tokens(total, r) == expected


def test_closest_ties_go_to_fewest_deletions():
    assert closest([10, 8, 6, 4], 7) == 1  # 8 and 6 are both 1 away: keep the longer text
    assert closest([10, 9, 7, 7, 5], 7) == 2
    assert closest([10, 9], 3) == 1  # the order ran out: the closest it can get


def test_kept_after_removes_the_first_k_positions():
    assert kept_after([3, 0, 2], 5, 0) == [0, 1, 2, 3, 4]
    assert kept_after([3, 0, 2], 5, 2) == [1, 2, 4]


def test_match_uses_student_counts_not_pruner_counts():
    # Student tokens per pruner position: deleting the cheap ones first barely shortens the text.
    weights = [1, 1, 1, 1, 6]
    order = [0, 1, 2, 3, 4]
    (m,) = match_lengths(order, 5, lambda kept: sum(weights[i] for i in kept), [0.5])
    assert (m.student_total, m.target) == (10, 5)
    # k=4 leaves 6 tokens (1 away); k=5 leaves 0; k=3 leaves 7.
    assert (m.deletions, m.kept, m.student_tokens) == (4, [4], 6)
    assert m.student_fraction == pytest.approx(0.6)


def test_match_checks_every_prefix_when_counts_are_not_monotone():
    counts_by_kept = {(0, 1, 2, 3): 8, (1, 2, 3): 9, (2, 3): 4, (3,): 2, (): 0}
    (m,) = match_lengths([0, 1, 2, 3], 4, lambda kept: counts_by_kept[tuple(kept)], [0.5])
    assert m.deletions == 2 and m.student_tokens == 4


def test_partial_order_stops_where_the_trace_stops():
    # A greedy trace pruned only to keep 0.75 has 1 deletion of 4; keep 0.25 gets as close as it can.
    (m75, m25) = match_lengths([2], 4, len, [0.75, 0.25])
    assert (m75.deletions, m75.student_tokens) == (1, 3)
    assert (m25.deletions, m25.kept, m25.student_tokens, m25.target) == (1, [0, 1, 3], 3, 1)


def test_each_prefix_is_counted_once():
    calls = []
    match_lengths([1, 0, 2], 3, lambda kept: calls.append(kept) or len(kept), [0.9, 0.5, 0.1])
    assert len(calls) == 4


@pytest.mark.parametrize("order", [[0, 0], [5], [-1]])
def test_bad_order_is_refused(order):
    with pytest.raises(ValueError, match="distinct positions"):
        match_lengths(order, 3, len, [0.5])
