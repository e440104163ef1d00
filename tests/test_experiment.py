"""The experiment runner: a tiny grid end to end on tiny saved models, cached stages, resume, config errors."""

from __future__ import annotations

import csv
import json
from collections import Counter

import pytest
import yaml

pytest.importorskip("trl", reason="experiment tests need the train extra (trl, peft)")

from conftest import GSM8K  # noqa: E402

from chainprune.pipelines.experiment import gsm8k_solution_chain, load_config, parse_config, run_experiment  # noqa: E402


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "gsm8k.jsonl"
    with GSM8K.open() as f:
        path.write_text("".join(line for _, line in zip(range(80), f)))
    return path


def raw_config(tiny_dir, data_file, keep):
    return {
        "name": "tiny",
        "data": {"data_file": str(data_file), "train": 3, "dev": 2, "test": 2, "seed": 0, "max_solution_chars": 80},
        "teacher": "solutions",
        "pruner": {"model": tiny_dir, "engine": "prefix", "per_step": 8},  # approximate: fast enough for a test
        "student": {"model": tiny_dir, "name": "tiny", "steps": 2, "batch_size": 2, "grad_accum": 1, "save_steps": 2,
                    "lora_r": 4, "lora_alpha": 8},
        "methods": ["greedy", "uniform"],
        "keep": keep,
        "eval": {"max_new_tokens": 3, "batch_size": 4},
        "dtype": "float32",
        "device": "cpu",
    }


def run(tiny_dir, data_file, out, keep):
    ran = []

    def on_stage(kind, key, status):
        ran.append((kind, status))

    result = run_experiment(parse_config(raw_config(tiny_dir, data_file, keep)), out_dir=out, on_stage=on_stage,
                            progress_bar=False)
    return result, Counter(kind for kind, status in ran if status != "skip"), Counter(kind for kind, _ in ran)


def test_grid_runs_caches_and_reruns_only_what_a_change_reaches(tiny_dir, data_file, tmp_path):
    out = tmp_path / "run"
    result, ran, seen = run(tiny_dir, data_file, out, [0.7, 0.5])
    assert ran == {"data": 1, "chains": 1, "traces": 1, "zeroshot": 1, "pruned": 4, "student": 4, "eval": 4}
    assert [(r["method"], r["keep"]) for r in result.rows] == [
        ("zero-shot", None), ("greedy", 0.7), ("greedy", 0.5), ("uniform", 0.7), ("uniform", 0.5)]
    assert all(r["examples"] == 2 for r in result.rows)
    assert all(r["train_examples"] == 3 for r in result.rows[1:])
    # Pruned sets really are shorter at the smaller keep (student tokens), and both methods hit the target.
    by = {(r["method"], r["keep"]): r for r in result.rows}
    for method in ("greedy", "uniform"):
        assert by[(method, 0.5)]["train_reasoning_tokens"] < by[(method, 0.7)]["train_reasoning_tokens"]
        assert abs(by[(method, 0.5)]["student_keep_achieved"] - 0.5) < 0.05
    with (out / "results.csv").open() as f:
        table = list(csv.DictReader(f))
    assert len(table) == 5 and table[1]["method"] == "greedy"
    assert "| greedy | 0.7 |" in (out / "results.md").read_text()
    assert (out / "accuracy-vs-keep.png").stat().st_size > 0 and (out / "accuracy-vs-keep.svg").exists()
    resolved = yaml.safe_load((out / "resolved-config.yaml").read_text())
    assert resolved["keep"] == [0.7, 0.5] and resolved["students"][0]["sft"]["steps"] == 2
    chains = [json.loads(line) for line in next(out.glob("stages/chains-*/chains.jsonl")).read_text().splitlines()]
    assert len(chains) == 3 and all("<<" not in c["reasoning"] and c["answer"].startswith("The answer is ") for c in chains)
    test_ids = {json.loads(line)["id"] for line in next(out.glob("stages/data-*/test.jsonl")).read_text().splitlines()}
    assert test_ids.isdisjoint(c["id"] for c in chains)

    # The same config again: every stage is skipped, the results are rewritten from the cached stages.
    again, ran, seen = run(tiny_dir, data_file, out, [0.7, 0.5])
    assert ran == {} and sum(seen.values()) == 16
    assert again.rows == result.rows

    # One keep fraction changed (not the smallest, so the greedy traces still reach it): only its stages run.
    _, ran, _ = run(tiny_dir, data_file, out, [0.8, 0.5])
    assert ran == {"pruned": 2, "student": 2, "eval": 2}


def test_an_interrupted_stage_resumes(tiny_dir, data_file, tmp_path):
    out = tmp_path / "run"
    run(tiny_dir, data_file, out, [0.5])
    # Pretend the run died inside the uniform pruning stage: its marker and last record are gone.
    stage = next(d for d in out.glob("stages/pruned-*") if '"uniform"' in (d / "stage.json").read_text())
    (stage / "done").unlink()
    lines = (stage / "pruned.jsonl").read_text().splitlines(keepends=True)
    (stage / "pruned.jsonl").write_text("".join(lines[:-1]))
    _, ran, _ = run(tiny_dir, data_file, out, [0.5])
    assert ran == {"pruned": 1}  # resumed in place; downstream stages were finished and keyed the same
    assert len((stage / "pruned.jsonl").read_text().splitlines()) == len(lines)


@pytest.mark.parametrize("change, message", [
    ({"methods": ["greedy", "nope"]}, "unknown method 'nope'"),
    ({"student": {"model": "m", "stepz": 3}}, "student: unknown setting 'stepz'"),
    ({"keep": [0.5, 1.5]}, r"keep fraction must be in \(0, 1\]"),
    ({"colour": "red"}, "unknown setting 'colour'"),
    ({"pruner": {"model": "m", "floor": 0.6}, "keep": [0.5]}, "floor 0.6 is above the smallest keep 0.5"),
    ({"student": [{"model": "m"}, {"model": "m"}]}, "two students are both called 'm'"),
])
def test_config_errors_say_what_is_wrong(change, message):
    with pytest.raises(ValueError, match=message):
        parse_config({**{"teacher": "solutions"}, **change})


@pytest.mark.parametrize("text, kind", [("- teacher: solutions\n", "list"), ("just words\n", "str")])
def test_a_yaml_file_that_is_not_a_mapping_is_refused_by_name(tmp_path, text, kind):
    path = tmp_path / "grid.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=rf"grid\.yaml: not an experiment config \(its top level is a {kind}"):
        load_config(path)


def test_an_empty_yaml_file_is_every_default(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text("")
    assert load_config(path, {"keep": [0.5]}) == parse_config({"keep": [0.5]})


def test_gsm8k_solution_chain_strips_calculator_notes():
    from chainprune.tasks import get_task

    record = {"question": "Q?", "answer": "She sold 48/2 = <<48/2=24>>24 clips.\n48+24 = <<48+24=72>>72\n#### 72"}
    example = get_task("gsm8k").to_example(record, "train", 5)
    chain = gsm8k_solution_chain(record, example, "SYS")
    assert chain == {"id": "gsm8k-train-5", "question": "Q?", "reasoning": "She sold 48/2 = 24 clips.\n48+24 = 72",
                     "answer": "The answer is 72.", "system": "SYS", "gold": "72"}
