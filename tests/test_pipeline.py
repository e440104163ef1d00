"""`run_prune` and the CLI: bad input is reported per record, the rest completes, resume never duplicates."""

import json

import pytest
from typer.testing import CliRunner

from chainprune.cli import app
from chainprune.data.jsonl import read_chains, repair_and_read_ids
from chainprune.pipelines.prune import PruneConfig, errors_path, run_prune

GOOD = [
    {"id": "a", "question": "How many clips?", "reasoning": "Natalia sold 48/2 = 24 clips.", "answer": "The answer is 24."},
    {"id": "b", "question": "Pay?", "reasoning": "Weng earns 12/60 = $0.2 per minute.", "answer": "The answer is 10.", "system": "Be brief."},
    {"id": 7, "question": "Empty?", "reasoning": "", "answer": "The answer is 3."},
]


def write_jsonl(path, lines):
    path.write_text("".join((l if isinstance(l, str) else json.dumps(l)) + "\n" for l in lines))
    return path


def flat(text):
    return " ".join(text.split())


def ids_in(path):
    return [json.loads(line)["id"] for line in path.read_text().splitlines()]


@pytest.fixture
def loader(tiny_pruner):
    calls = []

    def load(config):
        calls.append(config)
        return tiny_pruner

    load.calls = calls
    return load


def test_bad_records_are_named_and_others_complete(tmp_path, loader):
    long_reasoning = " ".join(["Natalia sold 48 clips."] * 200)  # far beyond the tiny model's 512 positions
    lines = [
        GOOD[0],
        "{not json",
        {"id": "m", "question": "q", "answer": "a"},
        GOOD[0] | {"question": "dup"},
        {"id": "long", "question": "q", "reasoning": long_reasoning, "answer": "The answer is 1."},
        {"id": "t", "question": "q", "reasoning": 5, "answer": "a"},
        GOOD[1],
        GOOD[2],
    ]
    source = write_jsonl(tmp_path / "in.jsonl", lines)
    out = tmp_path / "traces.jsonl"
    summary = run_prune(source, out, PruneConfig(keep=[0.5]), loader=loader)
    assert ids_in(out) == ["a", "b", "7"]
    problems = {(e.line, e.id): e.message for e in summary.failures}
    assert "not valid JSON" in problems[(2, None)]
    assert "missing field 'reasoning'" in problems[(3, "m")]
    assert "duplicate id (first seen on line 1)" in problems[(4, "a")]
    assert "longer than the pruner's context of 512" in problems[(5, "long")]
    assert "'reasoning' must be a string" in problems[(6, "t")]
    assert len(summary.failures) == 5 and summary.done == 3
    assert len(errors_path(out).read_text().splitlines()) == 5
    empty = json.loads(out.read_text().splitlines()[2])
    assert empty["deletion_order"] == [] and empty["reasoning_ids"] == []


def test_resume_skips_done_ids_and_repairs_partial_line(tmp_path, loader):
    source = write_jsonl(tmp_path / "in.jsonl", GOOD)
    out = tmp_path / "traces.jsonl"
    config = PruneConfig(keep=[0.5])
    run_prune(source, out, config, loader=loader)
    full = out.read_text().splitlines()
    # Simulate a crash: the first record complete, the second cut mid-write.
    out.write_text(full[0] + "\n" + full[1][: len(full[1]) // 2])
    summary = run_prune(source, out, config, resume=True, loader=loader)
    assert summary.skipped == 1 and summary.done == 2
    assert any("partial last line" in w for w in summary.warnings)
    assert out.read_text().splitlines() == full  # identical records, none lost, none duplicated
    again = run_prune(source, out, config, resume=True, loader=loader)
    assert again.done == 0 and again.skipped == 3 and out.read_text().splitlines() == full
    assert len(loader.calls) == 2  # nothing to do: the model is not even loaded


def test_existing_output_needs_resume_or_overwrite(tmp_path, loader):
    source = write_jsonl(tmp_path / "in.jsonl", GOOD[:1])
    out = tmp_path / "traces.jsonl"
    run_prune(source, out, PruneConfig(), loader=loader)
    with pytest.raises(ValueError, match="--resume"):
        run_prune(source, out, PruneConfig(), loader=loader)
    with pytest.raises(ValueError, match="other settings"):
        run_prune(source, out, PruneConfig(objective="answer"), resume=True, loader=loader)
    run_prune(source, out, PruneConfig(objective="answer"), overwrite=True, loader=loader)
    assert json.loads(out.read_text())["objective"] == "answer"


def test_repair_ignores_corrupt_middle_line(tmp_path):
    out = tmp_path / "t.jsonl"
    out.write_text('{"id": "a"}\n{"id": \n{"id": "c"}\n')
    ids, warnings = repair_and_read_ids(out)
    assert ids == {"a", "c"} and "line 2" in warnings[0]


def test_read_chains_accepts_integer_ids(tmp_path):
    chains, errors = read_chains(write_jsonl(tmp_path / "in.jsonl", [GOOD[2]]))
    assert errors == [] and chains[0][1].id == "7"


def test_cli_prune_end_to_end_with_local_model(tmp_path, tiny_model_dir):
    source = write_jsonl(tmp_path / "in.jsonl", [GOOD[0], "oops", GOOD[1]])
    out = tmp_path / "traces.jsonl"
    args = ["prune", str(source), "--model", str(tiny_model_dir), "--keep", "0.9", "--keep", "0.5",
            "--dtype", "float64", "--device", "cpu", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "line 2" in flat(result.output) and "1 record(s) failed" in flat(result.output)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in records] == ["a", "b"]
    assert set(records[0]["pruned"]) == {"0.9", "0.5"} and records[0]["dtype"] == "float64"
    assert records[0]["pruner"] == str(tiny_model_dir)
    resumed = CliRunner().invoke(app, args + ["--resume"])
    assert resumed.exit_code == 1 and [json.loads(l)["id"] for l in out.read_text().splitlines()] == ["a", "b"]
    shown = CliRunner().invoke(app, ["show", str(out), "--id", "a", "--keep", "0.5"])
    assert shown.exit_code == 0 and "~~" in shown.output


def test_cli_margin_per_window_is_saved_and_resumed(tmp_path, tiny_model_dir):
    source = write_jsonl(tmp_path / "in.jsonl", GOOD[:2])
    out = tmp_path / "traces.jsonl"
    base = ["prune", str(source), "--model", str(tiny_model_dir), "--keep", "0.5", "--dtype", "float64",
            "--device", "cpu", "--screen", "1", "--lookahead", "2", "--out", str(out)]
    result = CliRunner().invoke(app, base + ["--margin", "8", "--margin", "2"])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text().splitlines()[0])["mode"] == {"screen": 1, "lookahead": 2, "margin": [8.0, 2.0]}
    assert json.loads(out.with_name("traces.jsonl.config.json").read_text())["margin"] == [8.0, 2.0]
    resumed = CliRunner().invoke(app, base + ["--margin", "8", "--margin", "2", "--resume"])
    assert resumed.exit_code == 0, resumed.output
    other = CliRunner().invoke(app, base + ["--margin", "8", "--resume"])  # another rule: refused
    assert other.exit_code != 0 and "margin" in flat(other.output)
    # one margin is saved as a number, as before margins per window existed
    single = tmp_path / "single.jsonl"
    assert CliRunner().invoke(app, base[:-1] + [str(single), "--margin", "5"]).exit_code == 0
    assert json.loads(single.with_name("single.jsonl.config.json").read_text())["margin"] == 5.0
    assert json.loads(single.read_text().splitlines()[0])["mode"]["margin"] == 5.0


@pytest.mark.parametrize("keep", ["0", "1.5", "-0.2"])
def test_cli_keep_outside_unit_interval_is_usage_error(tmp_path, keep):
    source = write_jsonl(tmp_path / "in.jsonl", GOOD[:1])
    result = CliRunner().invoke(app, ["prune", str(source), "--keep", keep, "--out", str(tmp_path / "o.jsonl")])
    assert result.exit_code == 2 and "outside (0, 1]" in flat(result.output)


def test_cli_unknown_engine_and_missing_input(tmp_path):
    result = CliRunner().invoke(app, ["prune", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "o.jsonl")])
    assert result.exit_code == 2 and "does not exist" in flat(result.output)
    result = CliRunner().invoke(app, ["prune", "x.jsonl", "--engine", "fast", "--out", "o.jsonl"])
    assert result.exit_code == 2 and "prefix" in result.output


def test_cli_help_lists_engines_and_objectives():
    result = CliRunner().invoke(app, ["prune", "--help"])
    assert result.exit_code == 0
    for word in ("prefix", "naive", "joint", "answer", "--resume", "--max-batch-tokens"):
        assert word in result.output
