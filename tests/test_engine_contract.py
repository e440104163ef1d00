"""The engine contract: an engine states what it can do; the scorer and the prune pipeline ask that, never its name."""

import dataclasses

import pytest

from chainprune.pipelines.prune import PruneConfig
from chainprune.pruning import Approximation, ChainScorer, prune_chain
from chainprune.scoring import ENGINES, Engine, default_estimator, engines_that, get_engine
from chainprune.types import Chain

CHAIN = Chain("c", "How many clips?", "Natalia sold 48/2 = 24 clips in May, 72 in all.", "The answer is 72.")


def test_engines_declare_their_capabilities():
    assert {name: (e.reuses_forward, e.keeps_suffixes, e.runs_packs, e.estimates) for name, e in ENGINES.items()} == {
        "prefix": (True, False, False, False),
        "packed": (True, True, True, True),
        "naive": (False, False, False, False),
    }
    assert all(name == engine.name for name, engine in ENGINES.items())
    assert engines_that("runs_packs") == ["packed"]
    assert default_estimator(ENGINES["prefix"]) is ENGINES["packed"]  # estimates come from an engine that gives them
    with pytest.raises(ValueError, match="choose one of prefix, packed, naive"):
        get_engine("nope")
    with pytest.raises(ValueError, match="suffixes"):
        Engine("bad", ENGINES["naive"].score, keeps_suffixes=True)


def test_an_engine_registered_under_another_name_prunes_as_the_one_it_copies(tiny_pruner, monkeypatch):
    """Nothing outside the registry branches on an engine's name: a copy of `packed` under a new name keeps
    suffixes, builds on its best continuation, estimates, and runs packs of several chains."""
    copy = dataclasses.replace(ENGINES["packed"], name="copy")
    monkeypatch.setitem(ENGINES, "copy", copy)
    mode = Approximation(screen=2, lookahead=2, margin=1.0)
    for approximation in (Approximation(), mode):
        got = prune_chain(tiny_pruner, CHAIN, keep=[0.4], engine="copy", approximation=approximation)
        expected = prune_chain(tiny_pruner, CHAIN, keep=[0.4], engine="packed", approximation=approximation)
        assert got.deletion_order == expected.deletion_order
        assert got.objective_values == expected.objective_values
        assert got.token_forwards == expected.token_forwards  # the same work: same reuse of forwards and suffixes
        assert got.engine == "copy"
    PruneConfig(engine="copy", batch_chains=2).validate()
    with pytest.raises(ValueError, match="needs --engine packed or copy \\(got prefix\\)"):
        PruneConfig(engine="prefix", batch_chains=2).validate()


def test_an_engine_is_given_only_what_it_takes(tiny_pruner):
    """The naive reference takes nothing computed before; the scorer gives an engine that does not reuse the
    chain's forward none, and estimates through its estimator."""
    from chainprune.chains import tokenize_chain

    ids = tokenize_chain(tiny_pruner.tokenizer, CHAIN)
    scorer = ChainScorer(tiny_pruner.model, ids, "joint", "naive", 64)
    assert scorer.estimator is ENGINES["packed"]
    remaining = list(range(len(ids.reasoning_ids)))
    base, scores = scorer.candidates(remaining)
    estimates = scorer.estimates(remaining, lookahead=len(ids.input_ids))  # a window spanning the chain: exact
    assert estimates.tolist() == pytest.approx(scores.tolist(), rel=1e-10, abs=1e-10)
    assert scorer.cache.current is not None  # the estimates' forward (the estimator reuses it)
    assert scorer.cache.best.kept is None  # naive offered no continuation


def test_a_pass_out_of_memory_halves_the_batch_and_retries(tiny_pruner, monkeypatch):
    """On a GPU an out-of-memory error in a pass halves `max_batch_tokens` and runs the pass again: the same
    deletions and objectives as a run that never ran out (the error is injected above a bound)."""
    import torch

    real = ENGINES["packed"]
    calls = []

    def tight(model, request):
        calls.append(request.max_batch_tokens)
        if request.max_batch_tokens > 100:
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return real.score(model, request)

    monkeypatch.setitem(ENGINES, "tight", dataclasses.replace(real, name="tight", score=tight))
    got = prune_chain(tiny_pruner, CHAIN, keep=[0.5], engine="tight", max_batch_tokens=1000)
    expected = prune_chain(tiny_pruner, CHAIN, keep=[0.5], engine="packed", max_batch_tokens=1000)
    assert got.deletion_order == expected.deletion_order
    assert got.objective_values == pytest.approx(expected.objective_values, rel=1e-12)
    assert calls[:5] == [1000, 500, 250, 125, 62] and set(calls[5:]) == {62}  # halved once, kept for the chain

    def never(model, request):
        raise torch.OutOfMemoryError("CUDA out of memory (injected)")

    monkeypatch.setitem(ENGINES, "never", dataclasses.replace(real, name="never", score=never))
    with pytest.raises(torch.OutOfMemoryError):
        prune_chain(tiny_pruner, CHAIN, keep=[0.5], engine="never", max_batch_tokens=8)
