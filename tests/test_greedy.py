"""The greedy loop driven by scripted fake scorers, so the expected order is known by construction."""

import math

import pytest

from chainprune.keep import deletions_for
from chainprune.pruning.greedy import ScoreError, best_candidate, greedy_prune


class ValueScorer:
    """Deleting token i costs cost[i] (independent of context): greedy must delete cheapest first."""

    def __init__(self, cost):
        self.cost = cost
        self.calls = 0

    def _value(self, remaining):
        return -sum(c for i, c in enumerate(self.cost) if i not in remaining)

    def objective(self, remaining):
        return self._value(remaining)

    def candidates(self, remaining, subset=None):
        self.calls += 1
        base = self._value(remaining)
        return base, [base - self.cost[i] for i in remaining]


class ContextScorer:
    """Costs that depend on what remains: deleting i is cheap only once i - 1 is gone."""

    def objective(self, remaining):
        return float(len(remaining))

    def candidates(self, remaining, subset=None):
        present = set(remaining)
        return 0.0, [10.0 if (i - 1) not in present else float(-i) for i in remaining]


def test_deletes_least_harmful_first():
    scorer = ValueScorer([5.0, 1.0, 3.0, 0.5, 4.0])
    result = greedy_prune(5, scorer, deletions=5)
    assert result.deletion_order == [3, 1, 2, 4, 0]
    assert result.objective_values == [0.0, -0.5, -1.5, -4.5, -8.5, -13.5]
    assert scorer.calls == 5


def test_exact_ties_go_to_smallest_position():
    result = greedy_prune(4, ValueScorer([2.0, 1.0, 2.0, 1.0]), deletions=4)
    assert result.deletion_order == [1, 3, 0, 2]
    assert best_candidate([0.0, 3.0, 3.0, 1.0]) == 1


def test_positions_are_original_indices_under_context_dependence():
    # Token 0 has no predecessor: deleting it scores 10 and goes first; then 1, whose predecessor is gone, ...
    result = greedy_prune(4, ContextScorer(), deletions=4)
    assert result.deletion_order == [0, 1, 2, 3]


@pytest.mark.parametrize(("n", "r"), [(10, 0.5), (7, 0.3), (100, 0.29), (3, 0.9)])
def test_keep_fraction_sets_number_of_deletions(n, r):
    deletions = deletions_for(n, r)
    result = greedy_prune(n, ValueScorer([float(i % 5) for i in range(n)]), deletions)
    assert len(result.deletion_order) == deletions == n - math.floor(n * r + 1e-9)
    assert len(result.objective_values) == deletions + 1


def test_no_deletions_still_reports_objective():
    scorer = ValueScorer([1.0, 2.0])
    result = greedy_prune(2, scorer, deletions=0)
    assert result.deletion_order == [] and result.objective_values == [0.0]
    assert scorer.calls == 0
    assert greedy_prune(0, ValueScorer([]), 0).objective_values == [0]


def test_nan_objective_is_an_error():
    class NanScorer(ValueScorer):
        def candidates(self, remaining, subset=None):
            return 0.0, [float("nan")] * len(remaining)

    with pytest.raises(ScoreError, match="NaN"):
        greedy_prune(3, NanScorer([1, 2, 3]), 1)


def test_too_many_deletions_is_rejected():
    with pytest.raises(ValueError):
        greedy_prune(2, ValueScorer([1, 2]), 3)


def test_equal_neighbouring_tokens_are_exact_ties():
    import torch

    from chainprune.pruning import tie_repeated_tokens

    scores = torch.tensor([1.0, 2.0, 2.0 + 1e-15, 2.0 - 1e-15, 0.5, 3.0])
    tied = tie_repeated_tokens([5, 7, 7, 7, 5, 7], scores)
    assert tied.tolist() == [1.0, 2.0, 2.0, 2.0, 0.5, 3.0]
    assert best_candidate(tied.tolist()) == 5


class CountingScorer(ValueScorer):
    def __init__(self, cost):
        super().__init__(cost)
        self.subsets = []
        self.objective_calls = 0

    def candidates(self, remaining, subset=None):
        self.subsets.append(None if subset is None else list(subset))
        base, scores = super().candidates(remaining)
        if subset is not None:
            scores = [s if k in subset else float("nan") for k, s in enumerate(scores)]
        return base, scores

    def objective(self, remaining):
        self.objective_calls += 1
        return super().objective(remaining)


def test_per_step_deletes_k_best_per_pass_and_computes_each_objective():
    from chainprune.pruning.greedy import Approximation

    cost = [5.0, 1.0, 3.0, 0.5, 4.0, 2.0]
    scorer = CountingScorer(cost)
    result = greedy_prune(6, scorer, 5, approximation=Approximation(per_step=2))
    # context-free costs: the K best of a pass are the next K of exact greedy
    assert result.deletion_order == [3, 1, 5, 2, 4]
    assert result.scoring_passes == 3 and scorer.calls == 3
    assert result.objective_values == [0.0, -0.5, -1.5, -3.5, -6.5, -10.5]
    assert scorer.objective_calls == 4  # two passes of 2 (each intermediate chain), then 1 single deletion


def test_screening_rescores_stale_best_and_deletion_neighbours():
    from chainprune.pruning.greedy import Approximation, screened_subset

    assert screened_subset([0, 1, 2, 4, 5, 7], {0: -1, 1: -5, 2: -2, 4: -9, 5: -3, 7: -8}, [3], 2) == [0, 2, 3]
    scorer = CountingScorer([5.0, 1.0, 3.0, 0.5, 4.0, 2.0, 6.0, 0.7])
    result = greedy_prune(8, scorer, 6, approximation=Approximation(screen=2, refresh=3))
    assert result.deletion_order == greedy_prune(8, ValueScorer(scorer.cost), 6).deletion_order
    assert scorer.subsets[0] is None and scorer.subsets[3] is None  # full scoring every 3 passes
    assert all(s is not None and len(s) <= 2 + 2 * 2 for s in scorer.subsets[1:3])


def test_approximation_is_described_exact_is_not():
    from chainprune.pruning.greedy import Approximation

    assert Approximation().describe() is None
    assert Approximation(per_step=4).describe() == {"per_step": 4}
    assert Approximation(screen=8, refresh=5).describe() == {"screen": 8, "refresh": 5}


class EstimatingScorer(CountingScorer):
    """Exact scores from context-free costs; estimates from another cost list (a deliberately poor signal)."""

    def __init__(self, cost, estimate_cost):
        super().__init__(cost)
        self.estimate_cost = estimate_cost
        self.lookaheads = []

    def estimates(self, remaining, lookahead, subset=None):
        self.lookaheads.append(lookahead)
        return [-self.estimate_cost[p] for p in remaining]


class WideningScorer(CountingScorer):
    """Exact scores from context-free costs; estimates from `guesses[window]`, the estimated cost at each
    window (the widest at most the window asked for), NaN outside the subset asked for."""

    def __init__(self, cost, guesses):
        super().__init__(cost)
        self.guesses = guesses
        self.estimated = []

    def estimates(self, remaining, lookahead, subset=None):
        self.estimated.append((lookahead, None if subset is None else list(subset)))
        guess = self.guesses[max(w for w in self.guesses if w <= lookahead)]
        return [-guess[p] if subset is None or k in subset else float("nan") for k, p in enumerate(remaining)]


def test_lookahead_rescores_exactly_the_best_estimates():
    from chainprune.pruning.greedy import Approximation

    cost = [5.0, 1.0, 3.0, 0.5, 4.0, 2.0, 6.0, 0.7]
    # estimates rank 6 and 0 (the worst in truth) best; screening 2 must then delete among them
    poor = [0.1, 9.0, 9.0, 9.0, 9.0, 9.0, 0.2, 9.0]
    scorer = EstimatingScorer(cost, poor)
    result = greedy_prune(8, scorer, 2, approximation=Approximation(screen=2, lookahead=3))
    # pass 1 screens positions 0 and 6 and deletes the better, 0; pass 2 screens 6 and (a tie at 9.0 going
    # to the smallest) 1, i.e. indices 5 and 0 of the remaining, and deletes 1
    assert result.deletion_order == [0, 1]
    assert scorer.lookaheads == [3, 3] and scorer.subsets == [[0, 6], [0, 5]]
    # a signal that agrees with the truth gives exact greedy with every pass screened
    scorer = EstimatingScorer(cost, cost)
    result = greedy_prune(8, scorer, 6, approximation=Approximation(screen=1, lookahead=3))
    assert result.deletion_order == greedy_prune(8, ValueScorer(cost), 6).deletion_order
    assert all(s is not None and len(s) == 1 for s in scorer.subsets)


def test_lookahead_needs_screen_and_is_described():
    from chainprune.pruning.greedy import Approximation

    with pytest.raises(ValueError, match="needs screen"):
        Approximation(lookahead=4)
    assert Approximation(screen=8, lookahead=4).describe() == {"screen": 8, "lookahead": 4}


def test_margin_widens_the_window_of_close_candidates_until_they_are_scored_exactly():
    from chainprune.pruning.greedy import Approximation

    # exact score of deleting p is -cost[p]; estimates mostly over-state a candidate, less as the window widens
    cost = [5.0, 1.0, 3.0, 0.5, 4.0, 2.0, 6.0, 0.7]
    at_1 = [4.0, 0.9, 0.2, 0.4, 0.3, 1.9, 5.0, 0.65]  # by estimate: 2, 4, 3, 7, 1, 5, 0, 6
    at_4 = [4.5, 1.0, 3.0, 0.5, 4.5, 2.0, 6.0, 0.7]
    scorer = WideningScorer(cost, {1: at_1, 4: at_4})
    result = greedy_prune(8, scorer, 1, approximation=Approximation(screen=1, lookahead=1, margin=1.0))
    # 2 re-scored (exact -3); within 1 nat of it by estimate: all but 6, whose window is widened to 4;
    # there 0 and 4 fall below -4 and drop out; widening again passes the chain's 8 tokens: the rest exactly
    assert scorer.estimated == [(1, None), (4, [0, 1, 3, 4, 5, 7])]
    assert scorer.subsets == [[2], [1, 3, 5, 7]]
    assert result.deletion_order == [3]
    # estimates that agree with the truth: the best estimate is re-scored alone
    scorer = WideningScorer(cost, {1: cost})
    greedy_prune(8, scorer, 1, approximation=Approximation(screen=1, lookahead=1, margin=0.1))
    assert scorer.subsets == [[3]] and scorer.estimated == [(1, None)]


def test_a_margin_per_window_applies_each_at_its_widening():
    from chainprune.pruning.greedy import Approximation

    cost = [5.0, 1.0, 3.0, 0.5, 4.0, 2.0, 6.0, 0.7]
    at_1 = [4.0, 0.9, 0.2, 0.4, 0.3, 1.9, 5.0, 0.65]
    at_4 = [4.5, 1.0, 3.0, 0.5, 4.5, 3.5, 6.0, 0.7]  # 5's estimate at window 4 under-states it (true cost 2)
    runs = {}
    for margin in (1.0, (1.0, 0.0)):
        scorer = WideningScorer(cost, {1: at_1, 4: at_4})
        result = greedy_prune(8, scorer, 1, approximation=Approximation(screen=1, lookahead=1, margin=margin))
        runs[margin] = scorer.subsets
        assert result.deletion_order == [3]
    # one margin for all: 5 (estimated -3.5 at window 4) stays within 1 nat of the best exact -3 and is scored;
    # 1 nat at window 1, then none: it drops out at window 4
    assert runs[1.0] == [[2], [1, 3, 5, 7]]
    assert runs[(1.0, 0.0)] == [[2], [1, 3, 7]]
    assert Approximation(screen=1, lookahead=1, margin=(8, 5, 2)).describe()["margin"] == [8.0, 5.0, 2.0]
    assert Approximation(screen=1, lookahead=1, margin=(5,)) == Approximation(screen=1, lookahead=1, margin=5.0)
    assert Approximation(screen=1, lookahead=1, margin=[5.0]).describe()["margin"] == 5.0
    with pytest.raises(ValueError, match="at least 0"):
        Approximation(screen=1, lookahead=1, margin=(3.0, -1.0))


def test_margin_rescores_the_last_passes_runners_up():
    from chainprune.pruning.greedy import Approximation

    cost = [5.0, 1.0, 3.0, 0.5, 4.0, 2.0, 6.0, 0.7]
    scorer = WideningScorer(cost, {1: [-c for c in cost]})  # ranks the truth backwards at every window
    result = greedy_prune(8, scorer, 2, approximation=Approximation(screen=1, lookahead=1, margin=0.0))
    # pass 1: the best estimate (6) first, then every other candidate stays close until scored exactly
    assert scorer.subsets[:2] == [[6], [0, 1, 2, 3, 4, 5, 7]]
    assert scorer.estimated[:2] == [(1, None), (4, [0, 1, 2, 3, 4, 5, 7])]
    # pass 2 opens with the best estimate (position 6) and pass 1's runners-up (7, 1): indices into the
    # remaining [0, 1, 2, 4, 5, 6, 7]
    assert scorer.subsets[2] == [1, 5, 6]
    assert result.deletion_order == [3, 7]
    assert Approximation(screen=4, lookahead=3, margin=2.0).describe() == {"screen": 4, "lookahead": 3, "margin": 2.0}
    with pytest.raises(ValueError, match="needs lookahead"):
        Approximation(screen=4, margin=2.0)
