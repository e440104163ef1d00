"""Baseline and match pipelines: matched student lengths, one treatment for every method, resume, bad input."""

from __future__ import annotations

import dataclasses
import json

import pytest
from conftest import CORPUS, gsm8k_records
from typer.testing import CliRunner

from chainprune.chains import tokenize_chain
from chainprune.data.jsonl import read_traces
from chainprune.pipelines.baselines import (
    BaselineConfig,
    MatchConfig,
    Resources,
    length_table,
    matched_record,
    run_baseline,
    run_match,
)
from chainprune.pruning import prune_chain
from chainprune.ranking import Ranking
from chainprune.types import Chain

KEEPS = [0.9, 0.7, 0.5]
# Short enough for a quick greedy prune with the tiny model.
SHORT = Chain("short", "How many clips in April and May?", "Natalia sold 48/2 = 24 clips in May. So 48+24 = 72 clips.",
              "The answer is 72.")


def make_student_tokenizer():
    """A tokenizer unlike the pruner's: whitespace pre-tokenization, WordPiece, its own vocabulary."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(CORPUS * 3, trainers.WordPieceTrainer(vocab_size=90, special_tokens=["[UNK]", "[PAD]"]))
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]")


def student_len(student, text):
    return len(student(text, add_special_tokens=False)["input_ids"])


@pytest.fixture(scope="module")
def student():
    return make_student_tokenizer()


def gsm8k_chains(n):
    chains = []
    for i, r in enumerate(gsm8k_records(n)):
        solution, answer = r["answer"].split("####")
        chains.append({"id": f"gsm{i}", "question": r["question"], "reasoning": solution.strip(),
                       "answer": f"The answer is {answer.strip()}."})
    return chains


@pytest.fixture(scope="module")
def chains_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("chains") / "chains.jsonl"
    path.write_text("".join(json.dumps(c) + "\n" for c in gsm8k_chains(3)))
    return path


def tiny_surrogate(tiny_pruner):
    """A surrogate trained (briefly) on the tiny model's attention features of one chain."""
    import torch

    from chainprune.analysis.surrogate import attention_features, train_surrogate
    from chainprune.ranking import SurrogateModel

    ids = tokenize_chain(tiny_pruner.tokenizer, SHORT)
    n = len(ids.reasoning_ids)
    features = attention_features(tiny_pruner.model, ids.input_ids, len(ids.prompt_ids), n)
    trained = train_surrogate([features], [torch.linspace(0, 1, n)], hidden=8, epochs=20)
    return SurrogateModel(model=tiny_pruner.model, surrogate=trained, name="s.pt")


def resources_for(method, tiny_pruner, student):
    ranker_model = tiny_pruner.model
    if method == "tokenskip":
        from test_ranking import make_classifier

        ranker_model = make_classifier()
    if method == "surrogate":
        ranker_model = tiny_surrogate(tiny_pruner)
    return Resources(pruner=tiny_pruner, student=student, ranker_model=ranker_model)


@pytest.mark.parametrize("method", ["uniform", "surprisal", "h2o", "tokenskip", "surrogate"])
def test_baseline_records_meet_student_targets(method, chains_file, tiny_pruner, student, tmp_path):
    out = tmp_path / f"{method}.jsonl"
    config = BaselineConfig(method=method, student_tokenizer="tiny-wordpiece", model="tiny-llama", keep=KEEPS,
                            surrogate="s.pt" if method == "surrogate" else None)
    summary = run_baseline(chains_file, out, config, resources=resources_for(method, tiny_pruner, student))
    assert summary.done == 3 and not summary.failures
    for record in read_traces(out):
        assert record["method"] == method
        n = len(record["reasoning_ids"])
        assert sorted(record["deletion_order"]) == list(range(n))
        total = record["student_tokens"]
        full_text = tiny_pruner.tokenizer.decode(record["reasoning_ids"])
        assert total == len(student(full_text, add_special_tokens=False)["input_ids"]) > 20
        for key, pruned in record["pruned"].items():
            # What is written is what was counted: re-tokenize the written text.
            assert pruned["student_tokens"] == len(student(pruned["text"], add_special_tokens=False)["input_ids"])
            assert pruned["target_student_tokens"] == round(float(key) * total + 1e-9)
            assert pruned["num_tokens"] == n - pruned["deletions"]
            kept = [t["position"] for t in record["tokens"] if not t["deleted_step"] or t["deleted_step"] > pruned["deletions"]]
            assert tiny_pruner.tokenizer.decode([record["reasoning_ids"][i] for i in kept]) == pruned["text"]
            # No other prefix of the deletion order comes closer to the target (brute force over all of them).
            gaps = [abs(student_len(student, tiny_pruner.tokenizer.decode([record["reasoning_ids"][i] for i in range(n)
                                                                             if i not in set(record["deletion_order"][:k])]))
                        - pruned["target_student_tokens"]) for k in range(n + 1)]
            assert abs(pruned["student_tokens"] - pruned["target_student_tokens"]) == min(gaps)
            assert gaps.index(min(gaps)) == pruned["deletions"]  # ties to the fewest deletions


def test_surrogate_ranker_deletes_by_the_surrogates_predictions(tiny_pruner):
    from chainprune.analysis.surrogate import attention_features
    from chainprune.ranking import get_ranker

    bundle = tiny_surrogate(tiny_pruner)
    ids = tokenize_chain(tiny_pruner.tokenizer, SHORT)
    ranking = get_ranker("surrogate")(ids, bundle)
    predicted = bundle.surrogate.predict(attention_features(tiny_pruner.model, ids.input_ids, len(ids.prompt_ids),
                                                            len(ids.reasoning_ids))).tolist()
    # highest predicted post-deletion objective first; ties to the smallest position
    assert ranking.deletion_order == sorted(range(len(predicted)), key=lambda i: (-predicted[i], i))
    bundle.surrogate.info["features"] += 1
    with pytest.raises(ValueError, match="attention features"):
        get_ranker("surrogate")(ids, bundle)


def test_surrogate_method_and_option_go_together():
    with pytest.raises(ValueError, match="needs --surrogate"):
        BaselineConfig(method="surrogate", student_tokenizer="x").validate()
    with pytest.raises(ValueError, match="needs --surrogate"):
        BaselineConfig(method="uniform", student_tokenizer="x", surrogate="s.pt").validate()


def test_greedy_through_match_gets_the_same_treatment(tiny_pruner, student, tmp_path):
    chain = SHORT
    trace = prune_chain(tiny_pruner, chain, keep=[0.4], engine="prefix")
    traces = tmp_path / "traces.jsonl"
    traces.write_text(json.dumps(trace.to_json()) + "\n")
    out = tmp_path / "greedy.jsonl"
    summary = run_match(traces, out, MatchConfig(student_tokenizer="tiny-wordpiece", keep=KEEPS),
                        tokenizers={"tiny-llama": tiny_pruner.tokenizer, "tiny-wordpiece": student}.__getitem__)
    assert summary.done == 1 and not summary.failures
    (record,) = read_traces(out)
    ids = tokenize_chain(tiny_pruner.tokenizer, chain)
    direct = matched_record("greedy", chain.id, ids, Ranking(trace.deletion_order), tiny_pruner.tokenizer, student, KEEPS)
    assert record["pruned"] == direct["pruned"]
    assert record["tokens"] == direct["tokens"] and record["method"] == "greedy"
    assert record["objective"] == "joint" and "mode" not in record
    # The trace stops at keep 0.4 of the pruner's tokens: whether each cut ran out is recorded.
    for key, pruned in record["pruned"].items():
        ran_out = pruned["deletions"] == len(trace.deletion_order) and pruned["student_tokens"] > pruned["target_student_tokens"]
        assert pruned["order_exhausted"] is ran_out
    (low,) = match_lengths_record(tiny_pruner, student, trace, [0.1])
    assert low["order_exhausted"] is True and low["deletions"] == len(trace.deletion_order)


def match_lengths_record(tiny_pruner, student, trace, keep):
    ids = tokenize_chain(tiny_pruner.tokenizer, SHORT)
    record = matched_record("greedy", trace.id, ids, Ranking(trace.deletion_order), tiny_pruner.tokenizer, student, keep)
    return list(record["pruned"].values())


def test_bad_records_are_reported_and_the_rest_complete(tiny_pruner, student, tmp_path):
    good = gsm8k_chains(2)
    path = tmp_path / "chains.jsonl"
    path.write_text(json.dumps(good[0]) + "\n{not json\n" + json.dumps({"id": "x", "question": "q"}) + "\n"
                    + json.dumps(good[1]) + "\n")
    out = tmp_path / "out.jsonl"
    config = BaselineConfig(method="surprisal", student_tokenizer="s", keep=[0.5])
    summary = run_baseline(path, out, config, resources=resources_for("surprisal", tiny_pruner, student))
    assert summary.done == 2 and [f.line for f in summary.failures] == [2, 3]
    assert "missing field" in str(summary.failures[1]) and "'x'" in str(summary.failures[1])
    assert (tmp_path / "out.jsonl.errors.jsonl").exists()
    # Resume: nothing is redone; a different method on the same file is refused.
    again = run_baseline(path, out, config, resume=True, resources=resources_for("surprisal", tiny_pruner, student))
    assert (again.done, again.skipped) == (0, 2)
    with pytest.raises(ValueError, match="other settings"):
        run_baseline(path, out, BaselineConfig(method="h2o", student_tokenizer="s", keep=[0.5]), resume=True,
                     resources=resources_for("h2o", tiny_pruner, student))
    with pytest.raises(ValueError, match="already exists"):
        run_baseline(path, out, config, resources=resources_for("surprisal", tiny_pruner, student))


def test_match_reports_broken_and_duplicate_traces(tiny_pruner, student, tmp_path):
    trace = prune_chain(tiny_pruner, SHORT, keep=[0.5])
    traces = tmp_path / "t.jsonl"
    good = json.dumps(trace.to_json())
    traces.write_text(json.dumps({"id": "a", "pruner": "tiny-llama"}) + "\n" + good + "\n" + good + "\n")
    summary = run_match(traces, tmp_path / "o.jsonl", MatchConfig(student_tokenizer="s"),
                        tokenizers=lambda name: tiny_pruner.tokenizer if name == "tiny-llama" else student)
    assert summary.done == 1
    assert "line 1, id 'a'" in str(summary.failures[0]) and "missing field" in str(summary.failures[0])
    assert "line 3" in str(summary.failures[1]) and "duplicate id (first seen on line 2)" in str(summary.failures[1])
    (record,) = read_traces(tmp_path / "o.jsonl")
    assert list(record["pruned"]) == ["0.5"]  # default: the keep fractions the trace was pruned to


def test_load_tokenizer_from_a_file_and_a_clear_error(student, tmp_path):
    from chainprune.models.auxiliary import load_tokenizer

    student.save_pretrained(tmp_path / "tok")
    loaded = load_tokenizer(str(tmp_path / "tok" / "tokenizer.json"))
    assert loaded("48 clips")["input_ids"] == student("48 clips")["input_ids"]
    with pytest.raises(ValueError, match="cannot load a tokenizer from"):
        load_tokenizer(str(tmp_path / "no-such-folder"))


def test_cli_uniform_match_and_lengths(tiny_pruner, student, chains_file, tmp_path):
    from chainprune.cli import app

    pruner_dir, student_dir = tmp_path / "pruner-tok", tmp_path / "student-tok"
    tiny_pruner.tokenizer.save_pretrained(pruner_dir)
    student.save_pretrained(student_dir)
    runner = CliRunner()
    uni = tmp_path / "uniform.jsonl"
    result = runner.invoke(app, ["baseline", "uniform", str(chains_file), "--model", str(pruner_dir), "--student-tokenizer",
                                 str(student_dir), "--keep", "0.7", "--keep", "0.5", "--out", str(uni)])
    assert result.exit_code == 0, result.output
    trace = prune_chain(tiny_pruner, SHORT, keep=[0.4])
    traces = tmp_path / "traces.jsonl"
    traces.write_text(json.dumps(trace.to_json()) + "\n")
    greedy = tmp_path / "greedy.jsonl"
    result = runner.invoke(app, ["match", str(traces), "--student-tokenizer", str(student_dir), "--pruner-tokenizer",
                                 str(pruner_dir), "--keep", "0.7", "--keep", "0.5", "--out", str(greedy)])
    assert result.exit_code == 0, result.output
    rows = length_table([uni, greedy])
    assert {(r.method, r.keep, r.examples) for r in rows} == {
        ("uniform", 0.7, 3), ("uniform", 0.5, 3), ("greedy", 0.7, 1), ("greedy", 0.5, 1)}
    for r in rows:  # the 19-token greedy chain moves in coarse steps; the GSM8K chains get close
        assert abs(r.student_fraction_mean - r.keep) < (0.15 if r.method == "greedy" else 0.03)
        assert r.student_fraction_min <= r.student_fraction_mean <= r.student_fraction_max
    result = runner.invoke(app, ["lengths", str(uni), str(greedy), "--json", str(tmp_path / "l.json")])
    assert result.exit_code == 0 and "uniform" in result.output
    assert len(json.loads((tmp_path / "l.json").read_text())) == 4
    result = runner.invoke(app, ["baseline", "nosuch", str(chains_file), "--student-tokenizer", "x", "--out", "y"])
    assert result.exit_code == 2


def test_the_greedy_baseline_runs_on_the_engine_it_is_given(tiny_pruner, student, tmp_path, monkeypatch):
    """`baseline --method greedy --engine E` reaches the ranker, and every engine gives the same order."""
    import chainprune.ranking.greedy as greedy_module

    engines = []
    real = greedy_module.ChainScorer

    def recording(model, ids, objective, engine, **kwargs):
        engines.append((engine, kwargs["max_batch_tokens"]))
        return real(model, ids, objective, engine, **kwargs)

    monkeypatch.setattr(greedy_module, "ChainScorer", recording)
    chains = tmp_path / "chains.jsonl"
    chains.write_text(json.dumps(dataclasses.asdict(SHORT)) + "\n")
    orders = {}
    for engine in ("naive", "packed"):
        config = BaselineConfig(method="greedy", student_tokenizer="s", keep=[0.5], engine=engine, max_batch_tokens=700)
        out = tmp_path / f"{engine}.jsonl"
        run_baseline(chains, out, config, resources=resources_for("greedy", tiny_pruner, student))
        (record,) = read_traces(out)
        orders[engine] = record["deletion_order"]
    assert engines == [("naive", 700), ("packed", 700)]
    assert orders["naive"] == orders["packed"]
