"""Greedy pruning over words and sentences: every engine scores multi-token deletions exactly (float64, tiny
seeded models, against `naive` and against a plain forward), greedy deletes whole units, and keep fractions
still count tokens."""

import json

import pytest
import torch

from chainprune.chains import tokenize_chain
from chainprune.keep import kept_count
from chainprune.pipelines.prune import PruneConfig, run_prune
from chainprune.pruning import prune_chain
from chainprune.scoring import ENGINES, ScoreRequest, ScoringOptions, objective_start, reference_objective
from chainprune.types import Chain, Trace
from chainprune.units import unit_spans

from test_engines import CHAINS

UNIT_CHAINS = [c for c in CHAINS if c.id != "one"] + [
    Chain("equation", "How many?", "Natalia sold 48/2 = 24 clips in May. Then 48+24 = 72.", "The answer is 72."),
    Chain("lines", "How many?", "Natalia sold 48/2 = 24 clips in May.\nThen she sold 48+24 = 72.\nSo 72 in all.",
          "The answer is 72."),
]


def spans_of(pruner, chain, unit):
    ids = tokenize_chain(pruner.tokenizer, chain)
    return ids, unit_spans(ids.reasoning_texts, unit)


@pytest.mark.parametrize("unit", ["word", "sentence", "step"])
@pytest.mark.parametrize("objective", ["joint", "answer"])
@pytest.mark.parametrize("chain", UNIT_CHAINS, ids=lambda c: c.id)
def test_naive_unit_candidates_equal_a_plain_forward(tiny_pruner, chain, objective, unit):
    ids, spans = spans_of(tiny_pruner, chain, unit)
    _, scores = ENGINES["naive"](tiny_pruner.model, ScoreRequest(ids, objective, 64, spans=spans))
    n_prompt, m = len(ids.prompt_ids), len(ids.reasoning_ids)
    for k, (a, b) in enumerate(spans):
        sequence = ids.input_ids[: n_prompt + a] + ids.input_ids[n_prompt + b :]
        expected = reference_objective(tiny_pruner.model, sequence, objective_start(n_prompt, m - (b - a), objective))
        assert float(scores[k]) == pytest.approx(expected, rel=1e-10, abs=1e-10)


@pytest.mark.parametrize("engine", ["prefix", "packed"])
@pytest.mark.parametrize("unit", ["word", "sentence", "step"])
@pytest.mark.parametrize("objective", ["joint", "answer"])
@pytest.mark.parametrize("chain", UNIT_CHAINS, ids=lambda c: c.id)
def test_fast_engines_score_units_as_naive_does(tiny_pruner, chain, objective, unit, engine):
    ids, spans = spans_of(tiny_pruner, chain, unit)
    assert any(b - a > 1 for a, b in spans)  # the test is about multi-token deletions
    _, expected = ENGINES["naive"](tiny_pruner.model, ScoreRequest(ids, objective, 10**6, spans=spans))
    for dense_below in (0, 2**62) if engine == "packed" else (ScoringOptions.dense_below,):
        options = ScoringOptions(dense_below=dense_below)
        for budget in (1, 64, 10**6):
            _, got = ENGINES[engine](tiny_pruner.model, ScoreRequest(ids, objective, budget, spans=spans, options=options))
            torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
            subset = [0, len(spans) - 1]
            request = ScoreRequest(ids, objective, budget, positions=subset, spans=spans, options=options)
            _, part = ENGINES[engine](tiny_pruner.model, request)
            torch.testing.assert_close(part[subset], expected[subset], rtol=1e-10, atol=1e-10)


def unit_trace(pruner, chain, unit, engine, objective="joint", keep=(0.9, 0.7, 0.5)):
    return prune_chain(pruner, chain, keep=list(keep), objective=objective, engine=engine, unit=unit)


@pytest.mark.parametrize("unit", ["word", "sentence", "step"])
@pytest.mark.parametrize("objective", ["joint", "answer"])
@pytest.mark.parametrize("chain", UNIT_CHAINS, ids=lambda c: c.id)
def test_unit_prunes_agree_across_engines(tiny_pruner, chain, objective, unit):
    reference = unit_trace(tiny_pruner, chain, unit, "naive", objective)
    for engine in ("prefix", "packed"):
        trace = unit_trace(tiny_pruner, chain, unit, engine, objective)
        assert trace.deletion_order == reference.deletion_order, engine
        assert trace.objective_values == pytest.approx(reference.objective_values, abs=1e-9), engine
        assert {k: (p.text, p.num_tokens) for k, p in trace.pruned.items()} == {
            k: (p.text, p.num_tokens) for k, p in reference.pruned.items()
        }


@pytest.mark.parametrize("unit", ["word", "sentence", "step"])
def test_each_step_deletes_the_best_unit(tiny_pruner, unit):
    chain = UNIT_CHAINS[-1]
    trace = unit_trace(tiny_pruner, chain, unit, "packed")
    ids, spans = spans_of(tiny_pruner, chain, unit)
    assert trace.units == [list(s) for s in spans]
    remaining = list(range(len(spans)))
    order = iter(trace.deletion_order)
    for step, size in enumerate(trace.step_sizes(), start=1):
        tokens = [i for u in remaining for i in range(*spans[u])]
        current = tokenize_chain(tiny_pruner.tokenizer, chain)
        ids_now = type(current)(current.prompt_ids, [current.reasoning_ids[i] for i in tokens], current.answer_ids)
        local, at = [], 0
        for u in remaining:
            local.append((at, at + spans[u][1] - spans[u][0]))
            at += spans[u][1] - spans[u][0]
        _, scores = ENGINES["naive"](tiny_pruner.model, ScoreRequest(ids_now, "joint", 10**6, spans=local))
        best = max(range(len(remaining)), key=lambda k: (float(scores[k]), -k))  # exact ties: leftmost
        deleted = [next(order) for _ in range(size)]
        assert deleted == list(range(*spans[remaining[best]])), step
        assert trace.objective_values[step] == pytest.approx(float(scores[best]), abs=1e-9)
        assert {trace.tokens[i].deleted_step for i in deleted} == {step}
        remaining.pop(best)


@pytest.mark.parametrize("unit", ["word", "sentence", "step"])
def test_keep_fractions_count_tokens_and_stop_at_the_first_unit_state_below(tiny_pruner, unit):
    chain = UNIT_CHAINS[-1]
    trace = unit_trace(tiny_pruner, chain, unit, "packed", keep=(0.9, 0.7, 0.5))
    n = len(trace.reasoning_ids)
    sizes = trace.step_sizes()
    for r in (0.9, 0.7, 0.5):
        kept = trace.pruned[repr(r)].num_tokens
        assert kept <= kept_count(n, r)
        steps = next(s for s in range(len(sizes) + 1) if n - sum(sizes[:s]) == kept)
        assert steps == 0 or n - sum(sizes[: steps - 1]) > kept_count(n, r)  # one unit fewer keeps too many
        assert trace.kept_text(r) == "".join(t.text for t in trace.tokens if t.position in trace.kept_positions(r))
    assert len(trace.objective_values) == len(sizes) + 1


def test_units_of_one_token_reproduce_token_traces(tiny_pruner, monkeypatch):
    import chainprune.pruning.prune as pruning

    for chain in UNIT_CHAINS[:3]:
        token = prune_chain(tiny_pruner, chain, keep=[0.5], engine="packed")
        monkeypatch.setattr(pruning, "unit_spans", lambda texts, unit: [(i, i + 1) for i in range(len(texts))])
        word = prune_chain(tiny_pruner, chain, keep=[0.5], engine="packed", unit="word")
        monkeypatch.undo()
        assert word.deletion_order == token.deletion_order
        assert word.objective_values == token.objective_values
        assert word.token_forwards == token.token_forwards
        assert word.pruned == token.pruned
        assert [t.deleted_step for t in word.tokens] == [t.deleted_step for t in token.tokens]
        assert "unit" not in token.to_json() and word.to_json()["unit"] == "word"


def test_unit_traces_from_chains_pruned_together_equal_alone(tmp_path, tiny_pruner):
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"id": c.id, "question": c.question, "reasoning": c.reasoning, "answer": c.answer}) + "\n" for c in UNIT_CHAINS))
    alone, together = tmp_path / "alone.jsonl", tmp_path / "together.jsonl"
    run_prune(source, alone, PruneConfig(keep=[0.5], unit="word"), loader=lambda _: tiny_pruner)
    run_prune(source, together, PruneConfig(keep=[0.5], unit="word", batch_chains=3), loader=lambda _: tiny_pruner)
    read = lambda path: {r["id"]: r for r in map(json.loads, path.read_text().splitlines())}
    expected, got = read(alone), read(together)
    assert sorted(got) == sorted(c.id for c in UNIT_CHAINS)
    for key, trace in expected.items():
        assert trace["unit"] == "word" and got[key]["units"] == trace["units"]
        assert got[key]["deletion_order"] == trace["deletion_order"], key
        assert got[key]["objective_values"] == pytest.approx(trace["objective_values"], abs=1e-9)
        assert Trace.from_json(got[key]).step_sizes() == Trace.from_json(trace).step_sizes()


def test_unit_settings_are_checked(tmp_path):
    with pytest.raises(ValueError, match="unknown unit"):
        PruneConfig(unit="paragraph").validate()
    with pytest.raises(ValueError, match="single tokens only"):
        PruneConfig(unit="word", save_scores=True).validate()


def test_unit_prunes_refuse_approximate_modes_not_measured_with_units(tiny_pruner):
    from chainprune.pruning import Approximation

    chain = UNIT_CHAINS[-1]
    for approximation in (Approximation(per_step=2), Approximation(screen=2), Approximation(screen=2, lookahead=2)):
        with pytest.raises(ValueError, match="approximate mode measured"):
            prune_chain(tiny_pruner, chain, unit="word", approximation=approximation)
        with pytest.raises(ValueError, match="approximate mode measured"):
            PruneConfig(unit="word", per_step=approximation.per_step, screen=approximation.screen,
                        lookahead=approximation.lookahead).validate()
    fast = prune_chain(tiny_pruner, chain, keep=[0.5], unit="word",
                       approximation=Approximation(screen=1, lookahead=2, margin=1e9))
    exact = prune_chain(tiny_pruner, chain, keep=[0.5], unit="word")
    assert fast.mode == {"screen": 1, "lookahead": 2, "margin": 1e9}
    assert fast.deletion_order == exact.deletion_order  # an unbounded margin re-scores every close candidate


def test_steps_are_pruned_exactly_only(tiny_pruner):
    """No approximate mode's fidelity has been measured with steps: each is refused, saying so."""
    from chainprune.pruning import Approximation

    chain = UNIT_CHAINS[-1]
    assert len(spans_of(tiny_pruner, chain, "step")[1]) == 3  # one step per line
    for mode in (Approximation(screen=2, lookahead=3, margin=5.0), Approximation(per_step=2)):
        with pytest.raises(ValueError, match="with unit 'step' only exact greedy"):
            prune_chain(tiny_pruner, chain, keep=[0.5], unit="step", approximation=mode)
