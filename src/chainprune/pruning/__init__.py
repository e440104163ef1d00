"""Greedy pruning of one chain, by job: `scorer` (scoring a chain's candidates, `ChainScorer`), `greedy` (the
algorithm, pure, against a `Scorer`), `prune` (`prune_chain`: tokenize, score, run, trace), `trace`
(`build_trace`). This module only re-exports them."""

from chainprune.chains import ChainError
from chainprune.pruning.greedy import EXACT, Approximation, GreedyResult, ScoreError, best_candidate, greedy_prune
from chainprune.pruning.prune import check_unit_mode, prune_chain
from chainprune.pruning.scorer import ChainScorer, tie_repeated_tokens
from chainprune.pruning.trace import build_trace
from chainprune.scoring.engine import ScoringOptions

__all__ = [
    "EXACT",
    "Approximation",
    "ChainError",
    "ChainScorer",
    "GreedyResult",
    "ScoreError",
    "ScoringOptions",
    "best_candidate",
    "build_trace",
    "check_unit_mode",
    "greedy_prune",
    "prune_chain",
    "tie_repeated_tokens",
]
