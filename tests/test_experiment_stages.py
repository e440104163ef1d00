"""The experiment's stage keys, pinned: existing runs' cached stages are found by these folder names, so a
change to what a key holds (a renamed setting, a new PruneConfig field, a moved default) fails here first.
Also the YAML's teacher and pruner settings, held in the pipelines' own configs, and the resolved config."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from chainprune.pipelines.experiment import parse_config, prune_config, resolved, teacher_config
from chainprune.pipelines.experiment import stages as keys
from chainprune.pipelines.experiment.stages import folder_name
from chainprune.pipelines.prune import PruneConfig
from chainprune.pipelines.teacher import TeacherConfig
from chainprune.scoring import DEFAULT_MAX_BATCH_TOKENS

RAW = {
    "name": "pinned", "dataset": "gsm8k",
    "data": {"train": 20, "dev": 10, "test": 40, "seed": 3, "max_solution_chars": 100},
    "teachers": ["solutions", {"model": "smollm2-135m", "name": "t2", "samples": 4, "temperature": 0.6}],
    "pruners": [{"model": "smollm2-135m", "screen": 8, "lookahead": 16, "batch_chains": 4},
                {"model": "smollm2-135m", "name": "p2", "per_step": 2, "screen": 4, "lookahead": 8, "margin": 2.0,
                 "floor": 0.3}],
    "student": {"model": "smollm2-135m", "steps": 12, "learning_rate": 5e-4, "save_steps": 6},
    "methods": ["greedy", "uniform", "surprisal"], "keep": [0.7, 0.5],
    "eval": {"max_new_tokens": 160}, "dtype": "float32", "device": "cpu", "seed": 1,
}

# Computed by the single-module experiment.py these keys were first written by.
PINNED = {
    "data": "data-f41ee0f35ab7",
    "chains": {"solutions": "chains-0ad904f1a51e", "t2": "chains-b3ae136decab"},
    "zeroshot": "zeroshot-ce6e2e9cf09c",
    "traces": {"smollm2-135m": "traces-ef8da85d8d51", "p2": "traces-c9810bf70918"},
    # (pruner, method) at keep 0.5, from the t2 chains: pruned, student, eval
    ("smollm2-135m", "greedy"): ("pruned-24bbfd10fbaa", "student-98e069e57fbb", "eval-1096382c10ff"),
    ("smollm2-135m", "uniform"): ("pruned-83163203694a", "student-f01404b647f9", "eval-475e9ed5cb9c"),
    ("smollm2-135m", "surprisal"): ("pruned-2a0e0d18e7a9", "student-822dd75862a2", "eval-525b2e48d00c"),
    ("p2", "greedy"): ("pruned-b71c2048fd34", "student-4bddfc270636", "eval-9e96c580bd1a"),
    ("p2", "uniform"): ("pruned-b9cb1aebf02b", "student-4925c28744b3", "eval-60d80b64fc60"),
    ("p2", "surprisal"): ("pruned-18c30d9e35c7", "student-efc47186c6ab", "eval-28dfb5dfb8be"),
}


def test_stage_keys_are_those_of_existing_runs():
    config = parse_config(RAW)
    data = folder_name("data", keys.data_inputs(config))
    assert data == PINNED["data"]
    chains = {t.name or t.model: folder_name("chains", keys.chains_inputs(data, t, config)) for t in config.teachers}
    assert chains == PINNED["chains"]
    student = config.students[0]
    assert folder_name("zeroshot", keys.zeroshot_inputs(student, data, config)) == PINNED["zeroshot"]
    for pruner in config.pruners:
        name = pruner.name or pruner.model
        traces = folder_name("traces", keys.traces_inputs(chains["t2"], pruner, config))
        assert traces == PINNED["traces"][name]
        for method in config.methods:
            pruned = folder_name("pruned", keys.pruned_inputs(chains["t2"], traces, pruner, student, method, 0.5, config))
            trained = folder_name("student", keys.student_inputs(pruned, student, data, config))
            evaluated = folder_name("eval", keys.eval_inputs(trained, data, config))
            assert (pruned, trained, evaluated) == PINNED[(name, method)], (name, method)


def test_specs_hold_the_pipelines_configs():
    config = parse_config(RAW)
    solutions, t2 = config.teachers
    assert t2.config == TeacherConfig(model="smollm2-135m", samples=4, temperature=0.6)
    assert solutions.config.model == "solutions" and solutions.name is None
    pruner = config.pruners[1]
    assert (pruner.name, pruner.floor) == ("p2", 0.3)
    assert pruner.config == PruneConfig(per_step=2, screen=4, lookahead=8, margin=2.0)
    # What the pipelines run with: the spec's own settings and the grid's.
    assert teacher_config(t2, config, Path("d/train.jsonl")) == TeacherConfig(
        dataset="gsm8k", split="all", model="smollm2-135m", samples=4, temperature=0.6, dtype="float32",
        device="cpu", data_file="d/train.jsonl")
    assert prune_config(pruner, config) == PruneConfig(keep=[0.3], dtype="float32", device="cpu", per_step=2,
                                                       screen=4, lookahead=8, margin=2.0)
    assert prune_config(config.pruners[0], config).keep == [0.45]


@pytest.mark.parametrize("spec, setting", [("teacher", "dataset"), ("teacher", "data_file"), ("pruner", "keep"),
                                           ("pruner", "dtype")])
def test_settings_the_grid_sets_are_not_a_specs(spec, setting):
    with pytest.raises(ValueError, match=f"{spec}: unknown setting '{setting}'"):
        parse_config({spec: {"model": "m", setting: "x"}})


def test_the_resolved_config_reads_back_as_the_same_experiment():
    config = parse_config(RAW)
    again = parse_config(yaml.safe_load(yaml.safe_dump(resolved(config), sort_keys=False)))
    assert again == config
    assert resolved(config)["pruners"][1] == {
        "model": "smollm2-135m", "name": "p2", "objective": "joint", "engine": "packed",
        "max_batch_tokens": DEFAULT_MAX_BATCH_TOKENS,
        "per_step": 2, "screen": 4, "refresh": 10, "lookahead": 8, "margin": 2.0, "save_scores": False,
        "surrogate": None, "batch_chains": 1, "unit": "token", "floor": 0.3}
