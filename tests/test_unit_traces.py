"""Every command that reads traces, on a unit trace built by hand (`prune --unit word`): it works at whole-unit
states, or refuses the record by name.

The trace: 10 reasoning tokens in 4 words, "Natalia sold 480 clips". Greedy deletes " sold" (2 tokens), then
" clips" (2), then "Natalia" (3); " 480" stays. Keep fractions are in tokens: keep 0.9 (at most 9 kept) needs
one word (8 kept), 0.7 (at most 7) two words (6 kept), 0.5 (at most 5) three words (3 kept).
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from chainprune.cli import app
from chainprune.data.scores import ScorePass, encode_pass
from chainprune.keep import keep_key
from chainprune.pipelines.analyze import run_dynamics, run_retention
from chainprune.pipelines.baselines import MatchConfig, run_match
from chainprune.pipelines.compare import compare_traces
from chainprune.pipelines.view import run_view
from chainprune.report.viewer import viewer_example
from chainprune.trace_steps import check_trace_steps, step_ends, steps_at
from chainprune.types import PrunedChain, Trace, TraceToken

TEXTS = ["Nat", "al", "ia", " so", "ld", " 4", "8", "0", " cl", "ips"]
UNITS = [[0, 3], [3, 5], [5, 8], [8, 10]]
WORD_STEPS = {1: 1, 3: 2, 0: 3}  # unit index -> the step that deleted it
OBJECTIVES = [-10.0, -11.0, -12.5, -15.0]  # after 0, 1, 2, 3 word deletions
KEEPS = (0.9, 0.7, 0.5)


def unit_trace(trace_id: str = "natalia") -> Trace:
    steps = [None] * len(TEXTS)
    for u, step in WORD_STEPS.items():
        for i in range(*UNITS[u]):
            steps[i] = step
    order = [i for u, _ in sorted(WORD_STEPS.items(), key=lambda kv: kv[1]) for i in range(*UNITS[u])]
    trace = Trace(
        id=trace_id, pruner="tiny", objective="joint", prompt_ids=[1, 2], reasoning_ids=[100 + i for i in range(10)],
        answer_ids=[3], deletion_order=order, objective_values=list(OBJECTIVES),
        tokens=[TraceToken(i, t, s) for i, (t, s) in enumerate(zip(TEXTS, steps))], pruned={},
        unit="word", units=[list(u) for u in UNITS],
    )
    trace.pruned = {keep_key(r): PrunedChain(trace.kept_text(r), len(TEXTS) - trace.deletions_at(r)) for r in KEEPS}
    return trace


def token_trace(order: list[int], values: list[float], trace_id: str = "natalia") -> Trace:
    step = {p: s for s, p in enumerate(order, start=1)}
    trace = Trace(
        id=trace_id, pruner="tiny", objective="joint", prompt_ids=[1, 2], reasoning_ids=[100 + i for i in range(10)],
        answer_ids=[3], deletion_order=order, objective_values=values,
        tokens=[TraceToken(i, t, step.get(i)) for i, t in enumerate(TEXTS)], pruned={},
    )
    trace.pruned = {keep_key(r): PrunedChain(trace.kept_text(r), len(TEXTS) - trace.deletions_at(r)) for r in KEEPS}
    return trace


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r if isinstance(r, dict) else r.to_json()) + "\n" for r in records))
    return path


def broken(record: dict) -> dict:
    """The unit trace with one token of "Natalia" deleted at another step than the rest of its word."""
    record = json.loads(json.dumps(record))
    record["id"] = "broken"
    record["tokens"][0]["deleted_step"] = 1
    return record


def test_the_hand_built_trace_is_what_the_docstring_says():
    trace = unit_trace()
    assert trace.step_sizes() == [2, 2, 3] and step_ends(trace) == [0, 2, 4, 7]
    assert [trace.deletions_at(r) for r in KEEPS] == [2, 4, 7]
    assert [steps_at(trace, r) for r in KEEPS] == [1, 2, 3]
    assert [trace.pruned[keep_key(r)].num_tokens for r in KEEPS] == [8, 6, 3]
    assert trace.kept_text(0.5) == " 480" and trace.kept_text(0.7) == "Natalia 480"
    check_trace_steps(trace)


def test_token_trace_json_has_no_unit_keys_and_round_trips_unchanged():
    trace = token_trace([3, 4, 8, 9, 0, 1, 2], [-10.0 - s for s in range(8)])
    record = trace.to_json()
    assert "unit" not in record and "units" not in record
    line = json.dumps(record)
    assert json.dumps(Trace.from_json(json.loads(line)).to_json()) == line
    unit = unit_trace().to_json()
    assert unit["unit"] == "word" and unit["units"] == UNITS
    assert Trace.from_json(json.loads(json.dumps(unit))).to_json() == unit


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda r: r["tokens"][0].update(deleted_step=1), "different deleted_step values"),
        (lambda r: r.update(deletion_order=[4, 3] + r["deletion_order"][2:]), "deletion_order does not list"),
        (lambda r: r.update(units=[[0, 3], [3, 5], [5, 10]]), "different deleted_step values"),
        (lambda r: r.update(units=[[0, 3], [4, 10]]), "does not follow 3"),
        (lambda r: r.update(units=None), "needs 'units'"),
        (lambda r: r.update(objective_values=[-10.0] * 8), "8 objective values for 3 word deletions"),
    ],
)
def test_an_inconsistent_unit_trace_says_what_is_wrong(change, message):
    record = unit_trace().to_json()
    change(record)
    with pytest.raises(ValueError, match=re.escape(message)):
        check_trace_steps(Trace.from_json(record))


# ---- show ----


def test_show_strikes_whole_words_and_prints_the_unit_states_objective(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [unit_trace()])
    result = CliRunner().invoke(app, ["show", str(path), "--keep", "0.5", "--keep", "0.9"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "in 4 words, deleted by word" in out
    (row,) = [line for line in out.splitlines() if " 480" in line and line.lstrip("│ ").startswith("0.5")]
    struck = re.search(r"~~(.*)~~ 480~~(.*)~~", row)
    assert struck and struck.group(1) == "Natalia sold" and struck.group(2) == " clips"
    assert re.sub(r"~~.*?~~", "", row.split("│")[3]).strip() == unit_trace().kept_text(0.5).strip()
    assert re.search(r"│\s+3\s+│", row)  # tokens kept
    assert "-15.00" in row  # the objective after 3 word deletions, not after 5 token deletions
    (row9,) = [line for line in out.splitlines() if line.lstrip("│ ").startswith("0.9")]
    assert "~~ sold~~" in row9 and "-11.00" in row9


# ---- view ----


def test_viewer_example_counts_unit_steps_and_refuses_a_broken_unit_trace(tmp_path):
    record = unit_trace().to_json()
    example = viewer_example(record)
    assert example["deletions"] == 3 and example["ends"] == [0, 2, 4, 7] and example["unit"] == "word"
    assert example["kept_at"] == {"0.9": 8, "0.7": 6, "0.5": 3}
    assert "ends" not in viewer_example(token_trace([3, 4, 8], [-1.0, -2.0, -3.0, -4.0]).to_json())
    with pytest.raises(ValueError, match="different deleted_step"):
        viewer_example(broken(record))
    summary = run_view([write_jsonl(tmp_path / "t.jsonl", [record, broken(record)])], tmp_path / "v.html")
    assert summary.examples == 1
    ((_, failure),) = summary.failures
    assert failure.id == "broken" and "different deleted_step" in failure.message


# ---- compare ----


def test_compare_a_unit_trace_with_itself_and_with_a_token_trace(tmp_path):
    unit = write_jsonl(tmp_path / "unit.jsonl", [unit_trace()])
    same = compare_traces(unit, unit)
    assert [(k.keep, k.overlap_mean, k.kendall_tau_mean, k.objective_gap_mean) for k in same.per_keep] == [
        (0.9, 1.0, 1.0, 0.0), (0.7, 1.0, 1.0, 0.0), (0.5, 1.0, 1.0, 0.0)]

    # A token trace of the same chain: at keep 0.5 it deletes 5 tokens, {4, 9, 3, 8, 1}, and keeps {0, 2, 5, 6, 7};
    # the word trace keeps {5, 6, 7}.
    token_values = [-10.0 - 0.5 * s for s in range(6)]
    token = write_jsonl(tmp_path / "token.jsonl", [token_trace([4, 9, 3, 8, 1], token_values)])
    vs = {k.keep: k for k in compare_traces(token, unit).per_keep}
    assert vs[0.5].overlap_mean == pytest.approx(3 / 5)  # of the token trace's kept tokens, the word trace keeps 3
    assert vs[0.5].objective_gap_mean == pytest.approx(-15.0 - token_values[5])
    assert vs[0.9].overlap_mean == pytest.approx(8 / 9)  # token deletes {4}, word {3, 4}: 8 of the 9 kept shared
    back = {k.keep: k for k in compare_traces(unit, token).per_keep}
    assert back[0.5].overlap_mean == 1.0  # all 3 tokens the word trace keeps, the token trace keeps too
    assert back[0.5].objective_gap_mean == pytest.approx(token_values[5] + 15.0)

    bad = write_jsonl(tmp_path / "bad.jsonl", [broken(unit_trace().to_json()) | {"id": "natalia"}])
    result = CliRunner().invoke(app, ["compare", str(token), str(bad)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "trace 'natalia' (word trace)" in " ".join(result.output.split()) and "different deleted_step" in result.output


# ---- match ----


class Vocab:
    """The pruner's tokenizer: decodes the hand trace's ids to their texts."""

    def decode(self, ids, clean_up_tokenization_spaces=False):
        return "".join(TEXTS[i - 100] for i in ids)


class Words:
    """A student that makes one token of every whitespace-separated word."""

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": text.split()}


def test_match_cuts_a_unit_trace_only_where_a_word_ends(tmp_path):
    record = unit_trace().to_json()
    traces = write_jsonl(tmp_path / "t.jsonl", [record, broken(record)])
    out = tmp_path / "m.jsonl"
    summary = run_match(traces, out, MatchConfig("words", keep=[0.5, 0.7]),
                        tokenizers=lambda name: Words() if name == "words" else Vocab())
    ((matched),) = [json.loads(line) for line in out.read_text().splitlines()]
    # 4 student tokens; keep 0.5 -> 2. Token by token, 3 deletions (" so", "ld", " cl") already give "Natalia 480ips"
    # (2 words), but that state greedy never reached: cut at word ends, 4 deletions give "Natalia 480".
    half = matched["pruned"]["0.5"]
    assert (half["deletions"], half["text"], half["student_tokens"], half["num_tokens"]) == (4, "Natalia 480", 2, 6)
    assert matched["pruned"]["0.7"]["deletions"] == 2 and matched["pruned"]["0.7"]["text"] == "Natalia 480 clips"
    assert matched["unit"] == "word" and matched["units"] == UNITS
    assert [t["deleted_step"] for t in matched["tokens"]] == [t["deleted_step"] for t in record["tokens"]]
    assert viewer_example(matched)["deletions"] == 3  # it still reads as the word trace it came from
    (failure,) = summary.failures
    assert failure.id == "broken" and "cannot cut this word trace at its steps" in failure.message


# ---- annotate, retention, dynamics ----


def test_annotate_keeps_the_unit_fields_and_retention_counts_the_kept_unit_state(tmp_path):
    traces = write_jsonl(tmp_path / "t.jsonl", [unit_trace()])
    annotated = tmp_path / "a.jsonl"
    result = CliRunner().invoke(app, ["annotate", str(traces), "--out", str(annotated)])
    assert result.exit_code == 0, result.output
    (record,) = [json.loads(line) for line in annotated.read_text().splitlines()]
    assert record["unit"] == "word" and record["units"] == UNITS
    trace = Trace.from_json(record)
    categories = [t.category for t in trace.tokens]

    res = run_retention([("word", annotated)], tmp_path / "ret", fractions=[1.0, 0.9, 0.7, 0.5])
    assert res.failures == []
    for r in (0.9, 0.7, 0.5):
        kept = trace.kept_positions(r)
        rows = [row for row in res.rows if row["keep"] == r]
        for row in rows:
            assert row["kept"] == sum(categories[i] == row["category"] for i in kept), (r, row)
        assert rows[0]["overall_kept"] == round(len(kept) / 10, 6)
    assert {row["overall_kept"] for row in res.rows if row["keep"] == 0.5} == {0.3}  # not floor(10 * 0.5) / 10

    bad = write_jsonl(tmp_path / "bad.jsonl", [record, broken(record)])
    cli = CliRunner().invoke(app, ["analyze", "retention", f"word={bad}", "--out", str(tmp_path / "r2")])
    assert cli.exit_code == 1 and "Traceback" not in cli.output
    assert "id 'broken': inconsistent word trace" in " ".join(cli.output.split())


def test_dynamics_refuses_unit_traces_by_name_and_analyses_the_others(tmp_path):
    token = token_trace([3, 4, 8, 9, 0], [-10.0 - s for s in range(6)], trace_id="tokens")
    traces = write_jsonl(tmp_path / "t.jsonl", [token, unit_trace()])
    scores = [{"id": "tokens", "n": 10, "passes": [encode_pass(ScorePass(0, np.arange(10, dtype=np.float32)))]}]
    write_jsonl(tmp_path / "t.jsonl.scores.jsonl", scores)
    result = run_dynamics(traces, tmp_path / "dyn", fractions=[1.0, 0.5])
    assert result.chains == 1
    (failure,) = result.failures
    assert failure.id == "natalia" and "a word trace: rank dynamics compares rankings of single-token" in failure.message
    cli = CliRunner().invoke(app, ["analyze", "dynamics", str(traces), "--out", str(tmp_path / "d2"), "-k", "1.0", "-k", "0.5"])
    assert cli.exit_code == 1 and "id 'natalia'" in cli.output and "Traceback" not in cli.output

    only_units = write_jsonl(tmp_path / "u.jsonl", [unit_trace()])
    write_jsonl(tmp_path / "u.jsonl.scores.jsonl", [])
    cli = CliRunner().invoke(app, ["analyze", "dynamics", str(only_units), "--out", str(tmp_path / "d3")])
    assert cli.exit_code == 2 and "id 'natalia'" in cli.output and "word trace" in cli.output


def test_judge_reads_the_kept_unit_state(tmp_path):
    from chainprune.analysis.judge import judge_messages

    trace = Trace.from_json(unit_trace().to_json(), partial=True)
    assert " 480" in judge_messages(trace.kept_text(0.5), "q")[-1]["content"]
    assert "clips" not in judge_messages(trace.kept_text(0.5), "q")[-1]["content"]


# ---- distill ----


def test_distill_trains_on_the_unit_traces_pruned_text(tmp_path, tiny_tokenizer):
    from chainprune.pipelines.distill import DistillConfig, training_examples

    chains = write_jsonl(tmp_path / "chains.jsonl", [{"id": "natalia", "question": "How many clips?",
                                                      "reasoning": "".join(TEXTS), "answer": "480"}])
    traces = write_jsonl(tmp_path / "t.jsonl", [unit_trace()])
    examples, ids, errors = training_examples(traces, chains, DistillConfig(keep=0.7), tiny_tokenizer, "system")
    assert ids == ["natalia"] and errors == []
    completion = examples[0]["completion"]
    text = completion if isinstance(completion, str) else completion[0]["content"]
    assert unit_trace().kept_text(0.7).strip() in text and "sold" not in text
