"""The experiment's Fig.-2 machinery: test questions from a test file, the full-chain student, training settings
tuned on the dev set, stage locks shared by two processes, failed jobs reported, per-question outputs and the
paired statistics the results are built from."""

from __future__ import annotations

import csv
import fcntl
import json
import os
import shutil

import pytest

pytest.importorskip("trl", reason="experiment tests need the train extra (trl, peft)")

from conftest import GSM8K  # noqa: E402

from chainprune.analysis.paired import mcnemar_exact, paired_difference, wilson_interval  # noqa: E402
from chainprune.pipelines.experiment import parse_config, run_experiment  # noqa: E402
from chainprune.pipelines.experiment.grid import run_jobs  # noqa: E402
from chainprune.pipelines.experiment.stages import StageBusy, Stages, snapshot  # noqa: E402


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A train file and a test file (other GSM8K rows, as a test split would be)."""
    folder = tmp_path_factory.mktemp("data")
    lines = GSM8K.read_text().splitlines(keepends=True)
    (folder / "train.jsonl").write_text("".join(lines[:100]))
    (folder / "test.jsonl").write_text("".join(lines[200:210]))
    return folder / "train.jsonl", folder / "test.jsonl"


def raw_config(tiny_dir, files, **change):
    train, test = files
    return {
        "name": "fig2",
        "data": {"data_file": str(train), "test_file": str(test), "train": 3, "dev": 2, "test": 4, "seed": 0,
                 "max_solution_chars": 80},
        "teacher": "solutions",
        "pruner": {"model": tiny_dir, "engine": "prefix", "per_step": 8},
        "student": {"model": tiny_dir, "name": "tiny", "steps": 2, "batch_size": 2, "grad_accum": 1, "save_steps": 2,
                    "lora_r": 4, "lora_alpha": 8, "tune": {"learning_rate": [1e-4, 1e-3]}},
        "full_chains": True,
        "methods": ["greedy", "uniform"],
        "keep": [0.5],
        "eval": {"max_new_tokens": 3, "batch_size": 4},
        "dtype": "float32",
        "device": "cpu",
        **change,
    }


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_fig2_grid_end_to_end(tiny_dir, files, tmp_path):
    out, results = tmp_path / "run", tmp_path / "results"
    ran = []
    result = run_experiment(parse_config(raw_config(tiny_dir, files)), out_dir=out, results_dir=results,
                            on_stage=lambda kind, key, status: ran.append((kind, status)), progress_bar=False)
    assert not result.failed
    # Test questions are the test file's (a seeded 4 of its 10); dev and train are carved from the train file.
    data = next(out.glob("stages/data-*"))
    test, dev, train = (read_jsonl(data / f"{s}.jsonl") for s in ("test", "dev", "train"))
    assert len(test) == 4 and all(r["id"].startswith("gsm8k-test-") for r in test)
    assert all(r["id"].startswith("gsm8k-train-") for r in dev + train) and len(dev) == 2 and len(train) == 3
    assert {r["id"] for r in dev}.isdisjoint(r["id"] for r in train)

    # Two tuning candidates train on the full chains; the chosen one is the full-chain row's student, and its
    # settings are the other students' (so four students in all: no fifth for the full-chain row).
    assert sum(1 for kind, status in ran if kind == "student" and status != "skip") == 4
    (tuning,) = result.tunings
    assert [t["learning_rate"] for t in tuning["trials"]] == [1e-4, 1e-3]
    chosen_rate = tuning["chosen"]["learning_rate"]
    students = [json.loads((d / "stage.json").read_text())["inputs"] for d in out.glob("stages/student-*")]
    pruned_students = [s for s in students if "pruned" in s]
    assert len(pruned_students) == 2 and all(s["sft"]["learning_rate"] == chosen_rate for s in pruned_students)
    assert "chosen on the dev set with the full-chain student only" in (results / "results.md").read_text()

    assert [(r["method"], r["keep"]) for r in result.rows] == [
        ("zero-shot", None), ("full", 1.0), ("greedy", 0.5), ("uniform", 0.5)]
    # Every student's per-question outputs are written, and the table's numbers follow from them.
    with (results / "results.csv").open() as f:
        table = list(csv.DictReader(f))
    for row, name in zip(table, ("zeroshot", "full-1.0", "greedy-0.5", "uniform-0.5")):
        outputs = read_jsonl(results / "outputs" / f"{name}.jsonl")
        assert [r["id"] for r in outputs] and {r["id"] for r in outputs} == {r["id"] for r in test}
        assert all({"id", "question", "response", "prediction", "correct"} <= set(r) for r in outputs)
        assert int(row["correct"]) == sum(r["correct"] for r in outputs) and int(row["examples"]) == len(outputs)
        low, high = wilson_interval(int(row["correct"]), len(outputs))
        assert float(row["accuracy_low"]) == round(100 * low, 2) and float(row["accuracy_high"]) == round(100 * high, 2)
    # Greedy against uniform (same keep) and the full-chain and zero-shot students, question by question.
    with (results / "comparisons.csv").open() as f:
        comparisons = list(csv.DictReader(f))
    assert [c["versus"] for c in comparisons] == ["uniform", "zero-shot", "full"]
    assert all(int(c["examples"]) == 4 for c in comparisons)
    assert (results / "accuracy-vs-keep.png").stat().st_size > 0

    # A second process's view: everything cached, the same rows.
    again = run_experiment(parse_config(raw_config(tiny_dir, files)), out_dir=out, results_dir=results,
                           progress_bar=False)
    assert again.stages_run == 0 and [r["accuracy"] for r in again.rows] == [r["accuracy"] for r in result.rows]

    # Restored from a snapshot (no adapters): a student whose evaluation is in the snapshot is not trained again,
    # nor are the tuning candidates (their dev accuracy is in their summaries); one whose evaluation is not is.
    restored = tmp_path / "restored"
    assert snapshot(out, restored / "stages") > 0
    assert not list(restored.glob("stages/*/best")) and not list(restored.glob("stages/*/lock"))
    def inputs(folder):
        return json.loads((folder / "stage.json").read_text())["inputs"]

    greedy_student = next(d.name for d in out.glob("stages/student-*")
                          if "pruned" in inputs(d) and inputs(out / "stages" / inputs(d)["pruned"])["method"] == "greedy")
    for folder in restored.glob("stages/eval-*"):
        if inputs(folder)["student"] == greedy_student:
            shutil.rmtree(folder)
    reran = []
    third = run_experiment(parse_config(raw_config(tiny_dir, files)), out_dir=restored, results_dir=tmp_path / "r3",
                           on_stage=lambda kind, key, status: reran.append((kind, key, status)), progress_bar=False)
    assert not third.failed and len(third.rows) == len(result.rows)
    redone = [(kind, key) for kind, key, status in reran if status != "skip"]
    assert [kind for kind, _ in redone] == ["student", "eval"] and f"student-{redone[0][1]}" == greedy_student


def test_a_config_without_test_file_keeps_its_data_key(files):
    from chainprune.pipelines.experiment import stages as keys

    train, test = files
    plain = parse_config({"data": {"data_file": str(train), "train": 3, "dev": 2, "test": 4}, "keep": [0.5]})
    inputs = keys.data_inputs(plain)
    assert "test_file" not in inputs and "test_file" not in inputs["data"]
    with_test = parse_config({"data": {"data_file": str(train), "test_file": str(test), "train": 3, "dev": 2,
                                       "test": 4}, "keep": [0.5]})
    assert keys.data_inputs(with_test)["test_file_sha"]


@pytest.mark.parametrize("change, message", [
    ({"student": {"model": "m", "tune": {"colour": [1]}}}, "tune: 'colour' is not a training setting"),
    ({"student": {"model": "m", "tune": {"learning_rate": 1e-4}}}, "tune.learning_rate: give a list"),
    ({"student": {"model": "m", "tune": {"learning_rate": [1e-4, -1.0]}}}, "learning_rate must be positive"),
    ({"data": {"test_file": "t.jsonl", "hub_dataset": "paper"}}, "test_file and data.hub_dataset"),
])
def test_fig2_config_errors(change, message):
    with pytest.raises(ValueError, match=message):
        parse_config({"teacher": "solutions", "keep": [0.5], **change})


def test_a_stage_another_process_runs_is_busy_then_found_done(tmp_path):
    stages = Stages(tmp_path)
    folder = stages.folder("eval", {"x": 1})
    folder.mkdir(parents=True)
    held = os.open(folder / "lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(held, fcntl.LOCK_EX)  # another process's run (flock locks belong to the open file)
    ran = []
    with pytest.raises(StageBusy, match="being run by another process"):
        stages.run("eval", {"x": 1}, ran.append, wait=False)
    assert ran == []
    os.close(held)
    assert stages.run("eval", {"x": 1}, ran.append, wait=False) == folder and ran == [folder]
    assert stages.run("eval", {"x": 1}, ran.append, wait=False) == folder and ran == [folder]  # done: skipped


def test_jobs_wait_their_turn_and_failures_do_not_stop_the_others():
    calls = []
    busy_once = iter([True, False])

    def busy_then_done():
        calls.append("busy")
        if next(busy_once):
            raise StageBusy(type("F", (), {"name": "eval-x"})())
        return "late"

    def broken():
        calls.append("broken")
        raise ValueError("no classifier here")

    jobs = [("a", busy_then_done), ("b", broken), ("c", lambda: calls.append("c") or "c")]
    messages = []
    results, failed = run_jobs(jobs, messages.append, poll_seconds=0)
    assert results == ["late", None, "c"]
    assert failed == [("b", "ValueError: no classifier here")]
    assert calls == ["busy", "broken", "c", "busy"]  # the busy job went on after the others
    assert any("wait a" in m for m in messages) and any("failed b" in m for m in messages)


def test_wilson_interval_and_mcnemar_known_values():
    low, high = wilson_interval(5, 32)
    assert low == pytest.approx(0.0686, abs=1e-4) and high == pytest.approx(0.3175, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert mcnemar_exact(10, 2) == pytest.approx(2 * (1 + 12 + 66) / 4096)
    assert mcnemar_exact(0, 0) == 1.0 and mcnemar_exact(3, 3) == 1.0


def test_paired_difference_on_the_questions_both_answered():
    a = {f"q{i}": i % 2 == 0 for i in range(40)}  # 20 right
    b = {f"q{i}": i % 4 == 0 for i in range(40)} | {"extra": True}  # 10 right; "extra" is not in a
    d = paired_difference(a, b, resamples=2000)
    assert d.n == 40 and (d.only_a, d.only_b) == (10, 0)
    assert d.difference == pytest.approx(0.25) and d.low < 0.25 < d.high and d.low > 0
    assert d.p_mcnemar == pytest.approx(2 / 1024)
    same = paired_difference(a, a, resamples=100)
    assert (same.difference, same.low, same.high, same.p_mcnemar) == (0.0, 0.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="no question"):
        paired_difference({"x": True}, {"y": True})
