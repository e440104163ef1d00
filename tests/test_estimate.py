"""`prune --estimate`: the token-forwards of exact greedy before a run, held to measured prunes (tiny seeded
models: the counts depend on lengths and on where greedy deletes, not on the weights' values)."""

from __future__ import annotations

import json

import pytest
from test_engines import gsm8k_chains
from typer.testing import CliRunner

from chainprune.chains import tokenize_chain
from chainprune.cli import app
from chainprune.pruning import prune_chain
from chainprune.pruning.estimate import estimate_prune
from chainprune.units import unit_spans

CHAINS = gsm8k_chains(3, 200)


@pytest.mark.parametrize("objective", ["joint", "answer"])
@pytest.mark.parametrize("unit", ["token", "word", "sentence"])
def test_the_estimate_brackets_every_measured_token_prune_and_is_close_in_all(tiny_pruner, unit, objective):
    measured, expected = 0, 0
    for engine in ("naive", "prefix", "packed"):
        for chain in CHAINS:
            ids = tokenize_chain(tiny_pruner.tokenizer, chain)
            units = unit_spans(ids.reasoning_texts, unit)
            trace = prune_chain(tiny_pruner, chain, keep=[0.5], engine=engine, unit=unit, objective=objective)
            estimate = estimate_prune(len(ids.prompt_ids), len(ids.answer_ids), units, 0.5, engine, objective)
            if unit == "token":  # for larger units which ones greedy deletes matters too: no bound
                assert estimate.low <= trace.token_forwards <= estimate.high, (engine, chain.id)
            if engine == "naive" and unit == "token":  # the work does not depend on where greedy deletes
                assert estimate.token_forwards == trace.token_forwards
            measured += trace.token_forwards
            expected += estimate.token_forwards
    assert abs(expected / measured - 1) < 0.25


def test_estimate_prints_the_cost_and_prunes_nothing(tmp_path, tiny_model_dir):
    source = tmp_path / "in.jsonl"
    records = [{"id": c.id, "question": c.question, "reasoning": c.reasoning, "answer": c.answer} for c in CHAINS[:2]]
    source.write_text("".join(json.dumps(r) + "\n" for r in records) + '{"id": "bad", "question": "q"}\n')
    out = tmp_path / "traces.jsonl"
    result = CliRunner().invoke(app, ["prune", str(source), "--out", str(out), "--model", str(tiny_model_dir),
                                      "--dtype", "float32", "--estimate", "-k", "0.5"])
    assert result.exit_code == 1  # the bad record
    assert "estimate of exact greedy" in result.output and "token-forwards/s, measured now" in result.output
    assert CHAINS[0].id in result.output and "line 3" in result.output and not out.exists()


def test_a_prune_run_says_its_estimate_when_it_starts(tmp_path, tiny_model_dir):
    source = tmp_path / "in.jsonl"
    chain = CHAINS[0]
    source.write_text(json.dumps({"id": chain.id, "question": chain.question, "reasoning": chain.reasoning,
                                  "answer": chain.answer}) + "\n")
    result = CliRunner().invoke(app, ["prune", str(source), "--out", str(tmp_path / "t.jsonl"), "--model",
                                      str(tiny_model_dir), "--dtype", "float64", "-k", "0.5", "--engine", "naive"])
    assert result.exit_code == 0, result.output
    trace = json.loads((tmp_path / "t.jsonl").read_text())
    said = next(line for line in result.output.splitlines() if line.startswith("estimate: "))
    assert f"estimate: {trace['token_forwards']:,} token-forwards" in said  # naive on tokens: exact


def test_a_long_inputs_start_of_run_estimate_is_scaled_from_its_first_chains(tiny_pruner, monkeypatch):
    import chainprune.pipelines.prune as prune
    from chainprune.pipelines.prune import PruneConfig, estimated_work

    config = PruneConfig(engine="naive", keep=[0.5])
    one = estimated_work(tiny_pruner, CHAINS[:1], config)
    monkeypatch.setattr(prune, "ESTIMATE_SAMPLE", 1)  # only the first chain is tokenized
    assert estimated_work(tiny_pruner, [CHAINS[0]] * 5, config) == 5 * one
