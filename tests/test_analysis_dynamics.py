"""`--save-scores` sidecar and rank dynamics (Hit@|S|): constructed inputs with known answers, tiny models."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from chainprune.analysis.dynamics import chain_dynamics, hit_at_size, ranked_by_score
from chainprune.cli import app
from chainprune.data.scores import ScoreRecorder, decode_record, load_scores, scores_path
from chainprune.pipelines.analyze import run_dynamics
from chainprune.pipelines.prune import PruneConfig, run_prune
from chainprune.pruning import ChainScorer
from chainprune.chains import tokenize_chain
from chainprune.types import Chain


def test_hit_at_size_known_answers():
    assert hit_at_size([5, 3, 1, 0], {3, 5}) == 1.0
    assert hit_at_size([5, 3, 1, 0], {1, 0}) == 0.0
    assert hit_at_size([5, 3, 1, 0], {5, 0, 7}) == pytest.approx(1 / 3)
    with pytest.raises(ValueError):
        hit_at_size([1], set())


def test_ranked_by_score_ties_and_nan():
    assert ranked_by_score([2, 4, 6, 8], [1.0, 3.0, float("nan"), 3.0]) == [4, 8, 2, 6]


def test_chain_dynamics_constructed():
    # n = 4; greedy deletes 2, then 0, then 3. keep 1.0 -> 0.5 deletes {2, 0}; 0.5 -> 0.25 deletes {3}.
    order = [2, 0, 3]
    passes = [
        (0, [0.5, 0.1, 0.9, 0.8]),  # frozen ranking: 2, 3, 0, 1
        (1, [0.7, 0.1, 0.2]),  # positions 0, 1, 3 -> 0 first
        (2, [0.1, 0.6]),  # positions 1, 3 -> 3 first
    ]
    t = chain_dynamics(4, order, passes, [1.0, 0.5, 0.25])
    assert [(x.keep, x.next_keep, x.pruned, x.remaining) for x in t] == [(1.0, 0.5, 2, 4), (0.5, 0.25, 1, 2)]
    # 1.0 -> 0.5: dynamic (= frozen here) top-2 = {2, 3}; S = {2, 0}: 1/2
    assert (t[0].dynamic, t[0].frozen, t[0].random) == (0.5, 0.5, 0.5)
    # 0.5 -> 0.25: remaining {1, 3}; dynamic top-1 = 3 (hit); frozen scores 1: 0.1, 3: 0.8 -> 3 too
    assert (t[1].dynamic, t[1].frozen, t[1].random) == (1.0, 1.0, 0.5)
    # frozen differs from dynamic when the early ranking goes stale
    t2 = chain_dynamics(4, [2, 1, 0], [(0, [0.5, 0.1, 0.9, 0.8]), (1, [0.1, 0.2, 0.3]), (2, [0.9, 0.1])], [0.5, 0.25])
    assert (t2[0].dynamic, t2[0].frozen) == (1.0, 0.0)  # S = {0}; dynamic says 0, frozen says 3
    with pytest.raises(ValueError, match="first pass"):
        chain_dynamics(4, order, passes[1:], [1.0, 0.5])


def test_sidecar_roundtrip():
    rec = ScoreRecorder()
    rec.observe([0, 1, 2], [-1.5, float("nan"), -2.25])
    rec.observe([0, 2], [-3.0, -4.0])
    record = json.loads(json.dumps(rec.to_json("x", 3)))
    n, passes = decode_record(record)
    assert n == 3 and [p.deleted for p in passes] == [0, 1]
    np.testing.assert_array_equal(passes[0].scores, np.array([-1.5, np.nan, -2.25], dtype=np.float32))
    assert passes[1].remaining([1], 3) == [0, 2]
    record["passes"][1]["deleted"] = 0
    with pytest.raises(ValueError, match="2 scores, expected 3"):
        decode_record(record)


CHAINS = [
    {"id": "a", "question": "How many clips?", "reasoning": "Natalia sold 48/2 = 24 clips in May.", "answer": "The answer is 24."},
    {"id": "b", "question": "Pay?", "reasoning": "Weng earns 12/60 = $0.2 per minute.", "answer": "The answer is 10."},
]


def test_save_scores_through_prune_and_dynamics(tmp_path, tiny_pruner):
    src = tmp_path / "chains.jsonl"
    src.write_text("".join(json.dumps(c) + "\n" for c in CHAINS))
    out = tmp_path / "traces.jsonl"
    config = PruneConfig(keep=[0.8, 0.5, 0.3], dtype="float64", save_scores=True)
    run_prune(src, out, config, loader=lambda c: tiny_pruner)
    traces = [json.loads(l) for l in out.read_text().splitlines()]
    saved, errors = load_scores(scores_path(out))
    assert not errors and set(saved) == {"a", "b"}
    for trace in traces:
        n, passes = saved[trace["id"]]
        assert n == len(trace["reasoning_ids"]) and [p.deleted for p in passes] == list(range(len(trace["deletion_order"])))
        for p in passes:  # exact greedy deletes the best candidate of every pass
            remaining = p.remaining(trace["deletion_order"], n)
            assert ranked_by_score(remaining, p.scores)[0] == trace["deletion_order"][p.deleted]
            assert float(np.nanmax(p.scores)) == pytest.approx(trace["objective_values"][p.deleted + 1], abs=1e-4)
        # the first pass is the scorer's own candidate scores of the unpruned chain
        chain = Chain(**next(c for c in CHAINS if c["id"] == trace["id"]))
        scorer = ChainScorer(tiny_pruner.model, tokenize_chain(tiny_pruner.tokenizer, chain), "joint", "prefix", 8192)
        _, expected = scorer.candidates(list(range(n)))
        np.testing.assert_allclose(passes[0].scores, expected.numpy().astype(np.float32), rtol=1e-6)
    # traces are unchanged by --save-scores
    plain = tmp_path / "plain.jsonl"
    run_prune(src, plain, PruneConfig(keep=[0.8, 0.5, 0.3], dtype="float64"), loader=lambda c: tiny_pruner)
    assert plain.read_text() == out.read_text() and not scores_path(plain).exists()

    result = run_dynamics(out, tmp_path / "dyn")
    assert result.chains == 2 and {p.suffix for p in result.files} == {".csv", ".png", ".svg"}
    first = result.rows[0]
    assert (first["keep"], first["next_keep"]) == (1.0, 0.9)
    assert all(0.0 <= row["dynamic"] <= 1.0 and row["dynamic"] >= row["random"] * 0 for row in result.rows)
    cli = CliRunner().invoke(app, ["analyze", "dynamics", str(out), "--out", str(tmp_path / "cli"), "-k", "1.0", "-k", "0.5", "-k", "0.3"])
    assert cli.exit_code == 0, cli.output
    csv_rows = (tmp_path / "cli.csv").read_text().splitlines()
    assert csv_rows[0] == "keep,next_keep,chains,mean_pruned,dynamic,frozen@1.0,random" and len(csv_rows) == 3
    # 1.0 -> 0.5: the dynamic ranking's first pick is always right
    missing = CliRunner().invoke(app, ["analyze", "dynamics", str(plain), "--out", str(tmp_path / "x")])
    assert missing.exit_code == 2 and "--save-scores" in missing.output


def test_dynamics_scores_the_keep_fractions_with_the_pruner(tmp_path, tiny_pruner):
    from chainprune.keep import deletions_for
    from chainprune.pipelines.analyze import dynamics_scores_path

    src = tmp_path / "chains.jsonl"
    src.write_text("".join(json.dumps(c) + "\n" for c in CHAINS))
    saved, plain = tmp_path / "saved.jsonl", tmp_path / "plain.jsonl"
    run_prune(src, saved, PruneConfig(keep=[0.5, 0.3], dtype="float64", save_scores=True), loader=lambda c: tiny_pruner)
    run_prune(src, plain, PruneConfig(keep=[0.5, 0.3], dtype="float64"), loader=lambda c: tiny_pruner)
    grid = [1.0, 0.8, 0.5, 0.3]
    reference = run_dynamics(saved, tmp_path / "ref", fractions=grid)
    # an exact trace with no sidecar: one exact pass at each keep fraction's state gives the same Hit@|S|
    load = lambda name: tiny_pruner  # noqa: E731
    scored = run_dynamics(plain, tmp_path / "own", fractions=grid, pruner="tiny-llama", loader=load)
    assert scored.chains == reference.chains == 2 and scored.rows == reference.rows
    own, _ = load_scores(dynamics_scores_path(tmp_path / "own"))
    for line in plain.read_text().splitlines():
        trace = json.loads(line)
        n = len(trace["reasoning_ids"])
        assert [p.deleted for p in own[trace["id"]][1]] == sorted({0} | {deletions_for(n, r) for r in grid})
    # a re-run reads the passes it scored instead of scoring again (this pruner has no model to run)
    def no_loading(name):
        raise AssertionError(f"{name} loaded with nothing to score")

    again = run_dynamics(plain, tmp_path / "own", fractions=grid, pruner="tiny-llama", loader=no_loading)
    assert again.rows == reference.rows
    # another model's rankings are not the pruner's: refused by record, before loading that model
    with pytest.raises(ValueError, match="pruned by tiny-llama, not by other"):
        run_dynamics(plain, tmp_path / "other", fractions=grid, pruner="other", loader=no_loading)
    # a trace of an approximate mode (no scores to save) is analysed the same way
    fast = tmp_path / "fast.jsonl"
    run_prune(src, fast, PruneConfig(keep=[0.5, 0.3], dtype="float64", screen=1, lookahead=2, margin=1.0),
              loader=lambda c: tiny_pruner)
    assert run_dynamics(fast, tmp_path / "fast", fractions=grid, pruner="tiny-llama", loader=load).chains == 2


def test_cli_dynamics_with_the_pruner(tmp_path, tiny_model_dir):
    src = tmp_path / "chains.jsonl"
    src.write_text("".join(json.dumps(c) + "\n" for c in CHAINS))
    traces = tmp_path / "traces.jsonl"
    model = ["--model", str(tiny_model_dir), "--dtype", "float64", "--device", "cpu"]
    assert CliRunner().invoke(app, ["prune", str(src), "--out", str(traces), "-k", "0.5", *model]).exit_code == 0
    args = ["analyze", "dynamics", str(traces), "--out", str(tmp_path / "d"), "-k", "1.0", "-k", "0.5"]
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 2 and "--pruner" in refused.output
    done = CliRunner().invoke(app, args + ["--pruner", *model[1:]])
    assert done.exit_code == 0, done.output
    assert (tmp_path / "d.csv").exists() and (tmp_path / "d.scores.jsonl").exists()


def test_save_scores_resume_keeps_one_record_per_id(tmp_path, tiny_pruner):
    src = tmp_path / "chains.jsonl"
    src.write_text(json.dumps(CHAINS[0]) + "\n")
    out = tmp_path / "traces.jsonl"
    config = PruneConfig(keep=[0.5], dtype="float64", save_scores=True)
    run_prune(src, out, config, loader=lambda c: tiny_pruner)
    src.write_text("".join(json.dumps(c) + "\n" for c in CHAINS))
    with scores_path(out).open("a") as f:
        f.write('{"id": "b", "n": 3, "pas')  # a crash mid-write
    summary = run_prune(src, out, config, resume=True, loader=lambda c: tiny_pruner)
    assert summary.done == 1 and summary.skipped == 1
    saved, errors = load_scores(scores_path(out))
    assert not errors and set(saved) == {"a", "b"}
